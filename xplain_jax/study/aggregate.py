"""Aggregation of a study: table cells, paired differences and sweeps from the runs' metrics.

Pure functions of ``{run name: metrics dict or None}`` plus the grid; ``collect`` reads the
sub-workdirs. A table cell is every run with the cell's column (and row) value, pooled over all
other grid fields (seeds, and categories or targets where the paper averages); an ``all``
column pools over the column field too. Runs without a complete ``metrics.json`` are listed as
missing in every cell they belong to. Paired differences a − b (e.g. prior − baseline) are taken
within a run, i.e. on the same performer, then summarised over the cell's runs with a paired
t-test. Metric names are dotted paths into metrics.json (``prior.entropy``,
``fidelity.prior.interventional_rank_correlation``); any numeric leaf can be named, and
``leaves`` summarises all of them per column.
"""

from __future__ import annotations

import os
from typing import Sequence

from xplain_jax.study import grid as grid_lib
from xplain_jax.study import runner as runner_lib
from xplain_jax.study import stats

ALL = "all"


def _values(runs, field: str) -> list:
  out = []
  for r in runs:
    v = r.point.get(field)
    if v not in out:
      out.append(v)
  return out


def label(value) -> str:
  return ALL if value is ALL else grid_lib.format_value(value)


def collect(runs: Sequence[grid_lib.Run], workdir: str, variants: Sequence[str]) -> dict:
  """``{run name: flattened metrics or None}`` (None: no complete metrics.json yet)."""
  out = {}
  for r in runs:
    d = os.path.join(workdir, r.name)
    m = runner_lib.read_metrics(d) if runner_lib.is_complete(d, variants) else None
    out[r.name] = None if m is None else stats.numeric_leaves(m)
  return out


def metric_names(variants: Sequence[str], variant_metrics: Sequence[str],
                 metrics: Sequence[str]) -> list[str]:
  """Per-variant metrics as ``variant.metric`` (grouped by metric), then the global ones."""
  return [f"{v}.{m}" for m in variant_metrics for v in variants] + list(metrics)


def _cell(members, results, metric: str) -> dict:
  done = [r.name for r in members if results[r.name] is not None]
  out = stats.summarize([results[n].get(metric) for n in done])
  out.update(runs=[r.name for r in members],
             missing=[r.name for r in members if results[r.name] is None])
  return out


def _pair(members, results, a: str, b: str) -> dict:
  done = [r.name for r in members if results[r.name] is not None]
  out = stats.paired([results[n].get(a) for n in done], [results[n].get(b) for n in done])
  out.update(runs=[r.name for r in members],
             missing=[r.name for r in members if results[r.name] is None])
  return out


def _split(pair: str, sep: str) -> tuple[str, str]:
  a, _, b = pair.partition(sep)
  if not a.strip() or not b.strip():
    raise ValueError(f"pair {pair!r} must read 'A{sep}B' (the difference A − B).")
  return a.strip(), b.strip()


def aggregate(runs: Sequence[grid_lib.Run], results: dict, *, columns: str = "", rows: str = "",
              variants: Sequence[str] = (), variant_metrics: Sequence[str] = (),
              metrics: Sequence[str] = (), paired: Sequence[str] = (),
              metric_pairs: Sequence[str] = (), average_column: bool = False,
              sweeps: Sequence[tuple[str, str]] = ()) -> dict:
  """The study's numbers.

  Args:
    runs: the grid; results: ``{run name: flattened metrics or None}``.
    columns, rows: grid fields whose values make the table's columns / rows ("" = one).
    variants, variant_metrics: metrics ``variant.metric`` for each pair; metrics: global paths.
    paired: ``"a-b"`` variant pairs whose per-run differences are summarised for every
      variant metric; metric_pairs: ``"PATH_A:PATH_B"`` pairs of any two metrics (A − B).
    average_column: add an ``all`` column pooling over the column values.
    sweeps: ``(axis name, field)`` of swept (non-replicate) axes to summarise against.

  Returns:
    dict with ``columns``, ``rows`` (labels), ``cells`` and ``paired`` (lists of records with
    metric/row/column and the statistics), ``sweeps``, ``leaves`` and ``missing``.
  """
  col_vals = _values(runs, columns) if columns else []
  if not columns or average_column:
    col_vals = col_vals + [ALL]
  row_vals = _values(runs, rows) if rows else [ALL]

  def members(row, col):
    return [r for r in runs if (row is ALL or r.point.get(rows) == row)
            and (col is ALL or r.point.get(columns) == col)]

  names = metric_names(variants, variant_metrics, metrics)
  cells, pairs = [], []
  for row in row_vals:
    for col in col_vals:
      m = members(row, col)
      for metric in names:
        cells.append(dict(metric=metric, row=label(row), column=label(col),
                          **_cell(m, results, metric)))
      todo = [(f"{a}.{vm}", f"{b}.{vm}") for a, b in (_split(p, "-") for p in paired)
              for vm in variant_metrics] + [_split(p, ":") for p in metric_pairs]
      for a, b in todo:
        pairs.append(dict(a=a, b=b, row=label(row), column=label(col), **_pair(m, results, a, b)))
  sweep_out = {}
  for axis, field in sweeps:
    xs = _values(runs, field)
    series = {}
    for metric in names:
      series[metric] = [_cell([r for r in runs if r.point.get(field) == x], results, metric)
                        for x in xs]
    sweep_out[axis] = dict(field=field, values=xs, series=series)
  leaves = {}
  for col in col_vals:
    m = [r for r in members(ALL, col) if results[r.name] is not None]
    paths = sorted({p for r in m for p in results[r.name]})
    leaves[label(col)] = {p: stats.summarize([results[r.name].get(p) for r in m]) for p in paths}
  return dict(columns=[label(c) for c in col_vals], rows=[label(r) for r in row_vals],
              cells=cells, paired=pairs, sweeps=sweep_out, leaves=leaves,
              missing=[r.name for r in runs if results[r.name] is None])


def sharing(runs: Sequence[grid_lib.Run], workdir: str) -> list[dict]:
  """Which runs reused which run's performer (read from the sub-workdirs)."""
  groups: dict[str, list[str]] = {}
  for r in runs:
    lead = runner_lib.shared_from(os.path.join(workdir, r.name))
    if lead:
      groups.setdefault(lead, []).append(r.name)
  return [dict(trained_in=lead, reused_by=sorted(fs)) for lead, fs in sorted(groups.items())]
