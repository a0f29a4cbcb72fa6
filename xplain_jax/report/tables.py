"""Tables of a run's results and the naming of reasons (no metric is computed here).

The tables follow the paper's Tables 1-3: one row per model (the performer,
the explainer without prior loss, the explainer with it), one column per
metric, the values as `metrics.json` holds them. Everything here is a pure
function of the parsed files (`report.io` reads them), so research code can
reuse it.
"""

import html
import math

import numpy as np

from xplain_jax.core import explain

# Known metrics, in the order of the paper's tables.
METRIC_ORDER = ("entropy", "accuracy", "relative_deviation",
                "gt_rank_correlation")
# Known models, in the order of the paper's tables.
MODEL_ORDER = ("performer", "baseline", "prior")
MODEL_TITLES = {
    "performer": "performer",
    "baseline": "explainer, baseline (no prior loss)",
    "prior": "explainer, with prior loss",
}
METRIC_DESCRIPTIONS = {
    "entropy": ("entropy of the contribution distribution c_i = |α_i y_i| / "
                "Σ_j |α_j y_j| in nats, mean over images; low means few "
                "concepts carry the explanation (bias-interpreting)."),
    "accuracy": ("classification accuracy: the performer from its own score, "
                 "an explainer from ŷ > τ with the accuracy-maximising τ "
                 "(the explainer never saw labels)."),
    "relative_deviation": ("|y − ŷ| / (max y − min y) over the evaluated "
                           "images, mean over images: how far the explainer "
                           "is from the performer (lower is better)."),
    "gt_rank_correlation": ("rank correlation between the explainer's mean "
                            "|contribution| per concept and the planted "
                            "ground truth of the synthetic data (higher is "
                            "better)."),
}
MISSING = "—"
# Longest list of scalars shown in one cell; a longer one gets its own table.
MAX_LIST_CELL = 12


def format_value(value, digits=4):
  """Formats one table cell: floats with `digits` decimals, the rest as text.

  Args:
    value: number, str, bool, None, or any JSON value.
    digits: int, decimals for floats (default 4).

  Returns:
    str.
  """
  if value is None:
    return MISSING
  if isinstance(value, bool):
    return str(value)
  if isinstance(value, (int, np.integer)):
    return str(int(value))
  if isinstance(value, (float, np.floating)):
    return "nan" if math.isnan(value) else f"{float(value):.{digits}f}"
  if is_interval(value):
    return format_interval(value, digits)
  if isinstance(value, dict):  # a fallback: the tables below never pass a dict
    return "; ".join(f"{k}: {format_value(v, digits)}" for k, v in value.items())
  if isinstance(value, (list, tuple, np.ndarray)):
    return ", ".join(format_value(v, digits) for v in value)
  return str(value)


def is_interval(value):
  """True for an interval object of metrics.json: a dict with "mean", "low" and "high"."""
  return isinstance(value, dict) and {"mean", "low", "high"} <= set(value)


def format_interval(value, digits=4):
  """'mean (low – high)' of an interval dict, e.g. '0.5570 (0.5480 – 0.5670)'.

  Args:
    value: dict with "mean", "low", "high" (other keys, e.g. "num_images", are not shown).
    digits: int, decimals.

  Returns:
    str without brackets or braces.
  """
  f = lambda x: format_value(x, digits)
  return f"{f(value['mean'])} ({f(value['low'])} – {f(value['high'])})"


def _is_cell(value):
  """A value one table cell shows: a scalar, an interval, or a short list of scalars."""
  if isinstance(value, (list, tuple)):
    return len(value) <= MAX_LIST_CELL and not any(isinstance(v, (list, tuple, dict))
                                                   for v in value)
  return not isinstance(value, dict) or is_interval(value)


def _split(record):
  """(cells, nested): the entries of a dict one row can show, and the rest."""
  cells = {k: v for k, v in record.items() if _is_cell(v)}
  return cells, {k: v for k, v in record.items() if k not in cells}


def _expand(cells):
  """Cells with each interval's other keys (num_images, significant, ...) as cells of their own."""
  out = {}
  for key, value in cells.items():
    out[key] = value
    if is_interval(value):
      out.update({f"{key}: {k}": v for k, v in value.items() if k not in ("mean", "low", "high")})
  return out


def _is_model(value):
  return isinstance(value, dict) and any(k in value for k in METRIC_ORDER)


def _record_table(first, records, digits, titles=None):
  """One row per record (dicts of cells), one column per key, in first-seen order."""
  columns = []
  for record in records.values():
    columns += [k for k in record if k not in columns]
  known = [c for c in METRIC_ORDER if c in columns]
  columns = known + [c for c in columns if c not in known]
  titles = titles or {}
  rows = [[titles.get(name, name)] + [format_value(r.get(c), digits) for c in columns]
          for name, r in records.items()]
  return [first] + columns, rows


def metrics_table(metrics, digits=4):
  """Builds the paper-style table from the parsed `metrics.json`.

  Rows are the known models present (performer, baseline, prior) followed by
  any other entry holding one of the paper's metrics (e.g. prior_weights);
  columns are the known metrics present in some row followed by the other
  keys those rows hold directly. A row's nested objects (e.g. the
  performer's concept_accuracy) and the other metric families are left to
  `family_tables`.

  Args:
    metrics: dict, as read by `load_metrics`.
    digits: int, decimals for floats.

  Returns:
    (header, rows): header a list of str, rows a list of lists of str.
  """
  models = [m for m in MODEL_ORDER if isinstance(metrics.get(m), dict)]
  models += sorted(k for k, v in metrics.items()
                   if k not in MODEL_ORDER and k != "meta" and _is_model(v))
  return _record_table("model", {m: _split(metrics[m])[0] for m in models}, digits,
                       MODEL_TITLES)


