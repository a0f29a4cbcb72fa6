"""Checks of a run's workdir before any compute: a writable UTF-8 folder, and one experiment.

A workdir holds one experiment: ``check_same_experiment`` refuses a config that differs from
the recorded ``config.json`` in a field that decides some stage's result; exactly the fields no
stage's identity holds may differ (``stages.decides_a_result``).
"""

from __future__ import annotations

import os
import tempfile

from xplain_jax.spec import stages
from xplain_jax import utils
from xplain_jax.errors import ConfigError


def check_workdir(workdir: str) -> None:
  """Raises ``ConfigError`` unless ``workdir`` exists or can be created, and is writable."""
  if not workdir:
    raise ConfigError("--workdir is empty; give a directory for checkpoints and results.")
  try:
    workdir.encode("utf-8")
  except UnicodeEncodeError:
    shown = workdir.encode("utf-8", "backslashreplace").decode("utf-8")
    raise ConfigError(f"--workdir={shown} is not a valid UTF-8 name (results, logs and the lock "
                      "record it as text); choose a UTF-8 name.") from None
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ConfigError(f"--workdir={workdir} is a file, not a directory; choose another path.")
  try:
    os.makedirs(workdir, exist_ok=True)
    with tempfile.TemporaryFile(dir=workdir):
      pass
  except OSError as e:
    raise ConfigError(f"--workdir={workdir} is not writable ({e.strerror}); choose a directory "
                      "you can write to.") from None


def _comparable(d: dict) -> dict:
  """The fields of a config (as JSON) that decide some stage's result, flattened."""
  return {k: v for k, v in utils.flatten(d).items() if stages.decides_a_result(k)}


def check_same_experiment(config, workdir: str, *, write: bool = True) -> None:
  """Refuses a workdir of another experiment; records the config in ``workdir/config.json``.

  Fields that decide no stage's result (stages, devices, logging and checkpoint intervals,
  where the data lives, the explainer variants, ...: ``stages.decides_a_result``) may differ.
  An existing ``config.json`` is never rewritten: a readable one must match, and one that is
  not a config this program wrote (damaged, or a file of the user's) stops the run, so it is
  neither overwritten nor trusted. The stages' own run identities (``workdir.py``) guard the
  results when ``config.json`` has been deleted.

  Args:
    write: record the config when ``config.json`` is absent (False: only compare).
  """
  import json  # pylint: disable=import-outside-toplevel
  from xplain_jax.infra import checkpoint  # pylint: disable=import-outside-toplevel
  path = os.path.join(workdir, "config.json")
  current = json.loads(config.to_json_best_effort())
  if os.path.exists(path):
    try:
      previous = checkpoint.read_json(path)
    except (OSError, ValueError):
      previous = None
    if not isinstance(previous, dict) or "dataset" not in previous:
      raise ConfigError(f"{path} is not a config this program wrote (damaged, or another "
                        "file); it is left as it is: move it out of the workdir and rerun (the "
                        "checkpoints' run identities still guard the results), or use a new "
                        "--workdir.")
    if _comparable(previous) != _comparable(current):
      diff = stages.first_difference(_comparable(previous), _comparable(current))
      raise ConfigError(f"--workdir={workdir} holds a run of a different config ({diff}); use a "
                        "new --workdir, or delete that one to start over.")
  elif write:
    checkpoint.write_json_atomic(path, current)

