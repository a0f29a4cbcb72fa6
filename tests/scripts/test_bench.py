"""launch/bench/bench.py on tiny models (no timing assertions), its report and profile pieces, and
the launch scripts' wiring (launch/bench/gpu_bench.sh included, as a dry run)."""

import importlib.util
import json
import os
import pathlib
import shlex
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
LAUNCH = ROOT / "launch" / "bench"
ENTRY = ROOT / "launch"


def _script(name):
  """launch/NAME (an entry point) or launch/bench/NAME (a benchmark)."""
  return ENTRY / name if (ENTRY / name).exists() else LAUNCH / name
SCRIPTS = ("gpu_host.sh", "slurm.sbatch", "tpu_pod.sh", "gpu_bench.sh")


def _load_bench():
  spec = importlib.util.spec_from_file_location("bench", LAUNCH / "bench.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)  # puts launch/ on sys.path for its sibling modules
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


@pytest.mark.slow
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


@pytest.mark.slow
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
    # The whole traced step is close to the rule; it is below it by g's first conv's input
    # gradient, which no step computes (with the 7x7/2 stem that conv is ~20 % of this small g).
    assert 0.75 < c["step_jaxpr"] / want < 1.1
    assert abs(r["img_per_s"] * r["ms_per_step"] / 1e3 - r["batch"]) < 1e-6 * r["batch"]
    assert r["tflops_per_s"] == pytest.approx(want / (r["ms_per_step"] * 1e-3) / 1e12)
    if r["flops_xla"] is not None:  # per-partition count x 2 devices; XLA skips padding taps
      assert 0.5 < r["flops_xla"] / want < 1.5
    assert r["num_concepts"] == (39 if r["case"] == "shared_feature" else 32)  # tiny_vgg top: 32
    assert r["error"] is None and r["compile_s"] > 0
    if r["memory"]:  # XLA's memory plan, where the backend reports one
      assert r["memory"]["argument_bytes"] > 0 and r["memory"]["temp_bytes"] >= 0


@pytest.mark.slow
def test_breakdown_is_printed(small_run):
  stdout, _ = small_run
  assert stdout.count("FLOPs per step,") == 4
  assert stdout.count("performer forward (frozen, x1)") == 2  # uncached rows only
  assert stdout.count("= analytic total") == 4


def test_flops_scale_with_batch(bench):
  """Counting only (no compile): every component is linear in the batch."""
  common = ["--small", "--flops_only", "--case=filter,shared_feature", "--precision=bfloat16"]
  rows = bench.main(common + ["--batch_size=2,6"])  # a list: one row per batch size
  assert [r["batch"] for r in rows] == [2, 6, 2, 6]
  for a, b in zip(rows[0::2], rows[1::2]):
    assert a["ms_per_step"] is None
    for key, value in a["flops_components"].items():
      assert b["flops_components"][key] == 3 * value, key


def test_bad_arguments(bench):
  with pytest.raises(ValueError, match="--case"):
    bench.main(["--small", "--flops_only", "--case=filters"])
  with pytest.raises(ValueError, match="--precision"):
    bench.main(["--small", "--flops_only", "--precision=fp8"])
  for bad in ("0", "256,x", ""):
    with pytest.raises(ValueError, match="--batch_size"):
      bench.main(["--small", "--flops_only", f"--batch_size={bad}"])


@pytest.mark.parametrize("name", SCRIPTS)
def test_scripts_parse(name):
  proc = subprocess.run(["bash", "-n", str(_script(name))], capture_output=True, text=True)
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
  proc = subprocess.run(["bash", str(_script(script))] + args, capture_output=True, text=True,
                        env=full, cwd=str(ROOT), timeout=30)
  assert proc.returncode == 0, proc.stderr
  return [l[4:] for l in proc.stdout.splitlines() if l.startswith("ARG:")], proc.stdout


def test_gpu_host_passes_overrides(tmp_path):
  python = _fake_bin(tmp_path, "fakepython")
  args, _ = _run("gpu_host.sh", ["configs/celeba.py:target=male", "runs/x",
                                 "--config.explainer.beta=0.5"], tmp_path, PYTHON=str(python))
  assert args == [str(ENTRY / "run.py"), "--config=configs/celeba.py:target=male",
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


# ---- the one GPU table, its targets and the largest-batch estimate (bench_report.py) --------

def _row(case="filter", precision="bfloat16", cache=0, batch=256, img_s=1000.0, share=None,
         **extra):
  ms = 1e3 * batch / img_s
  row = {"device": "Fake GPU", "n": 1, "case": case, "batch": batch, "precision": precision,
         "cache": cache, "ms_per_step": ms, "img_per_s": img_s, "tflops_per_s": 1.5,
         "peak_share": 0.25, "compile_s": 40.0, "perf_fwd_ms": None if cache else 10.0,
         "prior_ms": None if cache else (share or 0.05) * 10.0,
         "prior_share": None if cache else share, "memory": {}, "error": None,
         "image_size": 224, "flops_analytic": 1e12, "flops_xla": None}
  row.update(extra)
  return row


def test_gpu_table_names_the_card_and_checks_targets(bench):
  report = sys.modules["bench_report"]
  rows = [_row(img_s=9_500.0), _row(img_s=8_000.0), _row(cache=1, img_s=31_000.0),
          _row(cache=1, img_s=29_000.0), _row(case="shared_feature", share=0.04),
          _row(case="shared_feature", share=0.2), _row(precision="float32"),
          _row(batch=4096, error="out of memory", ms_per_step=None, img_per_s=None,
               tflops_per_s=None, peak_share=None)]
  want = [">= 9,000 img/s: met", ">= 9,000 img/s: NOT met", ">= 30,000 img/s: met",
          ">= 30,000 img/s: NOT met", "prior <= 10%: met", "prior <= 10%: NOT met", "", ""]
  assert [report.target_check(r) for r in rows] == want
  text = report.gpu_table(rows, "NVIDIA H100 80GB HBM3, 81559 MiB")
  lines = text.splitlines()
  assert lines[0] == "Card: NVIDIA H100 80GB HBM3, 81559 MiB"
  body = [l for l in lines if l.startswith("| ") and "---" not in l][1:]
  assert len(body) == len(rows)
  cells = [c.strip() for c in body[0].strip("|").split("|")]
  assert dict(zip(report.GPU_COLUMNS, cells))["img/s"] == "9,500"
  assert "| OOM |" in body[-1]


def test_max_batch_is_the_largest_multiple_that_fits(bench):
  """A planted memory model: fixed + per-row bytes; the estimate must fit and 256 more must not."""
  report = sys.modules["bench_report"]
  fixed, per_row, limit, n = 3.0e9, 11.0e6, 60.0e9, 2
  for cache in (0, 1):
    image = 0 if cache else 4 * 224 * 224 * 3
    b = 512
    row = _row(cache=cache, batch=b, n=n, memory={
        "argument_bytes": int(fixed + b / n * image), "temp_bytes": int(b / n * per_row),
        "bytes_limit": int(limit)})
    fits = lambda batch: fixed + batch / n * (per_row + image) <= 0.9 * limit
    best = max(k for k in range(256, 100_000, 256) if fits(k))
    assert report.max_batch(row) == best
  assert report.max_batch(_row()) is None  # no memory figures (CPU)


def test_report_cli_reads_rows_and_estimates(bench, tmp_path, capsys):
  report = sys.modules["bench_report"]
  rows = [_row(), _row(cache=1, memory={"argument_bytes": 10**9, "temp_bytes": 256 * 10**6,
                                        "bytes_limit": 40 * 10**9})]
  path = tmp_path / "rows.json"
  path.write_text(json.dumps(rows))
  text = report.main([str(path), "--card=Card X", f"--output={tmp_path / 't.md'}"])
  assert text.startswith("Card: Card X") and (tmp_path / "t.md").read_text().strip() == text
  assert report.main([str(path), "--max_batch", "--cache=1"]) == str(report.max_batch(rows[1]))
  assert report.main([str(path), "--max_batch", "--cache=0"]) == "0"  # no figures: 0


# ---- profiles (bench_profile.py) ------------------------------------------------------------

def _trace(ops_line="XLA Ops"):
  """Two steps on a fake GPU: per step conv 3 ms, convert 0.5 ms, transpose 0.25 ms, 2 x 0.1 ms
  of an elementwise fusion; host events and raw kernels that must not be counted."""
  meta = [{"ph": "M", "pid": 1, "name": "process_name", "args": {"name": "/host:CPU"}},
          {"ph": "M", "pid": 7, "name": "process_name", "args": {"name": "/device:GPU:0"}},
          {"ph": "M", "pid": 1, "tid": 1, "name": "thread_name", "args": {"name": "python"}},
          {"ph": "M", "pid": 7, "tid": 2, "name": "thread_name", "args": {"name": ops_line}},
          {"ph": "M", "pid": 7, "tid": 3, "name": "thread_name", "args": {"name": "XLA Modules"}}]
  x = lambda name, dur, tid=2, pid=7: {"ph": "X", "pid": pid, "tid": tid, "name": name,
                                       "ts": 0, "dur": dur}
  per_step = [x("%convolution.3 = bf16[8]", 3000), x("loop_convert_fusion.2", 500),
              x("transpose.9", 250), x("loop_add_fusion", 100), x("loop_add_fusion", 100)]
  noise = [x("PjitFunction(step)", 99999, tid=1, pid=1), x("jit_step", 50000, tid=3)]
  return meta + per_step * 2 + noise


def test_summarize_trace_by_operation_and_category(bench):
  prof = sys.modules["bench_profile"]
  s = prof.summarize_trace(_trace(), steps=2, wall_ms_per_step=5.0)
  assert s["line"] == "XLA Ops"
  assert s["device_ms_per_step"] == pytest.approx(3.95)
  assert s["idle_share"] == pytest.approx(1 - 3.95 / 5.0)
  assert s["categories"] == pytest.approx({"conv/matmul": 3.0, "convert": 0.5,
                                           "transpose/copy": 0.25, "other fusions": 0.2})
  top = {t["name"]: t for t in s["top"]}
  assert top["convolution.3"]["ms_per_step"] == pytest.approx(3.0)
  assert top["loop_add_fusion"]["calls_per_step"] == 2
  assert top["convolution.3"]["share"] == pytest.approx(3.0 / 3.95)
  # Without an "XLA Ops" line the raw kernel streams are used; without a device, nothing.
  assert prof.summarize_trace(_trace("Stream #14(Compute)"), 2)["line"] == "Stream"
  host_only = [e for e in _trace() if e.get("pid") == 1]
  assert prof.summarize_trace(host_only, 2)["device_ms_per_step"] == 0.0


def test_categories_of_common_gpu_names(bench):
  prof = sys.modules["bench_profile"]
  names = {"custom-call.12": "conv/matmul", "sm90_xmma_fprop_implicit_gemm": "conv/matmul",
           "loop_convert_fusion": "convert", "input_reduce_fusion.4": "reduction",
           "all-reduce.1": "collective", "copy.3": "transpose/copy",
           "loop_multiply_fusion": "other fusions"}
  assert {n: prof.categorize(n) for n in names} == names


def test_hlo_op_counts_of_a_compiled_function(bench):
  import jax
  import jax.numpy as jnp
  prof = sys.modules["bench_profile"]
  text = """HloModule m
%fused_computation (p: f32[4]) -> bf16[4] {
  %p = f32[4]{0} parameter(0)
  ROOT %c = bf16[4]{0} convert(%p)
}
ENTRY %main (a: f32[4], b: f32[4,4]) -> (bf16[4], f32[4]) {
  %a = f32[4]{0} parameter(0)
  %b = f32[4,4]{1,0} parameter(1)
  %t = f32[4,4]{0,1} transpose(%b), dimensions={1,0}
  %cc = (f32[4]{0}, s8[0]{0}) custom-call(%a, %t), custom_call_target="__cublas$gemm"
  %convert_fusion = bf16[4]{0} fusion(%a), kind=kLoop, calls=%fused_computation
  ROOT %r = (bf16[4]{0}, f32[4]{0}) tuple(%convert_fusion, %a)
}
"""
  counts = prof.hlo_op_counts(text)
  assert counts["opcodes"] == {"parameter": 2, "transpose": 1, "custom-call": 1, "fusion": 1,
                               "tuple": 1}
  assert counts["categories"]["convert"] == 1 and counts["categories"]["transpose/copy"] == 1
  assert counts["custom_call_targets"] == {"__cublas$gemm": 1}
  f = jax.jit(lambda x, w: jnp.tanh(x @ w))
  real = prof.hlo_op_counts(f.lower(jnp.ones((8, 8)), jnp.ones((8, 8))).compile().as_text())
  assert sum(real["opcodes"].values()) > 0 and real["opcodes"].get("parameter") == 2


@pytest.mark.slow
def test_profile_writes_a_trace_on_cpu(bench, tmp_path):
  import jax
  import jax.numpy as jnp
  prof = sys.modules["bench_profile"]
  f = jax.jit(lambda x: jnp.sin(x) @ x)
  x = jnp.ones((64, 64))
  f(x).block_until_ready()
  s = prof.profile(lambda: f(x), str(tmp_path), steps=2, hlo_text=f.lower(x).compile().as_text())
  assert s["trace"] and os.path.exists(s["trace"])
  # A CPU has no device line: the operations are read off XLA's host threads.
  assert s["wall_ms_per_step"] > 0 and s["line"] == "XLA:CPU threads"
  assert s["device_ms_per_step"] > 0 and s["top"]
  assert s["hlo"]["opcodes"]


def _cpu_trace():
  """Two steps on XLA:CPU's threads: per step a library conv 2 ms, a layout copy 1 ms, a ReLU
  0.5 ms; the executor's own events, the ends of operations and Python's must not count."""
  meta = [{"ph": "M", "pid": 1, "name": "process_name", "args": {"name": "/host:CPU"}},
          {"ph": "M", "pid": 1, "tid": 1, "name": "thread_name", "args": {"name": "python"}},
          {"ph": "M", "pid": 1, "tid": 2, "name": "thread_name",
           "args": {"name": "tf_XLAEigen/123"}}]
  x = lambda name, dur, tid=2: {"ph": "X", "pid": 1, "tid": tid, "name": name, "ts": 0,
                                "dur": dur}
  per_step = [x("ynn_fusion.4", 2000), x("end: ynn_fusion.4", 2000),
              x("copy_bitcast_fusion.1", 1000), x("maximum_bitcast_fusion", 500),
              x("ThunkExecutor::Execute", 9000), x("$api.py:1 block_until_ready", 9000, tid=1)]
  return meta + per_step * 2


def test_summarize_a_cpu_trace_by_operation_with_its_jax_operation(bench):
  prof = sys.modules["bench_profile"]
  labels = {"ynn_fusion.4": "jit(step)/jvp(VGG)/convs_0/conv_general_dilated",
            "copy_bitcast_fusion.1": "jit(step)/transpose(jvp(VGG))/convs_1/slice"}
  s = prof.summarize_trace(_cpu_trace(), steps=2, labels=labels)
  assert s["line"] == "XLA:CPU threads"
  assert s["device_ms_per_step"] == pytest.approx(3.5)
  assert s["categories"] == pytest.approx({"conv/matmul": 2.0, "transpose/copy": 1.0,
                                           "other fusions": 0.5})
  assert s["top"][0]["label"] == labels["ynn_fusion.4"]
  # A library fusion is categorised by the JAX operation it runs.
  assert prof.categorize("ynn_fusion.8", "jit(step)/x/reduce_sum") == "reduction"
  assert prof.categorize("ynn_fusion.8") == "conv/matmul"


def test_op_labels_of_a_compiled_function(bench):
  import jax
  import jax.numpy as jnp
  prof = sys.modules["bench_profile"]
  f = jax.jit(lambda x, w: jnp.tanh(x @ w))
  labels = prof.op_labels(f.lower(jnp.ones((8, 8)), jnp.ones((8, 8))).compile().as_text())
  assert labels and any(v.endswith(("dot_general", "tanh")) for v in labels.values()), labels


# ---- launch/bench/gpu_bench.sh as a dry run -------------------------------------------------

def _gpu_bench(args, tmp_path, **env):
  full = {**os.environ, "PYTHON": sys.executable, **env}
  return subprocess.run(["bash", str(LAUNCH / "gpu_bench.sh"), *args, "--out", str(tmp_path)],
                        capture_output=True, text=True, env=full, cwd=str(ROOT), timeout=60)


def test_gpu_bench_dry_run_commands(tmp_path):
  proc = _gpu_bench(["--dry_run"], tmp_path)
  assert proc.returncode == 0, proc.stderr
  cmds = [shlex.split(l[2:]) for l in proc.stdout.splitlines() if l.startswith("+ ")]
  step = next(c for c in cmds if "launch/bench/bench.py" in c and "--input" not in c)
  assert {"--case=filter,shared_feature", "--precision=bfloat16,float32", "--cache=0,1",
          "--batch_size=256", f"--json={tmp_path}/rows_b256.json"} <= set(step)
  assert any(a.startswith("--profile=") for a in step)
  assert any("--input" in c for c in cmds)
  report = cmds[-1]
  assert report[1] == "launch/bench/bench_report.py" and f"--output={tmp_path}/table.md" in report
  quick = _gpu_bench(["--dry_run", "--quick", "--small"], tmp_path)
  qcmds = [shlex.split(l[2:]) for l in quick.stdout.splitlines() if l.startswith("+ ")]
  qstep = next(c for c in qcmds if "launch/bench/bench.py" in c and "--input" not in c)
  assert "--precision=bfloat16" in qstep and "--small" in qstep and "--steps=5" in qstep
  assert "largest batch" not in quick.stdout


def test_gpu_bench_rejects_unknown_arguments(tmp_path):
  proc = _gpu_bench(["--fast"], tmp_path)
  assert proc.returncode == 2 and "unknown argument '--fast'" in proc.stderr


def test_gpu_bench_says_how_to_get_missing_wheels(tmp_path):
  if (ROOT / ".whl").exists():
    pytest.skip("wheels are present here")
  fake = tmp_path / "python"
  fake.write_text("#!/usr/bin/env bash\nexit 1\n")  # any import fails
  fake.chmod(0o755)
  proc = _gpu_bench(["--dry_run"], tmp_path, PYTHON=str(fake))
  assert proc.returncode == 1 and "ml_collections" in proc.stderr and ".whl" in proc.stderr


@pytest.mark.slow
def test_bench_targets_times_every_consistency_target_of_both_cases():
  spec = importlib.util.spec_from_file_location("bench_targets", LAUNCH / "bench_targets.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  rows = module.bench(batch=4, repeats=1)
  assert [(r["case"], r["target"]) for r in rows] == [
      ("shared_feature", "none"), ("shared_feature", "gradient_x_input"),
      ("shared_feature", "rendered"), ("shared_feature", "rendered: the re-renders alone"),
      ("shared_feature", "rendered: the 20 performer calls alone"), ("filter", "none"),
      ("filter", "deletion"), ("filter", "gradient_x_input"), ("filter", "shapley")]
  assert all(r["ms"] > 0 for r in rows)
  assert [r["ratio"] for r in rows if r["target"] == "none"] == [1.0, 1.0]
