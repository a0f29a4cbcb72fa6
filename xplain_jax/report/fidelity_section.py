"""The report's section "Can this explanation be trusted?" (numpy, matplotlib, parsed json).

Built from plain arrays and the parsed ``metrics.json`` only, in the blocks ``report.html``
renders (``("table", header, rows)``, ``("figure", path, caption)``, ``("note", text)``,
``("p", text)``, ``("list", items)``):

* the fidelity table: the explainers beside their peers (one least-squares α for every image,
  α = w, Case 1 gradient × input and integrated gradients, the planted rule where known) and
  the references (contributions shuffled over concepts, the chance floor; α shuffled, what the
  concept values alone explain), with bootstrap intervals and each one's cost per image;
* which variant is closer to the performer, from the paired interval of their difference, and
  the paired differences of each explainer against its peers;
* deletion curves (Case 1): y as filters are deleted in each order;
* a per-image panel: each explainer's contributions beside the performer's measured effects,
  concepts named by their *true* presence where it is known;
* the sanity check (model randomisation) and the performer's accuracy per concept.

Expected ``metrics.json`` keys: ``fidelity.<variant>``, ``fidelity_reference.<name>`` (the
``fidelity.compare`` blocks), ``sanity.randomized_performer_similarity`` and
``performer.concept_accuracy``. Missing keys leave a note, never an error.
"""


import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from xplain_jax.report import figures, tables  # pylint: disable=g-import-not-at-top

TITLE = "Can this explanation be trusted?"
ROWS = (("baseline", "explainer, baseline (no prior loss)"),
        ("prior", "explainer, with prior loss"),
        ("least_squares", "peer: least squares, one α for every image (fitted on train)"),
        ("least_squares_nonnegative", "peer: least squares with α ≥ 0, one α for every image"),
        ("gradient_x_input", "peer: gradient × input per filter"),
        ("integrated_gradients", "peer: integrated gradients per filter, from x = 0"),
        ("prior_weights", "peer: α = w (prior weights alone)"),
        ("planted", "the planted rule itself"),
        ("random", "reference: contributions shuffled over concepts (chance)"),
        ("shuffled_alpha", "reference: α shuffled over concepts, true y_k"),
        ("delta", "the measured effects Δ themselves (the yardstick)"))
COLUMNS = ("interventional_rank_correlation", "sign_agreement", "gt_rank_correlation_per_image",
           "relative_deviation", "deletion_area")
COST_COLUMNS = ("passes per image", "seconds per image")
DESCRIPTIONS = {
    "interventional_rank_correlation": (
        "per image, Spearman over concepts between |α_k y_k| and the performer's measured effect "
        "|Δ_k| = |y(I) − y(I with concept k toggled)|; mean over images (95 % bootstrap "
        "interval). 1: the explanation ranks concepts as the performer uses them; 0: chance."),
    "sign_agreement": ("share of (image, concept) pairs with a measurable effect where the "
                       "contribution and the effect have the same sign."),
    "gt_rank_correlation_per_image": ("per image, Spearman between |α_k y_k| and the planted "
                                      "|v_k s_k| of the synthetic rule; mean (interval)."),
    "deletion_area": ("mean change of y, in units of y's range, as filters are deleted in this "
                      "order (lower: the order finds what y rests on sooner)."),
    "relative_deviation": ("per image |y − ŷ| / (max y − min y), for explanations that predict "
                           "y (the explainers, least squares); mean (interval)."),
    "passes per image": ("what the explanation costs per image: passes of the performer (Case "
                         "1: its head above the explained map) forward (fwd) and backward "
                         "(bwd), renders of a counterfactual image, passes of the explainer g; "
                         "least squares is fitted once on the training features (fit)."),
    "seconds per image": "measured wall time per image after compilation (this run's machine).",
}
_POS, _NEG, _EFFECT = "#2a9d8f", "#e76f51", "#457b9d"


def _cell(value, digits):
  """'m (lo – hi)' for an interval dict, the number otherwise, '—' when absent."""
  if isinstance(value, dict) and {"mean", "low", "high"} <= set(value):
    f = lambda x: tables.format_value(x, digits)
    return f"{f(value['mean'])} ({f(value['low'])} – {f(value['high'])})"
  return tables.format_value(value, digits) if value is not None else tables.MISSING


