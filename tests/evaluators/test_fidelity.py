"""Fast tests of the fidelity layer on tiny arrays (no pipeline): the own-model API's
``evaluators.fidelity.add_fidelity`` (the API's), the pipeline's fidelity evaluator with stand-in
callables, the re-rendering effects' column map, the integrated-gradients peer's steps and the
consistency term's target.

Each test names in its docstring the single mutation of the code it is there to catch."""

import re
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from xplain_jax import api, fidelity
from xplain_jax.train import featurizers
from xplain_jax.core import losses
from xplain_jax.data import synthetic_attributes as sa
from xplain_jax.errors import ConfigError, DataError
from xplain_jax.evaluators import common
from xplain_jax.evaluators import fidelity as fidelity_eval
from xplain_jax.fidelity import peers

COEF = np.asarray([1.0, -2.0, 3.0], np.float32)   # a linear head's weight per filter


def _head(x):
  return jnp.sum(x * COEF, axis=(1, 2, 3))


def _filter_feats(weight_net_input=None):
  """Six 4x4x3 filter maps whose head is linear: Δ_k = COEF_k Σ_hw x_k exactly."""
  images = np.random.default_rng(0).normal(size=(6, 4, 4, 3)).astype(np.float32)
  fz = featurizers.filter_featurizer(lambda im: im, _head, clip_prior=False,
                                     weight_net_input=weight_net_input)
  return images, api.featurize_dataset(fz, images)


def _add(feats, **kw):
  out = common.EvalOutput(arrays={"prior": {}})
  n = feats["y_i"].shape[1]
  args = dict(case="filter", num_resamples=3, seed=0, sign_threshold=0.0, deletion_steps=2,
              ig_steps=2)
  args.update(kw)
  fidelity_eval.add_fidelity(out, {"prior": np.ones((len(feats["y"]), n), np.float32)},
                            {"prior": 0.0}, feats, **args)
  return out


# --- add_fidelity (the API's) ------------------------------------------------------------------


