"""Reading a run's results, numeric summaries and tables (numpy and json).

The tables follow the paper's Tables 1-3: one row per model (the performer,
the explainer without prior loss, the explainer with it), one column per
metric. Besides the loaders of the workdir's files (`load_*`), everything
here is a pure function of arrays or of the parsed `metrics.json`, so
research code can reuse it.
"""

import html
import json
import math
import os

import numpy as np

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
# Training stages drawn first, in this order.
KNOWN_STAGES = ("performer", "explainer_baseline", "explainer_prior")


def load_metrics(workdir):
  """Reads `workdir/metrics.json`.

  Args:
    workdir: str, the pipeline's work directory.

  Returns:
    dict parsed from the file.

  Raises:
    FileNotFoundError: the file does not exist (the evaluate stage has not run).
  """
  path = os.path.join(workdir, "metrics.json")
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f"{path} not found; run the evaluate stage first (it writes "
        "metrics.json), then write the report.")
  with open(path, encoding="utf-8") as f:
    metrics = json.load(f)
  if not isinstance(metrics, dict):
    raise ValueError(f"{path} holds a {type(metrics).__name__}; expected a "
                     "JSON object with one entry per model.")
  return metrics


def read_json(path):
  """Parsed JSON of `path`, or None when it is not valid JSON."""
  with open(path, encoding="utf-8") as f:
    try:
      return json.load(f)
    except json.JSONDecodeError:
      return None


def _load_npz(path):
  """Arrays of an .npz file as a dict, or None when the file is absent."""
  if not os.path.isfile(path):
    return None
  with np.load(path, allow_pickle=False) as data:
    return {k: data[k] for k in data.files}


def load_logs(logs_dir):
  """Reads `logs/*.jsonl` into {stage: [record dict, ...]}.

  Known stages come first (performer, explainer_baseline, explainer_prior),
  then the others sorted. Blank or unparsable lines are skipped.

  Args:
    logs_dir: str, directory of the JSON-lines logs.

  Returns:
    dict stage -> list of dicts; empty when the directory is absent.
  """
  if not os.path.isdir(logs_dir):
    return {}
  stages = sorted(f[:-len(".jsonl")] for f in os.listdir(logs_dir)
                  if f.endswith(".jsonl"))
  stages = ([s for s in KNOWN_STAGES if s in stages]
            + [s for s in stages if s not in KNOWN_STAGES])
  logs = {}
  for stage in stages:
    records = []
    with open(os.path.join(logs_dir, stage + ".jsonl"), encoding="utf-8") as f:
      for line in f:
        try:
          record = json.loads(line)
        except json.JSONDecodeError:
          continue
        if isinstance(record, dict):
          records.append(record)
    logs[stage] = records
  return logs


def load_eval(workdir):
  """Reads `eval/meta.json` and the per-variant arrays.

  Args:
    workdir: str.

  Returns:
    (meta, data, notes): meta a dict (empty when absent), data a dict
    variant -> dict of arrays holding at least "alpha" and "concepts" of
    equal shape [N,n], notes a list of str about what was skipped.
  """
  eval_dir = os.path.join(workdir, "eval")
  notes = []
  meta_path = os.path.join(eval_dir, "meta.json")
  meta = read_json(meta_path) if os.path.isfile(meta_path) else {}
  if not isinstance(meta, dict) or not meta:
    notes.append("eval/meta.json absent or not a JSON object: concept "
                 "names, case, β and epochs are unknown.")
    meta = {}
  variants = list(meta.get("variants") or [])
  if not variants and os.path.isdir(eval_dir):
    found = sorted(f[:-4] for f in os.listdir(eval_dir)
                   if f.endswith(".npz") and f != "images.npz")
    variants = ([v for v in ("baseline", "prior") if v in found]
                + [v for v in found if v not in ("baseline", "prior")])
  data = {}
  for v in variants:
    arrays = _load_npz(os.path.join(eval_dir, f"{v}.npz"))
    if arrays is None:
      notes.append(f"eval/{v}.npz not found: variant {v} is left out.")
    elif ("alpha" not in arrays or "concepts" not in arrays
          or arrays["alpha"].ndim != 2
          or arrays["alpha"].shape != arrays["concepts"].shape):
      notes.append(f"eval/{v}.npz lacks alpha and concepts of equal shape "
                   f"[N,n]: variant {v} is left out.")
    else:
      notes += _drop_mismatched(arrays, arrays["alpha"].shape, f"eval/{v}.npz")
      data[v] = arrays
  return meta, data, notes


