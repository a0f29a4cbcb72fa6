"""The single trainer's losses and step, tested directly against numpy formulas written here.

The explainer's weight network is replaced by a module whose α is fixed by its input, so the
loss can be recomputed by hand: distillation on the valid rows plus λ(t)·prior, λ = β/√epoch.
"""

import functools
import json
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from configs import synthetic
from xplain_jax import data as data_lib
from xplain_jax.infra import parallel
from xplain_jax.train import explainer as explainer_lib
from xplain_jax.train import loop
from xplain_jax.train import performer as performer_lib

B, N = 8, 5
PADDED = (5, 7)  # rows holding junk, masked out


class FixedAlpha(nn.Module):
  """α = the feature map flattened: fixed by the input, no parameters."""

  @nn.compact
  def __call__(self, x, train=False):
    return x.reshape(x.shape[0], -1), {}


def _batch(junk: float):
  rng = np.random.default_rng(0)
  alpha = rng.normal(size=(B, N)).astype(np.float32)  # mixed signs
  batch = {"feat": alpha.reshape(B, 1, 1, N),
           "y": rng.normal(size=B).astype(np.float32) * 3,
           "y_i": rng.normal(size=(B, N)).astype(np.float32),
           "w": rng.normal(size=(B, N)).astype(np.float32),
           "mask": np.ones(B, bool)}
  for r in PADDED:
    batch["mask"][r] = False
    for k in ("feat", "y", "y_i", "w"):
      batch[k][r] = junk
  return alpha, batch


def _expected(alpha, batch, b, lam, kind):
  """Distillation + λ·prior over the valid rows, in float64 numpy."""
  v = batch["mask"]
  a, y, y_i, w = (np.asarray(t, np.float64)[v] for t in (alpha, batch["y"], batch["y_i"],
                                                        batch["w"]))
  y_hat = (a * y_i).sum(-1) + b
  distill = np.mean((y - y_hat) ** 2)
  if kind == "mse":
    unit = lambda m: m / np.linalg.norm(m, axis=-1, keepdims=True)
    prior = np.mean(((unit(a) - unit(w)) ** 2).sum(-1))
  else:
    p = np.abs(w) / np.abs(w).sum(-1, keepdims=True)
    q = np.maximum(a / np.abs(a).sum(-1, keepdims=True), 1e-12)
    prior = np.mean(-(p * np.log(q)).sum(-1))
  deviation = np.mean(np.abs(y - y_hat)) / (y.max() - y.min())
  return distill, prior, deviation


