"""Metric writers: one JSON line per logged step and a progress line with rate and ETA.

The writers follow clu's ``MetricWriter`` interface (``write_scalars(step, scalars)``,
``flush()``, ``close()``) without importing clu, whose ``metric_writers`` package imports
TensorFlow at import time. ``make_writer`` combines

* ``JsonlWriter``: ``workdir/logs/<stage>.jsonl``; on resume the lines past the restored step are
  dropped, so a resumed run's log equals an uninterrupted run's;
* ``TensorBoardWriter``: TensorBoard event files in ``workdir/logs/<stage>/``, beside the JSONL
  log and equal to it (written with tensorboardX, which needs no TensorFlow), so that
  ``tensorboard --logdir=WORKDIR`` (or a study's folder) shows every stage's curves;
* ``ConsoleWriter``: tqdm's meter (``50% 8/16 [00:03<00:03, 2.50it/s, loss=...]``) on stderr.

Another writer plugs in with the same three methods.

Only process 0 writes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time

import jax
from tqdm import tqdm

from xplain_jax import utils
from xplain_jax.errors import NonFiniteError


def first_non_finite(metrics: dict) -> tuple[str, float] | None:
  """The first ``(name, value)`` of ``metrics`` (name -> scalar) that is NaN or Inf, else None."""
  for k, v in metrics.items():
    v = float(v)
    if not math.isfinite(v):
      return k, v
  return None


def non_finite_message(stage: str, step: int, quantity: str, value: float,
                       kept: str = "the last good checkpoint is kept in the workdir") -> str:
  """One line naming the stage, the step and the quantity, and what to do."""
  return (f"stage {stage!r}, step {step}: {quantity} is {value}; {kept}. Check the inputs for "
          "NaN, or lower the learning rate or set grad_clip in the optimizer config and run in a "
          "new --workdir.")


def read_records(path: str) -> tuple[list[dict], int]:
  """The records of a JSON-lines log and how many of its lines could not be read.

  A line cut by a kill, a line that is not a JSON object with an integer "step", and bytes that
  are not UTF-8 (a damaged file) are counted, never raised.

  Args:
    path: str, a ``logs/<stage>.jsonl`` file (absent: no records).

  Returns:
    (records, damaged): the readable records in file order, and the count of the others.
  """
  records, damaged = [], 0
  if not os.path.isfile(path):
    return records, damaged
  with open(path, "rb") as f:
    for raw in f:
      try:
        rec = json.loads(raw.decode("utf-8"))
      except (UnicodeDecodeError, json.JSONDecodeError):
        damaged += bool(raw.strip())
        continue
      if isinstance(rec, dict) and isinstance(rec.get("step"), int):
        records.append(rec)
      else:
        damaged += 1
  return records, damaged


class JsonlWriter:
  """``{"step": k, name: value, ...}`` per line in ``path``; lines past ``start_step`` dropped.

  The file is rewritten on opening with the records it keeps (``self.records``): a damaged log
  (a line cut by a kill, bytes that are not a JSON line) loses its unreadable lines, with one
  warning naming the file, and the stage goes on.
  """

  def __init__(self, path: str, start_step: int = 0):
    self.path = path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    records, damaged = read_records(path)
    if damaged > 1:  # one line cut by a kill is the ordinary resume, not damage
      logging.warning("%s: %d unreadable lines dropped (the log was damaged); the stage's "
                      "curves start again from what could be read", path, damaged)
    self.records = [r for r in records if r["step"] <= start_step]
    utils.write_atomic(path, lambda f: f.writelines(json.dumps(r) + "\n" for r in self.records),
                       binary=False)

  def write_scalars(self, step: int, scalars: dict) -> None:
    try:
      with open(self.path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"step": int(step), **scalars}) + "\n")
    except OSError as e:
      raise utils.write_error(e, self.path) from None

  def flush(self) -> None:
    pass

  def close(self) -> None:
    pass


class TensorBoardWriter:
  """TensorBoard event files of one stage in ``logdir``, one tag per scalar.

  Written with tensorboardX (TensorFlow is never imported). The folder is rewritten from
  ``records`` (the JSON lines a resumed log keeps), so the event files hold exactly what the
  JSON-lines log holds, resumed or not.
  """

  def __init__(self, logdir: str, records: list[dict] = ()):
    self._logdir, self._records, self._writer = logdir, list(records), None

  def _open(self):
    """Rewrites the folder from the kept records, at the first new step only: a stage that is
    restored whole (no step left to run) leaves its event files as they are."""
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    shutil.rmtree(self._logdir, ignore_errors=True)
    self._writer = SummaryWriter(logdir=self._logdir)
    for rec in self._records:
      self._add(rec["step"], {k: v for k, v in rec.items() if k != "step"})

  def _add(self, step: int, scalars: dict) -> None:
    for name, value in scalars.items():
      if isinstance(value, (int, float)) and not isinstance(value, bool):
        self._writer.add_scalar(name, float(value), global_step=int(step))

  def write_scalars(self, step: int, scalars: dict) -> None:
    try:
      if self._writer is None:
        self._open()
      self._add(step, scalars)
    except OSError as e:
      raise utils.write_error(e, os.path.join(self._logdir, "")) from None

  def flush(self) -> None:
    if self._writer is not None:
      self._writer.flush()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()


class ConsoleWriter:
  """A progress line with rate and ETA per logged step (tqdm's meter), on stderr."""

  def __init__(self, stage: str, total_steps: int, start_step: int = 0):
    self.stage, self.total, self._s0, self._t0 = stage, total_steps, start_step, time.time()

  def write_scalars(self, step: int, scalars: dict) -> None:
    shown = " ".join(f"{k}={v:.4g}" for k, v in scalars.items() if k != "epoch")
    elapsed = time.time() - self._t0
    rate = (step - self._s0) / max(elapsed, 1e-9)
    line = tqdm.format_meter(step, self.total, elapsed, prefix=f"[{self.stage}]", rate=rate,
                             postfix=shown, ncols=0, initial=self._s0)
    print(line, file=sys.stderr, flush=True)

  def flush(self) -> None:
    sys.stderr.flush()

  def close(self) -> None:
    self.flush()


class MultiWriter:
  """Checks the scalars are finite, then passes them to every writer."""

  def __init__(self, stage: str, writers: list):
    self.stage, self.writers = stage, writers

  def write_scalars(self, step: int, scalars: dict) -> None:
    bad = first_non_finite(scalars)
    if bad is not None:
      raise NonFiniteError(non_finite_message(self.stage, step, *bad))
    scalars = {k: float(v) for k, v in scalars.items()}
    for w in self.writers:
      w.write_scalars(step, scalars)

  def flush(self) -> None:
    for w in self.writers:
      w.flush()

  def close(self) -> None:
    for w in self.writers:
      w.close()


def _probe(folder: str) -> None:
  """Makes ``folder`` and writes and removes a file in it; ``StorageError`` (one line) when
  either fails."""
  try:
    os.makedirs(folder, exist_ok=True)
    fd, path = tempfile.mkstemp(dir=folder, prefix=".probe-")
    os.close(fd)
    os.remove(path)
  except OSError as e:
    raise utils.write_error(e, os.path.join(folder, "")) from None


def check_log_folders(workdir: str, stages) -> None:
  """Raises ``StorageError`` unless the log folders of every one of ``stages`` can be written
  (``logs/`` for the JSON lines, ``logs/<stage>/`` for TensorBoard): checked before any stage
  runs, so that a folder without write permission stops the run at once, not at the first
  logged step of a stage that comes after hours of training. Only process 0 writes logs."""
  if jax.process_index() != 0:
    return
  logs = os.path.join(workdir, "logs")
  _probe(logs)
  for stage in stages:
    _probe(os.path.join(logs, stage))


def make_writer(workdir: str | None, stage: str, total_steps: int, *,
                start_step: int = 0) -> MultiWriter:
  """The writers of one stage (none but the finiteness check on processes other than 0).

  Raises:
    StorageError: the stage's log folders cannot be written (checked before training).
  """
  writers = []
  if jax.process_index() == 0:
    writers = [ConsoleWriter(stage, total_steps, start_step)]
    if workdir is not None:
      check_log_folders(workdir, [stage])
      logs = os.path.join(workdir, "logs")
      jsonl = JsonlWriter(os.path.join(logs, f"{stage}.jsonl"), start_step)
      writers[:0] = [jsonl, TensorBoardWriter(os.path.join(logs, stage), jsonl.records)]
  return MultiWriter(stage, writers)
