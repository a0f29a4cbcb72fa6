"""Every fact about a stage, written once: the stage registry.

A run is a chain of stages. ``REGISTRY`` holds one ``Stage`` per kind of stage and says, for
each: the ``config.stages`` group that asks for it, what it needs and produces (products passed
from stage to stage in memory), the config fields that decide its result (its *identity*), its
config block, and the folders of the workdir it keeps its state and results in. Everything else
reads it:

* the pipeline (``run/pipeline.py``) runs the stages of ``concrete(config)`` in ``plan``'s
  order, and ``check_stage_inputs`` (``workdir.py``) refuses a stage whose inputs are missing;
* ``stage_fingerprint(config, stage)`` (canonical JSON of the identity) is stored with every
  checkpoint, stage marker and feature cache, and compared before anything is reused;
* the config check of a finished workdir (``validate_workdir.py``) lets exactly the fields that
  no stage's identity holds differ (``decides_a_result``): the stages to run, the devices, the
  logging and checkpoint intervals, where the data lives, the explainer variants, ...;
* a study shares one trained performer between runs whose overrides differ only in fields
  outside the performer's and the feature cache's identities (``study/grid.py``).

Identities are dotted prefixes (``"dataset"`` is the whole block) minus ``RUN_ONLY`` fields;
an ``explainer_<variant>`` stage adds its variant's name, and a variant that does not read a
field drops it (``VARIANT_IGNORES``, from the ``VARIANTS`` table: the baseline and the
faithful variant, λ ≡ 0, do not read β).
"""

from __future__ import annotations

import dataclasses
import json

from xplain_jax import utils
from xplain_jax.errors import CheckpointError, ConfigError

# The evaluate stage's result file, in the workdir (read by the report, the studies, the checks).
METRICS_FILE = "metrics.json"
# The config blocks of the evaluators (the evaluate stage's own fields).
EVAL_BLOCKS = ("evals",)
# The evaluate-block field whose batches also fill the feature cache (featurize batch size).
FEATURE_BATCH_FIELD = "evals.explainer.batch_size"
# Fields that decide no stored result: what to run, on which devices, how often to log and save,
# where the data lives and how fast it is read, which explainer variants, whether features are
# cached, and what the report shows (it is rewritten whenever asked for).
RUN_ONLY = ("stages", "num_devices", "distributed", "log_every_steps", "checkpoint_every_steps",
            "dataset.data_dir", "dataset.num_threads", "dataset.cache", "explainer.variants",
            "explainer.cache_features", "evals.explainer.num_report_images",
            "evals.parts.num_regions", "evals.parts.region_size",
            "performer.kernel_gradient")  # the same gradient up to float rounding


@dataclasses.dataclass(frozen=True)
class Variant:
  """What one explainer variant trains with: each setting is a constant or the dotted name of
  the config field it reads (a ``str`` starting with ``"explainer."``).

  Attributes:
    beta: β of λ(t) = β/√t (0: no prior loss).
    start: where α and b start (``train.start.STARTS``).
    consistency_weight: weight of the consistency term (0: none).
    scaled_bias: b moves in units of y's spread (``train.start.bias_variables``).
    positive: α > 0 (softplus; the paper's Case 1) or signed.
    prior_kind: the prior loss's form (``losses.PRIOR_KINDS``).
  """

  beta: float | str
  start: str
  consistency_weight: float | str
  scaled_bias: bool | str
  positive: bool | str = "explainer.positive"
  prior_kind: str = "explainer.prior_kind"

  def reads(self) -> tuple[str, ...]:
    """The config fields this variant's settings come from."""
    return tuple(v for v in dataclasses.astuple(self) if is_field(v))


def is_field(value) -> bool:
  """Whether a ``Variant`` setting names a config field (else it is a constant)."""
  return isinstance(value, str) and value.startswith("explainer.")


# The explainer variants one run can train side by side, and what each reads: the one table the
# trainer (``train/variants.py``), the identities below, validation and the API read.
# baseline/prior are the paper's (β = 0 / explainer.beta); ls_start and faithful are this
# project's additions (docs/choices.md): ls_start = prior from the ridge least-squares start;
# faithful = the consistency term from each concept's own fit of its target, no prior, signed α
# (a concept's own effect can be negative, e.g. a filter that inhibits the class; its MSE prior
# term is only logged, at λ ≡ 0).
VARIANTS = {
    "baseline": Variant(0.0, "explainer.start", "explainer.consistency_weight",
                        "explainer.scaled_bias"),
    "prior": Variant("explainer.beta", "explainer.start", "explainer.consistency_weight",
                     "explainer.scaled_bias"),
    "ls_start": Variant("explainer.beta", "least_squares", "explainer.consistency_weight", True),
    "faithful": Variant(0.0, "target", "explainer.faithful_weight", True, False, "mse"),
}
# Fields some variant reads; a variant's identity holds only those of them it reads.
VARIANT_FIELDS = tuple(sorted({f for v in VARIANTS.values() for f in v.reads()}))
VARIANT_IGNORES = {name: tuple(f for f in VARIANT_FIELDS if f not in v.reads())
                   for name, v in VARIANTS.items()}