@pytest.mark.parametrize("kind", ["mse", "cross_entropy"])
@pytest.mark.parametrize("junk", [1e4, np.nan])
def test_explainer_loss_is_distillation_plus_lambda_prior_on_valid_rows(kind, junk):
  alpha, batch = _batch(junk)
  if kind == "cross_entropy":  # the positive case: α, w ≥ 0
    alpha = np.abs(alpha)
    batch["feat"] = np.where(np.isnan(batch["feat"]), junk, np.abs(batch["feat"]))
    batch["w"] = np.where(np.isnan(batch["w"]), junk, np.abs(batch["w"]))
  b, beta, spe = 0.7, 0.3, 4
  loss_fn = explainer_lib.make_loss(FixedAlpha(), beta=beta, steps_per_epoch=spe,
                                    prior_kind=kind)
  params = {"g": {}, "b": jnp.float32(b)}
  for step in (0, 3, 4, 9, 17):
    lam = beta / math.sqrt(step // spe + 1)  # epoch t = step // spe + 1
    loss, (_, m) = jax.jit(loss_fn)(params, {}, batch, jax.random.PRNGKey(0), step, {})
    distill, prior, deviation = _expected(alpha, batch, b, lam, kind)
    assert float(m["lambda"]) == pytest.approx(lam, rel=1e-6)
    assert float(m["distill_loss"]) == pytest.approx(distill, rel=1e-5)
    assert float(m["prior_loss"]) == pytest.approx(prior, rel=1e-5)
    assert float(loss) == pytest.approx(distill + lam * prior, rel=1e-5)
    assert float(m["deviation"]) == pytest.approx(deviation, rel=1e-5)
    assert np.isfinite(float(m["entropy"]))


def test_baseline_variant_has_no_prior_term():
  alpha, batch = _batch(1e4)
  loss_fn = explainer_lib.make_loss(FixedAlpha(), beta=0.0, steps_per_epoch=2, prior_kind="mse")
  loss, (_, m) = loss_fn({"g": {}, "b": jnp.float32(-1.5)}, {}, batch, None, 0, {})
  distill, _, _ = _expected(alpha, batch, -1.5, 0.0, "mse")
  assert float(m["lambda"]) == 0.0 and float(loss) == pytest.approx(distill, rel=1e-5)


def test_uncached_loss_featurizes_inside():
  alpha, batch = _batch(1e4)
  feats = {k: batch[k] for k in ("feat", "y", "y_i", "w")}
  featurize = lambda perf_vars, images: jax.tree.map(lambda x: x * perf_vars, feats)
  kw = dict(beta=0.2, steps_per_epoch=2, prior_kind="mse")
  cached = explainer_lib.make_loss(FixedAlpha(), **kw)
  uncached = explainer_lib.make_loss(FixedAlpha(), featurize=featurize, **kw)
  params = {"g": {}, "b": jnp.float32(0.1)}
  a = cached(params, {}, batch, None, 3, {})[0]
  u = uncached(params, {}, {"image": np.zeros((B, 2, 2, 3)), "mask": batch["mask"]}, None, 3,
               jnp.float32(1.0))[0]
  assert float(a) == pytest.approx(float(u), rel=1e-6)


class FixedLogits(nn.Module):
  @nn.compact
  def __call__(self, x, train=False):
    return x.reshape(x.shape[0], -1)[:, :3], {}


def test_performer_loss_is_the_mean_logistic_loss_on_valid_rows():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(B, 3)).astype(np.float32) * 2
  labels = (rng.random((B, 3)) < 0.5).astype(np.float32)
  mask = np.ones(B, bool)
  mask[list(PADDED)] = False
  logits[list(PADDED)] = np.nan  # junk in padded rows
  batch = {"image": logits.reshape(B, 1, 1, 3), "labels": labels, "mask": mask}
  loss, (_, m) = performer_lib.performer_loss({}, {}, batch, jax.random.PRNGKey(0), 0,
                                              module=FixedLogits(), filter_loss_weight=0.0)
  z, t = logits[mask].astype(np.float64), labels[mask]
  bce = np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
  assert float(loss) == pytest.approx(bce.mean(), rel=1e-5)
  assert float(m["accuracy"]) == pytest.approx(((z > 0) == (t > 0.5)).mean(), rel=1e-6)


def test_step_folds_the_step_into_the_key_and_applies_the_optimizer():
  def loss_fn(params, batch_stats, batch, rng, step, scale):
    noise = jax.random.uniform(rng)
    loss = scale * jnp.sum((params["x"] - batch["t"]) ** 2)
    return loss, (batch_stats, {"noise": noise, "step": step.astype(jnp.float32)})

  opt = optax.sgd(0.1)
  step_fn = jax.jit(loop.make_train_step(loss_fn, opt))
  state = {"step": jnp.zeros((), jnp.int32), "params": {"x": jnp.ones(3)}, "batch_stats": {},
           "opt_state": opt.init({"x": jnp.ones(3)})}
  rng = jax.random.PRNGKey(4)
  batch = {"t": jnp.zeros(3)}
  seen = []
  for k in range(3):
    x_before = np.asarray(state["params"]["x"])
    state, m = step_fn(state, batch, rng, jnp.float32(2.0))
    assert float(m["noise"]) == float(jax.random.uniform(jax.random.fold_in(rng, k)))
    assert float(m["step"]) == k
    # d/dx 2·Σx² = 4x; sgd: x − 0.1·4x.
    np.testing.assert_allclose(np.asarray(state["params"]["x"]), x_before * 0.6, rtol=1e-6)
    assert float(m["grad_norm"]) == pytest.approx(np.linalg.norm(4 * x_before), rel=1e-6)
    seen.append(float(m["noise"]))
  assert len(set(seen)) == 3 and int(state["step"]) == 3


