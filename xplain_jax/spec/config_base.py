"""The shared base of every experiment config: all fields, each with a typed default.

A config file in ``configs/`` builds its ``ConfigDict`` from these blocks and changes values
only, so every experiment has the same fields with the same types, and ml_collections' locked
ConfigDict rejects an unknown field or a value of the wrong type on the command line by itself.
Adding a field to every experiment is one line in the block dicts below (give it a non-None
default of the type it must have). Fields only one dataset has (CelebA's split names, Pascal-
Part's category, the parts stage) are passed as ``extra`` by the config that needs them.

  from xplain_jax.spec import config_base as base
  c = base.experiment(dataset=base.dataset("synthetic_attributes", 64, 5000, 1000),
                      performer=base.performer("tiny_vgg", batch_size=64, num_epochs=8, ...),
                      explainer=base.explainer("shared_feature", "target_a", ...),
                      evals=base.evals(explainer=dict(batch_size=200, num_report_images=6)))
"""

from __future__ import annotations

from typing import Any

import ml_collections

from xplain_jax import utils
from xplain_jax.errors import ConfigError

TOP = dict(
    seed=0,                                       # the run's base random key
    stages="performer,explainer,evaluate,report",  # comma-separated stages to run
    num_devices=0,                                # 0 = every visible device
    dtype="float32",                              # computation dtype: float32|bfloat16|float16
    checkpoint_every_steps=200,
    log_every_steps=50,
)
DISTRIBUTED = dict(coordinator_address="", num_processes=0, process_id=-1,
                   initialization_timeout=300)  # seconds to wait for every process to join
DATASET = dict(name="", image_size=64, num_train=0, num_test=0, seed=0, data_dir="",
               rule="linear")  # synthetic_attributes' planted rule (data.synthetic_rules)
OPTIMIZER = dict(name="adam", learning_rate=1e-3, weight_decay=0.0, schedule="cosine",
                 warmup_steps=0, grad_clip=0.0, momentum=0.9)
PERFORMER = dict(arch="tiny_vgg", interpretable=False, filter_loss_weight=0.0, batch_size=64,
                 num_epochs=1,
                 init_from="",  # a torchvision state dict (.pth) to start from; "" = random init
                 init_convs_only=False,  # True: only the conv layers from init_from (Zhang et al.)
                 # λ_t of the filter loss (interpretable performers): "epoch" (weight / t),
                 # "epoch_activation" or "constant"
                 filter_loss_schedule="epoch",
                 # how the convs' kernel gradient is computed (models.conv): "xla", "taps" (one
                 # matmul per kernel tap; several times faster on XLA:CPU) or "auto" (taps on CPU)
                 kernel_gradient="auto")
EXPLAINER = dict(case="shared_feature", target="", feature="top_conv", prior_kind="mse",
                 prior_method="jvp", positive=False, clip_prior=False, beta=0.2, depth=10,
                 width=16, batch_size=64, num_epochs=1, variants="baseline,prior",
                 cache_features=True,
                 # the explainers' own seed (init and batch order); the performer's is `seed`
                 seed=0,
                 # weight net's first layer: "paper" 7x7/2 (the paper's) or "small" 3x3/1
                 stem="paper",
                 # α = c·g(feat), b from y's mean, c so that Σα_i·y_i starts at y's spread
                 # (train.explainer.auto_start); False: α = g(feat), b from 0 (the paper)
                 auto_scale=False,
                 # Additions to the paper (train.start, losses.consistency_loss); the defaults
                 # keep the paper's baseline and prior unchanged.
                 # baseline/prior start: "paper", "least_squares" (ridge fit α_ls + g) or
                 # "target" (each concept's own fit of its consistency target; train.start)
                 start="paper",
                 # baseline/prior: b = b0 + std(y)·b_raw, so b moves at y's scale (ls_start and
                 # faithful always); False: b is the plain trained scalar (the paper)
                 scaled_bias=False,
                 # two coordinate channels (x, y in [-1, 1]) appended to g's input, so α can
                 # depend on where a concept fires (models.WeightNet.coords); False: the paper
                 coord_channels=False,
                 consistency_weight=0.0,  # baseline/prior/ls_start: weight of Σ_k (α_k y_k − t_k)²
                 # t_k: Case 1 "deletion" | "gradient_x_input"; Case 2 "gradient_x_input" |
                 # "rendered" (synthetic_attributes: the re-rendered Δ_k, docs/choices.md)
                 consistency_target="gradient_x_input",
                 shapley_permutations=64,  # sampled orders of the Case-1 "shapley" target
                 # the "faithful" variant's consistency weight: 1, the weight of the diagnosis
                 # on the digits case's selection seed 100 (docs/own_model.md), not a sweep
                 faithful_weight=1.0)
