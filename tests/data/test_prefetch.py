"""prefetch_to_mesh: the same batches and results as loading each step in place, resumes exactly,
runs at most ``size`` batches ahead, and shuts its threads down when the consumer stops or a
batch fails. The 8-device case runs in a subprocess (the device count is fixed when jax starts).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xplain_jax import data
from xplain_jax.infra import parallel
from xplain_jax.data import prefetch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
N, B = 40, 8  # 5 steps per epoch: start steps 3 and 7 cross an epoch boundary


def _loader(seed: int = 0) -> data.Loader:
  rng = np.random.default_rng(seed)
  src = data.ArraySource({"x": rng.standard_normal((N, 3)).astype(np.float32),
                          "y": rng.integers(0, 5, N).astype(np.int32)})
  return data.Loader(src, B, seed=seed)


def _prefetch_threads() -> list[threading.Thread]:
  return [t for t in threading.enumerate() if t.name.startswith(prefetch.THREAD_NAME_PREFIX)]


def _wait_until(cond, timeout: float = 20.0) -> bool:
  end = time.monotonic() + timeout
  while time.monotonic() < end:
    if cond():
      return True
    time.sleep(0.01)
  return cond()


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("start", [0, 3, 7])
def test_same_batches_as_loader(start, size):
  loader, mesh = _loader(), parallel.make_mesh()
  got = list(prefetch.prefetch_to_mesh(loader, mesh, start_step=start, num_steps=6, size=size))
  assert [s for s, _ in got] == list(range(start, start + 6))
  for step, batch in got:
    want = loader.batch(step)
    assert set(batch) == set(want)
    for k, v in want.items():
      assert isinstance(batch[k], jax.Array)
      assert batch[k].sharding.is_equivalent_to(parallel.data_sharded(mesh), v.ndim)
      np.testing.assert_array_equal(np.asarray(batch[k]), v)
  assert not _prefetch_threads()


def _sgd_run(loader, mesh, w, start, num, size):
  """Linear regression by SGD over steps [start, start+num); the loss of each step."""
  @jax.jit
  def step_fn(w, batch):
    loss_fn = lambda w: jnp.mean((batch["x"] @ w - batch["y"]) ** 2)
    loss, g = jax.value_and_grad(loss_fn)(w)
    return w - 0.1 * g, loss

  losses = []
  if size is None:  # no prefetching: load and place each batch in the loop
    batches = ((s, parallel.to_global(loader.batch(s), mesh)) for s in range(start, start + num))
  else:
    batches = prefetch.prefetch_to_mesh(loader, mesh, start_step=start, num_steps=num, size=size)
  for _, batch in batches:
    w, loss = step_fn(w, batch)
    losses.append(float(loss))
  return w, losses


@pytest.mark.parametrize("size", [1, 2, 4])
def test_same_results_and_exact_resume(size):
  loader, mesh = _loader(1), parallel.make_mesh()
  w0 = jnp.zeros((3,), jnp.float32)
  w_ref, loss_ref = _sgd_run(loader, mesh, w0, 0, 12, None)
  w_pre, loss_pre = _sgd_run(loader, mesh, w0, 0, 12, size)
  np.testing.assert_array_equal(np.asarray(w_pre), np.asarray(w_ref))
  assert loss_pre == loss_ref
  # Cut after 7 steps (mid-epoch) and resume from the saved weights at step 7.
  w_cut, loss_a = _sgd_run(loader, mesh, w0, 0, 7, size)
  w_res, loss_b = _sgd_run(loader, mesh, w_cut, 7, 5, size)
  np.testing.assert_array_equal(np.asarray(w_res), np.asarray(w_ref))
  assert loss_a + loss_b == loss_ref


class _GatedLoader:
  """Records the steps asked for; every step after ``free`` blocks until ``gate`` is set."""

  def __init__(self, free: int):
    self.inner, self.free = _loader(), free
    self.asked: list[int] = []
    self.gate = threading.Event()
    self.lock = threading.Lock()

  def batch(self, step):
    with self.lock:
      self.asked.append(step)
    if step > self.free:
      self.gate.wait(30)
    return self.inner.batch(step)


@pytest.mark.parametrize("size", [1, 3])
def test_prepares_at_most_size_batches_ahead(size):
  loader, start = _GatedLoader(free=2), 2
  gen = prefetch.prefetch_to_mesh(loader, parallel.make_mesh(), start_step=start, num_steps=10,
                                  size=size)
  assert next(gen)[0] == start
  assert _wait_until(lambda: len(loader.asked) == size + 1)  # the consumed one + `size` ahead
  time.sleep(0.2)  # room for a wrong implementation to ask for more
  assert sorted(loader.asked) == list(range(start, start + size + 1))
  loader.gate.set()
  gen.close()
  assert not _prefetch_threads()
  assert max(loader.asked) == start + size


def test_consumer_stopping_early_ends_the_threads():
  loader = _GatedLoader(free=10**9)
  for step, _ in prefetch.prefetch_to_mesh(loader, parallel.make_mesh(), start_step=0,
                                           num_steps=50, size=3):
    if step == 1:
      break
  assert not _prefetch_threads()
  assert max(loader.asked) <= 1 + 3  # the consumed step + 3 ahead; nothing after the loop


def test_consumer_exception_with_closing_ends_the_threads():
  gen = prefetch.prefetch_to_mesh(_loader(), parallel.make_mesh(), start_step=0, num_steps=50,
                                  size=2)
  with pytest.raises(KeyError, match="in the step"):
    with contextlib.closing(gen) as batches:
      for step, _ in batches:
        if step == 2:
          raise KeyError("in the step")
  assert not _prefetch_threads()


class _BrokenLoader:
  def __init__(self, bad_step: int):
    self.inner, self.bad_step = _loader(), bad_step

  def batch(self, step):
    if step == self.bad_step:
      raise OSError(f"cannot read the records of step {step}")
    return self.inner.batch(step)


@pytest.mark.parametrize("size", [0, 1, 3])
def test_worker_exception_surfaces_at_its_step(size):
  seen = []
  with pytest.raises(OSError, match="records of step 5"):
    for step, _ in prefetch.prefetch_to_mesh(_BrokenLoader(5), parallel.make_mesh(),
                                             start_step=2, num_steps=10, size=size):
      seen.append(step)
  assert seen == [2, 3, 4]
  assert _wait_until(lambda: not _prefetch_threads(), timeout=10)


def test_bad_arguments():
  mesh = parallel.make_mesh()
  for kwargs, word in [(dict(size=-1), "size"), (dict(num_steps=-2), "num_steps"),
                       (dict(start_step=-1), "start_step")]:
    args = dict(start_step=0, num_steps=3, size=2) | kwargs
    with pytest.raises(ValueError, match=word):
      next(prefetch.prefetch_to_mesh(_loader(), mesh, **args))
  assert list(prefetch.prefetch_to_mesh(_loader(), mesh, start_step=4, num_steps=0)) == []


_EIGHT_DEVICES = r"""
import numpy as np, jax
from xplain_jax import data
from xplain_jax.infra import parallel
from xplain_jax.data import prefetch
assert jax.device_count() == 8, jax.devices()
rng = np.random.default_rng(0)
src = data.ArraySource({"x": rng.standard_normal((40, 3)).astype(np.float32),
                        "image": rng.standard_normal((40, 4, 4, 3)).astype(np.float32)})
loader, mesh = data.Loader(src, 16, seed=5), parallel.make_mesh()
for start in (0, 3, 7):
  for size in (1, 2, 3, 4):
    got = list(prefetch.prefetch_to_mesh(loader, mesh, start_step=start, num_steps=5, size=size))
    assert [s for s, _ in got] == list(range(start, start + 5))
    for step, batch in got:
      want = loader.batch(step)
      for k, v in want.items():
        shards = sorted(batch[k].addressable_shards, key=lambda s: s.index[0].start or 0)
        assert len(shards) == 8, k
        for i, s in enumerate(shards):  # device i holds rows 2i, 2i+1
          np.testing.assert_array_equal(np.asarray(s.data), v[2 * i:2 * i + 2])
print("OK")
"""


@pytest.mark.slow
def test_eight_emulated_devices():
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8")
  env["JAX_PLATFORMS"] = "cpu"
  proc = subprocess.run([sys.executable, "-c", _EIGHT_DEVICES], capture_output=True, text=True,
                        env=env, timeout=240, cwd=ROOT)
  assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-3000:]
