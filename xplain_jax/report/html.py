"""Writes the HTML and Markdown report of a finished pipeline run.

`write_report(workdir)` reads what the evaluate stage left in the workdir
(`metrics.json`, `eval/*.npz`, `eval/meta.json`, `logs/*.jsonl`), draws the
figures into `workdir/figures/`, and writes `report.html` and `report.md`.
Only `metrics.json` is required; every other input is optional and a
missing one skips its section with a note.

A report is a list of sections `(title, blocks)`; a block is one of
`("p", text)`, `("note", text)`, `("list", [text])`,
`("table", header, rows)` or `("figure", relative_path, caption)`.
"""

import os

import numpy as np

from xplain_jax import utils
from xplain_jax.report import fidelity_section
from xplain_jax.report import figures
from xplain_jax.report import training_figures
from xplain_jax.report import io
from xplain_jax.report import patches as patches_lib
from xplain_jax.report.render import render_html, render_markdown  # pylint: disable=unused-import
from xplain_jax.report import scoring
from xplain_jax.report import tables

def _concept_names(meta, n):
  names = list(meta.get("concept_names") or [])
  return [str(s) for s in names] if len(names) == n else [
      f"concept {i}" for i in range(n)]


def _fmt(x):
  return f"{float(x):.3f}"


def _image_sections(ctx, num_images):
  """Per-image explanations and part contributions (Fig. 3, 5-9).

  The reasons are those the evaluator chose (``top_index_<variant>`` of
  eval/images.npz); the report only names and draws them.
  """
  meta, data, images, fig = ctx["meta"], ctx["data"], ctx["images"], ctx["fig"]
  blocks, part_blocks = [], []
  if not data:
    return blocks, part_blocks
  first = next(iter(data.values()))
  n = first["alpha"].shape[1]
  names = _concept_names(meta, n)
  if meta.get("concept_names") and len(meta["concept_names"]) != n:
    blocks.append(("note", f"eval/meta.json names "
                           f"{len(meta['concept_names'])} concepts, the "
                           f"arrays hold n = {n}: concepts are numbered."))
  case = meta.get("case")
  images = images or {}
  img, gcam, mask = (images.get(k) for k in ("images", "gradcam", "part_mask"))
  tops = {v: images.get(f"top_index_{v}") for v in data}
  if img is None or any(t is None for t in tops.values()):
    blocks.append(("note", "eval/images.npz lacks the images or the chosen "
                           "reasons (top_index_<variant>): rerun the "
                           "evaluate stage for per-image explanations."))
    return blocks, part_blocks
  count = min([num_images, img.shape[0]] + [t.shape[0] for t in tops.values()])
  gt_top = images.get("top_index_gt")
  gt = first.get("gt_contrib")
  target = meta.get("target_name", "target")
  for k in range(count):
    panels, lines = {}, []
    for v, d in data.items():
      contrib = d["contrib"][k] if "contrib" in d else (
          d["alpha"][k] * d["concepts"][k])
      y_hat = d.get("y_hat")
      reasons = scoring.image_reasons(  # top reasons, other concepts, bias, residual: sum = y
          tops[v][k], contrib, d["concepts"][k], names, case,
          absent=meta.get("absent", "no {}"),
          y_hat=None if y_hat is None else y_hat[k],
          y=None if d.get("y") is None else d["y"][k])
      head = v if y_hat is None else f"{v}: ŷ = {_fmt(y_hat[k])}"
      panels[head] = reasons
      lines.append(head + " — " + ", ".join(
          f"{c:+.3f} {label}" for label, c in reasons))
    if gt is not None and gt_top is not None:
      presence = first.get("concept_labels")
      if presence is not None:  # the planted rule reads the true presence, not predictions
        true_names = fidelity_section.presence_names(names, presence[k])
        panels["planted ground truth"] = [
            (true_names[i], float(gt[k][i])) for i in np.ravel(gt_top[k])]
      else:
        panels["planted ground truth"] = tables.name_reasons(
            gt_top[k], gt[k], first["concepts"][k], names, case)
      lines.append("planted — " + ", ".join(
          f"{c:+.3f} {label}" for label, c in panels["planted ground truth"]))
    title = f"{target}, image {k}"
    if first.get("y") is not None:
      title += f": y = {_fmt(first['y'][k])}"
    if first.get("labels") is not None:
      title += f" (true: {'' if first['labels'][k] > 0.5 else 'not '}{target})"
    path = fig(f"explain_{k:03d}.png")
    figures.plot_image_explanation(
        img[k], panels, path, title=title,
        gradcam=None if gcam is None else gcam[k], dpi=ctx["dpi"])
    blocks.append(("figure", path, title + "\n" + "\n".join(lines)))
    parts = {v: d["part_contrib"][k] for v, d in data.items()
             if d.get("part_contrib") is not None}
    if parts:
      num_parts = next(iter(parts.values())).shape[0]
      part_names = list(meta.get("part_names") or [])
      if len(part_names) != num_parts:
        part_names = [f"part {p}" for p in range(num_parts)]
      path = fig(f"parts_{k:03d}.png")
      figures.plot_part_contributions(
          parts, part_names, path, image=img[k],
          part_mask=None if mask is None else mask[k],
          title=f"{target}, image {k}", dpi=ctx["dpi"])
      part_blocks.append(("figure", path, f"Part contributions, image {k}"))
  return blocks, part_blocks


