"""Reading a run's result files: metrics.json, eval/*.npz, eval/meta.json, logs/*.jsonl.

The report only reads what the evaluators wrote; every loader tolerates a
missing or damaged optional file and says what was left out.
"""

import json
import os

import numpy as np

from xplain_jax.infra import checkpoint
from xplain_jax.spec import stages
from xplain_jax.errors import CheckpointError, DamagedFileError

# Training stages drawn first, in this order.
KNOWN_STAGES = ("performer", "explainer_baseline", "explainer_prior")
# Per-concept arrays of eval/<variant>.npz: shape [n].
PER_CONCEPT = ("mean_abs_contrib", "gt_mean_abs")
# Arrays of eval/<variant>.npz with the shape [N,n] of alpha.
LIKE_ALPHA = ("gt_contrib", "contrib", "share", "delta", "concept_labels")
# eval/*.npz files that are not explainer variants.
NOT_VARIANTS = ("images.npz", "fidelity_reference.npz", "sanity.npz")


def load_metrics(workdir):
  """Reads `workdir/metrics.json`.

  Args:
    workdir: str, the pipeline's work directory.

  Returns:
    dict parsed from the file.

  Raises:
    CheckpointError: the file does not exist (the evaluate stage has not
      run), is not valid JSON or not a JSON object.
  """
  path = os.path.join(workdir, stages.METRICS_FILE)
  if not os.path.isfile(path):
    raise CheckpointError(
        f"{path} not found; run the evaluate stage first (it writes "
        "metrics.json), then write the report.")
  with open(path, encoding="utf-8") as f:
    try:
      metrics = json.load(f)
    except json.JSONDecodeError as e:
      raise CheckpointError(
          f"{path} is not valid JSON ({e}); delete it and rerun the evaluate "
          "stage (--config.stages=evaluate,report).") from None
  if not isinstance(metrics, dict):
    raise CheckpointError(
        f"{path} holds a {type(metrics).__name__}, not a JSON object with "
        "one entry per model; delete it and rerun the evaluate stage.")
  return metrics


def read_json(path):
  """Parsed JSON of `path`, or None when it is not valid JSON."""
  try:
    return checkpoint.read_json(path)
  except DamagedFileError:
    return None


def load_npz(path):
  """Arrays of an .npz file as a dict, or None when the file is absent.

  Raises:
    DamagedFileError: the file exists but is truncated or not an .npz.
  """
  if not os.path.isfile(path):
    return None
  return checkpoint.load_npz(path)


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
    # A damaged log's bytes that are not UTF-8 become unparsable lines, skipped below.
    with open(os.path.join(logs_dir, stage + ".jsonl"), encoding="utf-8", errors="replace") as f:
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
                   if f.endswith(".npz") and f not in NOT_VARIANTS)
    variants = ([v for v in ("baseline", "prior") if v in found]
                + [v for v in found if v not in ("baseline", "prior")])
  data = {}
  for v in variants:
    arrays = load_npz(os.path.join(eval_dir, f"{v}.npz"))
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

  The arrays of `LIKE_ALPHA` must have `shape` exactly, those of
  `PER_CONCEPT` shape [n], the others first dimension N.
  """
  notes = []
  for key in list(arrays):
    if key in LIKE_ALPHA:
      ok = arrays[key].shape == tuple(shape)
    elif key in PER_CONCEPT:
      ok = arrays[key].shape == tuple(shape[1:])
    else:
      ok = arrays[key].ndim >= 1 and arrays[key].shape[0] == shape[0]
    if not ok:
      notes.append(f"{name}: {key} has shape {arrays[key].shape}, which does "
                   f"not fit {tuple(shape)}; it is ignored.")
      del arrays[key]
  return notes


def load_images(workdir):
  """Reads `eval/images.npz`; returns (arrays or None, notes).

  Arrays that do not match the K images ("gradcam", "part_mask",
  "top_index_*") are dropped with a note; "filter_regions" is kept as it is.
  """
  arrays = load_npz(os.path.join(workdir, "eval", "images.npz"))
  if arrays is None or "images" not in arrays or arrays["images"].ndim != 4:
    notes = [] if arrays is None else [
        "eval/images.npz holds no images [K,H,W,3]; they are ignored."]
    return (None if arrays is None else {
        k: v for k, v in arrays.items() if k.startswith("filter_region")},
            notes)
  per_image = {k: arrays.pop(k) for k in list(arrays)
               if k in ("images", "gradcam", "part_mask")
               or k.startswith("top_index_")}
  notes = _drop_mismatched(per_image, per_image["images"].shape[:1],
                           "eval/images.npz")
  arrays.update(per_image)
  return arrays, notes




def load_fidelity_reference(workdir):
  """Reads `eval/fidelity_reference.npz` (the fidelity references, deletion counts and
  curves); returns (arrays or None, notes). A damaged file is left out with a note."""
  try:
    return load_npz(os.path.join(workdir, "eval", "fidelity_reference.npz")), []
  except DamagedFileError as e:
    return None, [f"eval/fidelity_reference.npz is damaged ({e}); deletion curves are left out."]
