"""The project's additions to the explainer: least-squares start, consistency term and its
targets, signed Case 1, and the variants that train them (checked against numpy and finite
differences written here)."""

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import parts, synthetic
from xplain_jax import data as data_lib
from xplain_jax.core import losses
from xplain_jax.infra import parallel
from xplain_jax.run import validate
from xplain_jax import models
from xplain_jax.errors import ConfigError
from xplain_jax.train import explainer as explainer_lib
from xplain_jax.train import features as features_lib
from xplain_jax.train import start as start_lib

N_IMG, N = 96, 5
OPT = ml_collections.ConfigDict(dict(name="adam", learning_rate=0.05, schedule="constant",
                                     grad_clip=0.0, weight_decay=0.0, warmup_steps=0,
                                     momentum=0.9))


class TinyG(nn.Module):
  """A stand-in weight network (fast to compile): one Dense named ``head``, as g's last layer."""

  @nn.compact
  def __call__(self, x, train=False):
    return nn.Dense(N, name="head")(jnp.tanh(x.reshape(x.shape[0], -1))), {}


def _features(seed=0, *, signed_w=False):
  rng = np.random.default_rng(seed)
  y_i = rng.uniform(0.0, 3.0, size=(N_IMG, N)).astype(np.float32)
  true = np.array([1.5, -0.5, 0.0, 2.0, 0.3], np.float32)
  y = (y_i @ true + 0.4 + 0.3 * rng.normal(size=N_IMG)).astype(np.float32)
  w = rng.normal(size=(N_IMG, N)).astype(np.float32)
  return {"feat": rng.normal(size=(N_IMG, 4, 4, 3)).astype(np.float32), "y": y, "y_i": y_i,
          "w": w if signed_w else np.abs(w)}


def _fit(feats, *, epochs=0, offset=None, workdir=None, prior_kind="mse", beta=0.0,
         init_bias=0.0, consistency_weight=0.0):
  g = TinyG()
  keys = ("feat", "y", "y_i", "w") + (("t",) if consistency_weight > 0 else ())
  loader = data_lib.Loader(data_lib.ArraySource({k: feats[k] for k in keys}), 32, seed=0,
                           shuffle=True, drop_remainder=True)
  return explainer_lib.fit_weight_net(
      g, loader=loader, feat_shape=feats["feat"].shape, beta=beta, prior_kind=prior_kind,
      num_epochs=epochs, optimizer_config=OPT, rng=jax.random.PRNGKey(0), stage="t",
      workdir=workdir, mesh=parallel.make_mesh(1), checkpoint_every=10 ** 6, log_every=10 ** 6,
      init_bias=init_bias, start=offset, consistency_weight=consistency_weight)


def _deviation(y, y_hat):
  return float(np.mean(np.abs(y - y_hat)) / (y.max() - y.min()))


@pytest.mark.parametrize("positive", [False, True])
def test_least_squares_start_begins_at_the_linear_fit(positive):
  feats = _features()
  alpha_ls, b_ls = start_lib.least_squares_fit(feats["y_i"], feats["y"], positive=positive)
  if not positive:  # the fit itself, independently: numpy's lstsq on (y_i, 1)
    design = np.concatenate([feats["y_i"], np.ones((N_IMG, 1))], 1).astype(np.float64)
    sol = np.linalg.lstsq(design, feats["y"].astype(np.float64), rcond=None)[0]
    np.testing.assert_allclose(alpha_ls, sol[:N], rtol=1e-4, atol=1e-4)
  else:
    assert np.min(alpha_ls) >= 0 and np.any(alpha_ls == 0)  # the -0.5 weight is cut at 0
  e = _fit(feats, offset=start_lib.start_variables(alpha_ls, positive=positive),
           init_bias=b_ls)
  alpha = e.alpha(feats["feat"])
  np.testing.assert_allclose(alpha, np.broadcast_to(alpha_ls, alpha.shape), rtol=1e-5,
                             atol=1e-6)
  fit = feats["y_i"].astype(np.float64) @ alpha_ls + b_ls
  pred = e.contributions(feats["feat"], feats["y_i"]).sum(1) + e.bias
  assert _deviation(feats["y"], pred) == pytest.approx(_deviation(feats["y"], fit), rel=1e-5)


