r"""Benchmark regimes: when is the paper's explainer worth using, and when does its prior matter?

Case 2 (the default): every planted rule of the synthetic attributes (``dataset.rule``:
linear, context, redundant, shortcut; xplain_jax/data/synthetic_rules.py says what each plants
and what a faithful explanation shows) × 5 seeds (``seed`` and ``dataset.seed`` together, so
every run trains its own performer on its own images), each run training the explainer variants
of ``VARIANTS`` (the paper's, without (``baseline``) and with (``prior``) the prior loss, and
this project's additions ``ls_start`` and ``faithful``) and scoring them beside the peers of the
"fidelity" evaluator (least squares with one α for every image, α = w, the planted
contributions) on the same re-rendered interventions. The table gives, per regime, each
explanation's interventional rank correlation and relative deviation (mean ± 95 % t-interval
over seeds) and the paired differences prior − baseline and each variant − least squares.

The default is a CPU-sized variant of configs/synthetic.py (fewer and smaller images' worth of
training: the ``fixed`` block below shrinks the data, the epochs and the network widths, and
switches off the sanity check), a few CPU-minutes a run (README: measured figures):

  python launch/study.py --config=configs/studies/regimes.py --workdir=studies/regimes

Arguments:
  ``:full``        configs/synthetic.py unchanged (the default job's sizes) for every regime.
  ``:tiny``        the linear and the context rule × 2 seeds on configs/synthetic.py:tiny (a
                   smoke test; the other regimes differ only in their data).
  ``:parts``       the Case-1 counterpart on the synthetic parts (configs/parts.py, CPU-sized),
                   5 seeds; its peers are least squares (also α ≥ 0), gradient × input and
                   integrated gradients per filter, and α = w.
  ``:parts_tiny``  the same on configs/parts.py:tiny,tiny with 2 seeds (a smoke test).
  ``:targets``     the ``faithful`` variant's consistency target, ``gradient_x_input`` against
                   the rendered Δ_k (``explainer.consistency_target``, the table's columns) under
                   the ``context`` rule, 5 seeds, with ``ls_start`` as the target-free reference
                   (CPU-sized as the default); ``launch/study.py --pair`` pairs the two
                   targets by seed. ``--set=dataset.rule=linear`` runs it under the linear rule.
  ``:targets_tiny`` the same on configs/synthetic.py:tiny with 2 seeds (a smoke test).

More explainer variants (e.g. ``ls_start``): add them to ``VARIANTS``; each run then trains
them (``explainer.variants``) and the table gives them their rows and paired differences.
"""

import ml_collections

from xplain_jax.study import blocks

RULES = ("linear", "context", "redundant", "shortcut")
TINY_RULES = ("linear", "context")
# Explainer variants trained and tabulated in every run.
VARIANTS = ("baseline", "prior", "ls_start", "faithful")
# The faithful variant's consistency weight in this study (explainer.faithful_weight's default
# too); pinned here so the study's command keeps its figures' setting if the default moves.
FAITHFUL_WEIGHT = 1.0
ARGS = ("", "tiny", "full", "parts", "parts_tiny", "targets", "targets_tiny")
# The consistency targets ``:targets`` compares, and the rule it runs them under (per-image
# weights matter under ``context``: a concept's planted contribution depends on another's).
TARGETS = ("gradient_x_input", "rendered")
TARGETS_RULE = "context"
TARGETS_VARIANTS = ("ls_start", "faithful")


def _cpu_synthetic() -> dict:
  """Overrides that shrink configs/synthetic.py to about 2 CPU-minutes a run (48 px images,
  3,000 training and 300 test images, a narrower performer, fewer epochs, no sanity check).
  Its performers are weaker than the default job's (about 70 % against 80 % accuracy on
  target_a): use ``:full`` for the default job's sizes."""
  return dict(dataset=dict(image_size=48, num_train=3000, num_test=300),
              performer=dict(num_epochs=8, model=dict(block_widths=(16, 32, 32), top_channels=32,
                                                      fc_features=128),
                             optimizer=dict(learning_rate=3e-3, warmup_steps=30)),
              explainer=dict(num_epochs=6, width=8),
              evals=dict(sanity=dict(enabled=False), fidelity=dict(num_resamples=500)))


def _cpu_parts() -> dict:
  """Overrides that shrink configs/parts.py for a CPU study."""
  return dict(dataset=dict(num_train=1000, num_test=300),
              performer=dict(num_epochs=6), explainer=dict(num_epochs=6, width=8),
              parts=dict(compare_ordinary=False), evals=dict(fidelity=dict(num_resamples=500)))


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  """The study; ``arg`` is one of ``ARGS``."""
  if arg not in ARGS:
    raise ValueError(f"unknown argument {arg!r} for regimes.py; use one of {list(ARGS)}.")
  parts = arg.startswith("parts")
  targets = arg.startswith("targets")
  tiny = arg.endswith("tiny")
  seeds = (0, 1) if tiny else (0, 1, 2, 3, 4)
  variants = TARGETS_VARIANTS if targets else VARIANTS
  c = ml_collections.ConfigDict()
  c.name = "regimes_parts" if parts else ("regimes_targets" if targets else "regimes")
  c.axes = ml_collections.ConfigDict()
  # Axes run in the order of their names: "seed" before "task" (the rule), so a study cut
  # short still covers every regime with its first seeds.
  c.axes.seed = dict(seed=seeds, dataset=dict(seed=seeds))
  if targets:
    c.base = "configs/synthetic.py" + (":tiny" if tiny else "")
    c.fixed = ml_collections.ConfigDict({} if tiny else _cpu_synthetic())
    c.fixed.dataset = dict(c.fixed.get("dataset", {}), rule=TARGETS_RULE)
    c.axes.task = dict(explainer=dict(consistency_target=TARGETS))
    c.table = blocks.regimes_table("shared_feature", variants,
                                   columns="explainer.consistency_target")
  elif parts:
    c.base = "configs/parts.py" + (":tiny,tiny" if tiny else "")
    c.fixed = ml_collections.ConfigDict({} if tiny else _cpu_parts())
    c.table = blocks.regimes_table("filter", VARIANTS)
  else:
    c.base = "configs/synthetic.py" + (":tiny" if tiny else "")
    c.fixed = ml_collections.ConfigDict({} if arg in ("tiny", "full") else _cpu_synthetic())
    c.axes.task = dict(dataset=dict(rule=TINY_RULES if tiny else RULES))
    c.table = blocks.regimes_table("shared_feature", VARIANTS, columns="dataset.rule")
  if variants != ("baseline", "prior"):  # the configs' default explainer.variants
    c.fixed.explainer = dict(c.fixed.get("explainer", {}), variants=",".join(variants),
                             faithful_weight=FAITHFUL_WEIGHT)
  c.replicates = "seed"
  c.share = blocks.SHARE
  c.require = "fidelity"  # the peers' and the explainers' scores on the interventions
  c.slurm = blocks.slurm()
  return c
