"""Evaluators by name: the registry, each reading its block of ``config.evals``, the merge of
their outputs, results written once."""

import json
import sys
import types

import ml_collections
import numpy as np
import pytest

from xplain_jax import evaluators
from xplain_jax.errors import ConfigError


def _ctx(tmp_path, config=None):
  rng = np.random.default_rng(0)
  alpha = {"prior": rng.normal(size=(6, 3)).astype(np.float32)}
  test = {"y_i": rng.normal(size=(6, 3)).astype(np.float32),
          "y": rng.normal(size=6).astype(np.float32)}
  return evaluators.EvalContext(config=config, spec=None, workdir=str(tmp_path), mesh=None,
                                test=test, alpha=alpha, bias={"prior": 0.5}, explainers={},
                                concept_names=("a", "b", "c"), images=np.zeros((0, 4, 4, 3)))


def test_unknown_evaluator_block_is_a_config_error():
  c = ml_collections.ConfigDict({"evals": {"explainer": {}, "fidelty": {"enabled": True}}})
  with pytest.raises(ConfigError, match="fidelty"):
    evaluators.enabled(c)
  with pytest.raises(ConfigError, match="'explainer' must be there"):
    evaluators.enabled(ml_collections.ConfigDict({"evals": {"fidelity": {"enabled": True}}}))
  with pytest.raises(ConfigError, match="unknown evaluator 'fidelty'"):
    evaluators.run_evaluators(("fidelty",), None)


def test_a_new_evaluator_plugs_in_by_name(tmp_path, monkeypatch):
  # A stand-in "fidelity" evaluator reading α and y_i from the shared context.
  calls = []

  def evaluate(ctx, cfg):
    calls.append((ctx, cfg))
    a, y_i = ctx.alpha["prior"], ctx.test["y_i"]
    y_hat = (a * y_i).sum(-1) + ctx.bias["prior"]
    return evaluators.EvalOutput(
        metrics={"prior": {"fidelity": float(np.mean((ctx.test["y"] - y_hat) ** 2))}},
        arrays={"prior": {"y_hat_check": y_hat}}, meta={"fidelity": True})

  def other(ctx, cfg):
    del cfg
    return evaluators.EvalOutput(metrics={"prior": {"entropy": 1.0}, "extra": {"x": 2}},
                                 arrays={"prior": {"alpha": ctx.alpha["prior"]}},
                                 meta={"names": list(ctx.concept_names)})

  for name, fn in (("fidelity_test", evaluate), ("other_test", other)):
    module = types.ModuleType(f"xplain_jax.evaluators.{name}")
    module.evaluate = fn
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(evaluators.EVALUATORS, name, name)
  config = ml_collections.ConfigDict({"evals": {"other_test": {}, "fidelity_test": {"k": 3}}})
  ctx = _ctx(tmp_path, config)
  out = evaluators.run_evaluators(("other_test", "fidelity_test"), ctx)
  # Each evaluator gets the shared context and its own block.
  assert len(calls) == 1 and calls[0][0] is ctx and calls[0][1] is config.evals.fidelity_test
  # Metrics of one model merged one level deep; arrays merged per file; meta unioned.
  assert set(out.metrics["prior"]) == {"entropy", "fidelity"} and out.metrics["extra"] == {"x": 2}
  assert set(out.arrays["prior"]) == {"alpha", "y_hat_check"}
  assert set(out.meta.pop("evaluator_seconds")) == {"other_test", "fidelity_test"}
  assert out.meta == {"names": ["a", "b", "c"], "fidelity": True}
  written = evaluators.write_outputs(str(tmp_path), out)
  assert json.loads((tmp_path / "metrics.json").read_text()) == written
  with np.load(tmp_path / "eval" / "prior.npz") as f:
    np.testing.assert_array_equal(f["alpha"], ctx.alpha["prior"])
  assert json.loads((tmp_path / "eval" / "meta.json").read_text())["fidelity"] is True


def test_explainer_alpha_compiles_once_per_shape(monkeypatch):
  """Two calls of ``Explainer.alpha`` on batches of one shape trace g once (the jitted
  ``alpha_batch`` is kept, not rebuilt per call), and give g's own output."""
  import jax
  from xplain_jax import models
  from xplain_jax.train import explainer as explainer_lib
  from xplain_jax.train import start as start_lib
  traces = []
  compose = start_lib.compose_alpha
  monkeypatch.setattr(start_lib, "compose_alpha",
                      lambda *a, **k: traces.append(1) or compose(*a, **k))
  # A module no other test builds, so no earlier compile of the same key hides a retrace.
  g = models.get_weight_net(10, num_outputs=7, positive=False, width=3, stem="small")
  feat = np.random.default_rng(0).normal(size=(8, 4, 4, 5)).astype(np.float32)
  params, batch_stats = explainer_lib.init_params(g, feat.shape, jax.random.PRNGKey(0))
  e = explainer_lib.Explainer(g, {"params": params, "batch_stats": batch_stats},
                              alpha_scale=2.5)
  before = explainer_lib.alpha_batch._cache_size()
  first = e.alpha(feat, batch_size=4)      # two batches of 4 rows: one shape
  second = e.alpha(feat[::-1].copy(), batch_size=4)
  assert len(traces) == 1
  assert explainer_lib.alpha_batch._cache_size() - before == 1
  variables = {"params": params["g"], "batch_stats": batch_stats}
  want = 2.5 * np.asarray(g.apply(variables, feat, train=False)[0])
  np.testing.assert_allclose(first, want, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(second, want[::-1], rtol=1e-5, atol=1e-6)
