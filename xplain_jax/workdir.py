"""A workdir that knows its run: one run at a time, and each stage's identity.

* ``lock(workdir)``: an OS-level lock (``flock``) held for the life of the process, so a second
  run on the same workdir stops at once naming the holder; the kernel releases it when the
  process dies, so a ``kill -9`` leaves no stale lock.
* ``stage_fingerprint(config, stage)``: the config fields that determine a stage's result, as
  canonical JSON. Stored in every checkpoint's meta and stage marker, and compared on restore,
  so no deleted or edited ``config.json`` can make a stage reuse another config's state.

* ``record_command`` / ``read_command``: ``command.json``, the command a run was made with and
  whether every stage it asked for has ended (what a study compares before skipping a run).
* ``check_marked_stages_intact``: a stage marked finished whose checkpoints are gone is
  refused, never retrained silently; ``evaluate/done.json`` is the run identity of
  ``metrics.json`` and ``eval/``.

Stage -> fields that decide its result (``_RESULT_FIELDS``; everything else — stages, device
count, logging and checkpoint intervals, data and cache locations, the distributed set-up, the
number of report images — may change between runs of one workdir):

  performer, performer_*   seed, dtype, dataset.*, performer.*
  explainer_<variant>      the performer's fields + explainer.* (but the variant list, and β
                           for the baseline, which does not read it) +
                           eval.batch_size (the feature-cache batches) + the variant's name
  evaluate, report, parts  the explainer's fields + parts.* (but its report-only fields) +
                           fidelity.* + sanity.*
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import sys

from xplain_jax.errors import CheckpointError, ConfigError, WorkdirBusyError

LOCK_FILE = "run.lock"

# Fields that never change a result (dotted; a block name drops the whole block).
_NOT_RESULT_FIELDS = (
    "stages", "num_devices", "distributed", "log_every_steps", "checkpoint_every_steps",
    "dataset.data_dir", "dataset.num_threads", "dataset.cache", "explainer.variants",
    "explainer.cache_features", "eval.num_report_images", "parts.num_regions",
    "parts.region_size")
# Stage kind -> the config blocks (or dotted fields) its result depends on.
_RESULT_FIELDS = {
    "performer": ("seed", "dtype", "dataset", "performer"),
    "explainer": ("seed", "dtype", "dataset", "performer", "explainer", "eval.batch_size"),
    "evaluate": ("seed", "dtype", "dataset", "performer", "explainer", "eval", "parts",
                 "fidelity", "sanity"),
}


def _stage_kind(stage: str) -> str:
  for kind in ("performer", "explainer"):
    if stage == kind or stage.startswith(kind + "_"):
      return kind
  if stage in ("evaluate", "report", "parts"):
    return "evaluate"
  raise ValueError(f"no run identity is defined for stage {stage!r}; add it to "
                   "workdir._RESULT_FIELDS.")


def _flat(d: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = list(v) if isinstance(v, tuple) else v
  return out


def identity_fields(config, stage: str) -> dict:
  """``{dotted field: value}`` of the config fields that determine ``stage``'s result."""
  full = _flat(json.loads(config.to_json_best_effort()) if hasattr(config, "to_json_best_effort")
               else dict(config))
  wanted = _RESULT_FIELDS[_stage_kind(stage)]
  out = {k: v for k, v in full.items()
         if any(k == w or k.startswith(w + ".") for w in wanted)
         and not any(k == n or k.startswith(n + ".") for n in _NOT_RESULT_FIELDS)}
  if _stage_kind(stage) == "explainer" and stage != "explainer":
    out["variant"] = stage.split("_", 1)[1]
    if out["variant"] == "baseline":  # λ ≡ 0: the baseline does not read β
      out.pop("explainer.beta", None)
  return out


def stage_fingerprint(config, stage: str) -> str:
  """The run identity of ``stage``: canonical JSON of ``identity_fields(config, stage)``."""
  return json.dumps(identity_fields(config, stage), sort_keys=True, separators=(",", ":"))


