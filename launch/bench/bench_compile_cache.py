r"""What the persistent compilation cache saves: the same job run twice, each in a new process.

The job is a pipeline run of ``--config`` from an empty workdir (so the second run repeats every
stage), or with ``--api`` an own-model fit (``api.fit_explainer``, Case 1) on random feature
maps of the own-model digits example's shape (1,437 maps of 8x8x32). Only the second run's XLA
compiles can come from the cache (a fresh folder). Prints, per run, the wall seconds, the seconds
spent in XLA compilation (JAX's backend-compile event: a cache hit counts its read time), the
compiles and cache hits, then the cache's entries and size on disk:

  python launch/bench/bench_compile_cache.py [--config=configs/synthetic.py:tiny] [--runs=2]
  python launch/bench/bench_compile_cache.py --api [--epochs=2]
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

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)


def _fit(epochs: int) -> None:
  """An own-model fit: Case 1 on random maps [1437,8,8,32] with 32 filter concepts."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from xplain_jax import api  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  feat = np.abs(rng.normal(size=(1437, 8, 8, 32))).astype(np.float32)
  y_i = feat.sum(axis=(1, 2))
  features = {"feat": feat, "y_i": y_i, "y": y_i @ rng.uniform(0, 1, 32).astype(np.float32),
              "w": rng.uniform(0.1, 1.0, size=(1437, 32)).astype(np.float32)}
  api.fit_explainer(features, case="filter", epochs=epochs)


def _child(config_arg: str, workdir: str, epochs: int | None = None) -> None:
  """One run of the job in this process; prints its figures as one JSON line."""
  import jax  # pylint: disable=import-outside-toplevel
  from xplain_jax.infra import compile_cache  # pylint: disable=import-outside-toplevel
  from xplain_jax.run import command as run_command  # pylint: disable=import-outside-toplevel

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
  if epochs is not None:
    _fit(epochs)
  else:  # as launch/run.py: the allocator tuned, then the pipeline
    from xplain_jax.infra import host_memory  # pylint: disable=import-outside-toplevel
    from xplain_jax.run import pipeline  # pylint: disable=import-outside-toplevel
    host_memory.tune()
    pipeline.train_and_evaluate(run_command.load_config(config_arg), workdir)
  print(json.dumps({"wall_s": time.perf_counter() - start, "compile_s": seconds["compile"],
                    **counts}))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="configs/synthetic.py:tiny")
  parser.add_argument("--runs", type=int, default=2)
  parser.add_argument("--api", action="store_true", help="time an own-model fit instead")
  parser.add_argument("--epochs", type=int, default=2, help="the own-model fit's epochs")
  parser.add_argument("--child-workdir", default=None, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child_workdir:
    _child(args.config, args.child_workdir, args.epochs if args.api else None)
    return
  from xplain_jax.infra import compile_cache  # pylint: disable=import-outside-toplevel
  scratch = tempfile.mkdtemp(prefix="xplain_jax_bench_cache_")
  cache = os.path.join(scratch, "cache")
  env = dict(os.environ, **{compile_cache.ENV_VAR: cache})
  job = f"api.fit_explainer, {args.epochs} epochs" if args.api else f"config {args.config}"
  print(f"{job}; cache {compile_cache.ENV_VAR}=<fresh folder>")
  print("| run | wall s | XLA compile s | compiles | cache hits | cache entries | cache MiB |")
  print("|---|---|---|---|---|---|---|")
  try:
    for k in range(args.runs):
      out = subprocess.run(
          [sys.executable, os.path.abspath(__file__), f"--config={args.config}",
           f"--child-workdir={os.path.join(scratch, f'run{k}')}", f"--epochs={args.epochs}"]
          + (["--api"] if args.api else []),
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