def _drop_mismatched(arrays, shape, name):
  """Removes optional arrays whose shape does not fit [N,...]; returns notes.

  "gt_contrib" must have `shape` exactly, the others first dimension N.
  """
  notes = []
  for key in list(arrays):
    ok = (arrays[key].shape == tuple(shape) if key == "gt_contrib" else
          arrays[key].ndim >= 1 and arrays[key].shape[0] == shape[0])
    if not ok:
      notes.append(f"{name}: {key} has shape {arrays[key].shape}, which does "
                   f"not fit {tuple(shape)}; it is ignored.")
      del arrays[key]
  return notes


def load_images(workdir):
  """Reads `eval/images.npz`; returns (arrays or None, notes).

  Arrays that do not match the K images ("gradcam", "part_mask") are
  dropped with a note; "filter_regions" is kept as it is.
  """
  arrays = _load_npz(os.path.join(workdir, "eval", "images.npz"))
  if arrays is None or "images" not in arrays or arrays["images"].ndim != 4:
    notes = [] if arrays is None else [
        "eval/images.npz holds no images [K,H,W,3]; they are ignored."]
    return (None if arrays is None else {
        k: v for k, v in arrays.items() if k.startswith("filter_region")},
            notes)
  per_image = {k: arrays.pop(k) for k in ("images", "gradcam", "part_mask")
               if k in arrays}
  notes = _drop_mismatched(per_image, per_image["images"].shape[:1],
                           "eval/images.npz")
  arrays.update(per_image)
  return arrays, notes


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


def normalised_contributions(contrib, eps=1e-12):
  """c_i = |α_i y_i| / Σ_j |α_j y_j| per image.

  Args:
    contrib: [N,n] float, contributions α_i·y_i.
    eps: float, floor of the denominator (an all-zero row gives c = 0).

  Returns:
    [N,n] float64, rows summing to 1 (or 0 for an all-zero row).
  """
  a = np.abs(np.asarray(contrib, np.float64))
  return a / np.maximum(a.sum(axis=-1, keepdims=True), eps)


def contribution_entropy(contrib):
  """Entropy H(c) = −Σ c_i ln c_i of each image's contribution distribution.

  Args:
    contrib: [N,n] float, contributions α_i·y_i.

  Returns:
    [N] float64 in nats; 0 log 0 is taken as 0.
  """
  c = normalised_contributions(contrib)
  logc = np.log(np.where(c > 0, c, 1.0))
  return -(c * logc).sum(axis=-1)


def rank_correlation(a, b):
  """Spearman rank correlation of two vectors, ties given average ranks.

  Args:
    a: [n] float.
    b: [n] float.

  Returns:
    float in [-1, 1]; nan when either vector is constant.
  """
  def ranks(x):
    x = np.asarray(x, np.float64).ravel()
    r = np.empty(x.size)
    r[np.argsort(x, kind="stable")] = np.arange(x.size)
    _, inv = np.unique(x, return_inverse=True)
    return (np.bincount(inv, r) / np.bincount(inv))[inv]
  ra, rb = ranks(a), ranks(b)
  ra, rb = ra - ra.mean(), rb - rb.mean()
  denom = math.sqrt(float((ra ** 2).sum() * (rb ** 2).sum()))
  return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


def concept_label(name, value, case):
  """Names a concept as a reason: CelebA style "no <name>" when absent.

  Args:
    name: str, the concept's name.
    value: float, the concept's value y_i on this image.
    case: "shared_feature" (attributes: a negative y_i means the attribute
      is absent, labelled "no <name>") or anything else (plain name). A
      negated attribute such as CelebA's "No_Beard" reads "Beard" when absent.

  Returns:
    str.
  """
  if case == "shared_feature" and value < 0:
    name = str(name)
    if name.lower().startswith("no_"):
      return name[3:]
    return f"no {name}"
  return str(name)


def top_reasons(contrib, concepts, names, case, top_k):
  """The top_k concepts of one image by |α_i y_i|, named.

  Args:
    contrib: [n] float, contributions α_i·y_i of one image.
    concepts: [n] float, concept values y_i of the image (for the labels).
    names: sequence of n str.
    case: str, see `concept_label`.
    top_k: int, how many reasons.

  Returns:
    list of (label, contribution) pairs, largest |contribution| first.
  """
  contrib = np.asarray(contrib, np.float64).ravel()
  order = np.argsort(-np.abs(contrib), kind="stable")[:top_k]
  return [(concept_label(names[i], concepts[i], case), float(contrib[i]))
          for i in order]
