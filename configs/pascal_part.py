r"""Pascal-Part: interpretable filters explain one animal category (the paper's Experiment 1).

One binary performer per category (``bird``, ``cat``, ``cow``, ``dog``, ``horse``, ``sheep``)
against non-animal images, object crops at 224 px, with an interpretable top conv layer
(Zhang et al. 2018b as Chen et al. ran it: a 3x3 conv added above the top conv, the mask between
it and its ReLU, filter loss with weight ``performer.filter_loss_weight`` / epoch, ImageNet
weights for the original conv layers only); architectures AlexNet (n = 256 filters), VGG-M, VGG-S,
VGG-16 (n = 512). The explainer: Case-1 filter concepts, priors clipped at 0, cross-entropy
prior, softplus α, β = 10, a ResNet-152 weight network on the top map. The parts stage names
each filter's part (head, torso, legs, tail), from ``config.parts.annotation`` if given, else
suggested from the ground-truth part masks and written to ``WORKDIR/parts.json`` (check and
correct it, then rerun with ``--config.parts.annotation=...`` and
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

from configs import parts as parts_config

ARCHS = ("alexnet", "vgg_m", "vgg_s", "vgg16")
NUM_FILTERS = {a: parts_config.NUM_FILTERS[a] for a in ARCHS}
# The six animal categories of Pascal-Part (xplain_jax.data.pascal_part.ANIMALS; kept here so
# that building a config needs no dataset code).
CATEGORIES = ("bird", "cat", "cow", "dog", "horse", "sheep")


def parse_arg(arg: str) -> dict:
  """``"arch=ARCH,category=CAT[,tiny]"`` -> dict; defaults vgg16 and cat."""
  out = {"arch": "vgg16", "category": "cat", "tiny": False}
  for part in filter(None, (a.strip() for a in arg.split(","))):
    key, _, value = part.partition("=")
    if part == "tiny":
      out["tiny"] = True
    elif key == "arch" and value in ARCHS:
      out["arch"] = value
    elif key == "category" and value in CATEGORIES:
      out["category"] = value
    elif key == "arch":
      raise ValueError(f"unknown arch {value!r} for configs/pascal_part.py; use one of "
                       f"{list(ARCHS)}.")
    elif key == "category":
      raise ValueError(f"unknown category {value!r} for configs/pascal_part.py; use one of "
                       f"{list(CATEGORIES)}.")
    else:
      raise ValueError(f"unknown config argument {part!r} for configs/pascal_part.py; use "
                       "'arch=NAME', 'category=NAME' and/or 'tiny', comma-separated.")
  return out


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  """The config; ``arg`` like "arch=vgg16,category=cat" (the defaults) or "...,tiny"."""
  a = parse_arg(arg)
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.stages = "performer,explainer,evaluate,report"
  c.num_devices = 0
  c.dtype = "bfloat16"  # parameters, losses and priors stay float32
  c.checkpoint_every_steps = 500
  c.log_every_steps = 50
  c.distributed = ml_collections.ConfigDict(
      dict(coordinator_address="", num_processes=0, process_id=-1))

  c.dataset = ml_collections.ConfigDict(dict(
      name="pascal_part", category=a["category"], image_size=224, num_train=0, num_test=0,
      seed=0, data_dir="", num_threads=8))
  # λ of the filter loss: the released ports' 5e-6 (sum over filters) for ImageNet-scale conv5
  # activations. The loss grows with the activation scale (configs/parts.py: λ = 1 was inert
  # and λ ≥ 2 dominated on activations of order 1), so check "filter_loss" against
  # "task_loss" in logs/performer.jsonl and adjust --config.performer.filter_loss_weight.
  c.performer = parts_config.performer_block(a["arch"], filter_loss_weight=5e-6)
  c.explainer = parts_config.explainer_block(a["arch"], target=a["category"])
  c.parts = parts_config.parts_block(compare_ordinary=True)
  c.eval = ml_collections.ConfigDict(dict(batch_size=100, num_report_images=8))

  if a["tiny"]:
    c.dtype = "float32"
    c.dataset.image_size, c.dataset.num_train, c.dataset.num_test = 64, 64, 32
    c.dataset.num_threads = 0
    c.performer.num_epochs, c.performer.batch_size = 1, 16
    c.performer.model.top_channels, c.performer.model.fc_features = 16, 64
    c.explainer.depth, c.explainer.width = 10, 8
    c.explainer.num_epochs, c.explainer.batch_size = 1, 16
    c.eval.batch_size, c.eval.num_report_images = 16, 2
    c.parts.num_regions = 4
    c.checkpoint_every_steps, c.log_every_steps = 4, 2
  _validate(c)
  return c


def _validate(c) -> None:
  """Checks the fields the pipeline relies on; raises ValueError naming the bad one."""
  if c.performer.arch not in ARCHS:
    raise ValueError(f"config.performer.arch={c.performer.arch!r}; use one of {list(ARCHS)}.")
  if c.dataset.category not in CATEGORIES:
    raise ValueError(f"config.dataset.category={c.dataset.category!r}; use one of "
                     f"{list(CATEGORIES)}.")
  if c.explainer.case != "filter" or not c.performer.interpretable:
    raise ValueError("Experiment 1 needs explainer.case='filter' and performer.interpretable.")
  if c.explainer.positive != (c.explainer.prior_kind == "cross_entropy"):
    raise ValueError("the cross-entropy prior needs positive α (explainer.positive=True) and "
                     "signed α needs prior_kind='mse'.")
  if c.dataset.image_size < 64:
    raise ValueError(f"config.dataset.image_size={c.dataset.image_size}; AlexNet needs >= 63 px.")
