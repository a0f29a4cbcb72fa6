"""launch/bench/bench_cpu_vs_torch.py at its smallest size prints a ratio line and a profile per
step (no timing assertions: speed figures live in the benchmark and docs/scaling.md)."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
STEPS = ("performer", "explainer_case2", "explainer_digits")


@pytest.mark.slow
def test_prints_a_ratio_per_step(tmp_path):
  pytest.importorskip("torch")
  env = dict(os.environ)
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()
  proc = subprocess.run(
      [sys.executable, str(ROOT / "launch" / "bench" / "bench_cpu_vs_torch.py"),
       "--config=configs/synthetic.py:tiny", "--quick", "--repeats=1", "--steps=1",
       "--warmup=0", f"--profile={tmp_path}"], cwd=ROOT, env=env, capture_output=True,
      text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  for name in STEPS:
    assert re.search(rf"^ratio {name}: \d+\.\d+ \(min\), \d+\.\d+ \(median\)$", proc.stdout,
                     re.MULTILINE), proc.stdout
  assert "torch.set_num_threads(" in proc.stdout
  for name in STEPS:  # --profile: where each step goes, read off XLA's threads
    line = rf"^profile {name}: \d+\.\d+ ms of thread time per step \(XLA:CPU threads\)"
    assert re.search(line, proc.stdout, re.MULTILINE), proc.stdout
  assert "  by category: " in proc.stdout and " conv/matmul " in proc.stdout
