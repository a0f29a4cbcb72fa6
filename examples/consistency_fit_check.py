r"""Does the consistency term make the weight network fit the performer's own effects?

On the own-model digits case (examples/own_model_digits.py: a small CNN's digit-3 logit, its 32
conv filters as concepts), fits the ``faithful`` explainer (signed α, β = 0, consistency weight
W toward the filters' deletion effects t_k) from two starts — ``target`` (the variant's: each
filter's own fit of t_k, b at y(∅) moving in units of y's spread) and ``least_squares_plain``
(the earlier one: the unregularised least-squares fit, b a plain scalar) — and measures, on the
TRAINING images it was fitted to and on the test images:

  - the relative consistency residual Σ_k (α_k y_k − t_k)² / Σ_k t_k² (mean over images;
    1.0 = what all-zero contributions would give, 0 = a perfect fit), in evaluation mode and
    with g's BatchNorm on each batch's own statistics (what the optimiser sees),
  - the interventional rank correlation of |α_k y_k| with |t_k| (the project's fidelity score),
  - the relative deviation of ŷ from y.

A residual near or above 1 on the training images says g cannot represent the per-image effects
(an optimisation or capacity limit), not that it fails to generalise. Uses its own seed (200),
apart from the selection (100-102) and evaluation (0-4) seeds of own_model_digits.py:

  python examples/consistency_fit_check.py [--seed=200] [--weights=1,10]   (--weights= : no fits)
"""

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import own_model_digits as digits  # noqa: E402  pylint: disable=wrong-import-position

import jax  # noqa: E402  pylint: disable=wrong-import-position
import jax.numpy as jnp  # noqa: E402  pylint: disable=wrong-import-position
from xplain_jax import api, fidelity, utils
from xplain_jax.train import featurizers
from xplain_jax.train import start as start_lib  # noqa: E402  pylint: disable=wrong-import-position


def train_mode_alpha(explainer, feat: np.ndarray, batch_size: int = 64) -> np.ndarray:
  """α [N,n] with g's BatchNorm in training mode (each batch's own statistics, as the optimiser
  sees it), batch by batch of ``batch_size`` rows (the API's batch)."""
  from xplain_jax.train import state as state_lib  # pylint: disable=import-outside-toplevel
  v = explainer.variables
  merged = state_lib.merge_variables(v["params"]["g"], v["batch_stats"])
  out = []
  for i in range(0, len(feat) - batch_size + 1, batch_size):
    (raw, _), _ = explainer.g.apply(merged, feat[i:i + batch_size], train=True,
                                    mutable=["batch_stats"])
    out.append(np.asarray(start_lib.compose_alpha(raw, v["batch_stats"],
                                                  alpha_scale=explainer.alpha_scale)))
  return np.concatenate(out)


def check(data: dict, explainer, split: str, t: np.ndarray) -> dict:
  """Residual (in evaluation mode, and with BatchNorm's batch statistics), rank correlation and
  deviation of one fitted explainer on one split."""
  f = data[split]
  contrib = np.asarray(explainer.alpha(f["feat"])) * np.asarray(f["y_i"])
  batch = train_mode_alpha(explainer, np.asarray(f["feat"]))
  rows = len(batch)
  c_batch = batch * np.asarray(f["y_i"][:rows])
  resid_batch = np.mean(np.sum((c_batch - t[:rows]) ** 2, 1)) / np.mean(np.sum(t[:rows] ** 2, 1))
  y_hat = contrib.sum(1) + float(explainer.bias)
  resid = np.mean(np.sum((contrib - t) ** 2, 1)) / np.mean(np.sum(t ** 2, 1))
  irc = np.asarray(fidelity.interventional_rank_correlation(contrib, t))
  spread = float(np.max(f["y"]) - np.min(f["y"]))
  return dict(residual=round(float(resid), 3), residual_batch_stats=round(float(resid_batch), 3),
              irc=round(float(np.mean(irc)), 3),
              deviation=round(float(np.mean(np.abs(f["y"] - y_hat)) / spread), 4))