def cost_cells(cost, digits=3):
  """The two cost cells of a row: passes per image (e.g. '8 fwd + 8 bwd', '1 pass of g') and
  seconds per image; '—' where not known."""
  if not isinstance(cost, dict):
    return [tables.MISSING, tables.MISSING]
  labels = {"forward_passes": "fwd", "backward_passes": "bwd", "renders": "renders",
            "explainer_passes": "pass of g"}
  parts = [f"{cost[k]} {label}" for k, label in labels.items() if cost.get(k)]
  if "fit_rows" in cost:
    parts.append(f"fit once on {cost['fit_rows']} rows")
  seconds = cost.get("seconds_per_image")
  return [" + ".join(parts) or "none",
          tables.MISSING if seconds is None else f"{float(seconds):.{digits}g}"]


def _rows(metrics):
  """(key, title, block) of every explanation: ROWS' order, other explainer variants third."""
  fid = metrics.get("fidelity") or {}
  ref = metrics.get("fidelity_reference") or {}
  found = {**{k: v for k, v in fid.items() if isinstance(v, dict) and "_minus_" not in k},
           **{k: v for k, v in ref.items() if isinstance(v, dict)}}
  titles = dict(ROWS)
  order = [k for k, _ in ROWS[:2]] + [k for k in fid if k in found and k not in titles]
  order += [k for k, _ in ROWS[2:]]
  return [(k, titles.get(k, f"explainer, {k}"), found[k]) for k in order if k in found]


def fidelity_table(metrics, digits=3):
  """The fidelity table: one row per explanation, one column per fidelity metric and its cost.

  Args:
    metrics: parsed ``metrics.json``.
    digits: decimals.

  Returns:
    (header, rows), or None when the run holds no fidelity metrics.
  """
  rows = _rows(metrics)
  if not any(k != "delta" for k, _, _ in rows):
    return None
  cols = [c for c in COLUMNS if any(c in r[2] for r in rows)]
  with_cost = any("cost" in m for _, _, m in rows)
  return (["explanation"] + cols + (list(COST_COLUMNS) if with_cost else []),
          [[title] + [_cell(m.get(c), digits) for c in cols]
           + (cost_cells(m.get("cost"), digits) if with_cost else [])
           for _, title, m in rows])


def paired_table(metrics, digits=3):
  """Paired differences of the interventional rank correlation over the same images
  (``prior_minus_baseline``, ``<variant>_minus_<peer>``): (header, rows) or None."""
  fid = metrics.get("fidelity") or {}
  diffs = sorted(((k, d) for k, d in fid.items()
                  if "_minus_" in k and isinstance(d, dict) and "mean" in d),
                 key=lambda kd: kd[0] != "prior_minus_baseline")
  if not diffs:
    return None
  f = lambda x: tables.format_value(x, digits)
  label = lambda k: " − ".join(p.replace("_x_", " × ").replace("_", " ")
                               for p in k.split("_minus_"))
  rows = [[label(k), f(d["mean"]), f"{f(d['low'])} – {f(d['high'])}",
           "yes" if d["low"] > 0 or d["high"] < 0 else "no (the interval includes 0)"]
          for k, d in diffs]
  return (["difference", "mean", "95 % interval", "measurable"], rows)


def verdict(metrics, digits=3):
  """One sentence: which explainer is closer to the performer, and by how much (or that no
  difference is measurable), from ``fidelity.prior_minus_baseline``; None when absent."""
  d = (metrics.get("fidelity") or {}).get("prior_minus_baseline")
  if not isinstance(d, dict) or "mean" not in d:
    return None
  f = lambda x: tables.format_value(x, digits)
  span = f"{f(d['mean'])} [{f(d['low'])}, {f(d['high'])}]"
  if not (d["low"] > 0 or d["high"] < 0):
    return (f"Prior minus baseline interventional rank correlation: {span}; the interval "
            "includes 0, so there is no measurable difference in fidelity to the performer.")
  better = "prior" if d["mean"] > 0 else "baseline"
  return (f"Prior minus baseline interventional rank correlation: {span}; the {better} "
          "explainer is measurably closer to the performer.")


