"""The own-model API: early one-line errors, labels as the report gives them, fidelity by
default, bars that add up to y, τ stated, the workdir's run identity, top-activating patches,
and no dangling documentation references."""

import os
import re
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from xplain_jax import api, models
from xplain_jax.train import featurizers
from xplain_jax.evaluators import patches
from xplain_jax.report import scoring
from xplain_jax.errors import ConfigError
from xplain_jax.train import explainer as explainer_lib
from xplain_jax.train import loop

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAST = dict(depth=10, width=8, epochs=1, batch_size=16, log_every=10 ** 6)


def _features(n=32, concepts=4, *, w=None, seed=0):
  rng = np.random.default_rng(seed)
  y_i = rng.normal(size=(n, concepts)).astype(np.float32)
  return {"feat": rng.normal(size=(n, 4, 4, 3)).astype(np.float32),
          "y": y_i @ np.arange(1.0, concepts + 1, dtype=np.float32),
          "y_i": y_i,
          "w": (rng.uniform(0.1, 1.0, size=(n, concepts)) if w is None else w).astype(np.float32)}


def test_cross_entropy_prior_with_signed_alpha_is_refused_at_construction():
  with pytest.raises(ConfigError, match="needs positive α"):
    api.fit_explainer(_features(), case="filter", positive=False, **FAST)


def test_cross_entropy_prior_with_negative_w_is_refused_at_construction():
  feats = _features(w=-np.ones((32, 4)))
  with pytest.raises(ConfigError, match="needs w >= 0.*clip"):
    api.fit_explainer(feats, case="filter", **FAST)


@pytest.mark.parametrize("damage, match", [
    (lambda f: f.pop("w"), r"lack \['w'\]"),
    (lambda f: f.update(y=f["y"][:5]), "inconsistent"),
    (lambda f: f.update(y_i=np.full_like(f["y_i"], np.nan)), "NaN"),
])
def test_bad_feature_arrays_get_one_line(damage, match):
  feats = _features()
  damage(feats)
  with pytest.raises(ConfigError, match=match) as info:
    api.fit_explainer(feats, **FAST)
  assert "\n" not in str(info.value)


@pytest.mark.slow
def test_constant_prior_warns():
  feats = _features(w=np.tile([[0.5, -0.2, 0.1, 0.3]], (32, 1)))
  with pytest.warns(UserWarning, match="same for every image"):
    api.fit_explainer(feats, case="shared_feature", **FAST)


@pytest.mark.slow
def test_varying_prior_does_not_warn():
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    api.fit_explainer(_features(), case="shared_feature", **FAST)


@pytest.mark.slow
def test_missing_batch_key_is_named():
  g = models.get_weight_net(10, num_outputs=4, positive=False, width=8)
  loss_fn = explainer_lib.make_loss(g, beta=0.1, steps_per_epoch=1, prior_kind="mse")
  params, stats = explainer_lib.init_params(g, (1, 4, 4, 3), jax.random.PRNGKey(0))
  batch = {k: jnp.asarray(v) for k, v in _features().items()}  # no "mask"
  with pytest.raises(ConfigError, match=r"lack \['mask'\]"):
    loss_fn(params, stats, batch, None, 0, {})


def test_params_passed_as_a_state_are_named():
  step = loop.make_train_step(lambda p, s, b, r, t: (0.0, (s, {})), optax_sgd())
  with pytest.raises(ConfigError, match="pass the state, not the params"):
    step({"g": {}, "b": 0.0}, {}, jax.random.PRNGKey(0))


def optax_sgd():
  import optax
  return optax.sgd(0.1)


@pytest.mark.slow
def test_explain_names_absent_attributes_like_the_report():
  feats = _features()
  e = api.fit_explainer(feats, case="shared_feature", **FAST)
  y_i = np.array([[-2.0, 1.0, -0.5, 3.0]], np.float32)
  rows = e.explain(feats["feat"][:1], y_i, names=["Smiling", "Male", "No_Beard", "Young"],
                   top_k=4)
  labels = {name for name, _ in rows[0]["top"]}
  assert labels == {"no Smiling", "Male", "Beard", "Young"}
  case1 = explainer_lib.Explainer(e.g, e.variables, case="filter")
  assert {n for n, _ in case1.explain(feats["feat"][:1], y_i, names=list("abcd"),
                                      top_k=4)[0]["top"]} == set("abcd")


