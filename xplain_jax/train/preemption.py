"""SIGTERM while a stage trains (a preempted job, ``scancel``, a study stopping its runs): the
training loop saves a checkpoint after the step under way and then stops, so a resumed run
loses at most that step instead of everything since the last regular checkpoint.

One process: ``Preemption`` notes SIGTERM (a second one within its own handling interrupts at
once, as before). Several processes must agree on the step they save at; there the JAX
coordination service's preemption sync point decides (``multihost_utils.
reached_preemption_sync_point``, what orbax's ``reached_preemption`` calls), when the
distributed runtime has it.

The loop raises ``KeyboardInterrupt(signal.SIGTERM)`` after the save: the command line turns it
into its one "interrupted; rerun the same command to resume" line and exit status 143.
"""

from __future__ import annotations

import signal
import threading

import jax


class Preemption:
  """A context that notes SIGTERM while a stage trains (main thread of one process only).

  Attributes:
    requested: a SIGTERM arrived since the context was entered.
  """

  def __init__(self):
    self.requested = False
    self._previous = None
    self._installed = False

  def __enter__(self) -> "Preemption":
    if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
      self._previous = signal.getsignal(signal.SIGTERM)
      signal.signal(signal.SIGTERM, self._note)
      self._installed = True
    return self

  def __exit__(self, *exc) -> None:
    if self._installed:
      signal.signal(signal.SIGTERM, self._previous)
      self._installed = False

  def _note(self, signum, frame) -> None:
    if self.requested and callable(self._previous):  # a second SIGTERM: stop at once
      self._previous(signum, frame)
      return
    self.requested = True

  def reached(self, step: int) -> bool:
    """Whether to save at ``step`` (just finished) and stop: a SIGTERM was noted (one
    process) or every process reached the coordination service's preemption sync point."""
    if jax.process_count() == 1:
      return self.requested
    try:
      from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
      return bool(multihost_utils.reached_preemption_sync_point(step))
    except (RuntimeError, AttributeError):  # no preemption service in this runtime
      return False


def stop() -> None:
  """Ends the stage after its preemption checkpoint (see the module docstring)."""
  raise KeyboardInterrupt(signal.SIGTERM)