def test_the_start_is_saved_with_the_checkpoint(tmp_path):
  feats = _features()
  alpha_ls, b_ls = start_lib.least_squares_fit(feats["y_i"], feats["y"], positive=False)
  first = _fit(feats, epochs=1, offset={start_lib.START_KEY: alpha_ls},
               init_bias=b_ls,
               workdir=str(tmp_path))
  # Restored (finished) with another offset given: the checkpoint's offset wins.
  again = _fit(feats, epochs=1,
               offset={start_lib.START_KEY: np.zeros(N, np.float32)},
               workdir=str(tmp_path))
  np.testing.assert_array_equal(again.alpha(feats["feat"]), first.alpha(feats["feat"]))
  np.testing.assert_array_equal(
      np.asarray(again.variables["batch_stats"][start_lib.START_KEY]), alpha_ls)


def test_inverse_softplus_inverts_softplus():
  a = np.array([1e-6, 0.01, 0.5, 3.0, 40.0])
  np.testing.assert_allclose(np.log1p(np.exp(start_lib.inverse_softplus(a))), a, rtol=1e-9)


# ------------------------------------------------------------ consistency term


def test_consistency_loss_is_zero_at_the_targets_and_its_gradient_points_to_them():
  rng = np.random.default_rng(1)
  t = jnp.asarray(rng.normal(size=(6, 4)), jnp.float32)
  c = jnp.asarray(rng.normal(size=(6, 4)), jnp.float32)
  mask = jnp.array([True] * 5 + [False])
  assert float(losses.consistency_loss(t, t, mask)) == 0.0
  value, grad = jax.value_and_grad(losses.consistency_loss)(c, t, mask)
  diff = np.asarray(c - t, np.float64)
  assert float(value) == pytest.approx(np.mean(np.sum(diff[:5] ** 2, -1)), rel=1e-5)
  want = 2 * diff / 5
  want[5] = 0.0  # a padded row passes no gradient
  np.testing.assert_allclose(grad, want, rtol=1e-5, atol=1e-7)
  step = c - 0.1 * grad  # descent moves every valid contribution toward its target
  assert np.all(np.abs(np.asarray(step - t))[:5] < np.abs(diff[:5]) + 1e-7)
  assert float(losses.consistency_loss(step, t, mask)) < float(value)


def test_explainer_loss_adds_the_weighted_consistency_term():
  rng = np.random.default_rng(2)
  feats = _features()
  feats["t"] = rng.normal(size=(N_IMG, N)).astype(np.float32)
  batch = {k: v[:8] for k, v in feats.items()}
  batch["mask"] = np.ones(8, bool)
  g = TinyG()
  params, stats = explainer_lib.init_params(g, feats["feat"].shape, jax.random.PRNGKey(0))
  run = lambda w: explainer_lib.make_loss(g, beta=0.0, steps_per_epoch=1, prior_kind="mse",
                                          consistency_weight=w)(params, stats, batch, None, 0, {})
  plain, (_, m0) = run(0.0)
  weighted, (_, m) = run(0.5)
  alpha = g.apply({"params": params["g"]}, batch["feat"])[0]
  want = np.mean(np.sum((np.asarray(alpha) * batch["y_i"] - batch["t"]) ** 2, -1))
  assert float(m["consistency_loss"]) == pytest.approx(want, rel=1e-4)
  assert float(weighted) == pytest.approx(float(plain) + 0.5 * want, rel=1e-4)
  assert float(m0["consistency_loss"]) == 0.0
  with pytest.raises(ConfigError, match=r"lack \['t'\].*consistency target"):
    explainer_lib.make_loss(g, beta=0.0, steps_per_epoch=1, prior_kind="mse",
                            consistency_weight=1.0)(
                                params, stats, {k: v for k, v in batch.items() if k != "t"},
                                None, 0, {})


