"""A workdir that knows its run: run identities, one run at a time, bugs keep their tracebacks,
Ctrl-C resumes bit for bit, result files follow the umask."""

import json
import os
import signal
import subprocess
import sys
import time

import jax.numpy as jnp
import numpy as np
import pytest

from subprocesses import subprocess_env
from test_catalogue import PREPARED_CONFIG, ROOT, run_cli
from xplain_jax.infra import checkpoint
from xplain_jax import errors
from xplain_jax.spec import stages
from xplain_jax.run import workdir
from xplain_jax.errors import CheckpointError, WorkdirBusyError

# The performer stage alone, 8 steps (64 images, batch 16, 2 epochs), a checkpoint every step.
PERFORMER_ONLY = PREPARED_CONFIG + [
    "--config.dataset.num_train=64", "--config.performer.num_epochs=2",
    "--config.stages=performer"]


def _config(**overrides):
  from configs import synthetic
  c = synthetic.get_config("tiny")
  for dotted, value in overrides.items():
    node = c
    *head, last = dotted.split(".")
    for part in head:
      node = node[part]
    node[last] = value
  return c


# --- run identity ------------------------------------------------------------------------------


def test_stage_fingerprint_follows_the_fields_that_decide_each_stage():
  base = _config()
  same = lambda stage, **kw: (stages.stage_fingerprint(base, stage)
                              == stages.stage_fingerprint(_config(**kw), stage))
  # Run-only fields change no stage.
  for kw in ({"stages": "performer"}, {"num_devices": 1}, {"log_every_steps": 7},
             {"checkpoint_every_steps": 9}, {"dataset.data_dir": "/elsewhere"},
             {"explainer.variants": "prior"}, {"distributed.initialization_timeout": 5}):
    for stage in ("performer", "explainer_prior", "evaluate"):
      assert same(stage, **kw), (stage, kw)
  # The explainer's fields do not decide the performer; they do decide the explainers.
  assert same("performer", **{"explainer.beta": 0.5})
  assert not same("explainer_prior", **{"explainer.beta": 0.5})
  assert not same("evaluate", **{"explainer.beta": 0.5})
  # The performer's fields decide every stage.
  for stage in ("performer", "performer_ordinary", "explainer_baseline", "report"):
    assert not same(stage, **{"performer.optimizer.learning_rate": 0.01}), stage
  assert not same("performer", seed=1)
  # Each variant has its own identity.
  assert (stages.stage_fingerprint(base, "explainer_prior")
          != stages.stage_fingerprint(base, "explainer_baseline"))
  with pytest.raises(ValueError, match="no run identity"):
    stages.stage_fingerprint(base, "mystery")


def _state():
  return {"w": jnp.arange(6, dtype=jnp.float32).reshape(2, 3), "step": jnp.zeros((), jnp.int32)}


def test_checkpointer_refuses_another_run_identity(tmp_path):
  a = stages.stage_fingerprint(_config(), "explainer_prior")
  b = stages.stage_fingerprint(_config(**{"explainer.beta": 0.5}), "explainer_prior")
  directory = str(tmp_path / "explainer_prior" / "ckpt")
  ckpt = checkpoint.Checkpointer(directory, fingerprint=a)
  ckpt.save(1, _state(), {"arch": "tiny_vgg"})
  ckpt.close()
  restored, meta, step = checkpoint.Checkpointer(directory, fingerprint=a).restore(_state())
  assert step == 1 and meta == {"arch": "tiny_vgg"}
  with pytest.raises(CheckpointError) as info:
    checkpoint.Checkpointer(directory, fingerprint=b).restore(_state())
  msg = str(info.value)
  assert "different config" in msg and "explainer.beta" in msg and "0.2" in msg and "0.5" in msg
  assert "another --workdir" in msg and "\n" not in msg
  assert os.listdir(directory) == ["1"]  # nothing moved aside: another config is no damage
  # A checkpoint written without an identity is not trusted by one that has one.
  plain = str(tmp_path / "plain" / "ckpt")
  checkpoint.Checkpointer(plain).save(1, _state())
  with pytest.raises(CheckpointError, match="no run identity recorded"):
    checkpoint.Checkpointer(plain, fingerprint=a).restore(_state())
  np.testing.assert_array_equal(restored["w"], _state()["w"])


