r"""Synthetic attributes explain a synthetic attribute (Case 2, Experiment 2's analogue).

The default job of xplain_jax: a small VGG-style performer learns 24 visible concept attributes
and 2 targets of the embedded synthetic dataset (xplain_jax/data/synthetic_attributes.py); the
explainer distils the logit of ``target_a`` into α·y over the 24 concept logits, with Case-2
prior weights at the performer's first fully-connected layer (fc6), the MSE prior, signed α and
λ(t) = β/√t. The planted rule of the data is the ground truth the explanation is scored against.

Run (CPU, minutes):

  python launch/run.py --config=configs/synthetic.py --workdir=runs/synthetic

Tiny variant, the whole pipeline in well under a minute (used by the tests):

  python launch/run.py --config=configs/synthetic.py:tiny --workdir=runs/tiny

Full size, for an accelerator (224×224 images, VGG-16 performer, ResNet-152 weight network,
bfloat16; rendering the 8,192 training images takes a few minutes on one core):

  python launch/run.py --config=configs/synthetic.py:full --workdir=runs/synthetic_full

Override any field, e.g. ``--config.explainer.beta=0.5 --config.explainer.target=target_b``.
"""

import ml_collections

from xplain_jax.spec import config_base as base


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  """The config; ``arg`` is "" (default), "tiny" or "full"."""
  a = base.parse_arg(arg, flags=("tiny", "full"), file="configs/synthetic.py")
  c = base.experiment(
      dataset=base.dataset("synthetic_attributes", 64, 5000, 1000, extra=dict(cache=True)),
      performer=base.performer(
          "tiny_vgg", batch_size=64, num_epochs=8,
          model=dict(block_widths=(32, 64, 64), block_depths=(1, 1, 1), top_channels=64,
                     fc_features=256, global_max_pool=True, dropout_rate=0.0),
          optimizer=base.optimizer("adam", 2e-3, warmup_steps=100)),
      explainer=base.explainer(
          "shared_feature", "target_a", beta=0.2, depth=10, width=16, batch_size=64,
          num_epochs=8, optimizer=base.optimizer("adam", 3e-3, warmup_steps=50)),
      evals=base.evals(explainer=dict(batch_size=200, num_report_images=6)),
      checkpoint_every_steps=200, log_every_steps=50)

  # The model-randomisation sanity check: ~40 s of the ~5 min default run (docs/fidelity.md);
  # off in the tiny variant, which the tests use.
  c.evals.sanity.enabled = not a["tiny"]
  if a["tiny"]:
    c.dataset.num_train, c.dataset.num_test = 256, 64
    c.performer.num_epochs, c.performer.batch_size = 2, 32
    c.performer.model.block_widths, c.performer.model.block_depths = (8, 16, 16), (1, 1, 1)
    c.performer.model.top_channels, c.performer.model.fc_features = 16, 32
    c.explainer.num_epochs, c.explainer.batch_size = 2, 32
    c.explainer.width = 8
    c.evals.explainer.batch_size, c.evals.explainer.num_report_images = 32, 2
    c.checkpoint_every_steps, c.log_every_steps = 4, 2
  if a["full"]:
    c.dtype = "bfloat16"  # parameters, losses and priors stay float32
    c.dataset.image_size, c.dataset.num_train, c.dataset.num_test = 224, 8192, 2048
    c.performer.arch, c.performer.batch_size, c.performer.num_epochs = "vgg16", 256, 2
    c.performer.model = ml_collections.ConfigDict()
    c.performer.optimizer = base.optimizer("adam", 1e-4, warmup_steps=100)
    c.explainer.depth, c.explainer.width, c.explainer.batch_size = 152, 64, 256
    c.explainer.num_epochs = 4
    c.explainer.optimizer = base.optimizer("adam", 1e-3, warmup_steps=50)
    c.evals.explainer.batch_size = 512
    c.checkpoint_every_steps, c.log_every_steps = 1000, 50
  return c
