"""Which exceptions are the user's to fix, and how they are shown: one line, no traceback."""

from __future__ import annotations

import json
import os


class XplainError(Exception):
  """A problem the user can fix; the message says what was wrong and what to do (one line)."""


class ConfigError(XplainError, ValueError):
  """A config field or command-line usage is invalid (exit status 2)."""


class DataError(XplainError, ValueError):
  """A dataset is missing, unprepared, damaged or inconsistent (or a data argument is invalid)."""


class CheckpointError(XplainError, RuntimeError):
  """No usable checkpoint (or result file) could be restored although some exist."""


class DamagedFileError(CheckpointError, ValueError):
  """A result file of the workdir (JSON, npz) is truncated or not what it should be."""


class NonFiniteError(XplainError, FloatingPointError):
  """A loss, gradient, metric or parameter became NaN or Inf."""


class DatasetNotPreparedError(DataError, FileNotFoundError):
  """A dataset's prepared files were not found (the message says how to prepare them)."""


class WorkdirBusyError(XplainError):
  """Another run holds the workdir's lock (the message names the holder)."""


class StorageError(XplainError, OSError):
  """A file could not be written (disk full, no permission); nothing half-written is left."""


# --- TEMPORARY compatibility, to delete once the raise sites below raise XplainError subclasses.
# Built-in exceptions that these functions raise on purpose for bad input (data not prepared,
# a stage not finished, a weight file of the wrong kind). Only an exception raised in one of
# them (directly, by ``open`` or by ``json`` parsing a file) counts; the same type raised
# anywhere else is a bug and keeps its traceback.
LEGACY_USER_ERROR_SITES = {
    "xplain_jax/train/pipeline.py": ("train_and_evaluate", "parse_stages"),
    "xplain_jax/train/parts_eval.py": ("load_or_suggest_annotation", "evaluate_parts"),
    "xplain_jax/train/state.py": ("make_optimizer", "compute_dtype"),
    "xplain_jax/train/explainer.py": ("variant_beta",),
    "xplain_jax/data/__init__.py": ("_check_name", "get_spec"),
    "xplain_jax/data/celeba.py": ("attribute_index", "_check_split", "load"),
    "xplain_jax/data/pascal_part.py": ("parse_annotation", "_open", "load", "prepare",
                                       "_find_annotations", "_split_generators"),
    "xplain_jax/data/pipeline.py": ("__post_init__", "check_images"),
    "xplain_jax/data/synthetic_attributes.py": ("make_dataset", "load", "rule_weights"),
    "xplain_jax/data/synthetic_parts.py": ("make_parts_dataset", "load"),
    "xplain_jax/models/torch_import.py": ("_take", "take", "from_torchvision",
                                          "load_state_dict_file"),
    "xplain_jax/report/tables.py": ("load_metrics",),
}
_LEGACY_TYPES = (ValueError, FileNotFoundError, NotADirectoryError, PermissionError, ImportError,
                 KeyError)


def is_user_error(e: BaseException) -> bool:
  """True for an ``XplainError``, and (temporarily) for a built-in error raised on purpose at
  one of ``LEGACY_USER_ERROR_SITES``; everything else is a bug that keeps its traceback."""
  if isinstance(e, XplainError):
    return True
  if not isinstance(e, _LEGACY_TYPES) or e.__traceback__ is None:
    return False
  frames, tb = [], e.__traceback__
  while tb is not None:
    frames.append(tb.tb_frame.f_code)
    tb = tb.tb_next
  ours = [i for i, c in enumerate(frames) if "/xplain_jax/" in c.co_filename.replace("\\", "/")]
  if not ours:
    return False
  code, below = frames[ours[-1]], frames[ours[-1] + 1:]
  json_dir = os.path.dirname(json.__file__)
  if any(not c.co_filename.startswith(json_dir) for c in below):
    return False  # raised by other code it called (a bug there, or a wrong call): a traceback
  path = code.co_filename.replace("\\", "/")
  return any(path.endswith(file) and code.co_name in names
             for file, names in LEGACY_USER_ERROR_SITES.items())


def one_line(e: BaseException) -> str:
  """The exception's message on one line (KeyError quotes stripped; a bare JSON decoding error
  gets the file it came from and what to do)."""
  msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
  if isinstance(e, json.JSONDecodeError):
    name = _json_file(e)
    msg = (f"{name or 'a JSON file of the workdir'} is not valid JSON ({msg}); delete it and "
           "rerun the stage that writes it (metrics.json: the evaluate stage).")
  return " ".join(msg.split()) or type(e).__name__


def _json_file(e: BaseException) -> str | None:
  """The name of the file being parsed when ``e`` was raised (from the traceback's frames)."""
  tb = e.__traceback__
  found = None
  while tb is not None:
    for value in tb.tb_frame.f_locals.values():
      name = getattr(value, "name", None)
      if isinstance(name, str) and hasattr(value, "read"):
        found = name
    tb = tb.tb_next
  return found


def exit_code(e: BaseException) -> int:
  """2 for config/usage errors, 1 for problems found while running."""
  return 2 if isinstance(e, ConfigError) else 1
