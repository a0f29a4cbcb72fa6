r"""Pascal-Part: interpretable filters explain one animal category (the paper's Experiment 1).

One binary performer per category (``bird``, ``cat``, ``cow``, ``dog``, ``horse``, ``sheep``)
against non-animal images, object crops at 224 px, with an interpretable top conv layer
(Zhang et al. 2018b as Chen et al. ran it: a 3x3 conv added above the top conv, the mask between
it and its ReLU, filter loss with weight ``performer.filter_loss_weight`` / epoch, ImageNet
weights for the original conv layers only); architectures AlexNet (n = 256 filters), VGG-M, VGG-S,
VGG-16 (n = 512). The explainer: Case-1 filter concepts, priors clipped at 0, cross-entropy
prior, softplus α, β = 10, a ResNet-152 weight network on the top map. The parts stage names
each filter's part (head, torso, legs, tail), from ``config.evals.parts.annotation`` if given, else
suggested from the ground-truth part masks and written to ``WORKDIR/parts.json`` (check and
correct it, then rerun with ``--config.evals.parts.annotation=...`` and
``--config.stages=evaluate,report``), and compares part selectivity with an ordinary top layer.

Prepare the data once (manual download, see xplain_jax/data/pascal_part.py):

  python -m xplain_jax.data.pascal_part --manual_dir=MANUAL_DIR --data_dir=DATA_DIR --categories=cat

Run on one GPU (ImageNet weights from torchvision exist for vgg16 and alexnet; VGG-M and VGG-S
start from scratch unless you convert weights yourself):

  python launch/run.py --config=configs/pascal_part.py:arch=vgg16,category=cat \
      --workdir=runs/pascal_cat_vgg16 --config.dataset.data_dir=DATA_DIR \
      --config.performer.init_from=/path/to/vgg16-397923af.pth

Shrunk (64 px, a few images) for a smoke run on prepared data: append ``,tiny`` to the argument.
"""

import ml_collections

from xplain_jax.spec import config_base as base

ARCHS = ("alexnet", "vgg_m", "vgg_s", "vgg16")
NUM_FILTERS = {a: base.NUM_FILTERS[a] for a in ARCHS}
# The six animal categories of Pascal-Part (xplain_jax.data.pascal_part.ANIMALS; kept here so
# that building a config needs no dataset code).
CATEGORIES = ("bird", "cat", "cow", "dog", "horse", "sheep")


def parse_arg(arg: str) -> dict:
  """``"arch=ARCH,category=CAT[,tiny]"`` -> dict; defaults vgg16 and cat."""
  return base.parse_arg(arg, keys={"arch": ARCHS, "category": CATEGORIES},
                        defaults={"arch": "vgg16", "category": "cat"},
                        file="configs/pascal_part.py")


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  """The config; ``arg`` like "arch=vgg16,category=cat" (the defaults) or "...,tiny"."""
  a = parse_arg(arg)
  # λ of the filter loss: the released ports' 5e-6 (sum over filters) for ImageNet-scale conv5
  # activations. The loss grows with the activation scale (configs/parts.py: λ = 1 was inert
  # and λ ≥ 2 dominated on activations of order 1), so check "filter_loss" against
  # "task_loss" in logs/performer.jsonl and adjust --config.performer.filter_loss_weight.
  c = base.experiment(
      dataset=base.dataset("pascal_part", 224, 0, 0, extra=dict(
          category=a["category"], num_threads=8,
          # negatives: the other prepared animals' objects with the non-animal images (Zhang et
          # al.'s "other categories"); "non_animal" uses the non-animal images only.
          negatives="other_categories")),
      performer=base.interpretable_performer(a["arch"], filter_loss_weight=5e-6),
      explainer=base.filter_explainer(a["arch"], target=a["category"]),
      parts=base.block(base.PARTS, compare_ordinary=True),
      evals=base.evals(explainer=dict(batch_size=100, num_report_images=8), parts={}),
      dtype="bfloat16",  # parameters, losses and priors stay float32
      checkpoint_every_steps=500, log_every_steps=50)

  if a["tiny"]:
    base.tiny_real_data(c)
    c.performer.model.top_channels, c.performer.model.fc_features = 16, 64
    c.evals.parts.num_regions = 4
    c.checkpoint_every_steps, c.log_every_steps = 4, 2
  return c