def family_tables(name, value, digits=4):
  """Splits one metric family of metrics.json into tables with named columns.

  Generic over the family's shape, so a new evaluator's block is shown
  without code here: an object's entries that are objects of cells become
  one table (one row per entry and one column per key, or the other way
  round where the keys outnumber the entries, to stay narrow; a lone such
  entry a two-column table); its own cells a two-column table; deeper objects
  and long lists their own tables, titled by their path. No cell holds an
  object or a list: an interval
  {"mean", "low", "high", ...} reads 'mean (low – high)' (its other keys in
  columns of their own), a short list of scalars 'a, b, c'.

  Args:
    name: str, the family's path, e.g. "fidelity" or "performer / concept_accuracy".
    value: the family's parsed JSON value.
    digits: int, decimals for floats.

  Returns:
    list of (title, header, rows).
  """
  if isinstance(value, (list, tuple)):
    if all(isinstance(v, dict) for v in value) and value:
      return family_tables(name, {str(i): v for i, v in enumerate(value)}, digits)
    return [(name, ["index", "value"],
             [[str(i), format_value(v, digits)] for i, v in enumerate(value)])]
  if not isinstance(value, dict) or _is_cell(value):
    return [(name, ["quantity", "value"],
             [[k, format_value(v, digits)] for k, v in _expand({name: value}).items()])]
  cells, records, deeper = {}, {}, []
  for key, v in value.items():
    if _is_cell(v):
      cells[key] = v
      continue
    flat, nested = _split(v) if isinstance(v, dict) else ({}, {})
    if flat:  # a record: one row here, its deeper objects their own tables
      records[key] = _expand(flat)
      for sub, w in nested.items():
        deeper += family_tables(f"{name} / {key} / {sub}", w, digits)
    else:  # a group of records (e.g. peers) or a long list: tables of its own
      deeper += family_tables(f"{name} / {key}", v, digits)
  out = []
  if len(records) > 1:  # records as rows, or as columns where they are fewer than their keys
    header, rows = _record_table(name, records, digits)
    if len(header) - 1 > len(rows):
      header, rows = [name] + [r[0] for r in rows], [
          [key] + [r[i] for r in rows] for i, key in enumerate(header[1:], start=1)]
    out.append((name, header, rows))
  elif records:  # a lone record (e.g. the accuracy per concept) reads better as key, value
    (key, record), = records.items()
    out.append((f"{name} / {key}", ["quantity", "value"],
                [[str(k), format_value(v, digits)] for k, v in record.items()]))
  if cells:
    out.append((name, ["quantity", "value"],
                [[str(k), format_value(v, digits)] for k, v in _expand(cells).items()]))
  return out + deeper


def metric_family_tables(metrics, digits=4):
  """Every table of metrics.json after the paper-style one.

  The nested objects of the model rows (e.g. "performer / concept_accuracy")
  first, then each other family (fidelity, fidelity_reference, sanity,
  parts, ...) in the file's order; "meta" belongs to the run table.

  Args:
    metrics: dict, as read by `load_metrics`.
    digits: int, decimals for floats.

  Returns:
    list of (title, header, rows).
  """
  out = []
  models = [m for m in metrics if m in MODEL_ORDER or _is_model(metrics[m])]
  for m in models:
    if isinstance(metrics[m], dict):
      for key, v in _split(metrics[m])[1].items():
        out += family_tables(f"{m} / {key}", v, digits)
  for key, v in metrics.items():
    if key not in models and key != "meta":
      out += family_tables(key, v, digits)
  return out


def key_value_table(mapping, digits=4):
  """Two-column table of a flat dict (e.g. the run's meta data).

  Args:
    mapping: dict.
    digits: int, decimals for floats.

  Returns:
    (header, rows) as in `metrics_table`.
  """
  rows = [[str(k), format_value(v, digits)] for k, v in mapping.items()]
  return ["key", "value"], rows


def table_html(header, rows):
  """Renders a table as an HTML <table> string (cells escaped)."""
  head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
  body = "".join(
      "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
      for row in rows)
  return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def table_markdown(header, rows):
  """Renders a table as GitHub-flavoured Markdown (pipes escaped)."""
  esc = lambda s: str(s).replace("|", "\\|")
  lines = ["| " + " | ".join(esc(h) for h in header) + " |",
           "|" + "|".join("---" for _ in header) + "|"]
  lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
  return "\n".join(lines)


def concept_label(name, value, case):
  """``explain.concept_label`` with the run's case: "no <name>" for an absent Case-2 attribute."""
  return explain.concept_label(name, value, negate_absent=case == "shared_feature")


def name_reasons(indices, contrib, concepts, names, case):
  """Names the reasons an evaluator chose (``top_index_*`` of eval/images.npz).

  Args:
    indices: [k] int, the concepts of one image, largest |contribution| first.
    contrib: [n] float, contributions of the image (α_i·y_i, or planted ones).
    concepts: [n] float, concept values y_i of the image (for the labels).
    names: sequence of n str.
    case: str, see `concept_label`.

  Returns:
    list of (label, contribution) pairs in the order of `indices`.
  """
  return [(concept_label(names[i], concepts[i], case), float(contrib[i]))
          for i in np.asarray(indices, np.int64).ravel()]
