"""The study's report: ``study.md``, ``study.html`` and one plot per swept parameter.

Reads only the dict ``aggregate.aggregate`` returns (as stored in ``study.json``). A cell reads
``mean ± h (n=k)`` where ``[mean − h, mean + h]`` is the 95 % t-interval over the cell's runs;
``[m missing]`` counts runs of the cell without a finished metrics.json. Paired rows read
``a − b``: the mean per-run difference ± its interval and the paired t-test's p-value; where
that interval includes 0 the cell adds "no measurable difference". A metric row's title is its
dotted path, or ``table.labels[path with "/" for "."]`` where the study names it.
"""

from __future__ import annotations

import html
import os

SIGN = "−"
NO_DIFFERENCE = "no measurable difference"
PART = " · "  # "measure · explanation" in metric labels; a pair of one measure reads once


def fmt(x, signed: bool = False) -> str:
  if x is None:
    return "–"
  s = f"{x:+.3f}" if signed else f"{x:.3f}"
  return s.replace("-", SIGN)


def cell_text(c: dict, *, signed: bool = False) -> str:
  """``mean ± half (n=k)`` (+ ``p=`` for paired cells, + ``[m missing]``)."""
  if not c["n"]:
    text = "–"
  else:
    text = fmt(c["mean"], signed)
    if c.get("half_width") is not None:
      text += f" ± {fmt(c['half_width'])}"
    if c.get("p_value") is not None:
      text += f", p={c['p_value']:.2g}"
    text += f" (n={c['n']})"
    if signed and c.get("ci_low") is not None and c["ci_low"] <= 0.0 <= c["ci_high"]:
      text += f", {NO_DIFFERENCE}"
  if c.get("missing"):
    text += f" [{len(c['missing'])} missing]"
  return text


def metric_title(path: str, labels: dict) -> str:
  """A metric row's title: the study's label for ``path`` (keyed with "/"), else the path."""
  return labels.get(path.replace(".", "/"), path)


def pair_title(a: str, b: str) -> str:
  """``A − B``; two titles ``M · X`` and ``M · Y`` of one measure M give ``M · X − Y``."""
  (ma, _, xa), (mb, _, xb) = a.partition(PART), b.partition(PART)
  if xa and xb and ma == mb:
    return f"{ma}{PART}{xa} {SIGN} {xb}"
  return f"{a} {SIGN} {b}"


def tables(study: dict) -> list[tuple[str, list[str], list[list[str]]]]:
  """``(title, header, rows)`` per table: one per per-variant metric, one for global metrics."""
  agg, spec = study["aggregate"], study["table"]
  cols, row_vals = agg["columns"], agg["rows"]
  col_title = spec["columns"] or ""
  header = [col_title] + [spec["labels"].get(c, c) for c in cols]
  index = {(c["metric"], c["row"], c["column"]): c for c in agg["cells"]}
  pidx = {(p["a"], p["b"], p["row"], p["column"]): p for p in agg["paired"]}
  out = []
  for vm in spec["variant_metrics"]:
    rows = []
    for rv in row_vals:
      prefix = "" if rv == "all" and not spec["rows"] else f"{spec['labels'].get(rv, rv)}: "
      for v in spec["variants"]:
        rows.append([prefix + v] + [cell_text(index[(f"{v}.{vm}", rv, c)]) for c in cols])
      for p in spec["paired"]:
        a, b = (s.strip() for s in p.split("-", 1))
        rows.append([f"{prefix}{a} {SIGN} {b}"] +
                    [cell_text(pidx[(f"{a}.{vm}", f"{b}.{vm}", rv, c)], signed=True) for c in cols])
    out.append((vm, header, rows))
  if spec["metrics"] or spec["metric_pairs"]:
    rows = []
    for rv in row_vals:
      prefix = f"{spec['labels'].get(rv, rv)}: " if spec["rows"] else ""
      title = lambda m: metric_title(m, spec["labels"])
      rows += [[prefix + title(m)] + [cell_text(index[(m, rv, c)]) for c in cols]
               for m in spec["metrics"]]
      for p in spec["metric_pairs"]:
        a, _, b = (s.strip() for s in p.partition(":"))
        rows.append([prefix + pair_title(title(a), title(b))] +
                    [cell_text(pidx[(a, b, rv, c)], signed=True) for c in cols])
    out.append(("other metrics", header, rows))
  return out


