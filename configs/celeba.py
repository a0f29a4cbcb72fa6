r"""CelebA: 39 face attributes explain a face attribute (the paper's Experiment 2, Case 2).

A VGG-16 performer trained on all 40 CelebA attributes (sigmoid outputs, plain binary
cross-entropy averaged over attributes), initialised from torchvision ImageNet weights when
``performer.init_from`` names a ``vgg16-*.pth`` state dict; then, for the target attribute,
the explainer over the other 39 attribute logits: Case-2 prior weights at fc6 (4096-d), MSE
prior, signed α, β = 0.2, baseline and prior variants, a ResNet-152 weight network on the
14x14x512 conv5_3 map.

Prepare CelebA once (needs ``pip install 'xplain_jax[tfds]'``, see README):

  tfds build celeb_a --data_dir=$HOME/tensorflow_datasets --file_format=array_record

Run on one GPU (``target`` is any of the 40 attributes; aliases attractive, heavy_makeup, male,
young):

  python launch/run.py --config=configs/celeba.py:target=attractive --workdir=runs/celeba_attractive \
      --config.performer.init_from=/path/to/vgg16-397923af.pth

Shrunk for a CPU smoke run (a small VGG at 64 px, 64 training and 32 test images, float32):

  python launch/run.py --config=configs/celeba.py:target=male,tiny --workdir=runs/celeba_tiny
"""

import ml_collections


def _parse(arg: str) -> dict:
  out = {"target": "attractive", "tiny": False}
  for part in filter(None, (a.strip() for a in arg.split(","))):
    if part == "tiny":
      out["tiny"] = True
    elif part.startswith("target="):
      out["target"] = part.split("=", 1)[1]
    else:
      raise ValueError(f"unknown config argument {part!r} for configs/celeba.py; use "
                       "'target=NAME' and/or 'tiny', comma-separated.")
  return out


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  """The config; ``arg`` like "target=attractive" or "target=male,tiny"."""
  a = _parse(arg)
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.stages = "performer,explainer,evaluate,report"
  c.num_devices = 0
  c.dtype = "bfloat16"  # parameters, losses and priors stay float32
  c.checkpoint_every_steps = 1000
  c.log_every_steps = 100
  c.distributed = ml_collections.ConfigDict(
      dict(coordinator_address="", num_processes=0, process_id=-1))

  c.dataset = ml_collections.ConfigDict(dict(
      name="celeba", image_size=224, num_train=0, num_test=0, seed=0, data_dir="",
      train_split="train", test_split="test", num_threads=8))

  c.performer = ml_collections.ConfigDict(dict(
      arch="vgg16", interpretable=False, filter_loss_weight=0.0, batch_size=128, num_epochs=5,
      init_from="", model=ml_collections.ConfigDict(dict()),
      optimizer=ml_collections.ConfigDict(dict(
          name="sgd", learning_rate=0.01, weight_decay=5e-4, momentum=0.9, schedule="cosine",
          warmup_steps=500, grad_clip=0.0)),
  ))

  c.explainer = ml_collections.ConfigDict(dict(
      case="shared_feature", target=a["target"], feature="top_conv", prior_kind="mse",
      prior_method="jvp", positive=False, clip_prior=False, beta=0.2, depth=152, width=64,
      batch_size=128, num_epochs=10, variants="baseline,prior", cache_features=False,
      optimizer=ml_collections.ConfigDict(dict(
          name="adam", learning_rate=1e-4, weight_decay=0.0, schedule="cosine", warmup_steps=500,
          grad_clip=1.0, momentum=0.9)),
  ))

  c.eval = ml_collections.ConfigDict(dict(batch_size=256, num_report_images=8))

  if a["tiny"]:
    c.dtype = "float32"
    c.dataset.image_size, c.dataset.num_train, c.dataset.num_test = 64, 64, 32
    c.dataset.num_threads = 0
    c.performer.arch, c.performer.batch_size, c.performer.num_epochs = "tiny_vgg", 16, 1
    c.performer.model = ml_collections.ConfigDict(dict(top_channels=16, fc_features=32))
    c.explainer.depth, c.explainer.width, c.explainer.batch_size = 10, 8, 16
    c.explainer.num_epochs, c.explainer.cache_features = 1, True
    c.eval.batch_size, c.eval.num_report_images = 16, 2
    c.checkpoint_every_steps, c.log_every_steps = 2, 1
  return c
