r"""Paired differences between two values of one study axis: A − B per replicate, then over them.

A study table pairs two metrics of the same run (prior − baseline on one performer). This pairs
two runs: those of a finished study whose grid points differ only in one axis field (A and B),
e.g. the ``faithful`` variant trained toward the rendered Δ_k against the same variant trained
toward gradient × input, on the same seed's performer and images:

  python launch/study.py --workdir=studies/regimes_targets \
      --pair=explainer.consistency_target --a=rendered --b=gradient_x_input \
      --metrics=fidelity.faithful.interventional_rank_correlation.mean,fidelity.faithful.relative_deviation.mean

``table`` gives the markdown table (mean difference ± half-width of the 95 % t-interval, the
paired t-test's p-value, n pairs; "no measurable difference" where the interval includes 0);
``compare`` the same figures as a dict.
"""

from __future__ import annotations

import difflib
import json
import math
import os

from xplain_jax import utils
from xplain_jax.errors import DataError
from xplain_jax.study import render as render_lib
from xplain_jax.study import runner as runner_lib
from xplain_jax.study import stats


def read_study(workdir: str) -> list[dict]:
  """The runs of the study in ``workdir``.

  Args:
    workdir: a study's folder, holding the ``study.json`` that ``launch/study.py`` wrote.

  Returns:
    ``study.json``'s ``runs``: a list of objects, each with a ``name`` and a ``point`` of axis
    values.

  Raises:
    DataError: the file is missing, not JSON, or not shaped as ``launch/study.py`` writes it.
  """
  path = os.path.join(workdir, "study.json")
  try:
    with open(path, encoding="utf-8") as f:
      runs = json.load(f)["runs"]
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise DataError(f"{path} cannot be read ({type(e).__name__}: {e}); run launch/study.py on "
                    "this workdir first (--aggregate-only writes it from the finished "
                    "runs).") from None
  shaped = isinstance(runs, list) and all(
      isinstance(r, dict) and isinstance(r.get("name"), str) and isinstance(r.get("point"), dict)
      for r in runs)
  if not shaped:
    raise DataError(f"{path} is not a study launch/study.py wrote: 'runs' must be a list of "
                    "objects with a 'name' and a 'point'; rewrite it with launch/study.py "
                    "--aggregate-only on this workdir.")
  return runs


def _is(value, text: str) -> bool:
  """Whether the axis value ``value`` (a JSON value of study.json) is the command line's
  ``text``: the same text, or the same number (``--a=1`` names 1.0)."""
  if str(value) == text:
    return True
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    return False
  try:
    return float(text) == float(value)
  except ValueError:
    return False


def pairs(runs: list[dict], field: str, a: str, b: str) -> list[tuple[str, str]]:
  """The pairs of runs whose points differ only in ``field``.

  Args:
    runs: ``read_study``'s runs.
    field: the axis field whose values are paired.
    a: the first side's value of ``field``, as the command line names it.
    b: the second side's value.

  Returns:
    ``(run A, run B)`` names, ordered by the rest of their points.

  Raises:
    DataError: ``a`` equals ``b``, or no run of the study sets ``field``.
  """
  def key(point):
    return json.dumps({k: v for k, v in point.items() if k != field}, sort_keys=True)

  if a == b:
    raise DataError(f"--a and --b are both {a!r}; pass two different values of {field} (each "
                    "run would be paired with itself).")
  side = {a: {}, b: {}}
  for r in runs:
    value = r["point"].get(field)
    for text in (a, b):
      if value is not None and _is(value, text):
        side[text][key(r["point"])] = r["name"]
  if not any(r["point"].get(field) is not None for r in runs):
    raise DataError(f"no run of the study varies {field!r}; its axes set "
                    f"{sorted({k for r in runs for k in r['point']})}.")
  return [(side[a][k], side[b][k]) for k in sorted(side[a]) if k in side[b]]


def compare(workdir: str, field: str, a: str, b: str, metrics: list[str]) -> dict:
  """The paired statistics of ``metrics`` over the finished pairs of runs.

  Args:
    workdir: the finished study's folder.
    field: the axis field whose values are paired.
    a: the first side's value of ``field``.
    b: the second side's value.
    metrics: dotted paths of numbers in the runs' metrics.json.

  Returns:
    ``{metric: stats.paired(A, B)}`` and ``pairs`` (the finished pairs); each metric's
    ``missing`` lists the pairs left out because one side lacks a finite value.

  Raises:
    DataError: no metric named, a metric no finished run holds (a misspelling: the message
      names the closest paths), ``a`` equal to ``b``, an unreadable study.json, or no finished
      pair.
  """
  if not metrics:
    raise DataError("--metrics names no metric; pass comma-separated metrics.json paths, e.g. "
                    "prior.entropy.")
  matched = pairs(read_study(workdir), field, a, b)
  values = {}
  for name in {n for p in matched for n in p}:
    m = runner_lib.read_metrics(os.path.join(workdir, name))
    values[name] = None if m is None else stats.numeric_leaves(m)
  done = [(x, y) for x, y in matched if values[x] is not None and values[y] is not None]
  if not done:
    raise DataError(f"no finished pair of runs with {field}={a} and {field}={b} in {workdir}.")
  known = sorted({k for x, y in done for k in (*values[x], *values[y])})
  for metric in metrics:
    if metric not in known:
      close = difflib.get_close_matches(metric, known, n=3, cutoff=0.6)
      raise DataError(f"metric {metric!r} is in no finished run's metrics.json; "
                      + (f"did you mean {', '.join(close)}?" if close else
                         "pass dotted paths of numbers in metrics.json, e.g. prior.entropy."))
  out = {"pairs": [list(p) for p in done]}
  for metric in metrics:
    xs = [values[x].get(metric) for x, _ in done]
    ys = [values[y].get(metric) for _, y in done]
    out[metric] = stats.paired(xs, ys)
    out[metric]["missing"] = [list(p) for p, u, v in zip(done, xs, ys)
                              if not (_finite(u) and _finite(v))]
  return out


def _finite(v) -> bool:
  return v is not None and math.isfinite(v)


def render(result: dict, a: str, b: str) -> str:
  """The markdown table of ``compare``'s result (cells as the study's paired rows)."""
  lines = [f"| metric | {a} − {b} (paired) |", "|---|---|"]
  lines += [f"| {metric} | {render_lib.cell_text(s, signed=True)} |"
            for metric, s in result.items() if metric != "pairs"]
  return "\n".join(lines)


def table(workdir: str, field: str, a: str, b: str, metrics: str) -> str:
  """``render(compare(...))`` for a command line: ``metrics`` is comma-separated.

  Raises:
    DataError: as ``compare``.
  """
  return render(compare(workdir, field, a, b, utils.split_list(metrics)), a, b)
