"""SIGTERM during training saves a checkpoint after the step under way, then stops; the resumed
run ends with the same numbers as an uninterrupted one (a preempted job loses at most one
step, not everything since the last regular checkpoint)."""

import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xplain_jax import data
from xplain_jax.infra import parallel
from xplain_jax.train import loop

from test_catalogue import PREPARED_CONFIG, ROOT, subprocess_env


def _fit(workdir, *, total=12, sigterm_at=None):
  """loop.fit on a small state whose update depends on each step's batch; with ``sigterm_at``
  the process sends itself SIGTERM while step ``sigterm_at`` is logged (checkpoints only every
  100 steps, so without the preemption save nothing would be kept)."""
  mesh = parallel.make_mesh(1)
  state = parallel.replicate({"step": jnp.zeros((), jnp.int32), "params": jnp.ones(3),
                              "batch_stats": {}, "opt_state": ()}, mesh)

  def step(s, batch, rng):
    upd = jnp.mean(batch["x"]) * jax.random.normal(jax.random.fold_in(rng, s["step"]), (3,))
    return dict(s, step=s["step"] + 1, params=s["params"] * 0.9 + upd), {"loss": jnp.sum(upd)}

  def rate(i):
    if sigterm_at is not None and i + 1 == sigterm_at:
      os.kill(os.getpid(), signal.SIGTERM)
    return 0.1

  rng = np.random.default_rng(0)
  loader = data.Loader(data.ArraySource({"x": rng.normal(size=(32, 2)).astype(np.float32)}), 4,
                       seed=0, shuffle=True)
  return loop.fit(stage="toy", workdir=str(workdir), state=state,
                  step_fn=loop.jit_step(step, mesh), loader=loader, mesh=mesh,
                  total_steps=total, rng=jax.random.PRNGKey(1), checkpoint_every=100,
                  log_every=1, learning_rate=rate)


def _steps(workdir):
  return sorted(int(d) for d in os.listdir(workdir / "toy" / "ckpt") if d.isdigit())


def test_sigterm_saves_at_the_next_step_and_the_resume_equals_an_uninterrupted_run(tmp_path):
  whole = _fit(tmp_path / "whole")
  previous = signal.getsignal(signal.SIGTERM)
  with pytest.raises(KeyboardInterrupt) as e:
    _fit(tmp_path / "cut", sigterm_at=5)
  assert e.value.args == (signal.SIGTERM,)
  assert signal.getsignal(signal.SIGTERM) is previous     # the handler is given back
  assert _steps(tmp_path / "cut") == [6]   # the signal came after step 5's check: saved at 6
  resumed = _fit(tmp_path / "cut")
  assert _steps(tmp_path / "cut")[-1] == 12
  np.testing.assert_array_equal(np.asarray(resumed["params"]), np.asarray(whole["params"]))
  with open(tmp_path / "whole" / "logs" / "toy.jsonl") as f, \
       open(tmp_path / "cut" / "logs" / "toy.jsonl") as g:
    assert f.read() == g.read()


PERFORMER = PREPARED_CONFIG + [
    "--config.dataset.num_train=64", "--config.performer.num_epochs=4",
    "--config.checkpoint_every_steps=1000", "--config.stages=performer"]


def _state(workdir):
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  ckpt = os.path.join(workdir, "performer", "ckpt")
  step = max(int(d) for d in os.listdir(ckpt) if d.isdigit())
  tree = ocp.StandardCheckpointer().restore(os.path.join(ckpt, str(step), "state"))
  return step, {jax.tree_util.keystr(p): np.asarray(x)
                for p, x in jax.tree_util.tree_leaves_with_path(tree)}


@pytest.mark.slow
def test_sigterm_on_a_run_saves_and_the_rerun_ends_as_an_uninterrupted_one(tmp_path):
  cmd = [sys.executable, os.path.join(ROOT, "launch", "run.py")] + PERFORMER
  whole = tmp_path / "whole"
  out = subprocess.run(cmd + [f"--workdir={whole}"], cwd=ROOT, env=subprocess_env(),
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  cut = tmp_path / "cut"
  proc = subprocess.Popen(cmd + [f"--workdir={cut}"], cwd=ROOT, env=subprocess_env(),
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  log = cut / "logs" / "performer.jsonl"
  t0 = time.time()
  while not (log.exists() and len(log.read_text().splitlines()) >= 3):
    assert proc.poll() is None and time.time() - t0 < 300, "the run ended before the signal"
    time.sleep(0.02)
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == 143, err[-3000:]
  assert err.strip().splitlines()[-1].startswith("error: interrupted")
  step, _ = _state(cut)
  assert 3 <= step < 16                                    # saved at the step after the signal
  out = subprocess.run(cmd + [f"--workdir={cut}"], cwd=ROOT, env=subprocess_env(),
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert f"resumed from the checkpoint at step {step}" in out.stdout
  (last_a, a), (last_b, b) = _state(whole), _state(cut)
  assert last_a == last_b == 16
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_the_command_line_leaves_sigterm_to_jax_when_several_processes_run():
  """launch/run.py handles SIGTERM itself in a one-process run only; with several processes
  JAX's preemption notifier must see it (its sync point picks the step every process saves)."""
  import importlib.util  # pylint: disable=import-outside-toplevel
  import signal  # pylint: disable=import-outside-toplevel
  import ml_collections  # pylint: disable=import-outside-toplevel
  path = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                      "launch", "run.py")
  spec = importlib.util.spec_from_file_location("run_for_signals", path)
  run = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(run)
  several = ml_collections.ConfigDict({"distributed": {"num_processes": 2}})
  one = ml_collections.ConfigDict({"distributed": {"num_processes": 0}})
  assert run._handled_signals(several) == (signal.SIGINT,)   # pylint: disable=protected-access
  assert run._handled_signals(one) == (  # pylint: disable=protected-access
      signal.SIGINT, signal.SIGTERM)