def _summary_blocks(metrics, meta, data, digits):
  """The run table: eval/meta.json's facts, then metrics.json's meta where it
  adds a key (the same fact is listed once)."""
  info = {k: meta[k] for k in ("target_name", "case", "beta", "num_epochs",
                               "variants", "machine") if k in meta}
  if data:
    info["num_concepts"] = next(iter(data.values()))["alpha"].shape[1]
    info["num_eval_images"] = next(iter(data.values()))["alpha"].shape[0]
  same = {"target": "target_name"}
  if isinstance(metrics.get("meta"), dict):
    for k, v in metrics["meta"].items():
      if same.get(k, k) not in info:
        info[k] = v
  if not info:
    return []
  return [("table",) + tables.key_value_table(info, digits)]


def _metric_blocks(metrics, digits):
  header, rows = tables.metrics_table(metrics, digits)
  blocks = [("table", header, rows)]
  described = [f"{k}: {tables.METRIC_DESCRIPTIONS[k]}" for k in header[1:]
               if k in tables.METRIC_DESCRIPTIONS]
  if described:
    blocks.append(("list", described))
  return blocks


def _family_blocks(metrics, digits):
  """Every other metric family of metrics.json, each object in its own table
  (``tables.metric_family_tables``); intervals read 'mean (low – high)'."""
  blocks = []
  for title, header, rows in tables.metric_family_tables(metrics, digits):
    blocks += [("p", f"{title}:"), ("table", header, rows)]
  return blocks


def _distribution_blocks(ctx, metrics):
  """Fig. 4 from the saved shares and entropies; the ground-truth scatter."""
  data, fig, dpi = ctx["data"], ctx["fig"], ctx["dpi"]
  dist, gt_blocks = [], []
  have = {v: d for v, d in data.items() if "share" in d and "entropy" in d}
  if have:
    dist = [("figure", figures.plot_contribution_distribution(
        {v: d["share"] for v, d in have.items()},
        {v: d["entropy"] for v, d in have.items()},
        fig("contribution_distribution.png"), dpi=dpi),
             "Mean normalised contribution per concept, sorted, and the "
             "per-image entropy (paper Fig. 4).")]
  gt = {v: d for v, d in data.items()
        if "gt_mean_abs" in d and "mean_abs_contrib" in d}
  if gt:
    rho = {v: metrics[v]["gt_rank_correlation"] for v in gt
           if isinstance(metrics.get(v), dict)
           and "gt_rank_correlation" in metrics[v]}
    gt_blocks = [("figure", figures.plot_gt_scatter(
        {v: d["mean_abs_contrib"] for v, d in gt.items()},
        next(iter(gt.values()))["gt_mean_abs"], fig("gt_scatter.png"),
        rank_correlation=rho, dpi=dpi), "Each point is a concept.")]
  return dist, gt_blocks


def _fidelity_section(ctx, metrics, workdir, num_images, digits):
  """"Can this explanation be trusted?" from metrics.json, eval/<variant>.npz
  and eval/fidelity_reference.npz (left out for a run without fidelity)."""
  if not ({"fidelity", "sanity"} & set(metrics)):
    return fidelity_section.TITLE, []
  ref, notes = io.load_fidelity_reference(workdir)
  first = next(iter(ctx["data"].values()), {})
  names = _concept_names(ctx["meta"], first["alpha"].shape[1] if "alpha" in first else 0)
  title, blocks = fidelity_section.section_from_eval(
      metrics, fig=ctx["fig"], data=ctx["data"], images=(ctx["images"] or {}).get("images"),
      names=names, reference=ref, num_images=min(num_images, 3), dpi=ctx["dpi"],
      digits=digits)
  return title, blocks + [("note", s) for s in notes]


