r"""What the persistent compilation cache saves: the same config run twice, each in a new process.

Both runs start from an empty workdir, so the second repeats every stage; only its XLA compiles
can come from the cache (a fresh folder, emptied first). Prints, per run, the wall seconds, the
seconds spent in XLA compilation (JAX's backend-compile event: a cache hit counts its read time),
the compiles and cache hits, then the cache's entries and size on disk:

  python launch/bench_compile_cache.py [--config=configs/synthetic.py:tiny] [--runs=2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _child(config_arg: str, workdir: str) -> None:
  """One run of the pipeline in this process; prints its figures as one JSON line."""
  import jax  # pylint: disable=import-outside-toplevel
  from xplain_jax import compile_cache  # pylint: disable=import-outside-toplevel
  from launch import run  # pylint: disable=import-outside-toplevel

  seconds, counts = {"compile": 0.0}, {"compiles": 0, "hits": 0}

  def on_duration(event, duration, **kwargs):
    del kwargs
    if event == "/jax/core/compile/backend_compile_duration":
      seconds["compile"] += duration
      counts["compiles"] += 1

  def on_event(event, **kwargs):
    del kwargs
    if event == "/jax/compilation_cache/cache_hits":
      counts["hits"] += 1

  jax.monitoring.register_event_duration_secs_listener(on_duration)
  jax.monitoring.register_event_listener(on_event)
  start = time.perf_counter()
  compile_cache.enable()
  from xplain_jax.train import pipeline  # pylint: disable=import-outside-toplevel
  pipeline.train_and_evaluate(run.load_config(config_arg), workdir)
  print(json.dumps({"wall_s": time.perf_counter() - start, "compile_s": seconds["compile"],
                    **counts}))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="configs/synthetic.py:tiny")
  parser.add_argument("--runs", type=int, default=2)
  parser.add_argument("--child-workdir", default=None, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child_workdir:
    _child(args.config, args.child_workdir)
    return
  from xplain_jax import compile_cache  # pylint: disable=import-outside-toplevel
  scratch = tempfile.mkdtemp(prefix="xplain_jax_bench_cache_")
  cache = os.path.join(scratch, "cache")
  env = dict(os.environ, **{compile_cache.ENV_VAR: cache})
  print(f"config {args.config}; cache {compile_cache.ENV_VAR}=<fresh folder>")
  print("| run | wall s | XLA compile s | compiles | cache hits | cache entries | cache MiB |")
  print("|---|---|---|---|---|---|---|")
  try:
    for k in range(args.runs):
      out = subprocess.run(
          [sys.executable, os.path.abspath(__file__), f"--config={args.config}",
           f"--child-workdir={os.path.join(scratch, f'run{k}')}"],
          cwd=ROOT, env=env, capture_output=True, text=True, check=False)
      if out.returncode:
        sys.exit(f"run {k + 1} failed:\n{out.stderr[-3000:]}")
      r = json.loads(out.stdout.strip().splitlines()[-1])
      entries, size = compile_cache.disk_usage(cache)
      print(f"| {k + 1} | {r['wall_s']:.1f} | {r['compile_s']:.1f} | {r['compiles']} | "
            f"{r['hits']} | {entries} | {size / 2**20:.1f} |")
  finally:
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
  main()
