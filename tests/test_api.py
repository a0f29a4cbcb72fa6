"""The own-model API: early one-line errors, labels as the report gives them, and no dangling
documentation references."""

import os
import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xplain_jax import api, featurizers
from xplain_jax.errors import ConfigError
from xplain_jax.train import explainer as explainer_lib
from xplain_jax.train import loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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


def test_constant_prior_warns():
  feats = _features(w=np.tile([[0.5, -0.2, 0.1, 0.3]], (32, 1)))
  with pytest.warns(UserWarning, match="same for every image"):
    api.fit_explainer(feats, case="shared_feature", **FAST)


def test_varying_prior_does_not_warn():
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    api.fit_explainer(_features(), case="shared_feature", **FAST)


def test_missing_batch_key_is_named():
  g = explainer_lib.models.get_weight_net(10, num_outputs=4, positive=False, width=8)
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


def test_evaluate_and_write_report_from_arrays(tmp_path):
  feats = _features()
  e = api.fit_explainer(feats, case="shared_feature", **FAST)
  m = api.evaluate({"prior": e}, feats, labels=feats["y"] > 0, names=list("abcd"))
  assert set(m["prior"]) >= {"entropy", "accuracy", "relative_deviation", "bias"}
  alpha = e.alpha(feats["feat"])
  np.testing.assert_allclose(e.predict(feats["feat"], feats["y_i"]),
                             (alpha * feats["y_i"]).sum(1) + e.bias, rtol=1e-5, atol=1e-5)
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