# The paper's explainer per case: the prior's form, α > 0 (softplus) or signed, and β. Case 2
# (shared features) is EXPLAINER's default; Case 1 (filters) is ``filter_explainer``'s. The
# API's ``fit_explainer`` takes its defaults from here too.
CASE_EXPLAINER = {
    "filter": dict(prior_kind="cross_entropy", positive=True, beta=10.0),
    "shared_feature": {k: EXPLAINER[k] for k in ("prior_kind", "positive", "beta")},
}
# The evaluators (xplain_jax.evaluators), one block each under ``config.evals``, as big_vision
# has them: ``evals.<name>`` holds everything evaluator <name> reads, and its ``enabled`` field
# whether it runs (the "explainer" evaluator always runs; it has no ``enabled``).
# The evaluators' blocks, in running order (each names a module of xplain_jax.evaluators).
EVALS = dict(
    explainer=dict(
        # rows per batch of every evaluation pass (and of the features cache); positive
        batch_size=200,
        num_report_images=6,  # test images whose top reasons the report shows
        top_k=5),             # reasons kept per report image
    # parts configs only (configs/parts.py, configs/pascal_part.py)
    parts=dict(
        enabled=True,
        annotation="",           # a filter->part JSON file; "" = suggest from the masks
        threshold=0.25,          # least share of a filter's strong peaks on its part
        top_fraction=0.5,        # share of a filter's strongest peaks that count
        max_images=0,            # positive test images for annotation/selectivity; 0 = all
        num_regions=12,          # filter-region patches in the report (Fig. 10)
        region_size=0.4),        # patch side as a fraction of the image side
    # interventional effects (docs/fidelity.md)
    fidelity=dict(enabled=True, num_images=0,    # test images scored; 0 = all
                  sign_threshold=0.05, num_resamples=1000, deletion_steps=16, seed=0,
                  ig_steps=32),   # Case 1 integrated-gradients peer: points on the path from x = 0
    # model randomisation; layers "" = those above the explained feature
    sanity=dict(enabled=False, layers="",
                num_resamples=1000, seed=0),  # bootstrap of the similarity's interval
)
# Blocks of EVALS only some configs have (passed to ``evals`` by the config that needs them).
OPTIONAL_EVALS = ("parts",)
# What the performer stage of a parts config reads (its evaluation settings: ``EVALS["parts"]``).
PARTS = dict(
    compare_ordinary=True,   # train the same net without mask/filter loss
)

SCHEDULES = ("constant", "cosine")


def _typed(default: Any, value: Any, field: str) -> Any:
  """``value`` converted to the type of ``default`` (int -> float only); else ConfigError."""
  if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
    return float(value)
  if type(value) is not type(default):  # pylint: disable=unidiomatic-typecheck
    raise ConfigError(f"config field {field}={value!r} has type {type(value).__name__}; the "
                      f"base gives it type {type(default).__name__}.")
  return value


def block(defaults: dict, *, extra: dict | None = None, **values) -> ml_collections.ConfigDict:
  """A config block: ``defaults`` with ``values`` set (typed as the defaults) plus ``extra``.

  Args:
    defaults: one of the block dicts of this module.
    extra: fields this block has only in some configs (typed by their own values).
    **values: values for fields of ``defaults``; a name not in ``defaults`` is an error, so a
      misspelt field in a config file fails at once.
  """
  unknown = sorted(set(values) - set(defaults))
  if unknown:
    raise ConfigError(f"unknown config fields {unknown}; the block has {sorted(defaults)} "
                      "(pass dataset-specific fields as extra=).")
  out = {k: _typed(v, values.get(k, v), k) for k, v in defaults.items()}
  out.update(extra or {})
  return ml_collections.ConfigDict(out)


def dataset(name: str, image_size: int, num_train: int, num_test: int, *,
            extra: dict | None = None, **values) -> ml_collections.ConfigDict:
  """The ``dataset`` block."""
  return block(DATASET, extra=extra, name=name, image_size=image_size, num_train=num_train,
               num_test=num_test, **values)


