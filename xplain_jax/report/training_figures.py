"""Training figures of the report: the prior's weight λ(t) = β/√t and the logged curves.

Like ``figures``, each ``plot_*`` takes plain values, writes one PNG to ``path`` and returns it.
"""

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import matplotlib.ticker  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from xplain_jax.core.losses import prior_weight  # pylint: disable=g-import-not-at-top
from xplain_jax.report.figures import save_figure  # pylint: disable=g-import-not-at-top

# Keys of the training logs drawn by `plot_training_curves`, in panel order.
LOG_KEYS = ("loss", "distill_loss", "prior_loss", "lambda", "learning_rate",
            "entropy", "deviation")


def plot_prior_weight(beta, num_epochs, path, *, dpi=100):
  """The prior-loss weight λ(t) = β/√t for epochs t = 1..num_epochs.

  Args:
    beta: float, β.
    num_epochs: int ≥ 1.
    path: str, PNG to write.
    dpi: int.

  Returns:
    path.
  """
  t = np.arange(1, max(int(num_epochs), 1) + 1)
  fig, ax = plt.subplots(figsize=(4, 2.6))
  ax.plot(t, np.asarray(prior_weight(t, beta)), marker="o", ms=3)  # the trainer's λ(t)
  ax.set_xlabel("epoch t", fontsize=8)
  ax.set_ylabel("λ(t)", fontsize=8)
  ax.set_title(f"prior-loss weight λ(t) = β/√t, β = {beta:g}", fontsize=9)
  ax.set_ylim(bottom=0.0)
  ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
  ax.tick_params(labelsize=7)
  fig.tight_layout()
  return save_figure(fig, path, dpi)


def _series(records, key):
  """x and y of one logged key, skipping records without a finite value."""
  xs, ys = [], []
  for i, r in enumerate(records):
    v = r.get(key)
    if isinstance(v, (int, float)) and not isinstance(v, bool) \
        and math.isfinite(v):
      x = r.get("step", r.get("epoch", i))
      xs.append(x if isinstance(x, (int, float)) else i)
      ys.append(float(v))
  return np.array(xs, np.float64), np.array(ys, np.float64)


def _twin_learning_rate(ax, lr_series):
  """Draws the learning rate on a second y-axis of the λ(t) panel."""
  _, xs, ys = lr_series
  ax.set_title("λ(t) (left) and learning rate (right)", fontsize=9)
  ax.set_ylabel("λ", fontsize=8, color="C0")
  twin = ax.twinx()
  twin.plot(xs, ys, lw=1.2, color="C1", ls="--")
  twin.set_ylabel("learning rate", fontsize=8, color="C1")
  twin.tick_params(labelsize=7)


def plot_training_curves(records, path, *, title="", keys=LOG_KEYS, dpi=100):
  """Training curves of one stage, a panel per logged key; λ(t) and the learning rate,
  when both are logged, share one panel (two y-axes), so one sees whether the explainer still
  learns while the prior's weight decays.

  Args:
    records: list of dicts, one per log line, with "step" (or "epoch") and
      any of `keys`; missing or non-finite values are skipped.
    path: str, PNG to write.
    title: str, figure title (the stage).
    keys: sequence of str, the keys to draw when present (default LOG_KEYS).
    dpi: int.

  Returns:
    path, or None when no record holds any of `keys`.
  """
  present = [(k, *_series(records, k)) for k in keys]
  present = [p for p in present if p[1].size]
  if not present:
    return None
  series = {p[0]: p for p in present}
  if "lambda" in series and "learning_rate" in series:  # one panel, two y-axes
    present = [p for p in present if p[0] != "learning_rate"]
  has_step = any("step" in r for r in records)
  ncols = min(3, len(present))
  nrows = -(-len(present) // ncols)
  fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.4 * nrows),
                           squeeze=False)
  for ax, (key, xs, ys) in zip(axes.ravel(), present):
    ax.plot(xs, ys, lw=1.2, marker="." if xs.size < 40 else None)
    ax.set_title(key, fontsize=9)
    if key == "lambda" and "learning_rate" in series:
      _twin_learning_rate(ax, series["learning_rate"])
    ax.set_xlabel("step" if has_step else "epoch", fontsize=8)
    ax.tick_params(labelsize=7)
    if key.endswith("loss") and ys.min() > 0 and ys.max() / ys.min() > 100:
      ax.set_yscale("log")
  for ax in axes.ravel()[len(present):]:
    ax.axis("off")
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  return save_figure(fig, path, dpi)
