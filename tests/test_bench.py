"""launch/bench.py on tiny models (no timing assertions) and the launch scripts' wiring."""

import importlib.util
import json
import os
import pathlib
import shlex
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch"
SCRIPTS = ("gpu_host.sh", "slurm.sbatch", "tpu_pod.sh")


def _load_bench():
  spec = importlib.util.spec_from_file_location("bench", LAUNCH / "bench.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.fixture(scope="module")
def bench():
  return _load_bench()


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
  """Both cases x both cache modes in one subprocess, data-parallel over 2 emulated CPU devices;
  XLA's CPU optimiser is off to compile fast."""
  out = tmp_path_factory.mktemp("bench") / "rows.json"
  env = dict(os.environ)
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
                      " --xla_backend_optimization_level=0").strip()
  proc = subprocess.run(
      [sys.executable, str(LAUNCH / "bench.py"), "--small", "--steps=2", "--warmup=1",
       "--batch_size=8", "--case=filter,shared_feature", "--cache=0,1", f"--json={out}"],
      capture_output=True, text=True, env=env, timeout=300, cwd=str(ROOT))
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stdout, json.loads(out.read_text())


def _table(stdout):
  lines = [l for l in stdout.splitlines() if l.startswith("|")]
  header = [c.strip() for c in lines[0].strip("|").split("|")]
  rows = [[c.strip() for c in l.strip("|").split("|")] for l in lines[2:]]
  return header, [dict(zip(header, r)) for r in rows]


def test_table_columns_and_positive_numbers(small_run, bench):
  stdout, _ = small_run
  header, rows = _table(stdout)
  assert tuple(header) == bench.COLUMNS
  assert [(r["case"], r["cache"]) for r in rows] == [
      ("filter", "0"), ("filter", "1"), ("shared_feature", "0"), ("shared_feature", "1")]
  for r in rows:
    assert r["batch"] == "8" and r["precision"] == "float32" and r["n"] == "2"
    for col in ("ms/step", "img/s", "GFLOP/step analytic", "TFLOP/s"):
      assert float(r[col]) > 0, (col, r)
    assert r["GFLOP/step XLA"] == "n/a" or float(r["GFLOP/step XLA"]) > 0
    assert r["% peak"] == "n/a"  # no peak is known for a CPU
    timed_alone = ("fwd ms", "prior ms")
    if r["cache"] == "0":
      assert all(float(r[c]) > 0 for c in timed_alone)
      assert float(r["prior/fwd"].rstrip("%")) > 0
    else:
      assert all(r[c] == "n/a" for c in timed_alone + ("prior/fwd",))
  assert "Case-2 prior (39 concepts, float32)" in stdout


def test_json_rows_are_consistent(small_run):
  _, rows = small_run
  assert len(rows) == 4
  for r in rows:
    c = r["flops_components"]
    want = 3 * c["weight_net_forward"]
    if not r["cache"]:
      want += c["performer_forward"] + c["prior"]
      assert c["performer_forward"] > 0 and c["prior"] > 0
    assert r["flops_analytic"] == want
    # The whole traced step (no input gradient for g's first conv) is close to the rule.
    assert 0.8 < c["step_jaxpr"] / want < 1.1
    assert abs(r["img_per_s"] * r["ms_per_step"] / 1e3 - r["batch"]) < 1e-6 * r["batch"]
    assert r["tflops_per_s"] == pytest.approx(want / (r["ms_per_step"] * 1e-3) / 1e12)
    if r["flops_xla"] is not None:  # per-partition count x 2 devices; XLA skips padding taps
      assert 0.5 < r["flops_xla"] / want < 1.5
    assert r["num_concepts"] == (39 if r["case"] == "shared_feature" else 32)  # tiny_vgg top: 32


def test_breakdown_is_printed(small_run):
  stdout, _ = small_run
  assert stdout.count("FLOPs per step,") == 4
  assert stdout.count("performer forward (frozen, x1)") == 2  # uncached rows only
  assert stdout.count("= analytic total") == 4


def test_flops_scale_with_batch(bench):
  """Counting only (no compile): every component is linear in the batch."""
  common = ["--small", "--flops_only", "--case=filter,shared_feature", "--precision=bfloat16"]
  small = bench.main(common + ["--batch_size=2"])
  large = bench.main(common + ["--batch_size=6"])
  for a, b in zip(small, large):
    assert a["ms_per_step"] is None
    for key, value in a["flops_components"].items():
      assert b["flops_components"][key] == 3 * value, key