def optimizer(name: str, learning_rate: float, **values) -> ml_collections.ConfigDict:
  """An ``optimizer`` block (``performer.optimizer``, ``explainer.optimizer``)."""
  return block(OPTIMIZER, name=name, learning_rate=learning_rate, **values)


def performer(arch: str, *, model: dict,
              optimizer: ml_collections.ConfigDict,  # pylint: disable=redefined-outer-name
              extra: dict | None = None, **values) -> ml_collections.ConfigDict:
  """The ``performer`` block; ``model`` holds the architecture's module fields."""
  out = block(PERFORMER, extra=extra, arch=arch, **values)
  out.model = ml_collections.ConfigDict(model)
  out.optimizer = optimizer
  return out


def explainer(case: str, target: str, *,
              optimizer: ml_collections.ConfigDict,  # pylint: disable=redefined-outer-name
              **values) -> ml_collections.ConfigDict:
  """The ``explainer`` block."""
  out = block(EXPLAINER, case=case, target=target, **values)
  out.optimizer = optimizer
  return out


def evals(**blocks: dict) -> ml_collections.ConfigDict:
  """The ``evals`` block: one block per evaluator of ``EVALS``, its defaults with ``blocks[name]``
  set; an ``OPTIONAL_EVALS`` block only when given (e.g. ``parts={}``).

  Raises:
    ConfigError: a block or field ``EVALS`` does not have, or a value of the wrong type.
  """
  unknown = sorted(set(blocks) - set(EVALS))
  if unknown:
    raise ConfigError(f"unknown evaluator blocks {unknown}; config.evals has {sorted(EVALS)}.")
  return ml_collections.ConfigDict({
      name: block(defaults, **blocks.get(name, {})) for name, defaults in EVALS.items()
      if name in blocks or name not in OPTIONAL_EVALS})


def experiment(*, dataset: ml_collections.ConfigDict,  # pylint: disable=redefined-outer-name
               performer: ml_collections.ConfigDict,  # pylint: disable=redefined-outer-name
               explainer: ml_collections.ConfigDict,  # pylint: disable=redefined-outer-name
               evals: ml_collections.ConfigDict,  # pylint: disable=redefined-outer-name
               parts: ml_collections.ConfigDict | None = None,
               **values) -> ml_collections.ConfigDict:
  """The whole config: top-level fields, ``distributed`` and the blocks (``evals`` of
  ``evals(...)``)."""
  c = block(TOP, **values)
  c.distributed = block(DISTRIBUTED)
  c.dataset, c.performer, c.explainer = dataset, performer, explainer
  if parts is not None:
    c.parts = parts
  c.evals = evals
  return c


def parse_arg(arg: str, *, flags: tuple = ("tiny",), keys: dict | None = None,
              first: tuple = (), defaults: dict | None = None, file: str = "") -> dict:
  """Parses a config-file argument ``"[NAME,]key=value,...,tiny"`` into a dict.

  Args:
    arg: the text after ``:`` in ``--config=FILE.py:ARG``.
    flags: bare words allowed (each becomes ``True``).
    keys: ``key -> allowed values`` (an empty tuple allows any value).
    first: allowed values of ``keys``' first key given bare (e.g. an architecture name).
    defaults: the values of keys not given.
    file: the config file's name, for the message.

  Raises:
    ConfigError: an unknown word, key or value (the message lists the allowed ones).
  """
  keys = keys or {}
  out = dict(defaults or {}, **{f: False for f in flags})
  given = set()
  for part in utils.split_list(arg):
    key, sep, value = part.partition("=")
    if not sep and part in first and next(iter(keys)) not in given:
      key, value, sep = next(iter(keys)), part, "="
    elif not sep and part in flags:
      out[part] = True
      continue
    if sep and key in keys and key not in given:
      allowed = keys[key]
      if allowed and value not in allowed:
        raise ConfigError(f"unknown {key} {value!r} for {file}; use one of {list(allowed)}.")
      out[key] = value
      given.add(key)
      continue
    words = [f"'{k}=NAME'" for k in keys] + [f"'{f}'" for f in flags]
    raise ConfigError(f"unknown config argument {part!r} for {file}; use "
                      f"{' and/or '.join(words)}, comma-separated.")
  return out


