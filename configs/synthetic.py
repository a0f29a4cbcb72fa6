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

Override any field, e.g. ``--config.explainer.beta=0.5 --config.explainer.target=target_b``.
"""

import ml_collections


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  """The config; ``arg`` is "" (default) or "tiny"."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.stages = "performer,explainer,evaluate,report"
  c.num_devices = 0  # 0 = all visible devices
  c.dtype = "float32"  # computation dtype: float32 | bfloat16 (parameters stay float32)
  c.checkpoint_every_steps = 200
  c.log_every_steps = 50
  c.distributed = ml_collections.ConfigDict(
      dict(coordinator_address="", num_processes=0, process_id=-1))

  c.dataset = ml_collections.ConfigDict(dict(
      name="synthetic_attributes", image_size=64, num_train=5000, num_test=1000, seed=0,
      cache=True, data_dir=""))

  c.performer = ml_collections.ConfigDict(dict(
      arch="tiny_vgg", interpretable=False, filter_loss_weight=0.0, batch_size=64, num_epochs=8,
      model=ml_collections.ConfigDict(dict(
          block_widths=(32, 64, 64), block_depths=(1, 1, 1), top_channels=64, fc_features=256,
          global_max_pool=True, dropout_rate=0.0)),
      optimizer=ml_collections.ConfigDict(dict(
          name="adam", learning_rate=2e-3, weight_decay=0.0, schedule="cosine", warmup_steps=100,
          grad_clip=0.0, momentum=0.9)),
  ))

  c.explainer = ml_collections.ConfigDict(dict(
      case="shared_feature", target="target_a", feature="top_conv", prior_kind="mse",
      prior_method="jvp", positive=False, clip_prior=False, beta=0.2, depth=10, width=16,
      batch_size=64, num_epochs=8, variants="baseline,prior", cache_features=True,
      optimizer=ml_collections.ConfigDict(dict(
          name="adam", learning_rate=3e-3, weight_decay=0.0, schedule="cosine", warmup_steps=50,
          grad_clip=0.0, momentum=0.9)),
  ))

  c.eval = ml_collections.ConfigDict(dict(batch_size=200, num_report_images=6))

  if arg == "tiny":
    c.dataset.num_train, c.dataset.num_test = 256, 64
    c.performer.num_epochs, c.performer.batch_size = 2, 32
    c.performer.model.block_widths, c.performer.model.block_depths = (8, 16, 16), (1, 1, 1)
    c.performer.model.top_channels, c.performer.model.fc_features = 16, 32
    c.explainer.num_epochs, c.explainer.batch_size = 2, 32
    c.explainer.width = 8
    c.eval.batch_size, c.eval.num_report_images = 32, 2
    c.checkpoint_every_steps, c.log_every_steps = 4, 2
  elif arg:
    raise ValueError(f"unknown config argument {arg!r} for configs/synthetic.py; use '' or 'tiny'.")
  return c
