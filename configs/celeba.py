r"""CelebA: 39 face attributes explain a face attribute (the paper's Experiment 2, Case 2).

A VGG-16 performer trained on all 40 CelebA attributes (sigmoid outputs, plain binary
cross-entropy averaged over attributes), initialised from torchvision ImageNet weights when
``performer.init_from`` names a ``vgg16-*.pth`` state dict; then, for the target attribute,
the explainer over the other 39 attribute logits: Case-2 prior weights at fc6 (4096-d), MSE
prior, signed α, β = 0.2, baseline and prior variants, a ResNet-152 weight network on the
14x14x512 conv5_3 map.

Prepare CelebA once (needs ``pip install 'xplain_jax[tfds]'``, see docs/real_data.md):

  tfds build celeb_a --data_dir=$HOME/tensorflow_datasets --file_format=array_record

Run on one GPU (``target`` is any of the 40 attributes; aliases attractive, heavy_makeup, male,
young):

  python launch/run.py --config=configs/celeba.py:target=attractive \
      --workdir=runs/celeba_attractive \
      --config.performer.init_from=/path/to/vgg16-397923af.pth

Shrunk for a CPU smoke run (a small VGG at 64 px, 64 training and 32 test images, float32):

  python launch/run.py --config=configs/celeba.py:target=male,tiny --workdir=runs/celeba_tiny
"""

import ml_collections

from xplain_jax.spec import config_base as base


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  """The config; ``arg`` like "target=attractive" or "target=male,tiny"."""
  a = base.parse_arg(arg, keys={"target": ()}, defaults={"target": "attractive"},
                     file="configs/celeba.py")
  c = base.experiment(
      dataset=base.dataset("celeba", 224, 0, 0, extra=dict(
          train_split="train", test_split="test", num_threads=8)),
      performer=base.performer(
          "vgg16", batch_size=128, num_epochs=5, model={}, extra=dict(init_from=""),
          optimizer=base.optimizer("sgd", 0.01, weight_decay=5e-4, warmup_steps=500)),
      explainer=base.explainer(
          "shared_feature", a["target"], beta=0.2, depth=152, width=64, batch_size=128,
          num_epochs=10, cache_features=True,  # memory-mapped: ~33 GB on disk at 224 px
          optimizer=base.optimizer("adam", 1e-4, warmup_steps=500, grad_clip=1.0)),
      evals=base.evals(explainer=dict(batch_size=256, num_report_images=8)),
      dtype="bfloat16",  # parameters, losses and priors stay float32
      checkpoint_every_steps=1000, log_every_steps=100)

  if a["tiny"]:
    base.tiny_real_data(c)
    c.performer.arch = "tiny_vgg"
    c.performer.model = ml_collections.ConfigDict(dict(top_channels=16, fc_features=32))
    c.checkpoint_every_steps, c.log_every_steps = 2, 1
  return c