@pytest.mark.slow
def test_evaluate_and_write_report_from_arrays(tmp_path):
  feats = _features()
  e = api.fit_explainer(feats, case="shared_feature", **FAST)
  m = api.evaluate({"prior": e}, feats, labels=feats["y"] > 0, names=list("abcd"))
  assert set(m["prior"]) >= {"entropy", "accuracy", "relative_deviation", "bias"}
  np.testing.assert_allclose(e.contributions(feats["feat"], feats["y_i"]),
                             e.alpha(feats["feat"]) * feats["y_i"], rtol=1e-5, atol=1e-5)
  path = api.write_report(str(tmp_path / "rep"), {"prior": e}, feats, labels=feats["y"] > 0,
                          names=list("abcd"))
  assert os.path.exists(path) and os.path.exists(tmp_path / "rep" / "metrics.json")


def test_no_docstring_points_to_a_missing_file():
  pattern = re.compile(r"\b(METHOD\.md|DESIGN\.md)\b")
  cited = re.compile(r"docs/method\.md")
  bad = []
  for base, _, files in os.walk(os.path.join(ROOT, "xplain_jax")):
    for name in files:
      if name.endswith(".py"):
        text = open(os.path.join(base, name), encoding="utf-8").read()
        if pattern.search(text):
          bad.append(name)
        if cited.search(text):
          assert os.path.exists(os.path.join(ROOT, "docs", "method.md"))
  assert not bad, bad


# --- Case-1 toy: a conv map of 6 filters and a non-linear head -------------------------------

def _case1_model(seed=0):
  rng = np.random.default_rng(seed)
  kernel = jnp.asarray(rng.normal(size=(3, 3, 1, 6)), jnp.float32)
  v = jnp.asarray(rng.normal(size=(6,)), jnp.float32)
  features = lambda im: jax.nn.relu(jax.lax.conv_general_dilated(
      im, kernel, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))
  head = lambda x: jnp.tanh(x.sum((1, 2))) @ v - 0.5
  return features, head


@pytest.fixture(scope="module")
def case1(tmp_path_factory):
  features, head = _case1_model()
  images = np.random.default_rng(1).uniform(size=(24, 8, 8, 1)).astype(np.float32)
  data = api.featurize_dataset(featurizers.filter_featurizer(features, head), images,
                               batch_size=16)
  workdir = str(tmp_path_factory.mktemp("fit"))
  explainer = api.fit_explainer(data, case="filter", workdir=workdir, **FAST)
  return dict(images=images, data=data, head=head, features=features, explainer=explainer,
              workdir=workdir)


@pytest.mark.slow
def test_evaluate_gives_fidelity_by_default_and_its_rank_correlation_by_hand(case1):
  data, e, head = case1["data"], case1["explainer"], case1["head"]
  m = api.evaluate({"prior": e}, data, labels=data["y"] > 0, num_resamples=20)
  assert set(m["fidelity_reference"]) >= {"random", "shuffled_alpha", "prior_weights"}
  x = np.asarray(data["feat"], np.float64)
  y = np.asarray(head(jnp.asarray(x, jnp.float32)))
  delta = np.stack([y - np.asarray(head(jnp.asarray(np.where(np.arange(6) == k, 0.0, x),
                                                    jnp.float32))) for k in range(6)], 1)
  contrib = e.alpha(data["feat"]) * data["y_i"]
  rho = [stats.spearmanr(np.abs(c), np.abs(d))[0] for c, d in zip(contrib, delta)]
  got = m["fidelity"]["prior"]["interventional_rank_correlation"]
  assert got["num_images"] == 24
  assert got["mean"] == pytest.approx(float(np.mean(rho)), abs=1e-4)
  assert "fidelity" not in api.evaluate({"prior": e}, data, labels=data["y"] > 0, fidelity=False)
  copy = {k: v for k, v in data.items()}  # a plain dict forgets the head: a note, not a guess
  assert "note" in api.evaluate({"prior": e}, copy, labels=data["y"] > 0)["fidelity"]


@pytest.mark.slow
def test_performer_at_tau_zero_and_at_its_best_tau_by_hand(case1):
  data, e = case1["data"], case1["explainer"]
  y = data["y"]
  labels = y > np.median(y) + 0.01  # τ = 0 is not the best threshold here
  m = api.evaluate({"prior": e}, data, labels=labels, fidelity=False)["performer"]
  best = max(np.mean((y > t) == labels) for t in np.concatenate([[-np.inf], y]))
  assert m["accuracy_best_threshold"] == pytest.approx(100 * best)
  assert m["accuracy"] == pytest.approx(100 * np.mean((y > 0) == labels))
  assert np.mean((y > m["best_threshold"]) == labels) == pytest.approx(best)