def test_consistency_training_moves_contributions_toward_the_targets():
  feats = _features()
  alpha_ls, b_ls = start_lib.least_squares_fit(feats["y_i"], feats["y"], positive=False)
  feats["t"] = (feats["y_i"] * np.array([2.0, 0.0, 0.5, 1.0, -1.0], np.float32))
  gap = lambda e: np.mean((e.contributions(feats["feat"], feats["y_i"]) - feats["t"]) ** 2)
  offset = start_lib.start_variables(alpha_ls, positive=False)
  start = _fit(feats, offset=offset, init_bias=b_ls)
  trained = _fit(feats, offset=offset, init_bias=b_ls, epochs=10,
                 consistency_weight=1.0)
  assert gap(trained) < 0.8 * gap(start)


# ------------------------------------------------------------ effect targets


def test_case2_targets_on_a_linear_head_are_the_concept_coefficients_times_y_k():
  rng = np.random.default_rng(3)
  d, n = 9, 4
  u = rng.normal(size=(n, d))
  c_true = rng.normal(size=n)
  a = u.T @ c_true                         # ∇y in the span of the concepts' gradients
  b_k = rng.normal(size=n)
  h = jnp.asarray(rng.normal(size=(3, d)), jnp.float32)
  target_fn = lambda v: v @ jnp.asarray(a, jnp.float32) + 0.7
  concepts_fn = lambda v: v @ jnp.asarray(u.T, jnp.float32) + jnp.asarray(b_k, jnp.float32)
  t = features_lib.concept_gradient_x_input(target_fn, concepts_fn, h)
  y_k = np.asarray(concepts_fn(h), np.float64)
  np.testing.assert_allclose(t, c_true * y_k, rtol=1e-4, atol=1e-4)
  # y = Σ_k t_k + a constant
  const = np.asarray(target_fn(h), np.float64) - np.sum(np.asarray(t, np.float64), -1)
  np.testing.assert_allclose(const, const[0], atol=1e-4)


def test_case2_coefficients_match_finite_differences_on_a_nonlinear_head():
  """c_k = t_k / y_k is the change of y along the direction that moves y_k alone (first
  order), d_k = Jᵀ(JJᵀ)⁻¹e_k; checked by central differences in float64."""
  rng = np.random.default_rng(4)
  d, n = 7, 3
  w1 = rng.normal(size=(d, 6)) / 2
  w_out = rng.normal(size=(6, n + 1))
  head = lambda v: jnp.tanh(v @ w1) @ w_out        # [B,n+1]; target = column n
  with jax.enable_x64(True):
    h = jnp.asarray(rng.normal(size=(1, d)))
    t = features_lib.concept_gradient_x_input(lambda v: head(v)[:, n], lambda v: head(v)[:, :n],
                                               h)
    y_k = np.asarray(head(h)[0, :n])
    jac = np.asarray(jax.jacobian(lambda v: head(v[None])[0, :n])(h[0]))      # [n,d]
    eps = 1e-5
    for k in range(n):
      dk = jac.T @ np.linalg.solve(jac @ jac.T, np.eye(n)[k])
      fd = (head(h + eps * dk)[0, n] - head(h - eps * dk)[0, n]) / (2 * eps)
      assert float(t[0, k]) / y_k[k] == pytest.approx(float(fd), rel=1e-4)


@pytest.mark.slow
def test_featurizer_adds_targets_and_refuses_a_target_the_case_lacks():
  config = synthetic.get_config("tiny")
  spec = data_lib.get_spec(config)
  perf = models.get_performer(config.performer.arch, num_outputs=len(spec.output_names),
                              **config.performer.model)
  images = np.random.default_rng(5).uniform(size=(2, config.dataset.image_size,
                                                  config.dataset.image_size, 3))
  variables = perf.init(jax.random.PRNGKey(0), images.astype(np.float32))
  fz = features_lib.make_featurizer(perf, spec, target="gradient_x_input")
  out = fz(variables, images.astype(np.float32))
  assert out["t"].shape == out["y_i"].shape and np.all(np.isfinite(out["t"]))
  assert "t" not in features_lib.make_featurizer(perf, spec)(variables, images)
  with pytest.raises(ConfigError, match="not offered for case 'shared_feature'"):
    features_lib.make_featurizer(perf, spec, target="deletion")


# ------------------------------------------------------------ signed Case 1, variants, config


