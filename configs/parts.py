r"""Interpretable filters explain an object classification (Case 1, Experiment 1's analogue).

A binary performer ("animal present?") with an interpretable top conv layer (Zhang et al. 2018b
as Chen et al. ran it: a 3x3 conv added above the top conv, the mask between it and its ReLU,
the filter loss −MI(X;T) with weight ``performer.filter_loss_weight`` / epoch) is trained on the embedded synthetic-parts data
(xplain_jax/data/synthetic_parts.py: animals made of head, torso, legs and tail over clutter,
with ground-truth part masks). The explainer distils the performer's logit into α·y over the
top filters, y_i = Σ_hw x_i, with Case-1 priors w_i = Σ_hw ∂y/∂x_i clipped at 0, the
cross-entropy prior, softplus α and λ(t) = β/√t, β = 10, a ResNet weight network on the top map.
The parts stage then names every filter's part (from the ground-truth masks, or from a
user-written ``config.parts.annotation`` file), sums contributions per part, draws Grad-CAM maps
and filter regions, and compares the part selectivity of the interpretable layer with that of
an ordinary top layer (the same network trained without mask and filter loss).

Run (CPU, minutes; the default architecture is a small VGG at 64 px):

  python launch/run.py --config=configs/parts.py --workdir=runs/parts

The paper's architectures at 224 px (GPU; ``arch`` is alexnet, vgg_m, vgg_s or vgg16):

  python launch/run.py --config=configs/parts.py:vgg16 --workdir=runs/parts_vgg16

Shrunk for tests and smoke runs (any architecture, ",tiny" appended), well under a minute:

  python launch/run.py --config=configs/parts.py:tiny,tiny --workdir=runs/parts_tiny

Use your own filter annotation with ``--config.parts.annotation=FILE.json`` (the format of the
``parts.json`` a run writes: ``{"part_names": [...], "filters": {"0": "head", "1": "none"}}``).
"""

import ml_collections

ARCHS = ("tiny", "alexnet", "vgg_m", "vgg_s", "vgg16")
# Filters of the interpretable top layer per architecture (the paper's n).
NUM_FILTERS = {"tiny": 64, "alexnet": 256, "vgg_m": 512, "vgg_s": 512, "vgg16": 512}


def parse_arg(arg: str) -> dict:
  """``"ARCH[,tiny]"`` or ``"arch=ARCH[,tiny]"`` -> ``{"arch": ..., "tiny": bool}``.

  The first item names the architecture (default "tiny"); a further "tiny" shrinks the run.
  """
  out = {"arch": "", "tiny": False}
  for part in filter(None, (a.strip() for a in arg.split(","))):
    name = part.split("=", 1)[1] if part.startswith("arch=") else part
    if not out["arch"] and name in ARCHS:
      out["arch"] = name
    elif part == "tiny":
      out["tiny"] = True
    else:
      raise ValueError(f"unknown config argument {part!r}; use an architecture of {list(ARCHS)} "
                       "(optionally as arch=NAME) and/or 'tiny', comma-separated.")
  out["arch"] = out["arch"] or "tiny"
  return out


def performer_block(arch: str, *, filter_loss_weight: float) -> ml_collections.ConfigDict:
  """The performer of ``arch`` with the interpretable top layer (shared with pascal_part.py)."""
  # unit_peak: the mask peaks at 1 instead of τ = 0.5/n², so the layers above see activations
  # of the usual scale (the released code's choice; with the paper's τ the head starts ~1/τ
  # too weak, which matters for ImageNet-initialised heads and for the prior's scale).
  mask_kwargs = ml_collections.ConfigDict(dict(unit_peak=True))
  # The paper's layout (Zhang et al. 2018b, Chen et al.'s appendix): a new 3x3 conv of M filters
  # above the original top conv, the mask between it and its ReLU (x signed). The earlier
  # layout: added_layer=False, mask_order="post_relu" (the original top conv, masked after ReLU).
  layout = dict(added_layer=True, mask_order="pre_relu")
  if arch == "tiny":
    model = ml_collections.ConfigDict(dict(
        block_widths=(16, 32, 64), block_depths=(1, 1, 1), top_channels=NUM_FILTERS["tiny"],
        fc_features=128, mask_kwargs=mask_kwargs, **layout))
    # grad_clip 1.0: without it the paper's layout (seed 0) died in warm-up (task loss stuck at
    # ln 2 from step ~60, every ReLU of the added layer silent).
    optimizer = dict(name="adam", learning_rate=2e-3, weight_decay=0.0, schedule="cosine",
                     warmup_steps=50, grad_clip=1.0, momentum=0.9)
    batch_size, epochs = 64, 10
  else:
    model = ml_collections.ConfigDict(dict(mask_kwargs=mask_kwargs, **layout))
    # Zhang et al.: SGD with weight decay 5e-4 from ImageNet weights (performer.init_from).
    optimizer = dict(name="sgd", learning_rate=0.01, weight_decay=5e-4, schedule="cosine",
                     warmup_steps=200, grad_clip=5.0, momentum=0.9)
    batch_size, epochs = 64, 20
  return ml_collections.ConfigDict(dict(
      arch="tiny_vgg" if arch == "tiny" else arch, interpretable=True,
      filter_loss_weight=filter_loss_weight,
      # λ_t = filter_loss_weight / t in epoch t, as Zhang et al.'s released training divides the
      # filter loss's gradient by the epoch; "epoch_activation" also scales it by the layer's
      # mean max activation on positives; "constant" keeps λ fixed.
      filter_loss_schedule="epoch", batch_size=batch_size, num_epochs=epochs,
      # ImageNet weights (a torchvision .pth) for the original conv layers only; the added conv
      # and fc6-fc8 start afresh (Zhang et al.). False: import fc6/fc7 as well.
      init_from="", init_convs_only=True, model=model, optimizer=ml_collections.ConfigDict(optimizer)))


