"""Tests of the interpretable conv layer: templates, mask, filter loss (Zhang et al. 2018)."""

import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xplain_jax.models.interpretable import (InterpretableMask, filter_loss,
                                             filter_mutual_information, mask_for_peaks,
                                             templates)


def test_templates_3x3_by_hand():
  # n = 3, β = 4, τ = 0.5/9: distance 0 -> τ, 1 -> τ(1 − 4/3) = −τ/3, ≥ 2 -> clipped to −τ.
  tau = 0.5 / 9
  t = np.asarray(templates(3))
  assert t.shape == (9, 3, 3)
  corner = np.array([[1, -1 / 3, -1], [-1 / 3, -1, -1], [-1, -1, -1]]) * tau
  np.testing.assert_allclose(t[0], corner, rtol=1e-6)
  centre = np.array([[-1, -1 / 3, -1], [-1 / 3, 1, -1 / 3], [-1, -1 / 3, -1]]) * tau
  np.testing.assert_allclose(t[4], centre, rtol=1e-6)  # μ = (1, 1) is index 1*3 + 1


def test_templates_4x4_by_hand_and_order():
  # n = 4, β = 4: distance 0 -> τ, 1 -> 0, ≥ 2 -> −τ; template a*4 + b is centred at (a, b).
  tau = 2.0
  t = np.asarray(templates(4, tau=tau))
  for a, b in itertools.product(range(4), range(4)):
    for i, j in itertools.product(range(4), range(4)):
      d = abs(i - a) + abs(j - b)
      want = tau if d == 0 else (0.0 if d == 1 else -tau)
      assert t[a * 4 + b, i, j] == pytest.approx(want)


def test_mask_keeps_only_the_peak_neighbourhood():
  rng = np.random.default_rng(0)
  x = rng.uniform(0, 1, (2, 4, 4, 3)).astype(np.float32)
  peaks = {(0, 0): (1, 2), (0, 1): (3, 0), (0, 2): (0, 0), (1, 0): (2, 2), (1, 1): (0, 3),
           (1, 2): (3, 3)}
  for (b, c), (i, j) in peaks.items():
    x[b, i, j, c] = 5.0
  out = np.asarray(InterpretableMask().apply({}, jnp.asarray(x)))
  tau = 0.5 / 16
  for (b, c), (i, j) in peaks.items():
    want = np.zeros((4, 4))
    want[i, j] = 5.0 * tau  # x·T at the peak; distance 1 gives T = 0, beyond T < 0 -> 0
    np.testing.assert_allclose(out[b, :, :, c], want, rtol=1e-6, atol=1e-7)


def test_mask_6x6_neighbours_and_unit_peak():
  # n = 6, β = 4: distance 1 -> 1 − 4/6 = 1/3 of the peak value; distance 2 -> 1 − 8/6 < 0.
  x = np.zeros((1, 6, 6, 1), np.float32)
  x[0, 2, 3, 0] = 9.0
  x[0, 2, 4, 0] = 3.0
  x[0, 4, 3, 0] = 2.0  # distance 2: removed
  out = np.asarray(InterpretableMask(unit_peak=True).apply({}, jnp.asarray(x)))[0, :, :, 0]
  want = np.zeros((6, 6))
  want[2, 3] = 9.0
  want[2, 4] = 3.0 / 3
  np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-7)
  paper = np.asarray(InterpretableMask().apply({}, jnp.asarray(x)))[0, :, :, 0]
  np.testing.assert_allclose(paper, want * 0.5 / 36, rtol=1e-6, atol=1e-9)


def test_mask_gradient_treats_template_as_constant():
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.uniform(0, 1, (2, 5, 5, 2)), jnp.float32)
  grad = jax.jit(jax.grad(lambda v: jnp.sum(InterpretableMask().apply({}, v))))(x)
  t = np.asarray(mask_for_peaks(x))
  want = np.where(np.asarray(x) * t > 0, t, 0.0)
  np.testing.assert_allclose(np.asarray(grad), want, rtol=1e-6, atol=1e-9)


