"""xplain_jax/fidelity/scores.py: the bootstrap drawn in blocks of resamples gives the interval
of the one-draw bootstrap; sign agreement counts only effects above its threshold."""

import numpy as np
import pytest

from xplain_jax import fidelity
from xplain_jax.fidelity import scores


def _one_draw_interval(values, num_resamples, level=0.95, seed=0):
  """The interval as computed before: all ``num_resamples x B`` indices in one draw."""
  values = np.asarray(values, np.float64).reshape(-1)
  rng = np.random.default_rng(seed)
  means = values[rng.integers(0, values.size, size=(num_resamples, values.size))].mean(axis=1)
  tail = (1.0 - level) / 2 * 100
  low, high = np.percentile(means, [tail, 100 - tail])
  return float(low), float(high)


@pytest.mark.parametrize("block", [1, 7, 64, 2 ** 21])  # rows per block: 1, 1, 6, all
@pytest.mark.parametrize("num_images,seed", [(11, 0), (57, 3)])
def test_blocks_give_the_one_draw_interval_bit_for_bit(monkeypatch, block, num_images, seed):
  values = np.random.default_rng(100 + seed).normal(0.3, 1.0, num_images)
  expected = _one_draw_interval(values, 301, level=0.9, seed=seed)
  monkeypatch.setattr(scores, "_RESAMPLE_BLOCK", block)
  out = fidelity.mean_interval(values, num_resamples=301, level=0.9, seed=seed)
  assert (out["low"], out["high"]) == expected
  assert out["mean"] == float(values.mean()) and out["num_images"] == num_images


def test_paired_difference_keeps_its_interval_in_blocks(monkeypatch):
  rng = np.random.default_rng(5)
  a, b = rng.normal(size=40), rng.normal(size=40)
  expected = _one_draw_interval(a - b, 200)
  monkeypatch.setattr(scores, "_RESAMPLE_BLOCK", 100)
  out = fidelity.paired_difference_interval(a, b, num_resamples=200)
  assert (out["low"], out["high"]) == expected


def test_blocks_bound_the_indices_drawn_at_once(monkeypatch):
  sizes = []
  real_rng = np.random.default_rng

  class Recording:
    def __init__(self, seed):
      self.rng = real_rng(seed)

    def integers(self, low, high, size):
      sizes.append(int(np.prod(size)))
      return self.rng.integers(low, high, size=size)

  monkeypatch.setattr(scores.np.random, "default_rng", Recording)
  monkeypatch.setattr(scores, "_RESAMPLE_BLOCK", 1000)
  fidelity.mean_interval(np.arange(300.0), num_resamples=1000)
  assert max(sizes) <= 1000 and sum(sizes) == 1000 * 300


def test_sign_agreement_skips_effects_at_the_threshold_and_zero_effects():
  """Mutation: ``sign_agreement`` counts ``|Δ_k| >= threshold`` instead of ``>``. At the
  default threshold 0 a concept with no effect at all (Δ_k = 0, a filter the head ignores)
  would then count as a disagreement whatever its contribution's sign."""
  contrib = np.array([[1.0, -2.0, 0.5], [2.0, 1.0, -1.0]])
  delta = np.array([[0.5, 0.0, 0.25], [1.0, 0.0, -0.5]])
  share, pairs = scores.sign_agreement(contrib, delta, 0.0)
  assert pairs == 4 and share == 1.0          # the two zero effects are not pairs
  share, pairs = scores.sign_agreement(contrib, delta, 0.5)
  assert pairs == 1 and share == 1.0          # 0.5 is at the threshold: only Δ = 1.0 counts