def test_recorded_identities_are_checked_without_config_json(tmp_path):
  """Markers and checkpoint metas hold the identity: deleting config.json bypasses nothing."""
  work = str(tmp_path)
  old = _config()
  workdir.write_marker(work, "performer", stages.stage_fingerprint(old, "performer"))
  ckpt = checkpoint.Checkpointer(os.path.join(work, "explainer_prior", "ckpt"),
                                 fingerprint=stages.stage_fingerprint(old, "explainer_prior"))
  ckpt.save(3, _state())
  ckpt.close()
  workdir.check_recorded_identities(old, work)  # the same config passes
  workdir.check_recorded_identities(_config(stages="evaluate", num_devices=1), work)
  with pytest.raises(CheckpointError, match="explainer.beta"):
    workdir.check_recorded_identities(_config(**{"explainer.beta": 0.5}), work)
  with pytest.raises(CheckpointError, match="performer.optimizer.learning_rate"):
    workdir.check_recorded_identities(_config(**{"performer.optimizer.learning_rate": 1e-2}),
                                      work)
  assert workdir.stage_done(work, "performer", stages.stage_fingerprint(old, "performer"))
  with pytest.raises(CheckpointError):
    workdir.stage_done(work, "performer", stages.stage_fingerprint(_config(seed=3), "performer"))


# --- one run at a time -------------------------------------------------------------------------


def test_lock_names_the_holder_and_dies_with_it(tmp_path):
  held = workdir.lock(str(tmp_path))
  with pytest.raises(WorkdirBusyError) as info:
    workdir.lock(str(tmp_path))
  assert f"process {os.getpid()}" in str(info.value) and "another --workdir" in str(info.value)
  held.close()
  workdir.lock(str(tmp_path)).close()  # free again
  # A holder killed with SIGKILL leaves no stale lock (the kernel releases it).
  code = ("import sys, time; from xplain_jax.run import workdir; h = workdir.lock(sys.argv[1]); "
          "print('locked', flush=True); time.sleep(60)")
  proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], env=subprocess_env(),
                          cwd=ROOT, stdout=subprocess.PIPE, text=True)
  assert proc.stdout.readline().strip() == "locked"
  with pytest.raises(WorkdirBusyError, match=f"process {proc.pid}"):
    workdir.lock(str(tmp_path))
  proc.kill()
  proc.wait()
  workdir.lock(str(tmp_path)).close()


def _ckpt_identity(work: str, stage: str = "performer") -> tuple:
  """(steps, the array fingerprint of the newest checkpoint) of a stage."""
  ckpt = os.path.join(work, stage, "ckpt")
  steps = sorted(int(s) for s in os.listdir(ckpt) if s.isdigit())
  with open(os.path.join(ckpt, str(steps[-1]), "meta", "metadata")) as f:
    return steps, json.load(f)["_fingerprint"]


def _log(work: str, stage: str = "performer") -> list:
  with open(os.path.join(work, "logs", f"{stage}.jsonl")) as f:
    return [json.loads(ln) for ln in f if ln.strip()]


@pytest.fixture(scope="module")
def solo(tmp_path_factory):
  """The performer stage run once, alone and uninterrupted."""
  work = str(tmp_path_factory.mktemp("solo") / "work")
  out = run_cli(PERFORMER_ONLY + [f"--workdir={work}"])
  assert out.returncode == 0, out.stderr[-3000:]
  return work


def _start(work: str, log):
  return subprocess.Popen([sys.executable, os.path.join(ROOT, "launch", "run.py")]
                          + PERFORMER_ONLY + [f"--workdir={work}"], cwd=ROOT,
                          env=subprocess_env(), stdout=log, stderr=subprocess.STDOUT, text=True)