def test_variant_key_depends_on_the_name_only():
  rng = jax.random.PRNGKey(0)
  k = explainer_lib.variant_key
  np.testing.assert_array_equal(k(rng, "prior"), k(rng, "prior"))
  assert not np.array_equal(k(rng, "prior"), k(rng, "baseline"))
  import zlib
  np.testing.assert_array_equal(k(rng, "prior"),
                                jax.random.fold_in(rng, zlib.crc32(b"prior")))


@pytest.mark.slow
def test_logged_learning_rate_is_the_rate_the_optimizer_applied(tmp_path):
  # loss = Σx: the gradient is 1 everywhere, so plain SGD moves x by exactly −lr(k) in step k.
  # The logged rates must follow the warm-up + cosine formula written here and sum to the
  # distance x travelled.

  def loss_fn(params, batch_stats, batch, rng, step):
    del batch, rng, step
    return jnp.sum(params["x"]), (batch_stats, {})

  peak, warmup, total = 0.5, 3, 10
  opt = ml_collections.ConfigDict(dict(name="sgd", learning_rate=peak, schedule="cosine",
                                       warmup_steps=warmup, momentum=0.0, weight_decay=0.0,
                                       grad_clip=0.0))
  loader = data_lib.Loader(data_lib.ArraySource({"t": np.zeros((4, 1), np.float32)}), 2)
  state = loop.train_stage(stage="s", workdir=str(tmp_path), mesh=parallel.make_mesh(1),
                           loss_fn=loss_fn, params={"x": jnp.zeros(2)}, batch_stats={},
                           optimizer_config=opt, loader=loader, num_epochs=total // 2,
                           rng=jax.random.PRNGKey(0), checkpoint_every=100, log_every=1)
  with open(tmp_path / "logs" / "s.jsonl") as f:
    logged = {r["step"]: r["learning_rate"] for r in map(json.loads, f)}

  def expected(k):
    if k < warmup:
      return peak * k / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (k - warmup) / (total - warmup)))

  assert sorted(logged) == list(range(1, total + 1))  # the line of step s holds step s−1's rate
  for s, lr in logged.items():
    assert lr == pytest.approx(expected(s - 1), abs=1e-7)
  np.testing.assert_allclose(np.asarray(state["params"]["x"]), -sum(logged.values()),
                             rtol=1e-5)


@pytest.mark.slow
def test_auto_scale_starts_the_explainer_at_y_spread_and_mean(tmp_path):
  # With the learning rate at 0 the trained explainer is the initial one but for its batch-norm
  # statistics (two steps move them a little), so its predictions on the sample auto_scale
  # looks at must have about y's mean and standard deviation; the paper's start
  # (auto_scale=False) has several times y's spread. A rerun restores the same scale.

  rng = np.random.default_rng(0)
  m, n = 64, 6
  feats = {"feat": rng.normal(size=(m, 4, 4, 8)).astype(np.float32),
           "y_i": rng.normal(50.0, 40.0, size=(m, n)).astype(np.float32),
           "y": rng.normal(2.0, 3.0, size=m).astype(np.float32),
           "w": rng.uniform(size=(m, n)).astype(np.float32)}
  c = synthetic.get_config("tiny")
  c.explainer.optimizer.learning_rate, c.explainer.num_epochs = 0.0, 1
  loader = data_lib.Loader(data_lib.ArraySource(feats), 32)

  def train(auto, workdir):
    c.explainer.auto_scale = auto
    e = explainer_lib.train_explainer(c, "prior", workdir=str(workdir), mesh=parallel.make_mesh(1),
                                      loader=loader, feat_shape=(1, 4, 4, 8), num_concepts=n,
                                      rng=jax.random.PRNGKey(3))
    return e, e.contributions(feats["feat"], feats["y_i"]).sum(1) + e.bias

  e, pred = train(True, tmp_path / "auto")
  assert np.std(pred) == pytest.approx(np.std(feats["y"]), rel=0.1)
  assert np.mean(pred) == pytest.approx(np.mean(feats["y"]), rel=0.1)
  again, _ = train(True, tmp_path / "auto")  # restored from its checkpoint
  assert again.alpha_scale == e.alpha_scale != 1.0
  plain, pred = train(False, tmp_path / "paper")
  assert plain.alpha_scale == 1.0 and np.std(pred) > 3 * np.std(feats["y"])