def _mi_bruteforce(x, tau, beta):
  """MI of one filter by explicit sums over templates and images (independent of the module)."""
  b, n, _ = x.shape
  temps = []
  for a, c in itertools.product(range(n), range(n)):
    t = np.zeros((n, n))
    for i, j in itertools.product(range(n), range(n)):
      t[i, j] = tau * max(1 - beta * (abs(i - a) + abs(j - c)) / n, -1)
    temps.append(t)
  temps.append(-tau * np.ones((n, n)))
  prior = [1 / (1 + n * n)] * (n * n + 1)
  lik = np.array([[math.exp(np.sum(x[k] * t)) for k in range(b)] for t in temps])
  lik /= lik.sum(axis=1, keepdims=True)  # p(x|T), normalised over the batch
  px = sum(p * l for p, l in zip(prior, lik))
  return sum(p * sum(l[k] * math.log(l[k] / px[k]) for k in range(b))
             for p, l in zip(prior, lik))


def test_mutual_information_matches_bruteforce():
  rng = np.random.default_rng(2)
  x = rng.uniform(0, 30, (5, 3, 3, 2))
  got = np.asarray(jax.jit(filter_mutual_information)(jnp.asarray(x, jnp.float32)))
  for c in range(2):
    assert got[c] == pytest.approx(_mi_bruteforce(x[..., c], 0.5 / 9, 4.0), rel=1e-4, abs=1e-6)


def _bump_maps(n, positions, height):
  x = np.zeros((len(positions), n, n, 1), np.float32)
  for k, (i, j) in enumerate(positions):
    x[k, i, j, 0] = height
  return x


def test_identical_maps_carry_no_information():
  x = _bump_maps(6, [(2, 2)] * 8, 500.0)
  assert float(jax.jit(filter_loss)(jnp.asarray(x))) == pytest.approx(0.0, abs=1e-5)


def test_loss_rewards_one_localized_part():
  # Positives: the part is at a different place in each image; the filter fires there only.
  # Uniform: the same total activation spread over the whole map. Negatives: silent maps.
  n, tau = 6, 0.5 / 36
  rng = np.random.default_rng(3)
  positions = [tuple(p) for p in rng.integers(0, n, (12, 2))]
  height = 6.0 / tau
  part = _bump_maps(n, positions, height)
  uniform = np.full_like(part, height / (n * n))
  silent = np.zeros((12, n, n, 1), np.float32)
  loss = jax.jit(filter_loss)
  loss_part = float(loss(jnp.asarray(np.concatenate([part, silent]))))
  loss_uniform = float(loss(jnp.asarray(np.concatenate([uniform, silent]))))
  bound = -math.log(1 + n * n)  # −H(T): MI never exceeds the prior entropy
  assert bound <= loss_part < loss_uniform <= 1e-6  # −MI ≤ 0 up to float rounding
  assert loss_part < loss_uniform - 0.5  # by a wide margin (in nats), not by rounding
  # A part that moves with the object carries more information than a fixed-place bump.
  fixed = _bump_maps(n, [(2, 2)] * 12, height)
  loss_fixed = float(loss(jnp.asarray(np.concatenate([fixed, silent]))))
  assert loss_part < loss_fixed < loss_uniform


