"""A study's faults: each ends in one ``error:`` line (or none) and a rerun gives the undisturbed
results. One tiny one-run study is interrupted once and finished (module fixture); the other
tests reuse its folder or run nothing."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from subprocesses import subprocess_env

from xplain_jax.run import workdir as workdir_lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ONE_RUN = '''
from configs.studies import synthetic_seeds


def get_config(arg=""):
  c = synthetic_seeds.get_config("tiny")
  c.axes.seed = dict(seed=(0,), dataset=dict(seed=(0,)))
  return c
'''
SETS = ["dataset.num_train=32", "dataset.num_test=16", "performer.batch_size=16",
        "explainer.batch_size=16", "evals.explainer.batch_size=16"]
RUN = "seed=0"


_env = subprocess_env


def _cmd(config, workdir, *extra, sets=SETS):
  return [sys.executable, "launch/study.py", f"--config={config}", f"--workdir={workdir}",
          *[f"--set={s}" for s in sets], *extra]


def _study(*args, **kwargs):
  return subprocess.run(_cmd(*args, **kwargs), cwd=ROOT, env=_env(), capture_output=True,
                        text=True, timeout=600)


def _one_error_line(out, code):
  lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
  assert out.returncode == code, (out.returncode, out.stdout[-2000:], out.stderr[-3000:])
  assert "Traceback" not in out.stderr, out.stderr[-3000:]
  assert sum(ln.startswith("error:") for ln in lines) == 1 and lines[-1].startswith("error: ")
  return lines[-1]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
  """The one-run study: Ctrl-C (SIGINT to the study's PID alone) while its run trains, then
  the same command again to the end."""
  root = tmp_path_factory.mktemp("one_run")
  config = str(root / "one_run.py")
  with open(config, "w") as f:
    f.write(ONE_RUN)
  w = str(root / "study")
  with open(root / "interrupted.log", "w") as log:
    proc = subprocess.Popen(_cmd(config, w), cwd=ROOT, env=_env(), stdout=log,
                            stderr=subprocess.PIPE, text=True)
    ckpt = os.path.join(w, RUN, "performer", "ckpt")
    deadline = time.time() + 600
    while not os.path.isdir(ckpt) and proc.poll() is None and time.time() < deadline:
      time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=300)
  interrupted = subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr)
  holder = workdir_lib.holder(os.path.join(w, RUN))
  rerun = _study(config, w)
  assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-3000:]
  return dict(config=config, workdir=w, interrupted=interrupted, holder=holder, rerun=rerun)


@pytest.mark.slow
def test_ctrl_c_on_a_study_stops_its_run_in_one_line(study):
  last = _one_error_line(study["interrupted"], 130)
  assert last == "error: interrupted; rerun the same command to resume"
  assert study["holder"] is None  # the run got the signal too: no orphan holds its lock
  with open(os.path.join(study["workdir"], "logs", RUN + ".log")) as f:
    log = f.read()
  assert 0 <= log.find("# exit 130") < log.find("# exit 0 after")  # then the rerun finished it
  assert "(1/1 runs finished" in study["rerun"].stdout


def _read(path):
  with open(path, "rb") as f:
    return f.read()


@pytest.mark.slow
def test_a_changed_set_is_refused_never_skipped(study):
  w = study["workdir"]
  before = _read(os.path.join(w, "study.json"))
  for extra in ((), ("--aggregate-only",)):
    out = _study(study["config"], w, "--set=explainer.num_epochs=1", *extra)
    last = _one_error_line(out, 2)
    assert f"run {RUN}" in last and "explainer.num_epochs" in last and "another --workdir" in last
    assert _read(os.path.join(w, "study.json")) == before
  # A field that decides no result (the stages) reruns the run instead of skipping it; the
  # unchanged command skips it and writes the same study.json.
  again = _study(study["config"], w)
  assert again.returncode == 0 and f"skip {RUN} (finished)" in again.stdout, again.stderr
  assert json.loads(_read(os.path.join(w, "study.json"))) == json.loads(before)


@pytest.mark.slow
def test_a_run_cut_off_in_its_report_is_not_finished(study, tmp_path):
  """What a kill during the report stage leaves: the command recorded unfinished, no report."""
  w = str(tmp_path / "study")
  shutil.copytree(study["workdir"], w)
  run_dir = os.path.join(w, RUN)
  rec = workdir_lib.read_command(run_dir)
  workdir_lib.record_command(run_dir, rec["config"], rec["overrides"], finished=False)
  for name in ("report.html", "report.md"):
    os.remove(os.path.join(run_dir, name))
  metrics = json.loads(_read(os.path.join(run_dir, "metrics.json")))
  out = _study(study["config"], w)
  assert out.returncode == 0 and f"run {RUN}" in out.stdout and "(1/1 runs finished" in out.stdout
  assert not out.stderr.strip() or "error:" not in out.stderr
  def sections(path):  # the report's structure (its numbers hold measured times)
    return [ln for ln in _read(path).decode().splitlines() if ln.startswith("#")]
  assert os.path.exists(os.path.join(run_dir, "report.html"))
  assert sections(os.path.join(run_dir, "report.md")) == sections(
      os.path.join(study["workdir"], RUN, "report.md"))
  now = json.loads(_read(os.path.join(run_dir, "metrics.json")))
  for key in ("performer", "baseline", "prior"):  # (fidelity's cost records seconds)
    assert now[key] == metrics[key], key
  assert workdir_lib.read_command(run_dir)["finished"] is True


@pytest.mark.slow
def test_an_orphaned_run_is_named_and_counts_agree(study):
  code = ("import sys, time; from xplain_jax.run import workdir; h = workdir.lock(sys.argv[1]); "
          "print('locked', flush=True); time.sleep(120)")
  holder = subprocess.Popen([sys.executable, "-c", code, os.path.join(study["workdir"], RUN)],
                            env=_env(), cwd=ROOT, stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "locked"
    last = _one_error_line(_study(study["config"], study["workdir"]), 1)
    assert f"run {RUN} is still running" in last and f"process {holder.pid}" in last
  finally:
    holder.kill()
    holder.wait()
  again = _study(study["config"], study["workdir"])
  assert again.returncode == 0 and "(1/1 runs finished" in again.stdout
  assert "failed" not in again.stdout + again.stderr


@pytest.mark.slow
def test_full_disk_while_writing_the_study_is_one_line(study):
  w = study["workdir"]
  before = _read(os.path.join(w, "study.json"))
  code = ("import errno, runpy, sys\n"
          "from xplain_jax.study import commands\n"
          "def full(path, text):\n"
          "  raise OSError(errno.ENOSPC, 'No space left on device', path)\n"
          "commands._write = full\n"
          f"sys.argv = {['study.py'] + _cmd(study['config'], w, '--aggregate-only')[2:]!r}\n"
          f"runpy.run_path({os.path.join(ROOT, 'launch', 'study.py')!r}, run_name='__main__')\n")
  out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(), capture_output=True,
                       text=True, timeout=300)
  last = _one_error_line(out, 1)
  assert "study.json" in last and "the disk is full" in last, last
  again = _study(study["config"], w, "--aggregate-only")
  assert again.returncode == 0
  assert json.loads(_read(os.path.join(w, "study.json"))) == json.loads(before)


@pytest.mark.slow
def test_study_command_line_is_checked_before_any_run(tmp_path):
  """Mistakes of the study's command line: exit 2, one line, nothing written."""
  seeds = "configs/studies/synthetic_seeds.py:tiny"
  w = str(tmp_path / "s")
  afile = tmp_path / "afile"
  afile.write_text("a file\n")
  cases = [
      ([f"--config={seeds}", f"--workdir={w}", "--set=seed=5"], "study axis 'seed'"),
      ([f"--config={seeds}", f"--workdir={w}", "--set=seed=abc", "--emit=slurm"],
       "study axis 'seed'"),
      ([f"--config={seeds}", f"--workdir={w}", "--set=explainer.betta=0.5"],
       "has no field 'explainer.betta'"),
      ([f"--config={seeds}", f"--workdir={w}", "--set=explainer.beta=abc"], "is a float"),
      ([f"--config={seeds}", f"--workdir={w}", "--set=stages=performer,explainer"],
       "no run can finish"),
      ([f"--config={seeds}", f"--workdir={w}", "--set=explainer.variants=prior"],
       "lacks baseline"),
      ([f"--config={seeds}", f"--workdir={afile}/sub"], "below the file"),
      ([f"--config={seeds}", f"--workdir={tmp_path}/caf\udce9"], "not a valid UTF-8 name"),
  ]
  for argv, words in cases:
    out = subprocess.run([sys.executable, "launch/study.py", *argv], cwd=ROOT, env=_env(),
                         capture_output=True, text=True, timeout=300)
    assert words in _one_error_line(out, 2), (argv, out.stderr)
  assert sorted(os.listdir(tmp_path)) == ["afile"]


@pytest.mark.slow
def test_slurm_follow_ups_take_space_separated_flags(tmp_path):
  """``--config X --workdir Y --set Z``: the follower and aggregation jobs get the same study
  (their command is run here, as SLURM would, and aggregates)."""
  spec, w = "configs/studies/beta_sweep.py:tiny", str(tmp_path / "s")
  out = subprocess.run([sys.executable, "launch/study.py", "--config", spec, "--workdir", w,
                        "--set", "stages=performer,explainer,evaluate", "--emit=slurm"],
                       cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr
  want = f"--config={spec} --set=stages=performer,explainer,evaluate --workdir={w}"
  with open(os.path.join(w, "study_followers.sbatch")) as f:
    assert f"launch/study.py {want} --seed-run=" in f.read()
  with open(os.path.join(w, "study_aggregate.sbatch")) as f:
    line = next(ln for ln in f.read().splitlines() if "launch/study.py" in ln)
  assert line == f"python launch/study.py {want} --aggregate-only", line
  agg = subprocess.run([sys.executable, *line.split()[1:]], cwd=ROOT, env=_env(),
                       capture_output=True, text=True, timeout=300)
  assert agg.returncode == 0 and "(0/4 runs finished" in agg.stdout, agg.stderr
