"""examples/own_model_digits.py: the own-model case on scikit-learn's digits, at its quick size."""

import os

import jax
import numpy as np
import pytest

import launch_scripts

pytest.importorskip("sklearn")

digits = launch_scripts.load("own_model_digits")
QUICK = digits.SIZES["quick"]


@pytest.fixture(scope="module")
def seed_data():
  return digits.prepare(0, QUICK, target="deletion")


def test_split_is_stratified_and_seeded():
  tr_im, tr_d, te_im, te_d = digits.load_split(3, QUICK)
  assert tr_im.shape[1:] == (16, 16, 1) and len(tr_im) + len(te_im) == QUICK["num_images"]
  assert 0.0 <= tr_im.min() and tr_im.max() <= 1.0
  # every digit in both parts, in about the same share
  share = lambda d: np.bincount(d, minlength=10) / len(d)
  assert np.abs(share(tr_d) - share(te_d)).max() < 0.05
  again = digits.load_split(3, QUICK)
  np.testing.assert_array_equal(again[3], te_d)
  assert not np.array_equal(digits.load_split(4, QUICK)[3], te_d)


def test_cnn_beats_chance_and_target_is_its_own_deletion_effect(seed_data):
  d = seed_data
  assert d["accuracy"] > 0.5          # 10 classes: chance is about 0.1
  train = d["train"]
  assert train["t"].shape == train["y_i"].shape == (len(train["y"]), 32)
  # t = y(x) − y(x with filter k zeroed), recomputed by zeroing the filter in the CNN itself
  net, v = d["net"], d["variables"]
  x = np.asarray(train["feat"][:3])
  y = np.asarray(net.apply(v, x, method=digits.DigitsCNN.head))[:, digits.TARGET_DIGIT]
  np.testing.assert_allclose(y, train["y"][:3], rtol=1e-5, atol=1e-4)
  for k in range(x.shape[-1]):
    zeroed = x.copy()
    zeroed[..., k] = 0.0
    y_k = np.asarray(net.apply(v, zeroed, method=digits.DigitsCNN.head))[:, digits.TARGET_DIGIT]
    np.testing.assert_allclose(train["t"][:3, k], y - y_k, rtol=1e-4, atol=1e-4)
  # the signed copy keeps the negative prior weights the clipped one drops
  assert d["train_signed"]["w"].min() < 0 <= d["train"]["w"].min()
  np.testing.assert_array_equal(np.maximum(d["train_signed"]["w"], 0), d["train"]["w"])


@pytest.mark.slow  # a fit and the peers' scoring: ~17 s, kept out of the fast subset
def test_faithful_variant_and_peers_are_scored(seed_data):
  exp = digits.fit_variant(seed_data, "faithful", seed=0, size=QUICK, weight=1.0)
  scores = digits.score(seed_data, {"faithful": exp}, size=QUICK)
  assert set(scores) == {"faithful", *digits.PEERS}
  for row in scores.values():
    assert -1.0 <= row["irc"] <= 1.0 and row["irc_low"] <= row["irc"] <= row["irc_high"]
  # gradient × input of a ReLU net ranks the filters' deletion effects far above chance
  assert scores["gradient_x_input"]["irc_low"] > scores["random"]["irc_high"]
  assert scores["faithful"]["deviation"] is not None and scores["random"]["deviation"] is None


def test_selection_rule_prefers_best_mean_then_smaller_weight():
  weights = {v: [0.1, 1.0, 10.0] for v in digits.TUNED}
  irc = {("faithful", 0.1): [0.2, 0.4], ("faithful", 1.0): [0.5, 0.3],
         ("faithful", 10.0): [0.1, 0.1]}
  per_seed = [{"scores": {f"{v}@{w:g}": {"irc": vals[i]} for (v, w), vals in irc.items()}}
              for i in range(2)]
  out = digits.select(per_seed, weights)
  # faithful: 0.3, 0.4, 0.1 -> 1
  assert out["chosen"] == {"faithful": 1.0}
  assert out["irc"]["faithful"]["1"]["mean"] == pytest.approx(0.4)
  tie = [{"scores": {"faithful@0.1": {"irc": 0.3}, "faithful@1": {"irc": 0.3},
                     "faithful@10": {"irc": 0.1}}}]
  assert digits.select(tie, weights)["chosen"] == {"faithful": 0.1}   # a tie: the smaller


def test_summary_pairs_seeds():
  rng = np.random.default_rng(0)
  keys = ["prior", *digits.PEERS]
  per_seed = [{"accuracy": 0.9 + 0.01 * s,
               "scores": {k: {"irc": float(rng.uniform(-1, 1)), "deviation": None}
                          for k in keys}} for s in range(4)]
  out = digits.summary(per_seed)
  diff = [r["scores"]["prior"]["irc"] - r["scores"]["least_squares"]["irc"] for r in per_seed]
  d = out["paired"]["prior_minus_least_squares"]
  assert d["mean"] == pytest.approx(np.mean(diff)) and d["n"] == 4
  assert d["ci_low"] < d["mean"] < d["ci_high"]
  assert "least_squares_minus_gradient_x_input" not in out["paired"]
  assert out["rows"]["prior"]["deviation"]["mean"] is None
  table = digits.markdown({"seeds": [0, 1, 2, 3], "summary": out}, "evaluate")
  assert "| prior − least_squares |" in table


@pytest.mark.slow
def test_every_variant_on_one_quick_seed(tmp_path):
  result = digits.main(["--mode=select", f"--out={tmp_path}", "--size=quick", "--seeds=100",
                        "--weights=1"])
  assert result["selection"]["chosen"] == {"faithful": 1.0}
  result = digits.main(["--mode=evaluate", f"--out={tmp_path}", "--size=quick", "--seeds=0"])
  scores = result["per_seed"][0]["scores"]
  assert set(scores) == {*digits.VARIANTS, *digits.PEERS}
  for row in scores.values():
    assert -1.0 <= row["irc"] <= 1.0
  assert os.path.exists(tmp_path / "results.md")


def test_variant_pairs_are_paired_by_seed_on_both_metrics():
  rng = np.random.default_rng(1)
  keys = ["prior", "prior_scaled_bias", *digits.PEERS]
  per_seed = [{"accuracy": 0.9, "scores": {k: {"irc": float(rng.uniform(-1, 1)),
                                               "deviation": float(rng.uniform(0, 1))}
                                           for k in keys}} for _ in range(5)]
  out = digits.summary(per_seed)["paired_variants"]
  assert list(out) == ["prior_scaled_bias_minus_prior"]  # pairs with a side missing are left out
  for m in ("irc", "deviation"):
    diff = [r["scores"]["prior_scaled_bias"][m] - r["scores"]["prior"][m] for r in per_seed]
    assert out["prior_scaled_bias_minus_prior"][m]["mean"] == pytest.approx(np.mean(diff))


def test_the_pooling_head_ignores_where_a_filter_fires():
  """head="pool": moving a filter's activation to another cell leaves y unchanged (the flatten
  head's y changes), the reason the coordinate channels are measured on both heads."""
  x = np.zeros((1, 8, 8, 32), np.float32)
  moved = x.copy()
  x[0, 1, 1, 3], moved[0, 6, 5, 3] = 1.0, 1.0
  for head, same in (("pool", True), ("flatten", False)):
    net = digits.DigitsCNN(head_kind=head)
    v = net.init(jax.random.PRNGKey(0), np.zeros((1, 16, 16, 1), np.float32))
    y = [np.asarray(net.apply(v, a, method=digits.DigitsCNN.head)) for a in (x, moved)]
    assert np.allclose(y[0], y[1], atol=1e-6) == same
