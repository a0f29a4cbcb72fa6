"""Metric writers: one JSON line per logged step and a progress line with rate and ETA.

The writers follow clu's ``MetricWriter`` interface (``write_scalars(step, scalars)``,
``flush()``, ``close()``) without importing clu, whose ``metric_writers`` package imports
TensorFlow at import time. ``make_writer`` combines

* ``JsonlWriter``: ``workdir/logs/<stage>.jsonl``; on resume the lines past the restored step are
  dropped, so a resumed run's log equals an uninterrupted run's;
* ``ConsoleWriter``: tqdm's meter (``50% 8/16 [00:03<00:03, 2.50it/s, loss=...]``) on stderr.

Another writer (e.g. TensorBoard event files) plugs in with the same three methods.

Only process 0 writes.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

import jax
from tqdm import tqdm

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


class JsonlWriter:
  """``{"step": k, name: value, ...}`` per line in ``path``; lines past ``start_step`` dropped."""

  def __init__(self, path: str, start_step: int = 0):
    self.path = path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    kept = []
    if os.path.exists(path):
      with open(path) as f:
        for line in f:
          try:
            rec = json.loads(line)
          except json.JSONDecodeError:
            continue  # a line cut by a kill
          if rec.get("step", 0) <= start_step:
            kept.append(line if line.endswith("\n") else line + "\n")
    with open(path + ".tmp", "w") as f:
      f.writelines(kept)
    os.replace(path + ".tmp", path)

  def write_scalars(self, step: int, scalars: dict) -> None:
    with open(self.path, "a") as f:
      f.write(json.dumps({"step": int(step), **scalars}) + "\n")

  def flush(self) -> None:
    pass

  def close(self) -> None:
    pass


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


def make_writer(workdir: str | None, stage: str, total_steps: int, *, start_step: int = 0) -> MultiWriter:
  """The writers of one stage (none but the finiteness check on processes other than 0)."""
  writers = []
  if jax.process_index() == 0:
    writers = [ConsoleWriter(stage, total_steps, start_step)]
    if workdir is not None:
      logs = os.path.join(workdir, "logs")
      writers.insert(0, JsonlWriter(os.path.join(logs, f"{stage}.jsonl"), start_step))
  return MultiWriter(stage, writers)