def test_signed_case1_is_accepted_and_the_cross_entropy_prior_refuses_unclipped_w():
  c = parts.get_config("tiny")
  c.explainer.clip_prior = False
  with pytest.raises(ConfigError, match="clip_prior=False.*signed Case 1"):
    validate.check_config(c)
  c.explainer.positive, c.explainer.prior_kind = False, "mse"
  validate.check_config(c)


def test_signed_case1_trains_with_signed_w_and_the_mse_prior():
  feats = _features(signed_w=True)
  assert np.min(feats["w"]) < 0
  with pytest.raises(ValueError, match="kind='cross_entropy' needs w >= 0"):
    losses.prior_loss(jnp.abs(jnp.asarray(feats["w"])), feats["w"], kind="cross_entropy")
  e = _fit(feats, epochs=2, prior_kind="mse", beta=10.0)
  alpha = e.alpha(feats["feat"])
  assert np.all(np.isfinite(alpha)) and np.min(alpha) < 0 < np.max(alpha)


def test_variants_read_their_settings_from_the_config():
  c = parts.get_config("tiny")
  c.explainer.variants = "baseline,prior,ls_start,faithful"
  c.explainer.consistency_target = "deletion"
  validate.check_config(c)
  s = {v: explainer_lib.variant_settings(c, v) for v in explainer_lib.VARIANTS}
  assert (s["baseline"].beta, s["prior"].beta, s["ls_start"].beta) == (0.0, c.explainer.beta,
                                                                      c.explainer.beta)
  assert s["prior"].start == "paper" and s["ls_start"].start == "least_squares"
  assert s["faithful"].consistency_weight == c.explainer.faithful_weight > 0
  assert explainer_lib.consistency_target(c) == "deletion"
  c.explainer.variants = "baseline,prior,ls_start"
  assert explainer_lib.consistency_target(c) == ""
  c.explainer.start, c.explainer.consistency_weight = "least_squares", 0.5
  assert explainer_lib.variant_settings(c, "prior").start == "least_squares"
  assert explainer_lib.consistency_target(c) == "deletion"
  c.explainer.consistency_target = "rendering"
  with pytest.raises(ConfigError, match="consistency_target"):
    validate.check_config(c)


@pytest.mark.slow
def test_api_fit_explainer_passes_the_start_and_the_consistency_term_through(tmp_path):
  from xplain_jax import api  # pylint: disable=import-outside-toplevel
  feats = _features()
  feats["t"] = feats["y_i"] * np.float32(0.5)
  with pytest.raises(ConfigError, match=r"needs finite features\['t'\]"):
    api.fit_explainer({k: v for k, v in feats.items() if k != "t"}, case="filter",
                      consistency_weight=1.0)
  kw = dict(case="filter", start="least_squares", consistency_weight=0.5, epochs=1,
            batch_size=32, workdir=str(tmp_path), log_every=10 ** 6)
  e = api.fit_explainer(feats, **kw)
  assert start_lib.SOFTPLUS_START_KEY in e.variables["batch_stats"]
  loaded = api.fit_explainer(feats, **kw)      # the finished fit, loaded from the workdir
  np.testing.assert_allclose(loaded.alpha(feats["feat"]), e.alpha(feats["feat"]), rtol=1e-6)
  assert np.min(e.alpha(feats["feat"])) > 0


# ------------------------------------------------------------ Case 2 rendered targets


def _tiny_case2(num_train=6):
  config = synthetic.get_config("tiny")
  config.dataset.num_train = num_train
  spec = data_lib.get_spec(config)
  perf = models.get_performer(config.performer.arch, num_outputs=len(spec.output_names),
                              **config.performer.model)
  size = config.dataset.image_size
  variables = perf.init(jax.random.PRNGKey(3), np.zeros((1, size, size, 3), np.float32))
  return config, spec, perf, variables, data_lib.get_source(config, "train")


