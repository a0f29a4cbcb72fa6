"""A workdir that knows its run: one run at a time, and each stage's identity.

* ``lock(workdir)``: an OS-level lock (``flock``) held for the life of the process, so a second
  run on the same workdir stops at once naming the holder; the kernel releases it when the
  process dies, so a ``kill -9`` leaves no stale lock.
* stage markers (``write_marker``, ``stage_done``): ``<stage>/done.json`` records the run
  identity (``stages.stage_fingerprint``) of a finished stage; ``check_recorded_identities``
  compares every recorded identity with the config, so no deleted or edited ``config.json`` can
  make a stage reuse another config's state.
* ``check_stage_inputs``: a stage asked for whose inputs are neither asked for nor finished is
  refused before anything is written (the stage graph of ``xplain_jax.spec.stages``).
* ``record_command`` / ``read_command``: ``command.json``, the command a run was made with and
  whether every stage it asked for has ended (what a study compares before skipping a run).
* ``check_marked_stages_intact``: a stage marked finished whose checkpoints are gone is
  refused, never retrained silently; ``evaluate/done.json`` is the run identity of
  ``metrics.json`` and ``eval/``.

Which fields decide which stage's result is written once, in ``xplain_jax.spec.stages``.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import sys

from xplain_jax.spec import stages
from xplain_jax import utils
from xplain_jax.errors import CheckpointError, ConfigError, WorkdirBusyError

LOCK_FILE = "run.lock"


# --- stage markers -----------------------------------------------------------------------------


def marker_path(workdir: str, stage: str) -> str:
  return os.path.join(workdir, stage, "done.json")


def write_marker(workdir: str, stage: str, fingerprint: str) -> None:
  """Marks ``stage`` finished in ``workdir``, with its run identity."""
  from xplain_jax.infra import checkpoint  # pylint: disable=import-outside-toplevel  (jax, orbax)
  checkpoint.write_json_atomic(marker_path(workdir, stage),
                               {"stage": stage, "fingerprint": fingerprint})


def stage_done(workdir: str, stage: str, fingerprint: str | None = None) -> bool:
  """Whether ``stage`` finished in ``workdir``; with ``fingerprint``, also that the same config
  finished it (``CheckpointError`` when another one did, or the marker is unreadable)."""
  path = marker_path(workdir, stage)
  if not os.path.exists(path):
    return False
  if fingerprint is not None:
    stages.check_fingerprint(_recorded(path), fingerprint, os.path.dirname(path))
  return True


def _recorded(path: str) -> str | None:
  try:
    with open(path, encoding="utf-8") as f:
      value = json.load(f)
  except (OSError, ValueError):
    return None
  return value.get("fingerprint") if isinstance(value, dict) else None


def check_recorded_identities(config, workdir: str) -> None:
  """Compares every identity recorded in ``workdir`` (stage markers and checkpoint metas)
  with ``config``; raises ``CheckpointError`` naming the first differing field.

  Only recorded identities are compared: a stage folder without one (older runs) is left to
  the stage's own restore. The evaluate stage's identity is not compared when the evaluate
  stage is asked for (its results are then recomputed with ``config``).
  """
  if not os.path.isdir(workdir):
    return
  reevaluate = "evaluate" in utils.split_list(config.stages)
  for stage in sorted(os.listdir(workdir)):
    folder = os.path.join(workdir, stage)
    if stage == EVALUATE_MARKER and reevaluate:
      continue
    try:
      current = stages.stage_fingerprint(config, stage)
    except ValueError:
      continue  # not a stage folder (logs, data, features, eval, ...)
    files = [marker_path(workdir, stage)]
    ckpt = os.path.join(folder, "ckpt")
    if os.path.isdir(ckpt):
      files += [os.path.join(ckpt, s, "meta", "metadata") for s in os.listdir(ckpt) if s.isdigit()]
    for path in files:
      if not os.path.isfile(path):
        continue
      try:
        with open(path, encoding="utf-8") as f:
          value = json.load(f)
      except (OSError, ValueError):
        continue  # damaged: the stage's own restore reports it
      key = "fingerprint" if path.endswith("done.json") else "_identity"
      if isinstance(value, dict) and key in value:
        stages.check_fingerprint(value[key], current, folder)


def check_marked_stages_intact(workdir: str) -> None:
  """Raises ``CheckpointError`` when a stage is marked finished (``done.json``) but none of its
  checkpoints is left: it is neither restored nor silently trained again."""
  if not os.path.isdir(workdir):
    return
  for stage in sorted(os.listdir(workdir)):
    if not os.path.isfile(marker_path(workdir, stage)) or stage == EVALUATE_MARKER:
      continue
    ckpt = os.path.join(workdir, stage, "ckpt")
    if not (os.path.isdir(ckpt) and any(s.isdigit() for s in os.listdir(ckpt))):
      raise CheckpointError(
          f"the {stage} stage is marked finished in {workdir} but its checkpoints "
          f"({os.path.join(workdir, stage, 'ckpt')}) are gone; restore them, or delete "
          f"{marker_path(workdir, stage)} to train that stage again.")


# The evaluate stage's marker folder: the run identity of metrics.json and eval/.
EVALUATE_MARKER = "evaluate"


def check_stage_inputs(config, workdir: str) -> None:
  """Raises ``ConfigError`` when a stage that will run needs a stage that is neither asked for
  nor finished in ``workdir`` (``stages.plan`` over the registry; checked before anything is
  written)."""
  asked = set(stages.parse_groups(config.stages))
  if asked - {"report"}:  # the trained stages will be restored
    check_marked_stages_intact(workdir)
  if ("evaluate" not in asked and os.path.exists(os.path.join(workdir, stages.METRICS_FILE))
      and not os.path.exists(os.path.join(workdir, "config.json"))
      and not os.path.exists(marker_path(workdir, EVALUATE_MARKER))):
    raise CheckpointError(f"{workdir} holds results (metrics.json) but no config.json or run "
                          "identity recording the config that made them; restore config.json, "
                          "or add 'evaluate' to config.stages to recompute them with this "
                          "config.")
  for stage in stages.plan(stages.concrete(config), asked):
    waits = [] if stage.group in asked else [stage]
    waits += [stages.BY_NAME[r] for r in stage.reads if stages.BY_NAME[r].group not in asked]
    for need in waits:
      done = stages.finished_file(need)
      if done and not os.path.exists(os.path.join(workdir, done)):
        raise ConfigError(f"config.stages={config.stages} needs the {need.group} stage, which "
                          f"has not finished in {workdir} ({done} is missing); add "
                          f"{need.group!r} to config.stages.")


# --- one run at a time -------------------------------------------------------------------------


def lock(workdir: str):
  """Takes the workdir's lock for the life of this process; returns the open lock file.

  Keep the returned object referenced (closing it releases the lock).

  Raises:
    WorkdirBusyError: another process holds it (the message names it).
  """
  try:
    import fcntl
  except ImportError:  # not POSIX: no lock
    return None
  path = os.path.join(workdir, LOCK_FILE)
  f = open(  # pylint: disable=consider-using-with
      path, "a+", encoding="utf-8", errors="backslashreplace")
  try:
    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError:
    f.seek(0)
    holder = " ".join(f.read().split()) or "another process"
    f.close()
    raise WorkdirBusyError(f"--workdir={workdir} is in use by {holder}; wait for that run to "
                           "end (or stop it), or use another --workdir.") from None
  f.seek(0)
  f.truncate()
  started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
  f.write(f"process {os.getpid()} on {socket.gethostname()} (started {started}: "
          f"{' '.join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))})\n")
  f.flush()
  return f


def holder(workdir: str) -> str | None:
  """Who holds ``workdir``'s lock now (the lock file's text), or None when no process does.

  Only probes the lock: nothing is created, and a free lock is released at once.
  """
  try:
    import fcntl
  except ImportError:  # not POSIX: no lock
    return None
  try:
    f = open(  # pylint: disable=consider-using-with
        os.path.join(workdir, LOCK_FILE), encoding="utf-8", errors="replace")
  except OSError:
    return None
  with f:
    try:
      fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      return " ".join(f.read().split()) or "another process"
    fcntl.flock(f.fileno(), fcntl.LOCK_UN)
  return None


# --- the command a run was made with -----------------------------------------------------------

COMMAND_FILE = "command.json"


def record_command(workdir: str, config_arg: str, overrides: dict, *, finished: bool) -> None:
  """Records ``launch/run.py``'s ``--config`` argument and ``--config.FIELD=VALUE`` overrides
  (as text) in ``workdir/command.json``; ``finished``: every stage asked for has ended.

  Written unfinished before the first stage runs and finished after the last one, so a run
  killed at any moment (the report stage included) is never taken for finished.
  """
  from xplain_jax.infra import checkpoint  # pylint: disable=import-outside-toplevel  (jax, orbax)
  checkpoint.write_json_atomic(os.path.join(workdir, COMMAND_FILE),
                               {"config": config_arg, "overrides": dict(overrides),
                                "finished": bool(finished)})


def read_command(workdir: str) -> dict | None:
  """``command.json`` of ``workdir`` as a dict, or None when absent or unreadable."""
  try:
    with open(os.path.join(workdir, COMMAND_FILE), encoding="utf-8") as f:
      value = json.load(f)
  except (OSError, ValueError):
    return None
  ok = (isinstance(value, dict) and isinstance(value.get("overrides"), dict)
        and isinstance(value.get("config"), str))
  return value if ok else None