_PERFORMER_ID = ("seed", "dtype", "dataset", "performer")
# The explainer fields the featurizer reads: what the feature cache holds depends on them.
FEATURIZER_FIELDS = ("explainer.case", "explainer.target", "explainer.feature",
                     "explainer.prior_method", "explainer.clip_prior",
                     "explainer.consistency_target", "explainer.shapley_permutations")
_EXPLAINER_ID = _PERFORMER_ID + ("explainer", FEATURE_BATCH_FIELD)


@dataclasses.dataclass(frozen=True)
class Stage:
  """One kind of stage.

  Attributes:
    name: the stage's name; ``"explainer"`` stands for one ``explainer_<variant>`` per variant.
    group: the ``config.stages`` word that asks for it.
    needs: products it takes from earlier stages (``"explainer:*"``: every variant's).
    produces: products it gives (``"explainer:*"``: its variant's).
    identity: dotted config prefixes that decide its result (``RUN_ONLY`` fields excepted).
    block: its own config block.
    state: the workdir folders holding its state or results (``{name}``: the stage's name).
    marked: a trained stage: ``<name>/done.json`` records its identity when it finishes, and
      a finished one is restored, never retrained (a mismatch is refused). Unmarked stages
      recompute what does not carry their identity.
    reads: stages whose finished results it reads from the workdir (not from memory).
    finished: the file whose presence says the stage finished ({name}: the stage's name; ""
      for a stage that is recomputed, never restored).
    when: a boolean config field that declares the stage ("" = always declared).
  """

  name: str
  group: str
  needs: tuple[str, ...]
  produces: tuple[str, ...]
  identity: tuple[str, ...]
  block: str
  state: tuple[str, ...]
  marked: bool = False
  reads: tuple[str, ...] = ()
  finished: str = ""
  when: str = ""


REGISTRY = (
    Stage("performer", "performer", (), ("performer",), _PERFORMER_ID, "performer",
          ("{name}/ckpt",), marked=True, finished="{name}/done.json"),
    Stage("performer_ordinary", "performer", (), ("ordinary",), _PERFORMER_ID, "performer",
          ("{name}/ckpt",), marked=True, finished="{name}/done.json",
          when="parts.compare_ordinary"),
    Stage("features", "explainer", ("performer",), ("train_features",),
          _PERFORMER_ID + FEATURIZER_FIELDS + (FEATURE_BATCH_FIELD,), "explainer",
          ("features/train", "features/test")),
    Stage("explainer", "explainer", ("performer", "train_features"), ("explainer:*",),
          _EXPLAINER_ID, "explainer", ("{name}/ckpt",), marked=True,
          finished="{name}/done.json"),
    # The sanity check's explainer (run/sanity.py): the prior explainer of a performer with
    # its layers above the explained feature re-initialised, trained from its own feature cache.
    Stage("sanity", "evaluate", ("performer",), ("sanity",),
          _EXPLAINER_ID + ("evals.sanity.layers",), "evals.sanity",
          ("{name}/ckpt", "{name}/features"), marked=True, finished="{name}/done.json",
          when="evals.sanity.enabled"),
    Stage("evaluate", "evaluate", ("performer", "explainer:*", "ordinary"), ("metrics",),
          _EXPLAINER_ID + EVAL_BLOCKS + ("parts",), EVAL_BLOCKS[0],
          ("evaluate/done.json", METRICS_FILE, "eval"), finished=METRICS_FILE),
    Stage("report", "report", (), ("report",), _EXPLAINER_ID + EVAL_BLOCKS + ("parts",),
          "evals", ("report.html", "report.md", "figures"), reads=("evaluate",)),
)
BY_NAME = {s.name: s for s in REGISTRY}
# The words of config.stages, in running order.
GROUPS = tuple(dict.fromkeys(s.group for s in REGISTRY))


def parse_groups(text: str) -> tuple[str, ...]:
  """The words of ``config.stages`` (comma-separated ``GROUPS``); ``ConfigError`` otherwise."""
  names = tuple(utils.split_list(text))
  bad = [s for s in names if s not in GROUPS]
  if bad or not names:
    what = f"names unknown stages {bad}" if bad else "names no stage"
    raise ConfigError(f"config.stages={text!r} {what}; use a comma-separated subset of "
                      f"{','.join(GROUPS)}.")
  return names


def finished_file(stage: Stage) -> str:
  """The workdir-relative file that says ``stage`` finished ("" for a recomputed stage)."""
  return stage.finished.format(name=stage.name)


def variant_stage(variant: str) -> str:
  """The stage name of an explainer variant: ``explainer_<variant>``."""
  return f"explainer_{variant}"


def variants(config) -> tuple[str, ...]:
  """The explainer variants ``config.explainer.variants`` names, in order."""
  return tuple(utils.split_list(config.explainer.variants))


