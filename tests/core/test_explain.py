"""Tests for xplain_jax.core.explain."""

import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xplain_jax.core import explain

ALPHA = np.array([[0.5, -1.0, 2.0, 0.0],
                  [1.0, 1.0, 1.0, 1.0]], np.float32)
Y_I = np.array([[4.0, 3.0, -0.25, 7.0],
                [0.1, -0.3, 0.2, 0.0]], np.float32)


def test_contributions_and_output_by_hand():
  contrib = explain.contributions(jnp.asarray(ALPHA), jnp.asarray(Y_I))
  hand = [[0.5 * 4.0, -1.0 * 3.0, 2.0 * -0.25, 0.0 * 7.0],
          [0.1, -0.3, 0.2, 0.0]]
  np.testing.assert_allclose(contrib, hand, rtol=1e-6)
  y_hat = explain.explainer_output(jnp.asarray(ALPHA), jnp.asarray(Y_I), 1.5)
  # Row 0: 2 - 3 - 0.5 + 0 + 1.5 = 0; row 1: 0.1 - 0.3 + 0.2 + 1.5 = 1.5.
  np.testing.assert_allclose(y_hat, [0.0, 1.5], atol=1e-6)
  per_row_b = explain.explainer_output(jnp.asarray(ALPHA), jnp.asarray(Y_I),
                                       jnp.array([1.0, -1.0]))
  np.testing.assert_allclose(per_row_b, [-0.5, -1.0], atol=1e-6)


def test_output_is_jit_vmap_and_grad_able():
  alpha, y_i = jnp.asarray(ALPHA), jnp.asarray(Y_I)
  jitted = jax.jit(explain.explainer_output)(alpha, y_i, 0.0)
  np.testing.assert_allclose(jitted, (ALPHA * Y_I).sum(-1), rtol=1e-6)
  stacked = jax.vmap(explain.explainer_output, in_axes=(0, None, None))(
      jnp.stack([alpha, 2 * alpha]), y_i, 0.0)
  np.testing.assert_allclose(stacked[1], 2 * jitted, rtol=1e-6)
  grad = jax.grad(lambda a: jnp.sum(explain.explainer_output(a, y_i, 0.0)))(alpha)
  np.testing.assert_allclose(grad, Y_I)  # ∂ŷ/∂α_i = y_i


def test_explain_top_k_by_absolute_contribution():
  names = ["head", "torso", "legs", "tail"]
  out = explain.explain(jnp.asarray(ALPHA), jnp.asarray(Y_I), 1.5, names=names,
                        top_k=2, y=jnp.array([0.5, 1.0]))
  assert len(out) == 2
  # Row 0 contributions: head 2, torso -3, legs -0.5, tail 0.
  assert [n for n, _ in out[0]["top"]] == ["torso", "head"]
  assert out[0]["indices"] == [1, 0]
  np.testing.assert_allclose([c for _, c in out[0]["top"]], [-3.0, 2.0])
  assert out[0]["y_hat"] == pytest.approx(0.0, abs=1e-6)
  assert out[0]["bias"] == 1.5
  assert out[0]["residual"] == pytest.approx(0.5, abs=1e-6)
  # Row 1 contributions: 0.1, -0.3, 0.2, 0.
  assert [n for n, _ in out[1]["top"]] == ["torso", "legs"]
  assert out[1]["y"] == 1.0
  assert all(isinstance(c, float) for _, c in out[1]["top"])


def test_explain_defaults_clipping_and_ties():
  alpha = jnp.ones((1, 3))
  y_i = jnp.array([[1.0, -1.0, 0.5]])  # |1| ties with |-1|: lower index first
  out = explain.explain(alpha, y_i, jnp.array([0.25]), top_k=10)
  assert out[0]["top"] == [("concept_0", 1.0), ("concept_1", -1.0),
                           ("concept_2", 0.5)]
  assert out[0]["bias"] == 0.25 and "residual" not in out[0]
  assert explain.explain(alpha, y_i, 0.0, top_k=0)[0]["top"] == []


def test_shape_and_argument_errors():
  msg = (r"alpha has shape \(2, 4\) but y_i has shape \(2, 3\); "
         r"both must be \[B, n\]")
  with pytest.raises(ValueError, match=msg):
    explain.contributions(jnp.ones((2, 4)), jnp.ones((2, 3)))
  with pytest.raises(ValueError, match=r"b has shape \(3,\); expected a scalar \(\) or \(2,\)"):
    explain.explainer_output(jnp.ones((2, 4)), jnp.ones((2, 4)), jnp.ones(3))
  with pytest.raises(ValueError, match=r"3 names for n = 4"):
    explain.explain(jnp.ones((2, 4)), jnp.ones((2, 4)), 0.0, names=["a", "b", "c"])
  with pytest.raises(ValueError, match=r"top_k = -1"):
    explain.explain(jnp.ones((2, 4)), jnp.ones((2, 4)), 0.0, top_k=-1)
  with pytest.raises(ValueError, match=r"y has shape \(3,\); expected \(2,\)"):
    explain.explain(jnp.ones((2, 4)), jnp.ones((2, 4)), 0.0, y=jnp.ones(3))


def test_docstring_examples_run():
  result = doctest.testmod(explain, optionflags=doctest.ELLIPSIS)
  assert result.attempted > 0 and result.failed == 0


def test_explain_per_row_bias_and_mixed_sign_rows():
  # Each row keeps its own b: ŷ_r = Σ_i α_ri y_ri + b_r, residual y_r − ŷ_r.
  b = np.array([1.0, -2.0], np.float32)
  out = explain.explain(jnp.asarray(ALPHA), jnp.asarray(Y_I), jnp.asarray(b), top_k=4,
                        y=jnp.array([0.0, 0.0]))
  sums = (ALPHA.astype(np.float64) * Y_I).sum(-1)  # [-1.5, 0.0]
  for r in range(2):
    assert out[r]["bias"] == pytest.approx(float(b[r]))
    assert out[r]["y_hat"] == pytest.approx(sums[r] + b[r], abs=1e-6)
    assert out[r]["residual"] == pytest.approx(-(sums[r] + b[r]), abs=1e-6)
  # Mixed signs: ranked by |α_i y_i|, signs kept (row 0: -3, 2, -0.5, 0).
  assert out[0]["indices"] == [1, 0, 2, 3]
  np.testing.assert_allclose([c for _, c in out[0]["top"]], [-3.0, 2.0, -0.5, 0.0])
  assert out[1]["indices"] == [1, 2, 0, 3]


def test_absent_concepts_are_named_by_the_callers_pattern():
  alpha, y_i = jnp.ones((1, 2)), jnp.array([[-2.0, 1.0]])
  named = lambda **kw: [n for n, _ in explain.explain(alpha, y_i, 0.0, names=["Smiling", "Male"],
                                                      negate_absent=True, **kw)[0]["top"]]
  assert named() == ["no Smiling", "Male"]
  assert named(absent="{} (absent)") == ["Smiling (absent)", "Male"]
  assert named(absent=None) == ["Smiling", "Male"]
  rec = explain.explain(alpha, y_i, 0.5, names=["a", "b"], top_k=1, y=jnp.array([3.0]))[0]
  assert rec["rest"] == 1.0  # the unlisted concept b: 1 · 1
  assert sum(c for _, c in rec["top"]) + rec["rest"] + rec["bias"] + rec["residual"] == 3.0