def _wait_for(predicate, proc, timeout=300):
  end = time.time() + timeout
  while not predicate():
    assert proc.poll() is None, "the run ended before the awaited moment"
    assert time.time() < end, "timed out"
    time.sleep(0.05)


@pytest.mark.slow
def test_two_runs_on_one_workdir_equal_one_run(tmp_path, solo):
  work = str(tmp_path / "work")
  with open(tmp_path / "first.log", "w") as log:
    first = _start(work, log)
    lock_file = os.path.join(work, workdir.LOCK_FILE)
    _wait_for(lambda: os.path.exists(lock_file) and os.path.getsize(lock_file) > 0, first)
    second = run_cli(PERFORMER_ONLY + [f"--workdir={work}"])
    assert first.poll() is None, "the first run ended before the second started; enlarge it"
    assert first.wait(timeout=400) == 0, open(tmp_path / "first.log").read()[-3000:]
  last = second.stderr.strip().splitlines()[-1]
  assert second.returncode == 1 and "Traceback" not in second.stderr, second.stderr[-2000:]
  assert last.startswith("error: ") and f"in use by process {first.pid}" in last, last
  assert _log(work) == _log(solo)
  assert _ckpt_identity(work) == _ckpt_identity(solo)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_says_how_to_resume_and_resume_is_bit_identical(tmp_path, solo, signum):
  """A signal in the middle of the checkpoint saves (one every step): one line and nothing
  after it (no thread of an orbax save cut off), exit 128 + signal, bit-identical resume."""
  work = str(tmp_path / "work")
  with open(tmp_path / "run.log", "w") as log:
    proc = _start(work, log)
    ckpt = os.path.join(work, "performer", "ckpt")
    _wait_for(lambda: os.path.isdir(os.path.join(ckpt, "2")), proc)
    proc.send_signal(signum)
    code = proc.wait(timeout=120)
  text = open(tmp_path / "run.log").read()
  if code == 0:
    pytest.skip("the run finished before the interrupt landed")
  assert code == 128 + signum, text[-2000:]
  assert "Traceback" not in text, text[-3000:]
  assert sum(ln.startswith("error:") for ln in text.splitlines()) == 1, text[-2000:]
  assert text.strip().splitlines()[-1] == ("error: interrupted; rerun the same command to "
                                           "resume")
  again = run_cli(PERFORMER_ONLY + [f"--workdir={work}"])
  assert again.returncode == 0, again.stderr[-3000:]
  assert _log(work) == _log(solo)
  assert _ckpt_identity(work) == _ckpt_identity(solo)


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_bug_deep_in_a_stage_keeps_its_traceback(tmp_path):
  code = (
      "import runpy, sys\n"
      "from xplain_jax import data\n"
      "def get_source(*args, **kwargs):\n"
      "  raise ValueError('a bug deep in a stage')\n"
      "data.get_source = get_source\n"
      f"sys.argv = ['run.py'] + {PREPARED_CONFIG!r} + ['--workdir={tmp_path / 'w'}']\n"
      f"runpy.run_path({os.path.join(ROOT, 'launch', 'run.py')!r}, run_name='__main__')\n")
  out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=subprocess_env(),
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 1, out.stderr[-2000:]
  assert "Traceback (most recent call last)" in out.stderr
  assert "ValueError: a bug deep in a stage" in out.stderr
  assert not any(ln.startswith("error:") for ln in out.stderr.splitlines())


def test_only_xplain_errors_are_user_errors():
  for e in (errors.DataError("x"), errors.ConfigError("x"), errors.CheckpointError("x"),
            errors.NonFiniteError("x"), errors.StorageError("x"),
            errors.DatasetNotPreparedError("x"), errors.MissingDependencyError("x")):
    assert errors.is_user_error(e), type(e).__name__
  for e in (ValueError("a bug"), FileNotFoundError("a bug"), KeyError("a bug"),
            ImportError("a bug"), ZeroDivisionError("a bug")):
    assert not errors.is_user_error(e), type(e).__name__
  assert errors.exit_code(errors.ConfigError("x")) == 2
  assert errors.exit_code(errors.StorageError("x")) == 1