@pytest.mark.slow
def test_cached_rendered_targets_equal_the_performer_on_each_counterfactual(tmp_path):
  from xplain_jax.data import synthetic_attributes as sa  # pylint: disable=import-outside-toplevel
  config, spec, perf, variables, src = _tiny_case2()
  fz = features_lib.make_featurizer(perf, spec, target="rendered")
  targets = features_lib.rendered_targets(perf, variables, spec, src, sa.CONCEPT_NAMES,
                                          batch_size=2)
  cache = features_lib.featurize_split(fz, variables, src, directory=str(tmp_path), batch_size=4,
                                       mesh=parallel.make_mesh(1), source_targets=targets)
  t = np.asarray(cache.columns["t"])
  assert t.shape == (len(src), len(spec.concept_names))
  # The reference, one image and one concept at a time: y(I) − y(I with the concept of y_i's
  # column k, found by its name, toggled).
  y = jax.jit(lambda im: perf.apply(variables, im, train=False)[0][:, spec.target_index])
  for i in (0, 3, 5):
    image = src.get_batch(np.array([i]))["image"]
    toggled = np.concatenate([src.counterfactuals(np.array([i]), sa.CONCEPT_NAMES.index(name))
                              for name in spec.concept_names])
    expected = float(y(image)[0]) - np.asarray(y(toggled))
    np.testing.assert_allclose(t[i], expected, atol=1e-4, err_msg=f"image {i}")
  assert np.abs(t).max() > 0
  # The other columns are the featurizer's own, and a second call maps the finished cache.
  np.testing.assert_allclose(cache.columns["y"], fz(variables, src.get_batch(np.arange(6))["image"])
                             ["y"], rtol=1e-5, atol=1e-5)
  again = features_lib.featurize_split(fz, variables, src, directory=str(tmp_path), batch_size=4,
                                       mesh=parallel.make_mesh(1), source_targets=targets)
  np.testing.assert_array_equal(np.asarray(again.columns["t"]), t)


def test_rendered_targets_are_refused_where_nothing_can_be_redrawn():
  c = synthetic.get_config("tiny")
  c.explainer.consistency_target = "rendered"
  validate.check_config(c)
  c.explainer.cache_features = False
  with pytest.raises(ConfigError, match="consistency_target.*cache_features=True"):
    validate.check_config(c)
  from configs import celeba  # pylint: disable=import-outside-toplevel
  b = celeba.get_config("target=male,tiny")
  b.explainer.consistency_target = "rendered"
  with pytest.raises(ConfigError, match="celeba cannot redraw its images"):
    validate.check_config(b)
  p = parts.get_config("tiny")
  p.explainer.consistency_target = "rendered"
  with pytest.raises(ConfigError, match="case 'filter' offers"):
    validate.check_config(p)
  _, spec, perf, variables, src = _tiny_case2()
  plain = data_lib.ArraySource({"image": src.get_batch(np.arange(2))["image"]})
  with pytest.raises(ConfigError, match="redraws its images"):
    features_lib.rendered_targets(perf, variables, spec, plain, spec.concept_names, batch_size=2)
  with pytest.raises(ConfigError, match="cannot toggle"):
    features_lib.rendered_targets(perf, variables, spec, src, ("x",), batch_size=2)


@pytest.mark.slow
def test_a_tiny_run_trains_the_faithful_variant_on_rendered_targets(tmp_path):
  from xplain_jax.data import feature_cache  # pylint: disable=import-outside-toplevel
  from xplain_jax.run import pipeline  # pylint: disable=import-outside-toplevel
  c = synthetic.get_config("tiny")
  c.dataset.num_train, c.dataset.num_test = 64, 32
  c.explainer.variants, c.explainer.consistency_target = "faithful", "rendered"
  c.stages = "performer,explainer,evaluate"
  metrics = pipeline.train_and_evaluate(c, str(tmp_path))
  train = feature_cache.load_cache(str(tmp_path / "features" / "train"),
                                   pipeline.stages.stage_fingerprint(c, "features"))
  t = np.asarray(train.columns["t"])
  assert t.shape == np.shape(train.columns["y_i"]) and np.all(np.isfinite(t))
  assert np.abs(t).max() > 0
  with open(tmp_path / "logs" / "explainer_faithful.jsonl") as f:
    logged = [json.loads(line) for line in f]
  assert any(r.get("consistency_loss", 0) > 0 for r in logged)
  assert np.isfinite(metrics["fidelity"]["faithful"]["interventional_rank_correlation"]["mean"])