@pytest.mark.slow
def test_bars_with_bias_and_residual_add_up_to_y(case1):
  data, e = case1["data"], case1["explainer"]
  rows = e.explain(data["feat"][:5], data["y_i"][:5], y=data["y"][:5], top_k=2)
  for r, yv in zip(rows, data["y"][:5]):
    total = sum(c for _, c in r["top"]) + r["rest"] + r["bias"] + r["residual"]
    assert total == pytest.approx(float(yv), abs=1e-4)
  contrib = e.contributions(data["feat"][:1], data["y_i"][:1])[0]
  y_hat = contrib.sum() + e.bias
  bars = scoring.image_reasons(rows[0]["indices"], contrib, data["y_i"][0], [str(i) for i in
                               range(6)], "filter", y_hat=y_hat, y=data["y"][0])
  assert [b[0] for b in bars[2:]] == ["other 4 concepts", "bias b", "residual y − ŷ"]
  assert sum(v for _, v in bars) == pytest.approx(float(data["y"][0]), abs=1e-4)


@pytest.mark.slow
def test_report_shows_patches_bias_accuracy_and_fidelity(case1, tmp_path):
  data, e, images = case1["data"], case1["explainer"], case1["images"]
  path = api.write_report(str(tmp_path / "rep"), {"prior": e}, data, labels=data["y"] > 0,
                          images=images, target_name="digit 3", num_images=2,
                          num_resamples=20)
  text = open(path, encoding="utf-8").read()
  for s in ("filter_patches.png", "bias b", "residual y − ŷ", "its own best τ",
            "true: ", "Can this explanation be trusted?"):
    assert s in text, s
  with pytest.raises(ConfigError, match=r"images has shape \(24, 8, 8, 2\)"):
    api.write_report(str(tmp_path / "bad"), {"prior": e}, data, labels=data["y"] > 0,
                     images=np.zeros((24, 8, 8, 2)))


@pytest.mark.slow
def test_a_finished_fit_reloads_fast_and_another_fit_is_refused(case1):
  data, workdir = case1["data"], case1["workdir"]
  start = time.perf_counter()
  again = api.fit_explainer(data, case="filter", workdir=workdir, **FAST)
  assert time.perf_counter() - start < 3.0
  np.testing.assert_allclose(again.alpha(data["feat"][:4]),
                             case1["explainer"].alpha(data["feat"][:4]), rtol=1e-6)
  other = dict(data, y=data["y"] + 1.0)
  for kwargs, feats in ((dict(seed=1), data), ({}, other), (dict(beta=2.0), data)):
    with pytest.raises(ConfigError, match="holds another fit.*refused") as info:
      api.fit_explainer(feats, case="filter", workdir=workdir, **dict(FAST, **kwargs))
    assert "\n" not in str(info.value)
  assert {"explainer.msgpack", "identity.json"} <= set(os.listdir(os.path.join(workdir,
                                                                             "explainer")))


@pytest.mark.slow
@pytest.mark.parametrize("labels, match", [
    (np.arange(24) % 10, r"labels hold values \{0, 1, 2, 3, 4, 5, \.\.\.\}"),
    (np.arange(24) % 5, r"labels hold values \{0, 1, 2, 3, 4\}"),
    (np.full(24, np.nan), "labels hold values"),
    (np.ones(23, bool), "labels has 23 entries for 24 images"),
])
def test_labels_that_are_not_binary_are_refused(case1, labels, match):
  with pytest.raises(ConfigError, match=match) as info:
    api.evaluate({"prior": case1["explainer"]}, case1["data"], labels=labels, fidelity=False)
  assert "\n" not in str(info.value)


