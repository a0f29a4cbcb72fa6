"""Figures of the report, one small function per figure (numpy + matplotlib).

Every `plot_*` function takes plain arrays, writes one PNG to `path` and
returns `path`, so research code can reuse them outside the report. The
figures mirror the paper's: per-image contribution bars (Fig. 3, 5-8), the
distribution of contributions (Fig. 4), part contributions (Fig. 9) and
filter regions (Fig. 10). The training figures (λ(t), the logged curves) are in
``training_figures``.
"""

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import matplotlib.ticker  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from xplain_jax import utils  # pylint: disable=g-import-not-at-top


_POS, _NEG = "#2a9d8f", "#e76f51"


def save_figure(fig, path, dpi):
  """Writes ``fig`` to ``path`` as PNG (atomically, folders made as needed), closes it and
  returns the path.

  Raises:
    StorageError: the file cannot be written (one line: a full disk, no permission, a file
      where the folder goes, a folder where the file goes).
  """
  try:
    utils.write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=dpi,
                                                   bbox_inches="tight"))
  finally:
    plt.close(fig)
  return path


# Labels of the bars that are not concepts (the rest, the bias, the residual): drawn grey.
NOT_CONCEPTS = ("other ", "bias b", "residual y − ŷ")


def _barh(ax, reasons, title):
  """Horizontal bars of (label, value) pairs, the first on top; the rest, the bias and the
  residual (``NOT_CONCEPTS``) in grey."""
  labels = [r[0] for r in reasons][::-1]
  values = np.array([r[1] for r in reasons][::-1], np.float64)
  grey = [str(s).startswith(NOT_CONCEPTS) for s in labels]
  ax.barh(np.arange(len(values)), values,
          color=["0.6" if g else _POS if v >= 0 else _NEG for v, g in zip(values, grey)])
  ax.set_yticks(np.arange(len(values)), labels, fontsize=8)
  ax.axvline(0.0, color="0.3", lw=0.8)
  ax.set_title(title, fontsize=9)
  ax.tick_params(axis="x", labelsize=7)


def _show_image(ax, image, title, overlay=None, cmap="jet", alpha=0.45,
                interpolation="bilinear", vrange=(None, None)):
  """Draws an [H,W,3] image, optionally with an [h,w] map stretched over it."""
  image = np.clip(np.asarray(image, np.float32), 0.0, 1.0)
  height, width = image.shape[:2]
  if image.ndim == 2 or image.shape[-1] == 1:  # grayscale stays grey
    ax.imshow(image.reshape(height, width), cmap="gray", vmin=0.0, vmax=1.0)
  else:
    ax.imshow(image)
  if overlay is not None:
    ax.imshow(np.asarray(overlay, np.float32), cmap=cmap, alpha=alpha,
              extent=(0, width, height, 0), interpolation=interpolation,
              vmin=vrange[0], vmax=vrange[1])
  ax.set_title(title, fontsize=9)
  ax.axis("off")


def plot_image_explanation(image, panels, path, *, title="", gradcam=None,
                           dpi=100):
  """One image and its top reasons per explainer (paper Fig. 3, 5-8).

  Args:
    image: [H,W,3] float32 in [0,1], or None to draw the bars alone.
    panels: dict panel title -> list of (label, contribution) pairs, e.g.
      {"baseline: ŷ = 1.2": [("no Beard", 0.8), ...], "planted": [...]}; as
      made by `tables.name_reasons`. One bar chart per entry, in order.
    path: str, PNG to write.
    title: str, figure title (e.g. the target with y).
    gradcam: optional [h,w] float, Grad-CAM of the performer, any h, w;
      drawn over the image in an extra panel.
    dpi: int, resolution of the PNG.

  Returns:
    path.
  """
  images = [] if image is None else [("image", None)]
  if image is not None and gradcam is not None:
    images.append(("Grad-CAM", gradcam))
  ncols = len(images) + len(panels)
  fig, axes = plt.subplots(1, ncols, figsize=(2.6 * ncols, 2.6),
                           squeeze=False)
  axes = axes[0]
  for ax, (name, overlay) in zip(axes, images):
    _show_image(ax, image, name, overlay)
  for ax, (name, reasons) in zip(axes[len(images):], panels.items()):
    _barh(ax, reasons, name)
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  return save_figure(fig, path, dpi)