def test_loss_finite_with_finite_gradients_and_reductions():
  rng = np.random.default_rng(4)
  x = jnp.asarray(rng.uniform(0, 1, (6, 7, 7, 4)) ** 4 * 1e4, jnp.float32)  # large, peaky
  loss, grad = jax.jit(jax.value_and_grad(filter_loss))(x)
  assert np.isfinite(float(loss)) and np.all(np.isfinite(np.asarray(grad)))
  assert np.abs(np.asarray(grad)).sum() > 0
  mean = jax.jit(functools.partial(filter_loss, reduction="mean"))(x)
  assert float(mean) == pytest.approx(float(loss) / 4, rel=1e-5)
  zero = jax.jit(jax.grad(filter_loss))(jnp.zeros((3, 4, 4, 2)))  # silent filters: still finite
  assert np.all(np.isfinite(np.asarray(zero)))
  with pytest.raises(ValueError, match="reduction"):
    filter_loss(x, reduction="max")
  with pytest.raises(ValueError, match=r"\[B,H,W,C\]"):
    filter_loss(jnp.zeros((3, 4, 4)))


def test_loss_gradient_matches_finite_differences():
  rng = np.random.default_rng(5)
  x = rng.uniform(0, 40, (4, 3, 3, 1))
  with jax.enable_x64():
    f = jax.jit(filter_loss)
    xv = jnp.asarray(x, jnp.float64)
    g = np.asarray(jax.jit(jax.grad(filter_loss))(xv))
    eps = 1e-4
    for idx in [(0, 0, 0, 0), (1, 2, 1, 0), (3, 1, 2, 0)]:
      e = np.zeros_like(x)
      e[idx] = eps
      fd = (float(f(xv + e)) - float(f(xv - e))) / (2 * eps)
      assert g[idx] == pytest.approx(fd, rel=1e-3, abs=1e-8)


# ---------------------------------------------------- a non-square 3 x 5 map
H35, W35 = 3, 5


def _template_35(a, c, tau, beta=4.0):
  """T_μ of a 3x5 map by its definition: τ·max(1 − β·L1((i,j),(a,c))/√(H·W), −1)."""
  n = math.sqrt(H35 * W35)
  return np.array([[tau * max(1 - beta * (abs(i - a) + abs(j - c)) / n, -1)
                    for j in range(W35)] for i in range(H35)])


def test_mask_on_a_3x5_map_uses_rows_and_columns_correctly():
  rng = np.random.default_rng(3)
  x = rng.uniform(0, 1, (2, H35, W35, 3)).astype(np.float32)
  peaks = {(0, 0): (2, 4), (0, 1): (0, 3), (0, 2): (1, 0), (1, 0): (2, 1), (1, 1): (0, 4),
           (1, 2): (1, 2)}
  for (b, c), (i, j) in peaks.items():
    x[b, i, j, c] = 5.0
  tau = 0.5 / (H35 * W35)
  mask = np.asarray(mask_for_peaks(jnp.asarray(x)))
  out = np.asarray(InterpretableMask().apply({}, jnp.asarray(x)))
  for (b, c), (i, j) in peaks.items():
    t = _template_35(i, j, tau)
    np.testing.assert_allclose(mask[b, :, :, c], t, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(out[b, :, :, c], np.maximum(x[b, :, :, c] * t, 0), rtol=1e-5,
                               atol=1e-8)


def test_mutual_information_on_a_3x5_map_matches_bruteforce():
  rng = np.random.default_rng(4)
  x = rng.uniform(0, 30, (4, H35, W35, 2))
  tau, hw = 0.5 / (H35 * W35), H35 * W35
  got = np.asarray(jax.jit(filter_mutual_information)(jnp.asarray(x, jnp.float32)))
  temps = [_template_35(a, c, tau) for a in range(H35) for c in range(W35)]
  temps.append(-tau * np.ones((H35, W35)))
  prior = [1 / (1 + hw)] * (hw + 1)
  for f in range(2):
    lik = np.array([[math.exp(np.sum(x[k, :, :, f] * t)) for k in range(len(x))]
                    for t in temps])
    lik /= lik.sum(axis=1, keepdims=True)
    px = sum(p * l for p, l in zip(prior, lik))
    mi = sum(p * sum(l[k] * math.log(l[k] / px[k]) for k in range(len(x)))
             for p, l in zip(prior, lik))
    assert got[f] == pytest.approx(mi, rel=1e-4, abs=1e-6)