def plot_deletion_curves(curves, counts, path, *, dpi=100):
  """Mean y after deleting filters, one line per order.

  Args:
    curves: order name -> [J] mean curve, or [N,J] per image (averaged here).
    counts: [J] numbers of deleted filters.
    path: the PNG to write.

  Returns:
    path.
  """
  fig, ax = plt.subplots(figsize=(5.0, 3.2))
  counts = np.asarray(counts, np.float64)
  for name, curve in curves.items():
    curve = np.asarray(curve, np.float64)
    ax.plot(counts, curve.mean(0) if curve.ndim == 2 else curve, label=name, lw=1.5)
  ax.set_xlabel("filters deleted", fontsize=8)
  ax.set_ylabel("performer score y (mean)", fontsize=8)
  ax.tick_params(labelsize=7)
  ax.legend(fontsize=7)
  return figures.save_figure(fig, path, dpi)


def presence_names(names, presence):
  """Concept names as the image truly shows them: 'x' when present, 'no x' when absent.

  Args:
    names: n concept names.
    presence: [n] true presence in {0,1} (e.g. the dataset's concept labels).

  Returns:
    n strings.
  """
  return [str(n) if p > 0.5 else f"no {n}" for n, p in zip(names, np.asarray(presence))]


def plot_effects_panel(image, labels, contribs, delta, path, *, top_k=6, dpi=100):
  """One image, each explainer's contributions and the measured effects, on the same concepts.

  The concepts shown are the ``top_k`` with the largest measured ``|Δ_k|``, so a reader sees
  whether the explainers name the concepts the performer actually reacts to.

  Args:
    image: [H,W,3] in [0,1].
    labels: n concept labels (e.g. ``presence_names``).
    contribs: variant -> [n] contributions α_k y_k of this image.
    delta: [n] measured effects Δ_k.
    path: the PNG to write.

  Returns:
    path.
  """
  delta = np.asarray(delta, np.float64)
  top = np.argsort(-np.abs(delta))[:top_k][::-1]
  panels = list(contribs.items()) + [("measured effect Δ", delta)]
  fig, axes = plt.subplots(1, len(panels) + 1, figsize=(2.6 * (len(panels) + 1), 2.6))
  axes[0].imshow(np.clip(np.asarray(image, np.float32), 0, 1))
  axes[0].axis("off")
  for ax, (name, values) in zip(axes[1:], panels):
    v = np.asarray(values, np.float64)[top]
    effect = name.startswith("measured")
    ax.barh(np.arange(len(top)), v,
            color=[_EFFECT if effect else (_POS if x >= 0 else _NEG) for x in v])
    ax.set_yticks(np.arange(len(top)), [labels[i] for i in top], fontsize=7)
    ax.axvline(0.0, color="0.3", lw=0.8)
    ax.set_title(name, fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
  fig.tight_layout()
  return figures.save_figure(fig, path, dpi)


def _sanity_blocks(metrics, digits):
  s = metrics.get("sanity")
  if not isinstance(s, dict) or "randomized_performer_similarity" not in s:
    return [("note", "Sanity check not run (model randomisation is an optional stage).")]
  value = _cell(s["randomized_performer_similarity"], digits)
  return [("p", "Sanity check (model randomisation, Adebayo et al. 2018): the performer's "
                "layers above the explained feature were re-initialised and the explainer "
                "trained again on that performer. Mean per-image rank correlation between its "
                f"contributions and the trained performer's: {value}. A faithful explanation "
                "changes when the performer is destroyed, so a low value is the good outcome.")]


def _accuracy_blocks(metrics, digits):
  acc = (metrics.get("performer") or {}).get("concept_accuracy")
  if not isinstance(acc, dict) or "per_concept" not in acc:
    return []
  per = sorted(acc["per_concept"].items(), key=lambda kv: kv[1])
  return [("p", "Every explanation is phrased in the performer's own concept predictions; its "
                f"accuracy per concept (mean {tables.format_value(acc.get('mean'), 1)} %), "
                "least reliable first:"),
          ("table", ["concept", "performer accuracy (%)"],
           [[k, tables.format_value(v, 1)] for k, v in per])]


def build_fidelity_section(metrics, *, fig, data=None, images=None, names=None,
                           presence=None, deletion=None, num_images=3, top_k=6, dpi=100,
                           digits=3):
  """The section "Can this explanation be trusted?" as (title, blocks).

  Args:
    metrics: parsed ``metrics.json``.
    fig: name -> path of a figure to write (e.g. ``workdir/figures/<name>``).
    data: variant -> dict with ``"alpha"``, ``"concepts"`` [N,n] and ``"delta"`` [N,n].
    images: [K,H,W,3] in [0,1], the first K evaluated images.
    names: n concept names.
    presence: [N,n] true presence of each concept (synthetic data), or None.
    deletion: ``{"counts": [J], "curves": {order: [J] or [N,J]}}`` (Case 1), or None.
    num_images: per-image panels drawn.
    top_k: concepts per panel.

  Returns:
    (TITLE, blocks).
  """
  blocks = []
  table = fidelity_table(metrics, digits)
  if table is None:
    blocks.append(("note", "No fidelity metrics in metrics.json (fidelity evaluator not run)."))
  else:
    blocks.append(("table",) + table)
    blocks.append(("list", [f"{c}: {DESCRIPTIONS[c]}" for c in table[0][1:]
                            if c in DESCRIPTIONS]))
    sentence = verdict(metrics, digits)
    if sentence:
      blocks.append(("p", sentence))
    paired = paired_table(metrics, digits)
    if paired is not None:
      blocks.append(("p", "Paired differences of the interventional rank correlation over the "
                          "same images (explainer − peer; 95 % bootstrap interval):"))
      blocks.append(("table",) + paired)
  if deletion and deletion.get("curves"):
    blocks.append(("figure", plot_deletion_curves(deletion["curves"], deletion["counts"],
                                                  fig("deletion_curves.png"), dpi=dpi),
                   "Deletion curves: filters zeroed in each order, the performer's mean score."))
  with_delta = {v: d for v, d in (data or {}).items() if d.get("delta") is not None}
  if with_delta and images is not None and names is not None:
    for i in range(min(num_images, len(images))):
      labels = (presence_names(names, presence[i]) if presence is not None
                else [str(n) for n in names])
      contribs = {v: d["alpha"][i] * d["concepts"][i] for v, d in with_delta.items()}
      delta = next(iter(with_delta.values()))["delta"][i]
      path = plot_effects_panel(images[i], labels, contribs, delta,
                                fig(f"fidelity_image_{i}.png"), top_k=top_k, dpi=dpi)
      named = "true presence" if presence is not None else "concept name"
      blocks.append(("figure", path, f"Image {i}: contributions beside the performer's measured "
                                     f"effects (concepts by {named})."))
  else:
    blocks.append(("note", "No interventional effects (delta) saved: per-image panel skipped."))
  return TITLE, blocks + _sanity_blocks(metrics, digits) + _accuracy_blocks(metrics, digits)


def section_from_eval(metrics, *, fig, data, images, names, reference=None, num_images=3,
                      top_k=6, dpi=100, digits=3):
  """``build_fidelity_section`` from what the evaluators saved (already read).

  Args:
    metrics: parsed ``metrics.json``.
    fig: name -> figure path.
    data: variant -> arrays of ``eval/<variant>.npz`` (``alpha``, ``concepts`` and, from the
      fidelity evaluator, ``delta``, ``concept_labels``, ``deletion_curve``; rows of images
      not scored are NaN).
    images: [K,H,W,3] in [0,1] or None.
    names: n concept names.
    reference: arrays of ``eval/fidelity_reference.npz`` or None.

  Returns:
    (TITLE, blocks).
  """
  deletion = None
  if reference is not None and "deletion_counts" in reference:
    curves = {v: np.nanmean(d["deletion_curve"], axis=0) for v, d in data.items()
              if "deletion_curve" in d}
    curves.update({r: reference[f"{r}_deletion_curve"] for r, _ in ROWS
                   if f"{r}_deletion_curve" in reference})
    deletion = {"counts": reference["deletion_counts"], "curves": curves}
  scored = {v: d for v, d in data.items() if "delta" in d}
  count = 0
  if scored:  # the images whose effects were measured (fidelity.num_images)
    delta = next(iter(scored.values()))["delta"]
    count = int(np.sum(np.all(np.isfinite(delta), axis=1)))
  keep = lambda a: None if a is None else a[:count]
  panel_data = {v: {k: keep(d.get(k)) for k in ("alpha", "concepts", "delta")}
                for v, d in scored.items()}
  first = next(iter(data.values()), {})
  return build_fidelity_section(
      metrics, fig=fig, data=panel_data, images=keep(images), names=names,
      presence=keep(first.get("concept_labels")), deletion=deletion, num_images=num_images,
      top_k=top_k, dpi=dpi, digits=digits)
