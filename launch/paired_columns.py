r"""Paired differences between two values of one study axis: A − B per replicate, then over them.

A study table pairs two metrics of the same run (prior − baseline on one performer). This pairs
two runs: those of a finished study (``launch/study.py``) whose grid points differ only in
``--field`` (A and B), e.g. the ``faithful`` variant trained toward the rendered Δ_k against the
same variant trained toward gradient × input, on the same seed's performer and images:

  python launch/paired_columns.py --workdir=studies/regimes_targets \
      --field=explainer.consistency_target --a=rendered --b=gradient_x_input \
      --metrics=fidelity.faithful.interventional_rank_correlation.mean,fidelity.faithful.relative_deviation.mean

Prints a markdown table (mean difference ± half-width of the 95 % t-interval, the paired
t-test's p-value, n pairs; "no measurable difference" where the interval includes 0) and
returns the same figures as a dict.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from xplain_jax import utils
from xplain_jax.errors import DataError
from xplain_jax.study import render as render_lib
from xplain_jax.study import runner as runner_lib
from xplain_jax.study import stats


def read_study(workdir: str) -> list[dict]:
  """The runs of the study in ``workdir`` (``study.json``'s ``runs``: name, point)."""
  path = os.path.join(workdir, "study.json")
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)["runs"]
  except (OSError, ValueError, KeyError) as e:
    raise DataError(f"{path} cannot be read ({e}); run launch/study.py on this workdir first "
                    "(--aggregate-only writes it from the finished runs).") from None


def pairs(runs: list[dict], field: str, a: str, b: str) -> list[tuple[str, str]]:
  """``(run A, run B)`` names of the runs whose points differ only in ``field`` (A vs B)."""
  def key(point):
    return json.dumps({k: v for k, v in point.items() if k != field}, sort_keys=True)

  side = {a: {}, b: {}}
  for r in runs:
    value = str(r["point"].get(field))
    if value in side:
      side[value][key(r["point"])] = r["name"]
  if not any(r["point"].get(field) is not None for r in runs):
    raise DataError(f"no run of the study varies {field!r}; its axes set "
                    f"{sorted({k for r in runs for k in r['point']})}.")
  return [(side[a][k], side[b][k]) for k in sorted(side[a]) if k in side[b]]


def compare(workdir: str, field: str, a: str, b: str, metrics: list[str]) -> dict:
  """``{metric: stats.paired(A, B)}`` over the finished pairs of runs (+ ``pairs``)."""
  matched = pairs(read_study(workdir), field, a, b)
  values = {}
  for name in {n for p in matched for n in p}:
    m = runner_lib.read_metrics(os.path.join(workdir, name))
    values[name] = None if m is None else stats.numeric_leaves(m)
  done = [(x, y) for x, y in matched if values[x] is not None and values[y] is not None]
  if not done:
    raise DataError(f"no finished pair of runs with {field}={a} and {field}={b} in {workdir}.")
  out = {"pairs": [list(p) for p in done]}
  for metric in metrics:
    out[metric] = stats.paired([values[x].get(metric) for x, _ in done],
                               [values[y].get(metric) for _, y in done])
  return out


def render(result: dict, a: str, b: str) -> str:
  """The markdown table of ``compare``'s result (cells as the study's paired rows)."""
  lines = [f"| metric | {a} − {b} (paired) |", "|---|---|"]
  lines += [f"| {metric} | {render_lib.cell_text(s, signed=True)} |"
            for metric, s in result.items() if metric != "pairs"]
  return "\n".join(lines)


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--workdir", required=True)
  p.add_argument("--field", required=True, help="the axis field whose values are paired")
  p.add_argument("--a", required=True)
  p.add_argument("--b", required=True)
  p.add_argument("--metrics", required=True, help="comma-separated metrics.json paths")
  args = p.parse_args(argv)
  try:
    result = compare(args.workdir, args.field, args.a, args.b, utils.split_list(args.metrics))
  except DataError as e:
    print(f"error: {e}", file=sys.stderr)
    raise SystemExit(2) from None
  print(render(result, args.a, args.b))
  return result


if __name__ == "__main__":
  main()