def test_bad_arguments(bench):
  with pytest.raises(ValueError, match="--case"):
    bench.main(["--small", "--flops_only", "--case=filters"])
  with pytest.raises(ValueError, match="--precision"):
    bench.main(["--small", "--flops_only", "--precision=fp8"])


@pytest.mark.parametrize("name", SCRIPTS)
def test_scripts_parse(name):
  proc = subprocess.run(["bash", "-n", str(LAUNCH / name)], capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr


def _fake_bin(tmp_path, name):
  """An executable ``name`` that prints its arguments, one per line, and each JAX_* variable."""
  path = tmp_path / name
  path.write_text('#!/usr/bin/env bash\nfor a in "$@"; do echo "ARG:$a"; done\n'
                  'env | grep "^JAX_" | sed "s/^/ENV:/"\n')
  path.chmod(0o755)
  return path


def _run(script, args, tmp_path, **env):
  full = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", **env}
  proc = subprocess.run(["bash", str(LAUNCH / script)] + args, capture_output=True, text=True,
                        env=full, cwd=str(ROOT), timeout=30)
  assert proc.returncode == 0, proc.stderr
  return [l[4:] for l in proc.stdout.splitlines() if l.startswith("ARG:")], proc.stdout


def test_gpu_host_passes_overrides(tmp_path):
  python = _fake_bin(tmp_path, "fakepython")
  args, _ = _run("gpu_host.sh", ["configs/celeba.py:target=male", "runs/x",
                                 "--config.explainer.beta=0.5"], tmp_path, PYTHON=str(python))
  assert args == [str(LAUNCH / "run.py"), "--config=configs/celeba.py:target=male",
                  "--workdir=runs/x", "--config.explainer.beta=0.5"]


def test_slurm_starts_one_process_per_node_with_auto_start(tmp_path):
  _fake_bin(tmp_path, "srun")
  args, out = _run("slurm.sbatch", ["configs/synthetic.py", "runs/s", "--config.seed=3"],
                   tmp_path, SLURM_GPUS_ON_NODE="4", SLURM_JOB_NUM_NODES="2")
  assert "--ntasks-per-node=1" in args and "--nodes=2" in args
  i = args.index("launch/run.py")
  assert args[i:] == ["launch/run.py", "--config=configs/synthetic.py", "--workdir=runs/s",
                      "--config.distributed.coordinator_address=auto", "--config.seed=3"]
  assert "ENV:JAX_LOCAL_DEVICE_IDS=0,1,2,3" in out  # all 4 GPUs, not only SLURM_LOCALID's


def test_tpu_pod_runs_on_all_workers(tmp_path):
  _fake_bin(tmp_path, "gcloud")
  args, _ = _run("tpu_pod.sh", ["my-tpu", "us-central2-b", "configs/celeba.py:target=young",
                                "/mnt/runs/y", "--config.explainer.variants=prior,baseline",
                                "--config.stages=evaluate, report"], tmp_path)
  assert args[:5] == ["compute", "tpus", "tpu-vm", "ssh", "my-tpu"]
  assert "--worker=all" in args and "--zone=us-central2-b" in args
  command = next(a for a in args if a.startswith("--command="))[len("--command="):]
  words = shlex.split(command)  # what the remote shell will see
  i = words.index("launch/run.py")
  assert words[i:] == ["launch/run.py", "--config=configs/celeba.py:target=young",
                       "--workdir=/mnt/runs/y", "--config.distributed.coordinator_address=auto",
                       "--config.explainer.variants=prior,baseline",
                       "--config.stages=evaluate, report"]


def test_tpu_pod_setup_installs_on_every_worker(tmp_path):
  _fake_bin(tmp_path, "gcloud")
  args, _ = _run("tpu_pod.sh", ["my-tpu", "europe-west4-a", "configs/synthetic.py", "runs/t"],
                 tmp_path, SETUP="1")
  commands = [a[len("--command="):] for a in args if a.startswith("--command=")]
  assert len(commands) == 3  # prepare the directory, install, run
  assert shlex.split(commands[1])[-5:] == ["install", "-q", "-e", ".", "jax[tpu]"]
  assert args.count("--worker=all") == 4  # ssh, scp, ssh (install), ssh (run)
