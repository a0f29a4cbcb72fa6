r"""Interpretable filters explain an object classification (Case 1, Experiment 1's analogue).

A binary performer ("animal present?") with the paper's interpretable layer (Zhang et al.
2018b as Chen et al.'s appendix runs it: a new 3x3 conv of M filters above the original top
conv, the mask between that conv and its ReLU, x = the mask's output, the filter loss −MI(X;T)
with weight ``performer.filter_loss_weight`` / epoch) is trained on the embedded synthetic-parts
data (xplain_jax/data/synthetic_parts.py: animals made of head, torso, legs and tail over
clutter, with ground-truth part masks). The earlier layout (the original top conv masked after
its ReLU, a constant filter-loss weight) is ``--config.performer.model.added_layer=False
--config.performer.model.mask_order=post_relu --config.performer.filter_loss_schedule=constant``.
The explainer distils the performer's logit into α·y over the
top filters, y_i = Σ_hw x_i, with Case-1 priors w_i = Σ_hw ∂y/∂x_i clipped at 0, the
cross-entropy prior, softplus α and λ(t) = β/√t, β = 10, a ResNet weight network on the top map.
The parts stage then names every filter's part (from the ground-truth masks, or from a
user-written ``config.evals.parts.annotation`` file), sums contributions per part, draws
Grad-CAM maps and filter regions, and compares the part selectivity of the interpretable layer
with that of an ordinary top layer (the same network trained without mask and filter loss).

Run (CPU, minutes; the default architecture is a small VGG at 64 px):

  python launch/run.py --config=configs/parts.py --workdir=runs/parts

The paper's architectures at 224 px (GPU; ``arch`` is alexnet, vgg_m, vgg_s or vgg16):

  python launch/run.py --config=configs/parts.py:vgg16 --workdir=runs/parts_vgg16

Shrunk for tests and smoke runs (any architecture, ",tiny" appended), well under a minute:

  python launch/run.py --config=configs/parts.py:tiny,tiny --workdir=runs/parts_tiny

Use your own filter annotation with ``--config.evals.parts.annotation=FILE.json`` (the format of the
``parts.json`` a run writes: ``{"part_names": [...], "filters": {"0": "head", "1": "none"}}``).
"""

import ml_collections

from xplain_jax.spec import config_base as base

ARCHS = ("tiny", "alexnet", "vgg_m", "vgg_s", "vgg16")
NUM_FILTERS = base.NUM_FILTERS


def parse_arg(arg: str) -> dict:
  """``"ARCH[,tiny]"`` or ``"arch=ARCH[,tiny]"`` -> ``{"arch": ..., "tiny": bool}``.

  The first item names the architecture (default "tiny"); a further "tiny" shrinks the run.
  """
  return base.parse_arg(arg, keys={"arch": ARCHS}, first=ARCHS, defaults={"arch": "tiny"},
                        file="configs/parts.py")


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  """The config; ``arg`` like "" (tiny arch on CPU), "vgg16", "alexnet,tiny" or "tiny,tiny"."""
  a = parse_arg(arg)
  big = a["arch"] != "tiny"
  # λ of the filter loss, measured on this data with the tiny net. With τ = 0.5/n² the loss
  # stays near 0 (MI ≈ 0) until activations reach tens; once they do, inflating them raises the
  # MI without bound and the loss takes over. 6 epochs, 3000 images (ordinary net: 94.2 %
  # accuracy, part selectivity 0.41): λ ≤ 1 inert (93-94 %, 0.39-0.42), λ = 2, 3, 10 runaway
  # (80 %, 76 %, 62 %; 0.32, 0.17, 0.28). 10 epochs, 2000 images, λ = 1: runaway after step
  # 150 (77 %). λ = 0.1 stays clear of it.
  c = base.experiment(
      dataset=base.dataset("synthetic_parts", 224 if big else 64, 4000 if big else 2000,
                           1000 if big else 600, extra=dict(cache=True)),
      performer=base.interpretable_performer(a["arch"], filter_loss_weight=0.1),
      explainer=base.filter_explainer(a["arch"], target="object"),
      parts=base.block(base.PARTS, compare_ordinary=True),
      evals=base.evals(explainer=dict(batch_size=100 if big else 200, num_report_images=6),
                      parts={}),
      dtype="bfloat16" if big else "float32",
      checkpoint_every_steps=500 if big else 200, log_every_steps=50)

  if a["tiny"]:
    c.dtype = "float32"
    c.dataset.image_size, c.dataset.num_train, c.dataset.num_test = 64, 128, 64
    c.performer.num_epochs, c.performer.batch_size = 2, 32
    c.performer.optimizer.warmup_steps = 2
    if not big:
      c.performer.model.block_widths = (8, 16, 16)
      c.performer.model.top_channels, c.performer.model.fc_features = 16, 32
    c.explainer.depth, c.explainer.width = 10, 8
    c.explainer.num_epochs, c.explainer.batch_size = 2, 32
    c.explainer.optimizer.warmup_steps = 2
    c.evals.explainer.batch_size, c.evals.explainer.num_report_images = 32, 2
    c.evals.parts.num_regions = 4
    c.checkpoint_every_steps, c.log_every_steps = 4, 2
  return c