# --- files -------------------------------------------------------------------------------------


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_result_files_follow_the_umask(tmp_path, umask, mode):
  old = os.umask(umask)
  try:
    checkpoint.write_json_atomic(str(tmp_path / "m.json"), {"a": 1})
    checkpoint.save_npz_atomic(str(tmp_path / "a.npz"), x=np.zeros(3))
  finally:
    os.umask(old)
  for name in ("m.json", "a.npz"):
    assert os.stat(tmp_path / name).st_mode & 0o777 == mode, name
  assert sorted(os.listdir(tmp_path)) == ["a.npz", "m.json"]
  np.testing.assert_array_equal(checkpoint.load_npz(str(tmp_path / "a.npz"))["x"], np.zeros(3))


def test_checkpoint_write_on_a_full_disk_is_one_storage_error(tmp_path, monkeypatch):
  import errno
  ckpt = checkpoint.Checkpointer(str(tmp_path / "ckpt"))
  ckpt.save(1, _state())

  def full(*args, **kwargs):
    raise RuntimeError("write failed") from OSError(errno.ENOSPC, "No space left on device")
  monkeypatch.setattr(ckpt._manager, "save", full)  # pylint: disable=protected-access
  with pytest.raises(errors.StorageError) as info:
    ckpt.save(2, _state())
  msg = str(info.value)
  assert "checkpoint 2" in msg and "disk is full" in msg and "rerun the same command" in msg
  assert ckpt.steps() == [1]


# --- faults of a finished run: full disk, deleted files, interrupts ----------------------------


def _one_error_line(out, code):
  """Asserts exit ``code``, no traceback and exactly one ``error:`` line, the last; returns it."""
  lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
  assert out.returncode == code, (out.returncode, out.stderr[-3000:])
  assert "Traceback" not in out.stderr, out.stderr[-3000:]
  assert sum(ln.startswith("error:") for ln in lines) == 1 and lines[-1].startswith("error: ")
  return lines[-1]


def _patched_run(argv, patch: str):
  """launch/run.py ``argv`` in a process that first runs ``patch`` (Python source)."""
  code = (f"import runpy, sys\n{patch}\n"
          f"sys.argv = ['run.py'] + {list(argv)!r}\n"
          f"runpy.run_path({os.path.join(ROOT, 'launch', 'run.py')!r}, run_name='__main__')\n")
  return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=subprocess_env(),
                        capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """A whole tiny run (performer, explainers, evaluate, report), finished undisturbed."""
  work = str(tmp_path_factory.mktemp("finished") / "work")
  out = run_cli(PREPARED_CONFIG + [f"--workdir={work}"])
  assert out.returncode == 0, out.stderr[-3000:]
  return work


def _copy(src, tmp_path):
  import shutil
  dst = str(tmp_path / "work")
  shutil.copytree(src, dst)
  return dst


def _read(path):
  with open(path, "rb") as f:
    return f.read()


@pytest.mark.slow
def test_full_disk_while_writing_report_figures_is_one_line(tmp_path, finished):
  work = _copy(finished, tmp_path)
  os.remove(os.path.join(work, "report.md"))
  patch = ("import errno, matplotlib.figure\n"
           "def full(self, path, *a, **k):\n"
           "  raise OSError(errno.ENOSPC, 'No space left on device', str(path))\n"
           "matplotlib.figure.Figure.savefig = full")
  argv = PREPARED_CONFIG + [f"--workdir={work}", "--config.stages=report"]
  last = _one_error_line(_patched_run(argv, patch), 1)
  assert "cannot write" in last and ".png" in last and "the disk is full" in last, last
  assert "rerun the same command" in last
  again = run_cli(argv)
  assert again.returncode == 0, again.stderr[-3000:]
  assert _read(os.path.join(work, "report.md")) == _read(os.path.join(finished, "report.md"))