def additivity(data: dict, permutations: int) -> dict:
  """Do the training images' deletion effects add up, and are they the filters' Shapley
  values? ``sum_gap``: mean |Σ_k Δ_k − (y − y(∅))| over y's range; ``shapley_gap``:
  Σ(φ − Δ)² / ΣΔ² with φ sampled Shapley values (``permutations`` orders); ``shapley_rank``:
  the mean per-image rank correlation of |φ| with |Δ| (the fidelity score)."""
  tr = data["train"]
  t, y, y0 = (np.asarray(tr[k], np.float64) for k in ("t", "y", "y0"))
  gap = np.mean(np.abs(t.sum(1) - (y - y0))) / float(np.ptp(y))
  fn = jax.jit(lambda x: fidelity.filter_shapley_effects(data["head_fn"], x,
                                                         num_permutations=permutations))
  phi = np.concatenate([np.asarray(fn(jnp.asarray(tr["feat"][i:i + 256])), np.float64)
                        for i in range(0, len(y), 256)])
  rank = np.asarray(fidelity.interventional_rank_correlation(phi, t))
  return dict(sum_gap=round(float(gap), 5),
              sum_pearson=round(float(np.corrcoef(t.sum(1), y - y0)[0, 1]), 5),
              shapley_gap=round(float(np.sum((phi - t) ** 2) / np.sum(t ** 2)), 5),
              shapley_rank=round(float(np.mean(rank)), 4), permutations=permutations)


def start_residuals(data: dict) -> dict:
  """The relative consistency residual on the training images at each start, before any
  training (``plain``: the unregularised least-squares fit; ``ridge``: ``ls_start``'s;
  ``target``: ``faithful``'s), and the ridge strength chosen."""
  tr = data["train_signed"]
  t = np.asarray(tr["t"], np.float64)
  resid = lambda a: float(np.mean(np.sum((a * tr["y_i"] - t) ** 2, 1)) / np.mean(np.sum(t ** 2, 1)))
  plain = start_lib.least_squares_fit(tr["y_i"], tr["y"], positive=False)[0]
  ridge, _, strength = start_lib.ridge_fit(tr["y_i"], tr["y"], positive=False)
  target = start_lib.begin("target", tr["y_i"], tr["y"], positive=False, t=tr["t"],
                           empty_score=tr["y0"])[0]
  return dict(plain=round(resid(plain), 3), ridge=round(resid(ridge), 3),
              ridge_strength=strength, target=round(resid(target), 3))


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--seed", type=int, default=200)
  p.add_argument("--weights", default="1,10")
  p.add_argument("--size", default="full", choices=sorted(digits.SIZES))
  p.add_argument("--out", default="")
  p.add_argument("--permutations", type=int, default=64,
                 help="sampled orders of the Shapley values compared with Δ")
  a = p.parse_args(argv)
  size = digits.SIZES[a.size]
  data = digits.prepare(a.seed, size, target="deletion")
  t_test = np.asarray(featurizers.filter_targets(
      data["head_fn"], jnp.asarray(data["test"]["feat"]), "deletion")["t"])
  starts = {"target": dict(), "least_squares_plain": dict()}
  sums = additivity(data, a.permutations)
  print(json.dumps(sums), flush=True)
  at_start = start_residuals(data)
  print(json.dumps({"residual_at_start": at_start}), flush=True)
  tr = data["train_signed"]
  first_b = {"target": start_lib.begin("target", tr["y_i"], tr["y"], positive=False, t=tr["t"],
                                       empty_score=tr["y0"])[1],
             "least_squares_plain": start_lib.least_squares_fit(tr["y_i"], tr["y"],
                                                                positive=False)[1]}
  rows = []
  for label, setting in starts.items():
    for w in (float(s) for s in utils.split_list(a.weights)):
      start = time.time()
      kw = dict(case="filter", seed=a.seed, log_every=10 ** 6, variant="faithful",
                consistency_weight=w, **setting)
      if label == "least_squares_plain":   # the earlier start: no ridge, b a plain scalar
        kw.update(start="least_squares", scaled_bias=False, ridge=False)
      if size["explainer_epochs"] is not None:
        kw.update(epochs=size["explainer_epochs"], depth=size["depth"], width=size["width"])
      e = api.fit_explainer(data["train_signed"], **kw)
      row = dict(weight=w, start=label, train=check(data, e, "train", data["train"]["t"]),
                 test=check(data, e, "test", t_test), fit_seconds=round(time.time() - start),
                 bias_start=round(float(first_b[label]), 3), bias_end=round(e.bias, 3),
                 y_range=round(float(np.ptp(tr["y"])), 2))
      print(json.dumps(row), flush=True)
      rows.append(row)
  out = dict(seed=a.seed, accuracy=data["accuracy"], additivity=sums,
             residual_at_start=at_start, rows=rows)
  if a.out:
    text = json.dumps(out, indent=1)
    utils.write_atomic(a.out, lambda f: f.write(text), binary=False)
  return out


if __name__ == "__main__":
  main()
