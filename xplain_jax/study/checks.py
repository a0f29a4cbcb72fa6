"""What a study checks before any run starts, so a mistake is one line, not N failed runs.

* ``check_fields``: every field a run overrides (``fixed``, the axes, ``--set``) exists in the
  run's config file with a value of its type; the runs ask for the ``evaluate`` stage and for
  every explainer variant the study's table reads (else no run could finish).
* ``check_run_configs``: each run's config, its overrides applied, passes the run's own config
  check (``validate.check_config`` without the dry build): a value every run would refuse
  (``--set=dataset.rule=bogus``) is refused once, before any run or SLURM array is made;
* ``check_workdirs``: no run's sub-workdir is still held by a run process (left running by a
  study that was killed), and none holds a run made with other values of a field that decides
  results (a changed ``--set``): such a run is neither skipped nor overwritten.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
from typing import Sequence

from xplain_jax.spec import stages
from xplain_jax import utils
from xplain_jax.run import validate
from xplain_jax.run import workdir as workdir_lib
from xplain_jax.errors import ConfigError, WorkdirBusyError
from xplain_jax.study import grid as grid_lib
from xplain_jax.study import runner as runner_lib

_TRUE_FALSE = ("true", "false", "1", "0", "t", "f", "yes", "no")


def load_run_config(spec: str, repo_root: str):
  """The ConfigDict of ``FILE.py[:ARG]`` (``get_config(ARG)``, or ``get_config()`` without ':')."""
  path, colon, arg = spec.partition(":")
  full = os.path.join(repo_root, path)
  if not os.path.isfile(full):
    raise ConfigError(f"the study's run config {path} does not exist; fix the study's base "
                      "(--config.base=configs/FILE.py[:ARG]).")
  try:
    module_spec = importlib.util.spec_from_file_location("_study_run_config", full)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(arg) if colon else module.get_config()
  except Exception as e:  # pylint: disable=broad-except  (the user's config file)
    raise ConfigError(f"the study's run config {spec} failed to load: {type(e).__name__}: "
                      f"{' '.join(str(e).split())}; fix the study's base.") from None


def _fits(text, current) -> bool:
  """Whether override ``text`` (a --set string or a study value) fits ``current``'s type."""
  if not isinstance(text, str):  # a Python value of the study config
    return True
  try:
    if isinstance(current, bool):
      return text.strip().lower() in _TRUE_FALSE
    if isinstance(current, int):
      int(text)
    elif isinstance(current, float):
      float(text)
  except ValueError:
    return False
  return True


def check_fields(runs: Sequence[grid_lib.Run], *, sets: dict, variants: Sequence[str],
                 repo_root: str) -> None:
  """Raises ``ConfigError`` for an override no run config has or whose value does not fit,
  and for runs that cannot finish the study's table (no evaluate stage, a variant missing)."""
  configs = {}
  for r in runs:
    if r.config not in configs:
      configs[r.config] = load_run_config(r.config, repo_root)
    config = configs[r.config]
    for field, value in r.overrides.items():
      where = f"--set={field}={value}" if field in sets else f"the study's {field}={value!r}"
      try:
        current = runner_lib.get_field(config, field)
      except (KeyError, AttributeError, TypeError):
        raise ConfigError(f"{where}: {r.config} has no field {field!r}; check the spelling "
                          "against that config file.") from None
      if not _fits(value, current):
        raise ConfigError(f"{where}: {field} is a {type(current).__name__} in {r.config}; give "
                          "a value of that type.")
    stages = str(r.overrides.get("stages", config.stages))
    if "evaluate" not in utils.split_list(stages):
      raise ConfigError(f"stages={stages} never writes metrics.json, so no run can finish the "
                        "study's table; include evaluate (e.g. "
                        "--set=stages=performer,explainer,evaluate,report).")
    have = str(r.overrides.get("explainer.variants", config.explainer.variants))
    lacking = [v for v in variants if v not in utils.split_list(have)]
    if lacking:
      raise ConfigError(f"explainer.variants={have} lacks {', '.join(lacking)}, which the "
                        "study's table reads, so no run can finish it; include every variant "
                        f"({','.join(variants)}).")


def _parsed(value, current):
  """An override as the type of the field's ``current`` value (``--set`` gives text)."""
  if not isinstance(value, str) or isinstance(current, str):
    return value
  if isinstance(current, bool):
    return value.strip().lower() in ("true", "1", "t", "yes")
  if isinstance(current, int):
    return int(value)
  if isinstance(current, float):
    return float(value)
  return value


def check_run_configs(runs: Sequence[grid_lib.Run], *, repo_root: str) -> None:
  """Raises ``ConfigError`` (naming the run and the field) for the first run whose config, its
  overrides applied, the run itself would refuse; each distinct config is checked once.
  Call after ``check_fields`` (every override exists and fits its field's type)."""
  bases, seen = {}, set()
  for r in runs:
    key = json.dumps([r.config, sorted(r.overrides.items())], default=str)
    if key in seen:
      continue
    seen.add(key)
    if r.config not in bases:
      bases[r.config] = load_run_config(r.config, repo_root)
    config = copy.deepcopy(bases[r.config])
    for field, value in r.overrides.items():
      *head, last = field.split(".")
      node = runner_lib.get_field(config, ".".join(head)) if head else config
      node[last] = _parsed(value, node[last])
    try:
      validate.check_config(config, build=False)
    except ConfigError as e:
      raise ConfigError(f"run {r.name} of the study would be refused: {e} Fix the --set or the "
                        "study config; no run was started.") from None


def check_workdirs(runs: Sequence[grid_lib.Run], workdir: str, *, running: bool,
                   repo_root: str = ".") -> None:
  """Raises ``WorkdirBusyError`` (``running``: a run still holds its sub-workdir) or
  ``ConfigError`` (a sub-workdir holds a run made with other result-deciding values)."""
  for r in runs:
    run_dir = os.path.join(workdir, r.name)
    if not os.path.isdir(run_dir):
      continue
    held = workdir_lib.holder(run_dir) if running else None
    if held:
      raise WorkdirBusyError(f"run {r.name} is still running in {run_dir} ({held}), perhaps "
                             "left by a study that was stopped; wait for it to end or stop "
                             "that process, then rerun this command.")
    diffs = runner_lib.command_differences(run_dir, r, load_run_config(r.config, repo_root))
    for field, old, new in diffs or ():
      if field == "--config" or stages.decides_a_result(field):
        raise ConfigError(f"run {r.name} in {workdir} was made with {field}={old}, now {new}; "
                          "use another --workdir for the new values (or delete "
                          f"{run_dir} to redo that run).")
