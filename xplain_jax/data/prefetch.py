"""Batches for a training loop, placed on the devices ahead of the step that uses them.

``prefetch_to_mesh`` is the one place a training loop takes its batches from. While the
consumer runs step ``k``, up to ``size`` host threads load batches ``k+1 .. k+size``
(``loader.batch``: file reads, JPEG decoding, resizing) and start their host-to-device copies
(``parallel.to_global``), so the accelerator finds its next batch already on the device (double
buffering for ``size=1``). Batches come out in step order whatever order the threads finish in,
and batch ``k`` is ``loader.batch(k)`` exactly, so a resumed run (``start_step`` = its restored
step) sees the same data as an uninterrupted one.

Shutdown is clean: when the consumer stops early (``break``, ``close()``, an exception in its
loop body) the batches not yet started are cancelled and the running ones are waited for; an
exception raised while preparing batch ``k`` is raised again in the consumer when it reaches
step ``k``, after batches ``< k`` were delivered.
"""

from __future__ import annotations

import collections
import concurrent.futures
from typing import Iterator

from xplain_jax.infra import parallel

THREAD_NAME_PREFIX = "xplain-prefetch"
_DONE = object()


def _check(start_step: int, num_steps: int, size: int) -> None:
  if start_step < 0:
    raise ValueError(f"start_step must be >= 0, got {start_step}; pass the restored step "
                     "(0 for a fresh run).")
  if num_steps < 0:
    raise ValueError(f"num_steps must be >= 0, got {num_steps}; pass total_steps - start_step.")
  if size < 0:
    raise ValueError(f"prefetch size must be >= 0 (0: no prefetching), got {size}.")


def prefetch_to_mesh(loader, mesh, *, start_step: int, num_steps: int,
                     size: int = 2) -> Iterator[tuple[int, dict]]:
  """Yields ``(step, global_batch)`` for ``step`` in ``[start_step, start_step + num_steps)``.

  Args:
    loader: ``xplain_jax.data.Loader`` (anything with ``batch(step) -> dict of numpy arrays``
      of this process's rows); batch ``k`` is ``loader.batch(k)``.
    mesh: the ``('data',)`` mesh the batch is sharded over (first axis).
    start_step: the first step to yield (a resumed run's restored step).
    num_steps: how many steps to yield.
    size: how many batches may be prepared ahead of the one being consumed, each by its own
      host thread; 0 loads each batch in the consumer's thread when it is asked for.

  Yields:
    ``(step, batch)`` with ``batch`` a dict of global ``jax.Array`` sharded along axis 0.

  Raises:
    Whatever ``loader.batch`` or the transfer raised for a step, when that step is reached.
  """
  _check(start_step, num_steps, size)
  steps = range(start_step, start_step + num_steps)
  prepare = lambda step: parallel.to_global(loader.batch(step), mesh)
  if size == 0:
    for step in steps:
      yield step, prepare(step)
    return
  pool = concurrent.futures.ThreadPoolExecutor(max_workers=size,
                                               thread_name_prefix=THREAD_NAME_PREFIX)
  pending: collections.deque = collections.deque()
  upcoming = iter(steps)
  try:
    for step in upcoming:  # fill the buffer: the first `size` batches
      pending.append((step, pool.submit(prepare, step)))
      if len(pending) == size:
        break
    while pending:
      step, future = pending.popleft()
      nxt = next(upcoming, _DONE)
      if nxt is not _DONE:  # keep `size` batches in preparation while `step` is consumed
        pending.append((nxt, pool.submit(prepare, nxt)))
      yield step, future.result()  # re-raises the worker's exception for this step
  finally:
    for _, future in pending:
      future.cancel()
    pool.shutdown(wait=True, cancel_futures=True)
