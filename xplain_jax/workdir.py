"""A workdir that knows its run: one run at a time, and each stage's identity.

* ``lock(workdir)``: an OS-level lock (``flock``) held for the life of the process, so a second
  run on the same workdir stops at once naming the holder; the kernel releases it when the
  process dies, so a ``kill -9`` leaves no stale lock.
* ``stage_fingerprint(config, stage)``: the config fields that determine a stage's result, as
  canonical JSON. Stored in every checkpoint's meta and stage marker, and compared on restore,
  so no deleted or edited ``config.json`` can make a stage reuse another config's state.

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
  the stage's own restore.
  """
  if not os.path.isdir(workdir):
    return
  for stage in sorted(os.listdir(workdir)):
    folder = os.path.join(workdir, stage)
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
  f = open(path, "a+", encoding="utf-8")  # pylint: disable=consider-using-with
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