def lookup(stage: str) -> Stage:
  """The registry entry of a stage name (``explainer_<variant>`` -> ``"explainer"``).

  Raises:
    ValueError: a name no entry covers (not a stage: logs, data, features, eval, ...).
  """
  if stage in BY_NAME:
    return BY_NAME[stage]
  head, _, variant = stage.partition("_")
  if head == "explainer" and variant in VARIANTS:
    return BY_NAME["explainer"]
  raise ValueError(f"no run identity is defined for stage {stage!r}; add it to "
                   "xplain_jax.spec.stages.REGISTRY.")


def _declared(config, stage: Stage) -> bool:
  if not stage.when:
    return True
  node = config
  for part in stage.when.split("."):
    if part not in node:
      return False
    node = node[part]
  return bool(node)


def concrete(config) -> tuple[Stage, ...]:
  """The stages of ``config`` in running order, each with its own name, needs and products
  (``explainer`` becomes one stage per variant; undeclared optional stages are left out)."""
  names = variants(config)
  products = set()
  out = []
  for s in REGISTRY:
    if not _declared(config, s):
      continue
    if s.name == "explainer":
      made = [dataclasses.replace(s, name=variant_stage(v), produces=(f"explainer:{v}",))
              for v in names]
    else:
      made = [s]
    for m in made:
      needs = []
      for n in m.needs:
        needs += [f"explainer:{v}" for v in names] if n == "explainer:*" else [n]
      out.append(dataclasses.replace(m, needs=tuple(n for n in needs if n in products)))
      products.update(m.produces)
  return tuple(out)


def plan(stages, groups) -> list:
  """The stages to run: those of the asked ``groups`` and, transitively, what they need.

  Args:
    stages: objects with ``group``, ``needs`` and ``produces`` (``concrete(config)``).
    groups: the asked ``config.stages`` words.
  """
  needed: set[str] = set()
  chosen = []
  for stage in reversed(stages):
    if stage.group in groups or needed.intersection(stage.produces):
      chosen.append(stage)
      needed.update(stage.needs)
  return chosen[::-1]


# --- identities --------------------------------------------------------------------------------


def _within(field: str, prefixes) -> bool:
  return any(field == p or field.startswith(p + ".") for p in prefixes)


def config_fields(config) -> dict:
  """``{dotted field: value}`` of a ConfigDict (or nested dict), as JSON values."""
  if hasattr(config, "to_json_best_effort"):
    config = json.loads(config.to_json_best_effort())
  return {k: list(v) if isinstance(v, tuple) else v for k, v in utils.flatten(config).items()}


def in_identity(field: str, stage: str) -> bool:
  """Whether the dotted config ``field`` is in the identity of ``stage`` (a registry name)."""
  return not _within(field, RUN_ONLY) and _within(field, lookup(stage).identity)


def decides_a_result(field: str) -> bool:
  """Whether the dotted ``field`` is in some stage's identity (may not differ in a finished
  workdir); False for ``RUN_ONLY`` fields and fields no identity names."""
  return any(in_identity(field, s.name) for s in REGISTRY)


def identity_fields(config, stage: str) -> dict:
  """``{dotted field: value}`` of the config fields that decide ``stage``'s result."""
  entry = lookup(stage)
  out = {k: v for k, v in config_fields(config).items()
         if _within(k, entry.identity) and not _within(k, RUN_ONLY)}
  if entry.name == "explainer":
    out["variant"] = stage.split("_", 1)[1]
    for field in VARIANT_IGNORES.get(out["variant"], ()):
      out.pop(field, None)
  return out


def stage_fingerprint(config, stage: str) -> str:
  """The run identity of ``stage``: canonical JSON of ``identity_fields(config, stage)``."""
  return json.dumps(identity_fields(config, stage), sort_keys=True, separators=(",", ":"))


def difference(recorded: str, current: str) -> str:
  """The first field in which two fingerprints differ, in words (for error messages)."""
  try:
    return first_difference(json.loads(recorded), json.loads(current))
  except (TypeError, ValueError):
    return "an unreadable recorded identity"


def first_difference(recorded: dict, current: dict) -> str:
  """The first field (in sorted order) in which two flat ``{field: value}`` dicts differ, in
  words: the one wording of a config difference in every error message."""
  for k in sorted(set(recorded) | set(current)):
    if k not in recorded or k not in current:
      return f"field {k} only in the {'new' if k in current else 'recorded'} config"
    if recorded[k] != current[k]:
      return f"field {k}: recorded {recorded[k]!r}, now {current[k]!r}"
  return "no field"


def check_fingerprint(recorded: str | None, current: str, directory: str) -> None:
  """Raises ``CheckpointError`` unless ``recorded`` equals ``current``.

  A missing ``recorded`` (state written before identities were recorded, or by hand) counts as
  different: nothing may be reused without proof that the same config wrote it.
  """
  if recorded == current:
    return
  why = difference(recorded, current) if recorded else "no run identity recorded"
  raise CheckpointError(f"the checkpoints in {directory} were written by a different config "
                        f"({why}); use another --workdir or delete {directory}.")