def build_sections(workdir, *, num_images=6, dpi=100, digits=4):
  """Draws every figure and returns the report's sections.

  A section whose inputs the run does not have (parts and filter regions on
  attribute data, ground truth on real data) is left out, not shown empty.

  Args:
    workdir: str.
    num_images: int, how many eval images get a per-image figure.
    dpi: int, resolution of the PNGs.
    digits: int, decimals of the table values.

  Returns:
    list of (title, blocks); figure paths relative to workdir.
  """
  metrics = io.load_metrics(workdir)
  meta, data, eval_notes = io.load_eval(workdir)
  images, image_notes = io.load_images(workdir)
  eval_notes += image_notes
  _make_folder(os.path.join(workdir, "figures"))
  fig = lambda name: os.path.join(workdir, "figures", name)
  ctx = {"meta": meta, "data": data, "images": images, "fig": fig, "dpi": dpi}
  sections = [("Run", _summary_blocks(metrics, meta, data, digits)
               + [("note", s) for s in eval_notes]),
              ("Metrics (paper Tables 1–3)", _metric_blocks(metrics, digits))]
  per_image, parts = _image_sections(ctx, num_images)
  sections.append(scoring.accuracy_section(metrics, meta))
  sections.append(("Explanations of individual images", per_image))
  sections.append(("Contributions per object part", parts))
  blocks = []
  if images is not None and images.get("filter_regions") is not None:
    patches = images["filter_regions"]
    names = images.get("filter_region_names")
    names = [str(s) for s in (names if names is not None else
                              [f"filter {i}" for i in range(len(patches))])]
    blocks = [("figure", figures.plot_filter_regions(
        patches, names, fig("filter_regions.png"), dpi=dpi),
               "Image regions where the chosen filters fire most.")]
  sections.append(("Filter regions", blocks))
  n_concepts = next(iter(data.values()))["alpha"].shape[1] if data else 0
  sections.append(patches_lib.section(images, meta, _concept_names(meta, n_concepts), fig,
                                      dpi=dpi))
  sections.append(_fidelity_section(ctx, metrics, workdir, num_images, digits))
  dist, gt_blocks = _distribution_blocks(ctx, metrics)
  sections.append(("Distribution of contributions (paper Fig. 4)", dist))
  sections.append(("Explainer against the planted ground truth", gt_blocks))
  run_meta = {**(metrics.get("meta") if isinstance(metrics.get("meta"), dict)
                 else {}), **meta}
  blocks = []
  if "beta" in run_meta and "num_epochs" in run_meta:
    blocks = [("figure", training_figures.plot_prior_weight(
        float(run_meta["beta"]), int(run_meta["num_epochs"]),
        fig("prior_weight.png"), dpi=dpi), "λ(t) = β/√t per epoch.")]
  sections.append(("Prior-loss weight", blocks))
  blocks = []
  for stage, records in io.load_logs(os.path.join(workdir, "logs")).items():
    path = training_figures.plot_training_curves(
        records, fig(f"training_{stage}.png"), title=stage, dpi=dpi)
    if path:
      blocks.append(("figure", path, f"Stage {stage}."))
  sections.append(("Training curves", blocks))
  sections.append(("Every metric of metrics.json", _family_blocks(metrics, digits)))
  sections = [(t, bl) for t, bl in sections if bl]
  return [(t, [(b[0], os.path.relpath(b[1], workdir), b[2])
               if b[0] == "figure" else b for b in bl]) for t, bl in sections]


def write_report(workdir, *, num_images=6, dpi=100, digits=4):
  """Writes `report.html`, `report.md` and `figures/*.png` into workdir.

  Args:
    workdir: str, a workdir with at least `metrics.json`.
    num_images: int, how many eval images get a per-image figure (default 6).
    dpi: int, resolution of the PNGs (default 100).
    digits: int, decimals of the table values (default 4).

  Returns:
    str, path of report.html.

  Raises:
    FileNotFoundError: metrics.json is missing (run the evaluate stage).
    StorageError: a file or folder of the report cannot be written (one line).
  """
  sections = build_sections(workdir, num_images=num_images, dpi=dpi,
                            digits=digits)
  meta_path = os.path.join(workdir, "eval", "meta.json")
  meta = io.read_json(meta_path) if os.path.isfile(meta_path) else None
  target = meta.get("target_name") if isinstance(meta, dict) else None
  title = "Explanation report" + (f": {target}" if target else "")
  path = os.path.join(workdir, "report.html")
  html, markdown = render_html(sections, title), render_markdown(sections, title)
  utils.write_atomic(path, lambda f: f.write(html), binary=False)
  utils.write_atomic(os.path.join(workdir, "report.md"), lambda f: f.write(markdown),
                     binary=False)
  return path


def _make_folder(path: str) -> None:
  """``os.makedirs(path)``; a file in the way or no permission is a one-line StorageError."""
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    raise utils.write_error(e, path) from None
