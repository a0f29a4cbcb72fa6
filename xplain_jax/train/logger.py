"""Progress on the console and metric logs as JSON lines in ``workdir/logs/<stage>.jsonl``."""

from __future__ import annotations

import json
import math
import os
import sys
import time

import jax


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


class MetricLogger:
  """Writes one JSON object per logged step; on resume, drops lines past the restored step.

  Args:
    workdir: the run's directory.
    stage: stage name (the log file's name).
    total_steps: for the progress display.
    start_step: the step training resumes from; log lines with a larger step are dropped so a
      resumed run's log equals an uninterrupted one's.
  """

  def __init__(self, workdir: str, stage: str, total_steps: int, start_step: int = 0):
    self.stage, self.total, self.path = stage, total_steps, os.path.join(workdir, "logs", f"{stage}.jsonl")
    self._main = jax.process_index() == 0
    self._t0, self._s0 = time.time(), start_step
    if self._main:
      os.makedirs(os.path.dirname(self.path), exist_ok=True)
      kept = []
      if os.path.exists(self.path):
        with open(self.path) as f:
          for line in f:
            try:
              rec = json.loads(line)
            except json.JSONDecodeError:
              continue  # a line cut by a kill
            if rec.get("step", 0) <= start_step:
              kept.append(line if line.endswith("\n") else line + "\n")
      with open(self.path + ".tmp", "w") as f:
        f.writelines(kept)
      os.replace(self.path + ".tmp", self.path)

  def log(self, step: int, metrics: dict) -> None:
    """Checks ``metrics`` are finite, appends them to the log and prints a progress line."""
    bad = first_non_finite(metrics)
    if bad is not None:
      raise NonFiniteError(non_finite_message(self.stage, step, *bad))
    rec = {"step": int(step), **{k: float(v) for k, v in metrics.items()}}
    if not self._main:
      return
    with open(self.path, "a") as f:
      f.write(json.dumps(rec) + "\n")
    rate = (step - self._s0) / max(time.time() - self._t0, 1e-9)
    shown = " ".join(f"{k}={v:.4g}" for k, v in rec.items() if k not in ("step", "epoch"))
    pct = 100.0 * step / max(self.total, 1)
    bar = "#" * int(pct // 5)
    print(f"[{self.stage}] {step:>6}/{self.total} |{bar:<20}| {rate:6.1f} step/s {shown}",
          file=sys.stderr, flush=True)
