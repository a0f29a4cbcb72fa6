"""A study's grid: expand the axes into runs, name their sub-workdirs, group runs by performer.

A study config (``configs/studies/*.py``) names a base experiment config and axes of overrides.
Each axis is a nested dict mirroring the run config whose leaves are tuples of equal length,
zipped together (``dict(seed=(0, 1), dataset=dict(seed=(0, 1)))`` is one axis of two points);
the grid is the product of the axes. ``base`` may hold ``{field}`` templates filled from a grid
point (``"configs/pascal_part.py:arch={performer.arch},category={dataset.category}"``); those
fields then go into the config argument instead of ``--config.FIELD=VALUE`` overrides.

Performer sharing rule: two runs share one trained performer exactly when their config file
and argument are equal and their overrides differ only in fields outside the identities of the
``performer`` and ``features`` stages (``xplain_jax.spec.stages``): the explainer's own fields, the
evaluators', the stages to run, where the data lives, ... The featurizer's fields
(``stages.FEATURIZER_FIELDS``) decide what is cached in ``features/`` and so count as
performer-side, as do the seeds, the data and the performer's fields.
"""

from __future__ import annotations

import dataclasses
import itertools
import re

from xplain_jax.spec import stages
from xplain_jax import utils

_TEMPLATE = re.compile(r"\{([A-Za-z0-9_.]+)\}")


@dataclasses.dataclass(frozen=True)
class Run:
  """One grid point.

  Attributes:
    name: sub-workdir name, ``axis=value`` pairs joined by ``__`` (the value of the axis's
      first field, fields in key order).
    point: the grid values of this run, ``{dotted field: value}``.
    config: ``FILE.py[:ARG]`` with templates filled.
    overrides: ``{dotted field: value}`` passed as ``--config.FIELD=VALUE`` (fixed ones first).
    performer_key: runs with equal keys can share one trained performer.
  """
  name: str
  point: dict
  config: str
  overrides: dict
  performer_key: str


def expand_axes(axes) -> list[tuple[dict, dict]]:
  """The grid points of ``axes`` (name -> nested dict of equal-length tuples), product order.

  Returns:
    ``(point, names)`` per grid point: ``point`` maps every dotted field to its value,
    ``names`` maps each axis name to the value of its first field (what names the run).

  Raises:
    ValueError: an axis whose tuples differ in length, is empty, or a field on two axes.
  """
  per_axis, seen = [], {}
  for name, tree in (axes.items() if hasattr(axes, "items") else ()):
    fields = utils.flatten(tree) if hasattr(tree, "items") else {}
    lengths = {f: len(v) if isinstance(v, (tuple, list)) else -1 for f, v in fields.items()}
    if not fields or -1 in lengths.values() or len(set(lengths.values())) != 1 or \
        0 in lengths.values():
      raise ValueError(f"study axis {name!r} must map fields to non-empty tuples of one length "
                       f"(zipped together); got lengths {lengths}.")
    for f in fields:
      if f in seen:
        raise ValueError(f"field {f!r} is on two study axes ({seen[f]!r} and {name!r}); put it "
                         "on one.")
      seen[f] = name
    n = next(iter(lengths.values()))
    first = next(iter(fields))
    per_axis.append([(name, fields[first][k], {f: fields[f][k] for f in fields})
                     for k in range(n)])
  points = []
  for combo in itertools.product(*per_axis):
    point, names = {}, {}
    for axis, value, part in combo:
      point.update(part)
      names[axis] = value
    points.append((point, names))
  return points


def format_value(value) -> str:
  """A value as ``--config.FIELD=VALUE`` text (repr for floats, plain for the rest)."""
  if isinstance(value, float):
    return repr(value)
  if isinstance(value, (tuple, list)):
    return ",".join(format_value(v) for v in value)
  return str(value)


def run_name(names: dict) -> str:
  """Sub-workdir name of a grid point: ``axis=value`` pairs joined by ``__``."""
  parts = [f"{a}={format_value(v)}" for a, v in names.items()]
  name = "__".join(parts) or "run"
  return re.sub(r"[^A-Za-z0-9_.=,+-]", "_", name)


def fill_template(base: str, point: dict) -> tuple[str, set[str]]:
  """``base`` with ``{field}`` filled from ``point``; returns the text and the fields used."""
  used = set(_TEMPLATE.findall(base))
  missing = sorted(used - set(point))
  if missing:
    raise ValueError(f"study base {base!r} uses {missing} but no axis sets them; add them to an "
                     "axis or remove the template.")
  return _TEMPLATE.sub(lambda m: format_value(point[m.group(1)]), base), used


# The stages a shared performer brings along: the performer and its feature cache.
SHARED_STAGES = ("performer", "features")


def performer_side(field: str) -> bool:
  """Whether changing ``field`` can change the trained performer or its feature cache."""
  return any(stages.in_identity(field, s) for s in SHARED_STAGES)


def performer_key(config: str, overrides: dict) -> str:
  """Identity of the performer a run trains (config file and argument + performer-side fields)."""
  side = sorted((f, format_value(v)) for f, v in overrides.items() if performer_side(f))
  return config + "|" + "|".join(f"{f}={v}" for f, v in side)


def make_runs(base: str, axes, fixed=None, extra: dict | None = None) -> list[Run]:
  """Every grid point of a study as a ``Run``, in product order of the axes.

  Args:
    base: ``configs/FILE.py[:ARG]``, possibly with ``{field}`` templates.
    axes: axis name -> nested dict of zipped value tuples.
    fixed: nested dict of overrides applied to every run.
    extra: ``{dotted field: text}`` more overrides for every run (``launch/study.py --set``).
  """
  fixed_fields = utils.flatten(fixed or {})
  fixed_fields.update(extra or {})
  grid_points = expand_axes(axes)
  axis_of = {f: a for a, tree in (axes.items() if hasattr(axes, "items") else ())
             for f in utils.flatten(tree)}
  for f in extra or {}:
    if f in axis_of:
      raise ValueError(f"--set={f}={extra[f]} sets a field of the study axis {axis_of[f]!r}, "
                       "which gives every run its own value; change the axis instead "
                       f"(--config.axes.{axis_of[f]}...) or drop the --set.")
  runs, names = [], set()
  for point, axis_values in grid_points:
    config, used = fill_template(base, point)
    overrides = dict(fixed_fields)
    overrides.update({f: v for f, v in point.items() if f not in used})
    name = run_name(axis_values)
    if name in names:
      raise ValueError(f"two grid points get the sub-workdir name {name!r}; make the values of "
                       "each axis's first field distinct.")
    names.add(name)
    runs.append(Run(name, dict(point), config, overrides, performer_key(config, overrides)))
  return runs


def share_groups(runs: list[Run]) -> dict[str, list[str]]:
  """Leader run name -> names of the runs that reuse its performer (leader = first of a key)."""
  groups: dict[str, list[str]] = {}
  leader_of: dict[str, str] = {}
  for r in runs:
    if r.performer_key in leader_of:
      groups[leader_of[r.performer_key]].append(r.name)
    else:
      leader_of[r.performer_key] = r.name
      groups[r.name] = []
  return groups


def command(run: Run, workdir: str, *, python: str = "python",
            script: str = "launch/run.py") -> list[str]:
  """The ``launch/run.py`` command line of ``run`` in sub-workdir ``workdir``."""
  return [python, script, f"--config={run.config}", f"--workdir={workdir}"] + [
      f"--config.{f}={format_value(v)}" for f, v in run.overrides.items()]