@pytest.mark.slow
def test_orbax_full_disk_in_a_run_is_one_line_and_resumes(tmp_path, solo):
  work = str(tmp_path / "work")
  patch = ("import orbax.checkpoint as ocp\n"
           "real = ocp.CheckpointManager.save\n"
           "def save(self, step, *a, **k):\n"
           "  if step == 5:\n"
           "    raise ValueError('RESOURCE_EXHAUSTED: Error writing local file: No space left "
           "on device')\n"
           "  return real(self, step, *a, **k)\n"
           "ocp.CheckpointManager.save = save")
  last = _one_error_line(_patched_run(PERFORMER_ONLY + [f"--workdir={work}"], patch), 1)
  assert "cannot write checkpoint 5" in last and "the disk is full" in last, last
  again = run_cli(PERFORMER_ONLY + [f"--workdir={work}"])
  assert again.returncode == 0, again.stderr[-3000:]
  assert "resumed from the checkpoint at step 4" in again.stdout + again.stderr
  assert _log(work) == _log(solo)
  assert _ckpt_identity(work) == _ckpt_identity(solo)


@pytest.mark.slow
def test_marked_stage_without_checkpoints_is_refused_not_retrained(tmp_path, finished):
  import shutil
  work = _copy(finished, tmp_path)
  ckpt = os.path.join(work, "explainer_prior", "ckpt")
  shutil.move(ckpt, str(tmp_path / "kept_ckpt"))
  metrics = _read(os.path.join(work, "metrics.json"))
  argv = PREPARED_CONFIG + [f"--workdir={work}", "--config.stages=evaluate,report"]
  last = _one_error_line(run_cli(argv), 1)
  assert "explainer_prior stage is marked finished" in last and "done.json" in last, last
  assert _read(os.path.join(work, "metrics.json")) == metrics
  assert not os.path.exists(ckpt)  # nothing was trained again
  shutil.move(str(tmp_path / "kept_ckpt"), ckpt)
  again = run_cli(argv)
  assert again.returncode == 0, again.stderr[-3000:]
  now, then = json.loads(_read(os.path.join(work, "metrics.json"))), json.loads(metrics)
  for key in ("performer", "baseline", "prior"):  # (fidelity's cost records seconds)
    assert now[key] == then[key], key


@pytest.mark.slow
def test_report_only_without_config_json_never_records_another_config(tmp_path, finished):
  import shutil
  work = _copy(finished, tmp_path)
  recorded = _read(os.path.join(work, "config.json"))
  os.remove(os.path.join(work, "config.json"))
  other = PREPARED_CONFIG + [f"--workdir={work}", "--config.stages=report",
                             "--config.explainer.beta=0.9", "--config.seed=7"]
  last = _one_error_line(run_cli(other), 1)
  assert "different config" in last, last  # the evaluate stage's recorded identity
  shutil.rmtree(os.path.join(work, workdir.EVALUATE_MARKER))  # results of an older version
  last = _one_error_line(run_cli(other), 1)
  assert "no config.json or run identity" in last and "restore config.json" in last, last
  assert not os.path.exists(os.path.join(work, "config.json"))
  with open(os.path.join(work, "config.json"), "wb") as f:
    f.write(recorded)
  again = run_cli(PREPARED_CONFIG + [f"--workdir={work}", "--config.stages=report"])
  assert again.returncode == 0, again.stderr[-3000:]
  assert _read(os.path.join(work, "config.json")) == recorded
  assert _read(os.path.join(work, "report.md")) == _read(os.path.join(finished, "report.md"))


@pytest.mark.slow
def test_command_json_records_the_command_and_when_it_finished(finished):
  rec = workdir.read_command(finished)
  assert rec["finished"] is True and rec["config"] == PREPARED_CONFIG[0].split("=", 1)[1]
  assert rec["overrides"] == dict(a[len("--config."):].split("=", 1)
                                  for a in PREPARED_CONFIG[1:])
