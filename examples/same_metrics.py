r"""Whether two runs' metrics.json are equal but for wall-clock values.

  python examples/same_metrics.py WORKDIR_A WORKDIR_B

Prints every number that differs (keys ending in ``seconds`` or ``seconds_per_image`` are
wall-clock and only counted) and exits 1 when anything else differs or a key is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

WALL_CLOCK = ("seconds", "seconds_per_image", "fit_seconds")


def flatten(value, prefix: str = "") -> dict:
  """``{"a.b[0]": leaf}`` of a JSON value."""
  if isinstance(value, dict):
    return {k: v for key, item in value.items()
            for k, v in flatten(item, f"{prefix}.{key}" if prefix else key).items()}
  if isinstance(value, list):
    return {k: v for i, item in enumerate(value)
            for k, v in flatten(item, f"{prefix}[{i}]").items()}
  return {prefix: value}


def compare(a: dict, b: dict) -> tuple[list[str], list[str]]:
  """``(differences that matter, wall-clock differences)`` as ``key: a != b`` lines."""
  fa, fb = flatten(a), flatten(b)
  real, clock = [], []
  for key in sorted(set(fa) | set(fb)):
    if fa.get(key, "<missing>") != fb.get(key, "<missing>"):
      line = f"{key}: {fa.get(key, '<missing>')} != {fb.get(key, '<missing>')}"
      (clock if key.rsplit(".", 1)[-1] in WALL_CLOCK else real).append(line)
  return real, clock


def main(argv) -> int:
  parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
  parser.add_argument("workdirs", nargs=2, metavar="WORKDIR", help="two finished run folders")
  args = parser.parse_args(argv[1:])
  docs = []
  for workdir in args.workdirs:
    with open(os.path.join(workdir, "metrics.json"), encoding="utf-8") as f:
      docs.append(json.load(f))
  real, clock = compare(*docs)
  print(f"{len(flatten(docs[0]))} values; {len(clock)} wall-clock values differ; "
        f"{len(real)} other values differ")
  for line in real:
    print("  " + line)
  return 1 if real else 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
