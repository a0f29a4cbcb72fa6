"""Two processes on loopback train exactly as one: the real pipeline, multi-host, on CPU.

Two workers (tests/end_to_end/_multihost_worker.py) start ``jax.distributed`` through the
pipeline's own ``parallel.initialize_distributed`` (``XPLAIN_COORDINATOR=127.0.0.1:<free port>``,
``XPLAIN_NUM_PROCESSES=2``, ``XPLAIN_PROCESS_ID=0|1``), one CPU device each; cross-process
collectives on CPU are gloo's (jax's default once ``jax.distributed`` is up). Each process loads
only its half of every global batch (``Loader(process_index, process_count)``) and they run the
performer and explainer stages of ``pipeline.train_and_evaluate`` in one shared workdir. A third
process runs the same config alone. The tests compare what the runs wrote: the per-step training
logs (written by process 0 only, so one line per step) and the final orbax checkpoints (saved
by both processes together and read back here as numpy).

Tolerances are those of tests/infra/test_parallel.py, which measures and justifies them: per
element ``|a − b| ≤ ATOL + RTOL·|b|`` with ``RTOL = 1e-5``, ``ATOL = 1e-6`` for the performer,
the logged metrics and BatchNorm statistics, and ``EXPLAINER_ATOL = 5e-5`` (5 % of the learning
rate) for the explainer's parameters and Adam moments (float32 reassociation amplified by
BatchNorm's backward pass and Adam; measured here ~6e-6).

Every subprocess has a deadline (``TIMEOUT_S``) and all are killed when one fails, so a hang
fails the test instead of blocking it.

The evaluate stage runs too: ``cache.featurize_split`` waits at a barrier
(``parallel.sync_processes``) until process 0 has written the feature cache, and
``metrics.json`` is compared with the single-process run's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_multihost_worker.py")
NUM_PROCESSES = 2
STAGES = "performer,explainer,evaluate"
CKPT_STAGES = ("performer", "explainer_prior")
TOTAL_STEPS = 8  # _multihost_worker.small_config: 2 epochs x 128 / 32
RTOL, ATOL, EXPLAINER_ATOL = 1e-5, 1e-6, 5e-5
TIMEOUT_S = 240
# Less LLVM optimisation: each run compiles ~2x faster (the runs are mostly compilation). All
# three runs use the same flags.
FAST_COMPILE_FLAGS = "--xla_backend_optimization_level=0"


def _free_port() -> int:
  try:
    import portpicker
    return portpicker.pick_unused_port()
  except ImportError:
    import socket
    with socket.socket() as s:
      s.bind(("127.0.0.1", 0))
      return s.getsockname()[1]


def _base_env() -> dict:
  env = {k: v for k, v in os.environ.items() if not k.startswith("XPLAIN_")}
  env.update(JAX_PLATFORMS="cpu", XLA_FLAGS=FAST_COMPILE_FLAGS)  # one CPU device per process
  return env


def _run_all(commands: list[tuple[list[str], dict, str]], timeout_s: float) -> None:
  """Starts every command at once and waits; kills them all when one fails or time runs out."""
  procs = []
  for cmd, env, log in commands:
    with open(log, "w") as fh:
      procs.append(subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT))
  deadline = time.monotonic() + timeout_s
  failed = None
  try:
    while any(p.poll() is None for p in procs):
      bad = [i for i, p in enumerate(procs) if p.poll() not in (None, 0)]
      if bad or time.monotonic() > deadline:
        failed = bad[0] if bad else "timeout"
        break
      time.sleep(0.2)
    else:
      bad = [i for i, p in enumerate(procs) if p.returncode]
      failed = bad[0] if bad else None
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  if failed is not None:
    i = 0 if failed == "timeout" else failed
    with open(commands[i][2]) as fh:
      tail = fh.read()[-6000:]
    what = f"timed out after {timeout_s} s" if failed == "timeout" else f"process {i} failed"
    pytest.fail(f"{what}; log of process {i}:\n{tail}")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """Workdirs ``{"multi": ..., "single": ...}`` after the two- and one-process runs."""
  base = tmp_path_factory.mktemp("multihost")
  dirs = {"multi": str(base / "multi"), "single": str(base / "single")}
  coordinator = f"127.0.0.1:{_free_port()}"
  commands = []
  for i in range(NUM_PROCESSES):
    env = dict(_base_env(), XPLAIN_COORDINATOR=coordinator,
               XPLAIN_NUM_PROCESSES=str(NUM_PROCESSES), XPLAIN_PROCESS_ID=str(i))
    commands.append(([sys.executable, WORKER, dirs["multi"], STAGES], env,
                     str(base / f"multi-{i}.log")))
  commands.append(([sys.executable, WORKER, dirs["single"], STAGES], _base_env(),
                   str(base / "single.log")))
  _run_all(commands, TIMEOUT_S)
  return dirs


def _read_json(path: str):
  with open(path) as f:
    return json.load(f)


def _read_log(workdir: str, stage: str) -> list[dict]:
  with open(os.path.join(workdir, "logs", f"{stage}.jsonl")) as f:
    return [json.loads(line) for line in f]


def _restore_numpy(workdir: str, stage: str, step: int) -> dict:
  """The train state of checkpoint ``step`` of ``stage`` as numpy arrays."""
  import jax
  import orbax.checkpoint as ocp
  path = os.path.join(workdir, stage, "ckpt", str(step), "state")
  ckptr = ocp.StandardCheckpointer()
  tree = ckptr.metadata(path).item_metadata.tree
  return ckptr.restore(path, jax.tree.map(lambda m: np.zeros(m.shape, m.dtype), tree))


@pytest.mark.slow
def test_each_process_loads_its_half(runs):
  infos = []
  for i in range(NUM_PROCESSES):
    infos.append(_read_json(os.path.join(runs["multi"], f"run_info-{i}.json")))
  single = _read_json(os.path.join(runs["single"], "run_info-0.json"))
  assert single["process_count"] == 1 and single["rows_per_batch"] == 32
  for i, info in enumerate(infos):
    assert info["process_index"] == i and info["process_count"] == NUM_PROCESSES
    assert info["device_count"] == NUM_PROCESSES and info["local_device_count"] == 1
    assert info["rows_per_batch"] == 32 // NUM_PROCESSES
  # Process 0's rows then process 1's are exactly the single run's global batch.
  rows = infos[0]["rows_of_batch_0"] + infos[1]["rows_of_batch_0"]
  assert rows == single["rows_of_batch_0"]
  assert not set(infos[0]["rows_of_batch_0"]) & set(infos[1]["rows_of_batch_0"])


@pytest.mark.slow
@pytest.mark.parametrize("stage", CKPT_STAGES)
def test_training_logs_equal(runs, stage):
  """Same metrics at every step; process 0 alone wrote the log (one line per step)."""
  multi, single = _read_log(runs["multi"], stage), _read_log(runs["single"], stage)
  assert [r["step"] for r in multi] == list(range(1, TOTAL_STEPS + 1))
  assert [r["step"] for r in single] == list(range(1, TOTAL_STEPS + 1))
  # Explainer metrics pass through BatchNorm's backward over a batch split across processes:
  # float32 reassociation reaches ~3e-5 relative there (grad_norm), as for its parameters.
  rtol = RTOL if stage == "performer" else 1e-4
  for a, b in zip(multi, single):
    assert a.keys() == b.keys()
    for k in a:
      np.testing.assert_allclose(a[k], b[k], rtol=rtol, atol=ATOL,
                                 err_msg=f"{stage} step {a['step']} {k}")


@pytest.mark.slow
@pytest.mark.parametrize("stage", CKPT_STAGES)
def test_final_state_equal(runs, stage):
  """The last checkpoint (params, Adam moments, BatchNorm statistics) of 2 processes == 1."""
  import jax
  multi = _restore_numpy(runs["multi"], stage, TOTAL_STEPS)
  single = _restore_numpy(runs["single"], stage, TOTAL_STEPS)
  halfway = _restore_numpy(runs["single"], stage, TOTAL_STEPS // 2)
  assert int(multi["step"]) == int(single["step"]) == TOTAL_STEPS
  a, b = (dict(jax.tree_util.tree_leaves_with_path(t)) for t in (multi, single))
  assert a.keys() == b.keys()
  for path in a:
    key = jax.tree_util.keystr(path)
    atol = EXPLAINER_ATOL if stage.startswith("explainer") and "batch_stats" not in key else ATOL
    np.testing.assert_allclose(a[path], b[path], rtol=RTOL, atol=atol,
                               err_msg=f"{stage}{key}: 2 processes vs 1")
  # The comparison can fail: the last 4 steps moved the parameters far more than the tolerance.
  moved = max(float(np.max(np.abs(x - y))) for x, y in
              zip(jax.tree.leaves(single["params"]), jax.tree.leaves(halfway["params"])))
  assert moved > 20 * EXPLAINER_ATOL


def _numbers(tree, prefix=""):
  """Flattens a metrics.json dict to ``{"a/b": float}`` (strings and measured times left out)."""
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_numbers(v, f"{prefix}{k}/"))
    elif isinstance(v, (int, float)) and "seconds" not in k:  # measured times differ per run
      out[prefix + k] = float(v)
  return out


@pytest.mark.slow
def test_metrics_json_equal(runs):
  """Evaluation of the two-process run matches the single-process one (metrics.json)."""
  if "evaluate" not in STAGES:
    pytest.skip("the evaluate stage is not run with two processes (see the module docstring)")
  multi, single = (_numbers(_read_json(os.path.join(runs[r], "metrics.json")))
                   for r in ("multi", "single"))
  assert multi.keys() == single.keys() and multi
  for k in multi:
    np.testing.assert_allclose(multi[k], single[k], rtol=1e-4, atol=1e-5, err_msg=k)


@pytest.mark.slow
def test_checkpoints_and_markers_complete(runs):
  """Both runs leave the same finished checkpoints and stage markers, no temporary files."""
  for stage in CKPT_STAGES:
    for run in ("multi", "single"):
      ckpt = os.path.join(runs[run], stage, "ckpt")
      entries = sorted(os.listdir(ckpt))
      assert entries == [str(TOTAL_STEPS // 2), str(TOTAL_STEPS)], (run, stage, entries)
      assert os.path.exists(os.path.join(runs[run], stage, "done.json"))
  leftovers = [os.path.join(d, f) for d, _, files in os.walk(runs["multi"]) for f in files
               if f.endswith(".tmp") or ".tmp." in f]
  assert not leftovers
