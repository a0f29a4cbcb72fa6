r"""The synthetic-parts job (configs/parts.py, Case 1) over 3 seeds, CPU, with the part
selectivity of the interpretable top layer against the ordinary one (the same net trained
without mask and filter loss) as a paired difference per run.

  python launch/study.py --config=configs/studies/parts_seeds.py --workdir=studies/parts

``:tiny`` runs 2 seeds on configs/parts.py:tiny,tiny (a smoke test).
"""

import ml_collections

from xplain_jax.study import blocks


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  if arg not in ("", "tiny"):
    raise ValueError(f"unknown argument {arg!r} for parts_seeds.py; use '' or 'tiny'.")
  seeds = (0, 1) if arg else (0, 1, 2)
  return blocks.study(
      "parts_seeds", "configs/parts.py" + (":tiny,tiny" if arg else ""), seeds=seeds,
      require="parts",  # written after the explainers' metrics; a run cut off between is redone
      table_block=blocks.table(
          variant_metrics="entropy,relative_deviation,accuracy",
          metrics=("performer.accuracy,parts.ordinary_performer_accuracy,"
                   "parts.selectivity_interpretable,parts.selectivity_ordinary,"
                   "parts.selectivity_chance"),
          metric_pairs="parts.selectivity_interpretable:parts.selectivity_ordinary"))