def test_case1_deletes_filters_of_the_x_map_not_of_what_g_reads():
  """Mutation: ``add_fidelity`` reads ``feats["feat"]`` instead of the ``x`` map. With
  ``weight_net_input`` g reads another map (here the channels reversed and scaled), so the
  deletion effects of the wrong map differ from the head's own."""
  images, feats = _filter_feats(weight_net_input=lambda im: im[..., ::-1] * 5.0)
  assert not np.allclose(feats["feat"], feats["x"])
  out = _add(feats)
  want = COEF * images.sum(axis=(1, 2))
  np.testing.assert_allclose(out.arrays["fidelity_reference"]["delta"], want, rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_allclose(out.arrays["prior"]["delta"], want, rtol=1e-5, atol=1e-5)
  assert out.meta["fidelity_num_images"] == 6 and "prior" in out.metrics["fidelity"]


@pytest.mark.parametrize("bad", ["shape", "nan", "inf"])
def test_given_effects_are_refused_by_their_own_check_before_scoring(bad):
  """Mutation: the check of given ``effects`` (shape [N,n], finite) is skipped. A later check
  deeper in the scoring (``compare``'s shape check, the bootstrap's finiteness) may still stop a
  wrong array, but with another error that does not name ``effects``: the caller's argument is
  refused first, as a ``ConfigError`` naming it."""
  _, feats = _filter_feats()
  effects = np.ones((6, 3), np.float32)
  if bad == "shape":
    effects = effects[:, :2]
  else:
    effects[2, 1] = np.nan if bad == "nan" else np.inf
  with pytest.raises(Exception) as e:  # pylint: disable=broad-exception-caught
    _add(feats, case="shared_feature", effects=effects)
  assert e.type is ConfigError, f"{e.type.__name__}: {e.value}"
  assert str(e.value).startswith("effects has shape")
  assert re.search(r"effects has shape .*\(6, 3\), finite", str(e.value))


def test_given_effects_are_scored_as_given():
  """Case 2 with measured effects: the effects filed are the caller's, row for row."""
  _, feats = _filter_feats()
  effects = np.arange(18, dtype=np.float32).reshape(6, 3)
  out = _add(feats, case="shared_feature", effects=effects)
  np.testing.assert_array_equal(out.arrays["prior"]["delta"], effects)
  assert out.meta["fidelity_effects"].startswith("given by the caller")


def test_without_effects_or_head_only_a_note():
  _, feats = _filter_feats()
  out = _add(dict(feats), case="shared_feature")   # a plain copy: no featurizer, no head
  assert out.metrics["fidelity"] == {"note": fidelity_eval.NOTE}


# --- rendering_effects and the evaluator -------------------------------------------------------


class _Renderer:
  """Images are constant: the factual image i holds 100 + i, its counterfactual with the
  renderer's concept r toggled holds 10 i + r; the performer's score is the image's mean."""

  @staticmethod
  def get_batch(indices):
    idx = np.asarray(indices, np.float32)
    return {"image": np.ones((len(idx), 2, 2, 3), np.float32) * (100 + idx)[:, None, None, None]}

  @staticmethod
  def counterfactuals(indices, concept):
    idx = np.asarray(indices, np.float32)
    return np.ones((len(idx), 2, 2, 3), np.float32) * (10 * idx + concept)[:, None, None, None]


def _score(images):
  return jnp.mean(jnp.asarray(images), axis=(1, 2, 3))


def test_rendering_effects_toggle_the_mapped_renderer_concept():
  """Mutation: ``rendering_effects`` ignores ``columns`` (toggles renderer concept k for column
  k); with a permuted map each column must get its own concept's effect."""
  idx = np.arange(5)
  y = (100 + idx).astype(np.float32)
  columns = np.asarray([4, 0, 2])
  delta = fidelity.rendering_effects(_score, _Renderer.counterfactuals, idx, 3, y=y,
                                     batch_size=2, columns=columns)
  want = y[:, None] - (10 * idx[:, None] + columns[None, :])
  np.testing.assert_allclose(delta, want)
  with pytest.raises(DataError, match="2 renderer columns for 3 concepts"):
    fidelity.rendering_effects(_score, _Renderer.counterfactuals, idx, 3, y=y, columns=[0, 1])


class _Performer:
  """A stand-in performer: output column 0 is the image's mean; ``head`` sums a filter map
  linearly (``COEF``)."""

  head = "head"

  @staticmethod
  def apply(variables, x, train=False, method=None):
    del variables, train
    y = _head(x) if method == "head" else _score(x)
    return jnp.stack([y, -y], axis=1), {}


class _WeightNet:
  @staticmethod
  def apply(variables, x, train=False):
    del variables, train
    return jnp.ones((x.shape[0], 3)), {}


def _eval_context(case, concept_names, n_test=5):
  rng = np.random.default_rng(1)
  n = len(concept_names)
  feat = rng.normal(size=(n_test, 4, 4, n)).astype(np.float32)
  y_i = feat.sum(axis=(1, 2)) if case == "filter" else rng.normal(size=(n_test, n)).astype(
      np.float32)
  y = (np.asarray(_head(feat)) if case == "filter" else 100 + np.arange(n_test)).astype(
      np.float32)
  config = ml_collections.ConfigDict(dict(
      dataset=dict(name="synthetic_parts" if case == "filter" else "synthetic_attributes"),
      explainer=dict(feature="top_conv"), evals=dict(explainer=dict(batch_size=2))))
  spec = types.SimpleNamespace(case=case, target_index=0, concept_indices=tuple(range(n)))
  test = dict(feat=feat, y=y, y_i=y_i, w=rng.normal(size=(n_test, n)).astype(np.float32),
              labels=(rng.random((n_test, n)) > 0.5).astype(np.float32))
  explainer = types.SimpleNamespace(g=_WeightNet(), variables={"params": {"g": {}}})
  return common.EvalContext(
      config=config, spec=spec, workdir="", mesh=None, test=test,
      alpha={"prior": rng.random((n_test, n)).astype(np.float32)}, bias={"prior": 0.0},
      explainers={"prior": explainer}, concept_names=tuple(concept_names),
      images=np.zeros((0, 2, 2, 3), np.float32), perf=_Performer(), perf_vars={},
      test_src=_Renderer(),
      train=dict(y_i=rng.normal(size=(8, n)).astype(np.float32),
                 y=rng.normal(size=8).astype(np.float32)))


def _cfg(num_images=0):
  return ml_collections.ConfigDict(dict(num_images=num_images, deletion_steps=2, seed=0,
                                        sign_threshold=0.0, num_resamples=3, ig_steps=2))


def test_fidelity_evaluator_case2_honours_a_permuted_renderer_map():
  """Mutation: ``evaluators/fidelity.py`` stops passing ``columns=`` to ``rendering_effects``.
  The y_i columns name the renderer's concepts in another order than the renderer's; each
  column's Δ must come from toggling the concept of that name."""
  names = (sa.CONCEPT_NAMES[3], sa.CONCEPT_NAMES[0], sa.CONCEPT_NAMES[5])
  ctx = _eval_context("shared_feature", names)
  out = fidelity_eval.evaluate(ctx, _cfg(num_images=4))
  idx = np.arange(4)
  want = (100 + idx)[:, None] - (10 * idx[:, None] + np.asarray([3, 0, 5])[None, :])
  np.testing.assert_allclose(out.arrays["fidelity_reference"]["delta"], want)
  delta = out.arrays["prior"]["delta"]
  np.testing.assert_allclose(delta[:4], want)
  assert np.all(np.isnan(delta[4]))            # the image not scored
  assert "least_squares" in out.metrics["fidelity_reference"]
  assert out.meta["fidelity_num_images"] == 4
  assert "concept_accuracy" in out.metrics["performer"]


def test_fidelity_evaluator_case2_honours_a_swapped_renderer_map():
  """Mutation: ``evaluators/fidelity.py`` stops passing ``columns=`` to ``rendering_effects``.
  Here the y_i columns name the renderer's concepts 2, 0, 1: every concept toggled is one the
  evaluator prepared, so without the map nothing fails loudly; column k would silently get
  renderer concept k's effect instead of its own concept's."""
  names = (sa.CONCEPT_NAMES[2], sa.CONCEPT_NAMES[0], sa.CONCEPT_NAMES[1])
  ctx = _eval_context("shared_feature", names)
  out = fidelity_eval.evaluate(ctx, _cfg(num_images=3))
  idx = np.arange(3)
  want = (100 + idx)[:, None] - (10 * idx[:, None] + np.asarray([2, 0, 1])[None, :])
  np.testing.assert_allclose(out.arrays["fidelity_reference"]["delta"], want)
  np.testing.assert_allclose(out.arrays["prior"]["delta"][:3], want)


def test_fidelity_evaluator_case1_zeroes_filters_of_top_conv():
  """Case 1 through the evaluator: Δ of a linear head is COEF_k Σ_hw x_k, and the peers
  (gradient × input, integrated gradients) and deletion curves are filed."""
  ctx = _eval_context("filter", ("f0", "f1", "f2"))
  out = fidelity_eval.evaluate(ctx, _cfg())
  want = COEF * ctx.test["feat"].sum(axis=(1, 2))
  np.testing.assert_allclose(out.arrays["prior"]["delta"], want, rtol=1e-5, atol=1e-4)
  ref = out.metrics["fidelity_reference"]
  assert {"gradient_x_input", "integrated_gradients", "least_squares"} <= set(ref)
  assert out.arrays["prior"]["deletion_curve"].shape[0] == 5


def test_fidelity_evaluator_without_counterfactuals_gives_a_note():
  ctx = _eval_context("shared_feature", (sa.CONCEPT_NAMES[0],))
  ctx.test_src = types.SimpleNamespace(get_batch=_Renderer.get_batch)
  ctx.config.dataset.name = "celeba"
  out = fidelity_eval.evaluate(ctx, _cfg())
  assert "cannot redraw" in out.metrics["fidelity"]["note"]


# --- peers and the consistency term ------------------------------------------------------------


@pytest.mark.parametrize("steps", [0, -3])
def test_integrated_gradients_refuses_fewer_than_one_step(steps):
  """Mutation: the ``steps < 1`` check of ``peers.integrated_gradients`` goes; steps=0 then
  divides by zero and gives NaN (or an empty scan) instead of a one-line ConfigError."""
  with pytest.raises(ConfigError, match="evals.fidelity.ig_steps"):
    peers.integrated_gradients(_head, jnp.ones((1, 2, 2, 3)), steps=steps)


def test_consistency_loss_passes_no_gradient_into_its_target():
  """Mutation: ``losses.consistency_loss`` drops the ``stop_gradient`` on its target; the
  targets are the performer's measured effects, constants of the explainer's training."""
  contrib = jnp.asarray([[1.0, 2.0], [0.5, -1.0]])
  target = jnp.asarray([[0.0, 1.0], [2.0, 0.0]])
  grad_t = jax.grad(lambda t: losses.consistency_loss(contrib, t))(target)
  np.testing.assert_array_equal(grad_t, np.zeros_like(target))
  grad_c = jax.grad(lambda c: losses.consistency_loss(c, target))(contrib)
  assert np.all(np.abs(np.asarray(grad_c)) > 0)