def explainer_block(arch: str, *, target: str) -> ml_collections.ConfigDict:
  """Case-1 explainer: filter concepts, clipped priors, cross-entropy prior, softplus α, β = 10."""
  small = arch == "tiny"
  return ml_collections.ConfigDict(dict(
      case="filter", target=target, feature="top_conv", prior_kind="cross_entropy",
      prior_method="jvp", positive=True, clip_prior=True, beta=10.0,
      depth=10 if small else 152, width=16 if small else 64,
      batch_size=64, num_epochs=10, variants="baseline,prior",
      cache_features=True,
      optimizer=ml_collections.ConfigDict(dict(
          name="adam", learning_rate=1e-3 if small else 1e-4, weight_decay=0.0,
          schedule="cosine", warmup_steps=50 if small else 500, grad_clip=1.0, momentum=0.9))))


def parts_block(*, annotation: str = "", compare_ordinary: bool) -> ml_collections.ConfigDict:
  """The parts stage (xplain_jax/train/parts_eval.py)."""
  return ml_collections.ConfigDict(dict(
      annotation=annotation,        # a filter->part JSON file; "" = suggest from the masks
      compare_ordinary=compare_ordinary,  # train the same net without mask/filter loss
      threshold=0.25,               # least share of a filter's strong peaks on its part
      top_fraction=0.5,             # share of a filter's strongest peaks that count
      max_images=0,                 # positive test images for annotation/selectivity; 0 = all
      num_regions=12,               # filter-region patches in the report (Fig. 10)
      region_size=0.4,              # patch side as a fraction of the image side
  ))


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  """The config; ``arg`` like "" (tiny arch on CPU), "vgg16", "alexnet,tiny" or "tiny,tiny"."""
  a = parse_arg(arg)
  big = a["arch"] != "tiny"
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.stages = "performer,explainer,evaluate,report"
  c.num_devices = 0
  c.dtype = "bfloat16" if big else "float32"
  c.checkpoint_every_steps = 500 if big else 200
  c.log_every_steps = 50
  c.distributed = ml_collections.ConfigDict(
      dict(coordinator_address="", num_processes=0, process_id=-1))

  c.dataset = ml_collections.ConfigDict(dict(
      name="synthetic_parts", image_size=224 if big else 64, num_train=4000 if big else 2000,
      num_test=1000 if big else 600, seed=0, cache=True, data_dir=""))
  # λ of the filter loss, measured on this data with the tiny net. With τ = 0.5/n² the loss
  # stays near 0 (MI ≈ 0) until activations reach tens; once they do, inflating them raises the
  # MI without bound and the loss takes over. 6 epochs, 3000 images (ordinary net: 94.2 %
  # accuracy, part selectivity 0.41): λ ≤ 1 inert (93-94 %, 0.39-0.42), λ = 2, 3, 10 runaway
  # (80 %, 76 %, 62 %; 0.32, 0.17, 0.28). 10 epochs, 2000 images, λ = 1: runaway after step
  # 150 (77 %). λ = 0.1 stays clear of it.
  c.performer = performer_block(a["arch"], filter_loss_weight=0.1)
  c.explainer = explainer_block(a["arch"], target="object")
  c.parts = parts_block(compare_ordinary=True)
  c.eval = ml_collections.ConfigDict(dict(batch_size=100 if big else 200, num_report_images=6))

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
    c.eval.batch_size, c.eval.num_report_images = 32, 2
    c.parts.num_regions = 4
    c.checkpoint_every_steps, c.log_every_steps = 4, 2
  return c
