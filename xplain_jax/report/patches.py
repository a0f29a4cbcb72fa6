"""Draws the top-activating patches that ``evaluators.patches`` filed in ``eval/images.npz``
and ``eval/meta.json`` (one row of crops per filter; the part it fires on where known). It reads
results only; nothing here computes them."""

from __future__ import annotations

import numpy as np

from xplain_jax.report import figures

TITLE = "What the filters respond to (top-activating patches)"


def section(images: dict, meta: dict, names, fig, *, dpi: int = 100):
  """``(TITLE, blocks)``: one figure row per filter of the report images' top reasons."""
  if not images or images.get("patches") is None or images.get("patch_filters") is None:
    return TITLE, []
  filters = np.asarray(images["patch_filters"])
  parts = list(meta.get("patch_parts") or [""] * len(filters))
  labels = []
  for i, k in enumerate(filters):
    name = names[k] if k < len(names) else f"filter {k}"
    labels.append(name + (f" — fires on {parts[i]}" if i < len(parts) and parts[i] else ""))
  path = plot_patch_rows(images["patches"], labels, images.get("patch_activation"),
                         fig("filter_patches.png"), dpi=dpi)
  caption = ("Each row: a filter named among the top reasons of the images above, and the "
             "evaluated images' regions where it fires most (strongest first, with the peak "
             "activation); the crop is the window of map cells around the peak.")
  return TITLE, [("figure", path, caption)]


def plot_patch_rows(patches, labels, activation, path, *, dpi=100):
  """A grid: one row of patches [F,p,ph,pw,C] per filter, the row's label on its first patch."""
  plt = figures.plt
  patches = np.asarray(patches, np.float32)
  rows, cols = patches.shape[:2]
  fig, axes = plt.subplots(rows, cols, figsize=(1.5 * cols + 1.5, 1.6 * rows), squeeze=False)
  for i in range(rows):
    for j in range(cols):
      title = f"{activation[i, j]:.3g}" if activation is not None else ""
      figures._show_image(axes[i, j], patches[i, j], title)  # pylint: disable=protected-access
    axes[i, 0].text(-0.1, 0.5, labels[i], transform=axes[i, 0].transAxes, ha="right",
                    va="center", fontsize=8)
  fig.tight_layout()
  return figures.save_figure(fig, path, dpi)
