r"""The default synthetic job (configs/synthetic.py) over 5 seeds, CPU.

Both seeds vary together: ``seed`` (performer initialisation and data order, and the
explainers' initialisation and order, which the pipeline folds from the same key) and
``dataset.seed`` (the generated images and labels), so the intervals cover every source of
randomness of a run. Every run trains its own performer.

  python launch/study.py --config=configs/studies/synthetic_seeds.py --workdir=studies/seeds

``:tiny`` runs the same study on configs/synthetic.py:tiny with 2 seeds (a smoke test).
"""

import ml_collections

from xplain_jax.study import blocks

def get_config(arg: str = "") -> ml_collections.ConfigDict:
  if arg not in ("", "tiny"):
    raise ValueError(f"unknown argument {arg!r} for synthetic_seeds.py; use '' or 'tiny'.")
  seeds = (0, 1) if arg else (0, 1, 2, 3, 4)
  return blocks.study("synthetic_seeds", "configs/synthetic.py" + (":tiny" if arg else ""),
                      seeds=seeds)