def plot_contribution_distribution(shares, entropies, path, *, dpi=100):
  """Distribution of contributions per explainer (paper Fig. 4).

  Left: the mean normalised contribution |α_i y_i| / Σ_j |α_j y_j| of each
  concept, sorted descending, one curve per explainer; a flat curve means
  many concepts share the explanation. Right: histograms of the per-image
  entropy of that distribution, with ln n marked.

  Args:
    shares: dict variant name -> [N,n] float, the normalised contributions
      |α_i y_i| / Σ_j |α_j y_j| of each image (as the evaluator saved them).
    entropies: dict variant name -> [N] float, each image's entropy (nats).
    path: str, PNG to write.
    dpi: int.

  Returns:
    path.
  """
  fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(8, 3))
  n = 1
  for name, share in shares.items():
    share = np.asarray(share, np.float64)
    n = max(n, share.shape[-1])
    mean_c = np.sort(share.mean(0))[::-1]
    ax0.plot(np.arange(1, mean_c.size + 1), mean_c, marker=".", label=name)
  ax0.set_xlabel("concept rank", fontsize=8)
  ax0.set_ylabel("mean normalised contribution", fontsize=8)
  ax0.set_title("contribution per concept, sorted", fontsize=9)
  ax0.set_ylim(bottom=0.0)
  ax0.legend(fontsize=8)
  bins = np.linspace(0.0, math.log(n), 21) if n > 1 else 10
  for name, h in entropies.items():
    h = np.asarray(h, np.float64)
    ax1.hist(h, bins=bins, alpha=0.55, label=f"{name} (mean {h.mean():.3f})")
  ax1.axvline(math.log(n), color="0.3", ls="--", lw=0.8, label="ln n")
  ax1.set_xlabel("entropy H(c) per image (nats)", fontsize=8)
  ax1.set_title("entropy of the contributions", fontsize=9)
  ax1.legend(fontsize=7)
  for ax in (ax0, ax1):
    ax.tick_params(labelsize=7)
  fig.tight_layout()
  return save_figure(fig, path, dpi)


def plot_part_contributions(part_contribs, part_names, path, *, image=None,
                            part_mask=None, title="", dpi=100):
  """Contributions summed per object part for one image (paper Fig. 9).

  Args:
    part_contribs: dict variant name -> [P] float, Σ of α_i y_i over the
      filters of each part.
    part_names: sequence of P str.
    path: str, PNG to write.
    image: optional [H,W,3] float32 in [0,1].
    part_mask: optional [H,W] int, part index per pixel (< 0 or ≥ P for
      background); drawn over the image.
    title: str.
    dpi: int.

  Returns:
    path.
  """
  part_names = [str(p) for p in part_names]
  num_parts = len(part_names)
  extra = 0 if image is None else 1 + (part_mask is not None)
  ncols = extra + 1
  fig, axes = plt.subplots(1, ncols, figsize=(2.6 * extra + 4.0, 2.6),
                           squeeze=False,
                           gridspec_kw={"width_ratios": [1] * extra + [1.6]})
  axes = axes[0]
  if image is not None:
    _show_image(axes[0], image, "image")
  if image is not None and part_mask is not None:
    mask = np.asarray(part_mask).astype(np.float64)
    mask = np.ma.masked_where((mask < 0) | (mask >= num_parts), mask)
    _show_image(axes[1], image, "parts", mask, cmap="tab10", alpha=0.5,
                interpolation="nearest", vrange=(0, 9))
  ax = axes[-1]
  width = 0.8 / max(len(part_contribs), 1)
  pos = np.arange(num_parts)
  for j, (name, values) in enumerate(part_contribs.items()):
    ax.barh(pos + (j - (len(part_contribs) - 1) / 2) * width,
            np.asarray(values, np.float64), height=width, label=name)
  ax.set_yticks(pos, part_names, fontsize=8)
  ax.invert_yaxis()
  ax.axvline(0.0, color="0.3", lw=0.8)
  ax.set_title("contribution per part", fontsize=9)
  ax.legend(fontsize=7)
  ax.tick_params(axis="x", labelsize=7)
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  return save_figure(fig, path, dpi)


def plot_filter_regions(patches, names, path, *, ncols=6, dpi=100):
  """Image patches where chosen filters fire most (paper Fig. 10).

  Args:
    patches: [F,h,w,3] float32 in [0,1].
    names: sequence of F str, one caption per patch.
    path: str, PNG to write.
    ncols: int, patches per row.
    dpi: int.

  Returns:
    path.
  """
  patches = np.asarray(patches, np.float32)
  count = patches.shape[0]
  ncols = max(1, min(ncols, count))
  nrows = -(-count // ncols)
  fig, axes = plt.subplots(nrows, ncols, figsize=(1.7 * ncols, 1.9 * nrows),
                           squeeze=False)
  for i, ax in enumerate(axes.ravel()):
    if i < count:
      _show_image(ax, patches[i], str(names[i]) if i < len(names) else "")
    else:
      ax.axis("off")
  fig.tight_layout()
  return save_figure(fig, path, dpi)


def plot_gt_scatter(explained, planted, path, *, rank_correlation=None,
                    dpi=100):
  """Explainer's mean |contribution| per concept against the planted one.

  Args:
    explained: dict variant name -> [n] float, mean |α_i y_i| per concept.
    planted: [n] float, mean |ground-truth contribution| per concept.
    rank_correlation: optional dict variant name -> float, the rank
      correlation of metrics.json, shown in the legend.
    path: str, PNG to write.
    dpi: int.

  Returns:
    path.
  """
  planted = np.asarray(planted, np.float64)
  fig, ax = plt.subplots(figsize=(4, 3.4))
  for name, values in explained.items():
    rho = (rank_correlation or {}).get(name)
    ax.scatter(planted, np.asarray(values, np.float64), s=14, alpha=0.75,
               label=name if rho is None else f"{name} (rank corr. {rho:.3f})")
  ax.set_xlabel("planted mean |contribution|", fontsize=8)
  ax.set_ylabel("explainer mean |α_i y_i|", fontsize=8)
  ax.set_title("explainer vs planted ground truth", fontsize=9)
  ax.legend(fontsize=7)
  ax.tick_params(labelsize=7)
  fig.tight_layout()
  return save_figure(fig, path, dpi)
