"""Batches for a training loop, placed on the devices ahead of the step that uses them.

``prefetch_to_mesh`` is the one place a training loop takes its batches from. This version loads
and transfers synchronously; its contract (the same batches, in the same order, for the same
``(loader, start_step, num_steps)``) is what any buffered version must keep.
"""

from __future__ import annotations

from typing import Iterator

from xplain_jax import parallel


def prefetch_to_mesh(loader, mesh, *, start_step: int, num_steps: int,
                     size: int = 2) -> Iterator[tuple[int, dict]]:
  """Yields ``(step, global_batch)`` for ``step`` in ``[start_step, start_step + num_steps)``.

  Args:
    loader: ``xplain_jax.data.Loader``; batch ``k`` is ``loader.batch(k)``.
    mesh: the ``('data',)`` mesh the batch is sharded over (first axis).
    start_step: the first step to yield (a resumed run's restored step).
    num_steps: how many steps to yield.
    size: how many batches may be prepared ahead of the one being consumed.

  Yields:
    ``(step, batch)`` with ``batch`` a dict of global ``jax.Array`` sharded along axis 0.
  """
  del size  # synchronous: nothing is prepared ahead
  for step in range(start_step, start_step + num_steps):
    yield step, parallel.to_global(loader.batch(step), mesh)