def tiny_real_data(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Shrinks a config of prepared real data (``configs/celeba.py``, ``configs/pascal_part.py``)
  to its ``tiny`` smoke run, in place: float32 at 64 px, 64 training and 32 test images read in
  the calling thread, one epoch of 16-image batches for the performer and for a width-8
  ResNet-10 g, two report images. The config file then shrinks its own performer's layers and
  sets its checkpoint and log intervals."""
  c.dtype = "float32"
  c.dataset.image_size, c.dataset.num_train, c.dataset.num_test = 64, 64, 32
  c.dataset.num_threads = 0
  c.performer.num_epochs, c.performer.batch_size = 1, 16
  c.explainer.depth, c.explainer.width = 10, 8
  c.explainer.num_epochs, c.explainer.batch_size = 1, 16
  c.evals.explainer.batch_size, c.evals.explainer.num_report_images = 16, 2
  return c


# --- Experiment 1 (interpretable filters; configs/parts.py and configs/pascal_part.py) --------

# Filters of the interpretable top layer per architecture (the paper's n).
NUM_FILTERS = {"tiny": 64, "alexnet": 256, "vgg_m": 512, "vgg_s": 512, "vgg16": 512}


def interpretable_performer(arch: str, *, filter_loss_weight: float) -> ml_collections.ConfigDict:
  """The performer of ``arch`` ("tiny" or a paper architecture) with the interpretable top layer."""
  # unit_peak: the mask peaks at 1 instead of τ = 0.5/n², so the layers above see activations
  # of the usual scale (the released code's choice; with the paper's τ the head starts ~1/τ
  # too weak, which matters for ImageNet-initialised heads and for the prior's scale).
  mask_kwargs = ml_collections.ConfigDict(dict(unit_peak=True))
  # The paper's layout (Zhang et al. 2018b as Chen et al.'s appendix runs it): a new 3x3 conv of
  # M filters above the original top conv, the mask between it and its ReLU (x signed). The
  # earlier layout: added_layer=False, mask_order="post_relu" (the top conv masked after ReLU).
  layout = dict(added_layer=True, mask_order="pre_relu")
  if arch == "tiny":
    model = dict(block_widths=(16, 32, 64), block_depths=(1, 1, 1),
                 top_channels=NUM_FILTERS["tiny"], fc_features=128, mask_kwargs=mask_kwargs,
                 **layout)
    # grad_clip 1.0: without it the paper's layout (seed 0) died in warm-up (task loss stuck at
    # ln 2 from step ~60, every ReLU of the added layer silent).
    opt = optimizer("adam", 2e-3, warmup_steps=50, grad_clip=1.0)
    batch_size, epochs = 64, 10
  else:
    model = dict(mask_kwargs=mask_kwargs, **layout)
    # Zhang et al.: SGD with weight decay 5e-4 from ImageNet weights (performer.init_from).
    opt = optimizer("sgd", 0.01, weight_decay=5e-4, warmup_steps=200, grad_clip=5.0)
    batch_size, epochs = 64, 20
  # filter_loss_schedule: λ_t = filter_loss_weight / t in epoch t (Zhang et al.'s released
  # training divides the filter loss's gradient by the epoch); "epoch_activation" also scales it
  # by the layer's mean max activation on positives; "constant" keeps λ fixed.
  # init_convs_only: ImageNet weights (a torchvision .pth in init_from) for the original conv
  # layers only; the added conv and fc6-fc8 start afresh (Zhang et al.). False: fc6/fc7 too.
  return performer("tiny_vgg" if arch == "tiny" else arch, interpretable=True,
                   filter_loss_weight=filter_loss_weight, batch_size=batch_size,
                   num_epochs=epochs, model=model, optimizer=opt,
                   init_convs_only=True)


def filter_explainer(arch: str, *, target: str) -> ml_collections.ConfigDict:
  """Case-1 explainer: filter concepts, clipped priors, cross-entropy prior, softplus α, β = 10."""
  small = arch == "tiny"
  # auto_scale: 64 filter sums y_i = Σ_hw x_i (signed under the paper's mask order, median |y_i|
  # ≈ 30) must combine into logits within ±32. On the synthetic-parts job (3 seeds) the prior
  # explainer's test relative deviation was 0.319 ± 0.441 from the paper's start (α = g(feat),
  # b = 0) and 0.028 ± 0.023 from the scaled one (docs/choices.md).
  return explainer(
      "filter", target, clip_prior=True, auto_scale=True, **CASE_EXPLAINER["filter"],
      depth=10 if small else 152, width=16 if small else 64, batch_size=64, num_epochs=10,
      optimizer=optimizer("adam", 1e-3 if small else 1e-4, warmup_steps=50 if small else 500,
                          grad_clip=1.0))
