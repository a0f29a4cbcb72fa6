"""Tables of a run's results and the naming of reasons (no metric is computed here).

The tables follow the paper's Tables 1-3: one row per model (the performer,
the explainer without prior loss, the explainer with it), one column per
metric, the values as `metrics.json` holds them. Everything here is a pure
function of the parsed files (`report.io` reads them), so research code can
reuse it.
"""

import html
import json
import math

import numpy as np

from xplain_jax import explain

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
  if isinstance(value, (list, dict)):
    return json.dumps(value)
  return str(value)


def metrics_table(metrics, digits=4):
  """Builds the paper-style table from the parsed `metrics.json`.

  Rows are the known models present (performer, baseline, prior) followed
  by any other object-valued entry except "meta"; columns are the known
  metrics present in some row followed by any extra keys, sorted.

  Args:
    metrics: dict, as read by `load_metrics`.
    digits: int, decimals for floats.

  Returns:
    (header, rows): header a list of str, rows a list of lists of str.
  """
  models = [m for m in MODEL_ORDER if isinstance(metrics.get(m), dict)]
  models += sorted(k for k, v in metrics.items()
                   if k not in MODEL_ORDER and k != "meta"
                   and isinstance(v, dict))
  keys = set()
  for m in models:
    keys.update(metrics[m])
  columns = [k for k in METRIC_ORDER if k in keys]
  columns += sorted(keys - set(METRIC_ORDER))
  header = ["model"] + columns
  rows = [[MODEL_TITLES.get(m, m)]
          + [format_value(metrics[m].get(c), digits) for c in columns]
          for m in models]
  return header, rows


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
