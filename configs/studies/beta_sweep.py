r"""β ∈ {0, 0.05, 0.2, 1, 5} × 3 explainer seeds on one synthetic performer, CPU.

The explainer seed is ``explainer.seed`` (the explainers' initialisation and batch order), so
all 15 runs reuse one trained performer (and its feature cache) and only the explainers
differ. The baseline explainer (λ ≡ 0) does not read β, so a run reuses the trained baseline
of the first finished run of its group that differs from it only in β (the β = 0 run of the
same explainer seed): 3 baselines in all (``share_explainers``; set it to "" to train every
baseline). At β = 0 the "prior" explainer
has no prior loss: its difference from the baseline measures the noise of training two
explainers.

  python launch/study.py --config=configs/studies/beta_sweep.py --workdir=studies/beta

``:tiny`` is 2 seeds × β ∈ {0, 0.2} on configs/synthetic.py:tiny (what the tests run).
"""

import ml_collections

from xplain_jax.study import blocks


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  if arg not in ("", "tiny"):
    raise ValueError(f"unknown argument {arg!r} for beta_sweep.py; use '' or 'tiny'.")
  seeds = (0, 1) if arg else (0, 1, 2)
  betas = (0.0, 0.2) if arg else (0.0, 0.05, 0.2, 1.0, 5.0)
  c = blocks.study("beta_sweep", "configs/synthetic.py" + (":tiny" if arg else ""),
                   table_block=blocks.table(columns="explainer.beta"))
  c.axes.beta = dict(explainer=dict(beta=betas))
  c.axes.seed = dict(explainer=dict(seed=seeds))
  c.share_explainers = "explainer_baseline"
  return c
