"""Data parallelism over every local device and every host: a ``('data',)`` mesh.

``jax.jit`` with ``NamedSharding`` replaces the classic ``jax.pmap`` loop: parameters are
replicated (``P()``), batches are split along their first axis (``P('data')``), and XLA inserts
the gradient all-reduce itself. BatchNorm statistics are then taken over the *global* batch, and
the update is the same as on a single device (tests/infra/test_parallel.py checks it), with no
``pmean`` bookkeeping to get wrong. The same code runs on one CPU, a multi-GPU host or a TPU
pod slice; multi-host runs start with ``initialize_distributed`` and each process feeds only its
own rows of every global batch (``xplain_jax.data.input_pipeline.Loader``).
"""

from __future__ import annotations

import os
import sys
import threading

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from xplain_jax.errors import ConfigError

DATA_AXIS = "data"


def initialize_distributed(coordinator_address: str = "", num_processes: int = 0,
                           process_id: int = -1, *, timeout_s: int = 300) -> None:
  """Starts multi-host JAX when asked for, by arguments or by the environment.

  With a coordinator address (``host:port``), ``num_processes`` and ``process_id`` given (or the
  environment variables ``XPLAIN_COORDINATOR``, ``XPLAIN_NUM_PROCESSES``, ``XPLAIN_PROCESS_ID``),
  calls ``jax.distributed.initialize`` with them. With ``coordinator_address == "auto"`` it calls
  ``jax.distributed.initialize()`` without arguments, which detects SLURM and Cloud TPU pods.
  Without any of these it does nothing (single process). Call it before anything else touches
  jax (the backend is created with the process's place in the cluster).

  On CPU, cross-process collectives need no extra setting: once ``jax.distributed`` is up, jax
  (0.5 and later) builds the CPU client with gloo collectives over TCP
  (``jax_cpu_collectives_implementation`` defaults to "gloo"; set it to "mpi" before this call
  to use MPI instead). tests/end_to_end/test_multihost.py runs two processes on loopback this way.

  The wait for the coordinator and the other processes is bounded by ``timeout_s`` (config
  field ``distributed.initialization_timeout``): when they have not all joined by then, the
  process prints one ``error:`` line naming the coordinator and the process count and exits
  with status 1 (instead of JAX's native abort).
  """
  address = coordinator_address or os.environ.get("XPLAIN_COORDINATOR", "")
  if not address:
    return
  if jax.distributed.is_initialized():
    return
  if timeout_s <= 0:
    raise ConfigError(f"config.distributed.initialization_timeout={timeout_s} is invalid: "
                      "must be a positive number of seconds.")
  if address == "auto":
    with _watchdog("the coordinator found by jax (auto)", 0, -1, timeout_s):
      jax.distributed.initialize(initialization_timeout=timeout_s + _JAX_GRACE_S)
    return
  n = num_processes or int(os.environ.get("XPLAIN_NUM_PROCESSES", "0"))
  pid = process_id if process_id >= 0 else int(os.environ.get("XPLAIN_PROCESS_ID", "-1"))
  if n <= 0 or pid < 0:
    raise ConfigError("multi-host start needs the number of processes and this process's id: "
                      "set config.distributed.num_processes/process_id or XPLAIN_NUM_PROCESSES/"
                      "XPLAIN_PROCESS_ID.")
  if pid >= n:
    raise ConfigError(f"config.distributed.process_id={pid} is invalid: a run of {n} processes "
                      f"has ids 0..{n - 1}.")
  with _watchdog(address, n, pid, timeout_s):
    jax.distributed.initialize(coordinator_address=address, num_processes=n, process_id=pid,
                               initialization_timeout=timeout_s + _JAX_GRACE_S)


_JAX_GRACE_S = 30  # JAX's own timeout fires this much later than ours


class _watchdog:  # pylint: disable=invalid-name
  """Ends the process with one ``error:`` line when the block has not finished in time.

  JAX's coordination client aborts natively (exit 134, a C++ stack trace) when its own timeout
  passes, so the only clean way out is to leave before it does.
  """

  def __init__(self, address: str, num_processes: int, process_id: int, timeout_s: int):
    self._timer = threading.Timer(timeout_s, self._give_up,
                                  args=(address, num_processes, process_id, timeout_s))
    self._timer.daemon = True

  @staticmethod
  def _give_up(address, num_processes, process_id, timeout_s) -> None:
    who = f"process {process_id} of {num_processes}" if num_processes else "this process"
    print(f"error: the multi-host start timed out after {timeout_s} s: {who} waited for the "
          f"coordinator {address} and all {num_processes or 'other'} processes to join; start "
          "every process with the same coordinator address and process count (check that "
          "the coordinator host and port can be reached), or raise "
          "config.distributed.initialization_timeout.", file=sys.stderr, flush=True)
    os._exit(1)  # pylint: disable=protected-access

  def __enter__(self):
    self._timer.start()
    return self

  def __exit__(self, *exc):
    self._timer.cancel()


def make_mesh(num_devices: int = 0) -> Mesh:
  """A 1-D ``('data',)`` mesh over all devices (or the first ``num_devices``).

  Devices are ordered by process, so process ``p``'s devices hold one contiguous block of rows
  of each global batch: block ``p`` of ``P``, the rows ``Loader(process_index=p)`` loads.
  """
  devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
  if num_devices and jax.process_count() > 1 and num_devices != len(devices):
    raise ConfigError(f"config.num_devices={num_devices} picks a subset of the {len(devices)} "
                     f"devices of a {jax.process_count()}-process run; set it to 0 (all).")
  if num_devices:
    if num_devices > len(devices):
      raise ConfigError(f"config.num_devices={num_devices} asks for {num_devices} devices but only "
                       f"{len(devices)} are visible; "
                       "lower config.num_devices or set it to 0 for all.")
    devices = devices[:num_devices]
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  """Sharding of parameters and optimiser state: one full copy per device."""
  return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh) -> NamedSharding:
  """Sharding of batches: split along the first (batch) axis."""
  return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh, what: str = "batch_size") -> None:
  """Raises a clear error unless the global batch splits evenly over the mesh's devices."""
  n = mesh.devices.size
  if batch_size % n:
    raise ConfigError(f"{what} {batch_size} does not split evenly over {n} devices; "
                     f"use a multiple of {n}.")


def to_global(local_batch, mesh: Mesh):
  """Turns this process's rows of a batch (numpy pytree) into global, data-sharded jax arrays."""
  sharding = data_sharded(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
                      local_batch)


def replicate(tree, mesh: Mesh):
  """Places a pytree (parameters, optimiser state) replicated on every device of the mesh."""
  return jax.device_put(tree, replicated(mesh))


def sync_processes(name: str) -> None:
  """Blocks until every process has reached the barrier ``name`` (a no-op with one process).

  Use it where one process writes files that the others read next, e.g. after process 0 has
  written a cache and before every process loads it.
  """
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


def to_host(tree):
  """Fetches a (possibly sharded) pytree to numpy on every process."""
  from jax.experimental import multihost_utils
  if jax.process_count() > 1:
    return multihost_utils.process_allgather(tree, tiled=True)
  return jax.tree.map(np.asarray, tree)
