"""report.training_figures: the training curves' panels."""

import math
import os

from xplain_jax.report import training_figures


def test_lambda_and_learning_rate_share_one_panel(tmp_path, monkeypatch):
  records = [{"step": s, "loss": 1.0 / s, "lambda": 0.2 / math.sqrt(1 + s // 4),
              "learning_rate": 1e-3 * math.cos(s / 20)} for s in range(1, 13)]
  panels, twins = [], []
  real_subplots = training_figures.plt.subplots

  def subplots(nrows, ncols, **kw):
    panels.append(nrows * ncols)
    return real_subplots(nrows, ncols, **kw)

  monkeypatch.setattr(training_figures.plt, "subplots", subplots)
  monkeypatch.setattr(training_figures, "_twin_learning_rate",
                      lambda ax, series: twins.append(series[2].tolist()))
  path = training_figures.plot_training_curves(records, str(tmp_path / "a.png"))
  assert os.path.getsize(path) > 0
  # loss and λ panels only: the learning rate is drawn on λ's second axis, step for step.
  assert panels == [2]
  assert twins == [[r["learning_rate"] for r in records]]
  only_lr = [{"step": r["step"], "learning_rate": r["learning_rate"]} for r in records]
  assert training_figures.plot_training_curves(only_lr, str(tmp_path / "b.png")) and len(twins) == 1
