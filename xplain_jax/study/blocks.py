"""Blocks every study config shares (configs/studies/*.py), like ``config_base`` for runs."""

import ml_collections

# Sub-workdir folders a run seeded from another's performer starts from (hard links).
SHARE = "performer,performer_ordinary,features,data"


def table(**kw) -> ml_collections.ConfigDict:
  """The table block shared by the synthetic studies."""
  # Fidelity to the performer (the "fidelity" evaluator): each explainer's mean interventional
  # rank correlation and sign agreement, and prior − baseline on the same performer.
  fid = [f"fidelity.{v}.{m}" for m in ("interventional_rank_correlation.mean", "sign_agreement")
         for v in ("baseline", "prior")]
  t = dict(columns="", rows="", variants="baseline,prior",
           variant_metrics="entropy,relative_deviation,accuracy,gt_rank_correlation",
           metrics=",".join(["performer.accuracy", "prior_weights.entropy",
                             "prior_weights.gt_rank_correlation"] + fid),
           paired="prior-baseline",
           metric_pairs=",".join(f"{fid[i + 1]}:{fid[i]}" for i in (0, 2)),
           average_column=False, labels={})
  t.update(kw)
  return ml_collections.ConfigDict(t)


def slurm(**kw) -> ml_collections.ConfigDict:
  s = dict(partition="", time="01:00:00", mem="", account="", gpus_per_task=0, cpus_per_task=4,
           setup="")
  s.update(kw)
  return ml_collections.ConfigDict(s)