def leaves_table(study: dict) -> tuple[list[str], list[list[str]]]:
  """Every numeric leaf of the runs' metrics.json, per column (mean ± half-width, n)."""
  leaves = study["aggregate"]["leaves"]
  cols = list(leaves)
  paths = sorted({p for c in cols for p in leaves[c]})
  empty = dict(mean=None, n=0)
  rows = [[p] + [cell_text(leaves[c].get(p, empty)) for c in cols] for p in paths]
  return ["metric"] + [study["table"]["labels"].get(c, c) for c in cols], rows


def runs_table(study: dict) -> tuple[list[str], list[list[str]]]:
  shared = {r: s["trained_in"] for s in study["sharing"] for r in s["reused_by"]}
  rows = [[r["name"], r["status"], shared.get(r["name"], "own")] for r in study["runs"]]
  return ["run", "status", "performer"], rows


def _md_table(header, rows) -> str:
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(r) + " |" for r in rows]
  return "\n".join(lines)


def _intro(study: dict) -> list[str]:
  n, miss = len(study["runs"]), len(study["aggregate"]["missing"])
  return [f"Base config `{study['base']}`; {n} runs, {n - miss} finished, {miss} missing. "
          "Cells: mean ± half-width of the 95 % t-interval over the cell's runs (n); paired rows: "
          "per-run difference (same performer) ± 95 % interval, paired t-test p-value."]


def markdown(study: dict, figures: list[str]) -> str:
  parts = [f"# Study {study['name']}", ""] + _intro(study) + [""]
  for title, header, rows in tables(study):
    parts += [f"## {title}", "", _md_table(header, rows), ""]
  parts += ["## Figures", ""] + [f"![{f}]({f})" for f in figures] + [""]
  header, rows = leaves_table(study)
  parts += ["## Every metric", "", _md_table(header, rows), ""]
  header, rows = runs_table(study)
  parts += ["## Runs", "", _md_table(header, rows), ""]
  return "\n".join(parts)


def _html_table(header, rows) -> str:
  h = "".join(f"<th>{html.escape(x)}</th>" for x in header)
  body = "".join("<tr>" + "".join(f"<td>{html.escape(x)}</td>" for x in r) + "</tr>" for r in rows)
  return f"<table><tr>{h}</tr>{body}</table>"


def html_page(study: dict, figures: list[str]) -> str:
  parts = [f"<h1>Study {html.escape(study['name'])}</h1>"]
  parts += [f"<p>{html.escape(t)}</p>" for t in _intro(study)]
  for title, header, rows in tables(study):
    parts += [f"<h2>{html.escape(title)}</h2>", _html_table(header, rows)]
  parts += ["<h2>Figures</h2>"] + [f'<img src="{html.escape(f)}" width="900">' for f in figures]
  header, rows = leaves_table(study)
  parts += ["<h2>Every metric</h2>", _html_table(header, rows)]
  header, rows = runs_table(study)
  parts += ["<h2>Runs</h2>", _html_table(header, rows)]
  style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
           "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}")
  return (f"<!doctype html><html><head><meta charset='utf-8'><style>{style}</style></head>"
          f"<body>{''.join(parts)}</body></html>")


def plot_sweeps(study: dict, directory: str) -> list[str]:
  """One PNG per swept parameter: each metric against the value, 95 % intervals as bars.

  Returns the file names relative to the study folder (``figures/sweep_AXIS.png``).
  """
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  spec, out = study["table"], []
  groups = [(vm, [f"{v}.{vm}" for v in spec["variants"]]) for vm in spec["variant_metrics"]]
  groups += [(m, [m]) for m in spec["metrics"]]
  for axis, sw in study["aggregate"]["sweeps"].items():
    ncols = min(4, len(groups))
    nrows = -(-len(groups) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 3.2 * nrows), squeeze=False)
    for ax in axes.flat[len(groups):]:
      ax.axis("off")
    xs = list(range(len(sw["values"])))
    for ax, (title, series) in zip(axes.flat, groups):
      for k, metric in enumerate(series):
        cells = sw["series"][metric]
        ys = [c["mean"] if c["mean"] is not None else float("nan") for c in cells]
        err = [c["half_width"] or 0.0 for c in cells]
        ax.errorbar([x + 0.05 * k for x in xs], ys, yerr=err, marker="o", capsize=3,
                    label=metric.split(".")[0] if len(series) > 1 else None)
      ax.set_xticks(xs, [str(v) for v in sw["values"]])
      ax.set_xlabel(sw["field"])
      ax.set_title(title)
      if len(series) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(directory, exist_ok=True)
    name = f"sweep_{axis}.png"
    fig.savefig(os.path.join(directory, name), dpi=90)
    plt.close(fig)
    out.append(f"figures/{name}")
  return out