def difference(recorded: str, current: str) -> str:
  """The first field in which two fingerprints differ, in words (for error messages)."""
  try:
    a, b = json.loads(recorded), json.loads(current)
  except (TypeError, ValueError):
    return "an unreadable recorded identity"
  for k in sorted(set(a) | set(b)):
    if k not in a or k not in b:
      return f"field {k} only in the {'new' if k in b else 'recorded'} config"
    if a[k] != b[k]:
      return f"field {k}: recorded {a[k]!r}, now {b[k]!r}"
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


# --- stage markers -----------------------------------------------------------------------------


def marker_path(workdir: str, stage: str) -> str:
  return os.path.join(workdir, stage, "done.json")


def write_marker(workdir: str, stage: str, fingerprint: str) -> None:
  """Marks ``stage`` finished in ``workdir``, with its run identity."""
  from xplain_jax import checkpoint
  checkpoint.write_json_atomic(marker_path(workdir, stage),
                               {"stage": stage, "fingerprint": fingerprint})


def stage_done(workdir: str, stage: str, fingerprint: str | None = None) -> bool:
  """Whether ``stage`` finished in ``workdir``; with ``fingerprint``, also that the same config
  finished it (``CheckpointError`` when another one did, or the marker is unreadable)."""
  path = marker_path(workdir, stage)
  if not os.path.exists(path):
    return False
  if fingerprint is not None:
    check_fingerprint(_recorded(path), fingerprint, os.path.dirname(path))
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
  reevaluate = "evaluate" in [s.strip() for s in config.stages.split(",")]
  for stage in sorted(os.listdir(workdir)):
    folder = os.path.join(workdir, stage)
    if stage == EVALUATE_MARKER and reevaluate:
      continue
    try:
      current = stage_fingerprint(config, stage)
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
        check_fingerprint(value[key], current, folder)


def is_result_field(field: str) -> bool:
  """Whether the dotted config ``field`` can change a stage's result (see the module doc)."""
  return not any(field == n or field.startswith(n + ".") for n in _NOT_RESULT_FIELDS)


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
  """Raises ``ConfigError`` when a stage asked for needs an earlier one that is neither asked
  for nor finished in ``workdir`` (checked before anything is written)."""
  asked = {s.strip() for s in config.stages.split(",") if s.strip()}
  variants = [v.strip() for v in config.explainer.variants.split(",") if v.strip()]
  finished = {"performer": [marker_path(workdir, "performer")],
              "explainer": [marker_path(workdir, f"explainer_{v}") for v in variants],
              "evaluate": [os.path.join(workdir, "metrics.json")]}
  needs = {"explainer": ("performer",), "evaluate": ("performer", "explainer"),
           "report": ("evaluate",)}
  if asked - {"report"}:  # the trained stages will be restored
    check_marked_stages_intact(workdir)
  if ("evaluate" not in asked and os.path.exists(os.path.join(workdir, "metrics.json"))
      and not os.path.exists(os.path.join(workdir, "config.json"))
      and not os.path.exists(marker_path(workdir, EVALUATE_MARKER))):
    raise CheckpointError(f"{workdir} holds results (metrics.json) but no config.json or run "
                          "identity recording the config that made them; restore config.json, "
                          "or add 'evaluate' to config.stages to recompute them with this "
                          "config.")
  for stage in sorted(asked):
    for need in needs.get(stage, ()):
      missing = [p for p in finished[need] if not os.path.exists(p)]
      if need not in asked and missing:
        raise ConfigError(f"config.stages={config.stages} needs the {need} stage, which has "
                          f"not finished in {workdir} ({os.path.relpath(missing[0], workdir)} "
                          f"is missing); add {need!r} to config.stages.")


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
  f = open(path, "a+", encoding="utf-8", errors="backslashreplace")  # pylint: disable=consider-using-with
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
    f = open(os.path.join(workdir, LOCK_FILE), encoding="utf-8", errors="replace")  # pylint: disable=consider-using-with
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
  from xplain_jax import checkpoint
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