@pytest.mark.slow
def test_nan_images_empty_inputs_and_bad_arguments_each_get_one_line(case1):
  features, head = case1["features"], case1["head"]
  fz = featurizers.filter_featurizer(features, head)
  images = case1["images"].copy()
  images[13, 2, 3, 0] = np.nan  # one pixel, in the second batch
  cases = [
      (lambda: api.featurize_dataset(fz, images, batch_size=8), r"images.*NaN.*image 13"),
      (lambda: api.featurize_dataset(fz, images[:0]), "no images"),
      (lambda: api.fit_explainer({k: v[:0] for k, v in _features().items()}, **FAST),
       "no images"),
      (lambda: api.fit_explainer(_features(), alpha_scale=float("nan"), **FAST),
       "alpha_scale=nan"),
      (lambda: api.evaluate({"prior": case1["explainer"]}, case1["data"],
                            labels=case1["data"]["y"] > 0, gt_contrib=np.zeros((24, 5))),
       r"gt_contrib has shape \(24, 5\)"),
  ]
  for fn, match in cases:
    with pytest.raises(ConfigError, match=match) as info:
      fn()
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_features_as_python_lists_are_accepted(case1):
  data = case1["data"]
  as_lists = {k: data[k].tolist() for k in ("feat", "y", "y_i", "w")}
  m = api.evaluate({"prior": case1["explainer"]}, as_lists, labels=(data["y"] > 0).tolist(),
                   fidelity=False)
  assert m["prior"]["relative_deviation"] == pytest.approx(
      api.evaluate({"prior": case1["explainer"]}, data, labels=data["y"] > 0,
                   fidelity=False)["prior"]["relative_deviation"], rel=1e-5)


@pytest.mark.parametrize("n, batch_size", [(10, 4), (9, 4), (8, 4), (3, 4), (1, 1)])
def test_featurize_dataset_keeps_every_image_in_order(n, batch_size):
  images = np.arange(n * 2 * 2 * 1, dtype=np.float32).reshape(n, 2, 2, 1)
  fz = featurizers.filter_featurizer(lambda im: im + 1.0, lambda x: x.sum((1, 2, 3)))
  out = api.featurize_dataset(fz, images, batch_size=batch_size)
  assert out["y"].shape == (n,)
  np.testing.assert_allclose(out["y"], images.sum((1, 2, 3)) + 4.0)  # every row, in order


def test_top_patches_pick_the_strongest_activations_of_a_planted_filter():
  m, s = 12, 16
  x = np.random.default_rng(0).uniform(0, 0.1, size=(m, 4, 4, 3)).astype(np.float32)
  images = np.zeros((m, s, s, 3), np.float32)
  planted = {7: ((2, 1), 5.0), 3: ((0, 3), 4.0), 10: ((3, 0), 3.0)}  # image: (cell, value)
  for r, ((h, w), value) in planted.items():
    x[r, h, w, 1] = value
    images[r, 4 * h:4 * h + 4, 4 * w:4 * w + 4] = r  # the peak cell's pixels carry the index
  found = patches.top_patches(x, images, [1], num_patches=3, patch_cells=1)
  assert found["rows"][0].tolist() == [7, 3, 10]
  np.testing.assert_allclose(found["activation"][0], [5.0, 4.0, 3.0])
  assert found["cells"][0].tolist() == [[2, 1], [0, 3], [3, 0]]
  for j, r in enumerate([7, 3, 10]):  # each crop is exactly the peak cell's pixels
    assert found["patches"][0, j].shape == (4, 4, 3)
    assert np.all(found["patches"][0, j] == r)
  masks = np.full((m, s, s), -1)
  for r, ((h, w), _) in planted.items():
    masks[r, 4 * h:4 * h + 4, 4 * w:4 * w + 4] = 1 if r != 10 else 0
  assert patches.fires_on(masks, found["rows"][0], found["cells"][0], (4, 4),
                          ["body", "head"]) == "head (2 of 3)"


@pytest.mark.slow
def test_case2_fidelity_from_given_effects_or_counterfactual_images(case1):
  data, images = case1["data"], case1["images"]
  e = explainer_lib.Explainer(case1["explainer"].g, case1["explainer"].variables,
                              case="shared_feature")
  contrib = e.alpha(data["feat"]) * data["y_i"]
  cf = lambda idx, k: images[idx] * (1.0 - 0.1 * (k + 1))  # "toggled": darkened by concept
  score = lambda im: np.asarray(case1["head"](case1["features"](jnp.asarray(im))))
  delta = np.stack([data["y"] - score(cf(np.arange(24), k)) for k in range(6)], 1)
  hand = np.mean([stats.spearmanr(np.abs(c), np.abs(d))[0] for c, d in zip(contrib, delta)])
  for kwargs in (dict(effects=delta), dict(counterfactual=cf)):
    m = api.evaluate({"prior": e}, data, labels=data["y"] > 0, num_resamples=20, **kwargs)
    got = m["fidelity"]["prior"]["interventional_rank_correlation"]["mean"]
    assert got == pytest.approx(float(hand), abs=1e-3), kwargs
  assert "note" in api.evaluate({"prior": e}, data, labels=data["y"] > 0)["fidelity"]
