"""The explainer training step benchmark: build one setting, count its FLOPs, compile and time it.

Used by ``launch/bench/bench.py`` (see its docstring for what is measured and the flags). One
setting is (case, precision, cached, batch); ``bench_one`` returns its row (a dict) for
``bench_report.format_table``.
"""

from __future__ import annotations

import os
import sys
import time
import types

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

import bench_profile  # noqa: E402
from xplain_jax.spec import config_base  # noqa: E402
from xplain_jax import data
from xplain_jax.models import flops
from xplain_jax.train import optim
from xplain_jax.infra import parallel
from xplain_jax.core import priors
from xplain_jax.train import explainer, loop  # noqa: E402
from xplain_jax.train import features as features_lib  # noqa: E402
from xplain_jax.train import performer as performer_lib  # noqa: E402
from xplain_jax.train import state as state_lib  # noqa: E402

# Per case: the paper's explainer settings (Experiment 1 for "filter", 2 for "shared_feature").
CASES = {
    "filter": dict(prior_kind="cross_entropy", positive=True, clip_prior=True,
                   prior_method="jvp", feature="top_conv"),
    "shared_feature": dict(prior_kind="mse", positive=False, clip_prior=False,
                           prior_method="jvp", feature="top_conv"),
}
# (performer, weight-net depth, image size, weight-net width): full size and --small.
FULL = ("vgg16", 152, 224, 64)
SMALL = ("tiny_vgg", 10, 64, 16)


def make_spec(case: str, num_outputs: int, target_index: int) -> data.Spec:
  """Case 1: one output, filter concepts; Case 2: every output but the target is a concept."""
  if case == "filter":
    return data.Spec("filter", ("object",), 0, (), ())
  names = tuple(f"attr_{i}" for i in range(num_outputs))
  others = tuple(i for i in range(num_outputs) if i != target_index)
  return data.Spec("shared_feature", names, target_index, others, tuple(names[i] for i in others))


def make_config(args, case: str, precision: str) -> ml_collections.ConfigDict:
  """The fields of an experiment config that the performer/explainer builders read."""
  return ml_collections.ConfigDict(dict(
      dtype=precision,
      performer=dict(arch=args.performer, interpretable=False, model={},
                     kernel_gradient=config_base.PERFORMER["kernel_gradient"]),
      explainer=dict(depth=args.weight_net_depth, width=args.weight_net_width, beta=args.beta,
                     optimizer=config_base.optimizer("adam", args.learning_rate),
                     **CASES[case]),
  ))


def make_prior_fn(perf, spec, *, prior_method: str, clip_prior: bool):
  """The featurizer's prior alone: ``(prior(variables, x) -> w [B,n], name of x)``.

  x is "top_conv" [B,H,W,C] float32 (Case 1) or "fc6" [B,D] float32 (Case 2), as in
  ``train.features.make_featurizer``.
  """
  t = spec.target_index
  if spec.case == "shared_feature":
    idx = jnp.asarray(spec.concept_indices)

    def prior(variables, h):
      from_fc6 = lambda h: perf.apply(variables, h, method=perf.from_fc6).astype(jnp.float32)
      return priors.shared_feature_prior(lambda h: from_fc6(h)[:, t],
                                         lambda h: from_fc6(h)[:, idx], h, method=prior_method)
    return prior, "fc6"

  def prior(variables, x):
    head = lambda x: perf.apply(variables, x, method=perf.head)[0][:, t].astype(jnp.float32)
    return priors.filter_prior(head, x, clip=clip_prior)
  return prior, "top_conv"


def _random_like(shapes, rng: np.random.Generator, nonneg: bool = False):
  """Host arrays of standard-normal numbers (absolute values if ``nonneg``) for a shape tree."""
  def one(s):
    x = rng.standard_normal(s.shape).astype(np.float32)
    return (np.abs(x) if nonneg else x).astype(s.dtype)
  return jax.tree.map(one, shapes)


def ms_per_call(call, *, warmup: int, steps: int) -> float:
  """Mean wall time (ms) of ``call()`` over ``steps`` calls dispatched back to back.

  ``warmup`` calls run first (each waited for). The timed calls are not waited for one by one,
  as in a training loop whose host runs ahead of the device; the clock stops when the last
  call's result is ready.
  """
  for _ in range(warmup):
    jax.block_until_ready(call())
  steps = max(1, steps)
  t0 = time.perf_counter()
  for _ in range(steps):
    out = call()
  jax.block_until_ready(out)
  return 1e3 * (time.perf_counter() - t0) / steps


def build(args, case: str, precision: str, cached: bool) -> types.SimpleNamespace:
  """Modules, pure functions and abstract inputs (``jax.ShapeDtypeStruct``) of one setting."""
  spec = make_spec(case, args.num_outputs, args.target_index)
  config = make_config(args, case, precision)
  e, b, s = config.explainer, args.batch_size, args.image_size
  perf = performer_lib.build_performer(config, spec)
  init_perf = lambda r: performer_lib.init_variables(perf, s, r)
  rng = jax.random.PRNGKey(0)
  images = jax.ShapeDtypeStruct((b, s, s, 3), jnp.float32)
  mask = jax.ShapeDtypeStruct((b,), jnp.bool_)
  perf_vars = jax.eval_shape(init_perf, rng)
  featurize = features_lib.make_featurizer(perf, spec, prior_method=e.prior_method,
                                            clip_prior=e.clip_prior, feature=e.feature)
  feats = jax.eval_shape(featurize, perf_vars, images)
  g = explainer.build_weight_net(config, feats["y_i"].shape[-1])
  optimizer = optim.make_optimizer(e.optimizer, total_steps=1)
  make_state = lambda r: state_lib.create_state(
      *explainer.init_params(g, feats["feat"].shape, r), optimizer)
  prior_fn, prior_key = make_prior_fn(perf, spec, prior_method=e.prior_method,
                                      clip_prior=e.clip_prior)
  inter = jax.eval_shape(lambda v, x: perf.apply(v, x, train=False)[1], perf_vars, images)
  return types.SimpleNamespace(
      case=case, cached=cached, rng=rng, init_perf=init_perf, make_state=make_state,
      step_fn=explainer.make_train_step(g, optimizer, beta=e.beta, steps_per_epoch=1,
                                        prior_kind=e.prior_kind,
                                        featurize=None if cached else featurize),
      fwd_fn=lambda v, x: perf.apply(v, x, train=False)[0],
      g_fwd=lambda p, bs, x: g.apply(state_lib.merge_variables(p["g"], bs), x, train=True,
                                     mutable=["batch_stats"]),
      prior_fn=prior_fn, perf_vars=perf_vars, images=images, feats=feats,
      state=jax.eval_shape(make_state, rng),
      batch={**feats, "mask": mask} if cached else {"image": images, "mask": mask},
      consts={} if cached else perf_vars,
      prior_input=jax.ShapeDtypeStruct(inter[prior_key].shape, jnp.float32))


def count_components(su) -> dict:
  """Analytic FLOPs (``flops.count_flops``) of each part of the step and of the whole step."""
  return {
      "performer_forward": flops.count_flops(su.fwd_fn, su.perf_vars, su.images),
      "prior": flops.count_flops(su.prior_fn, su.perf_vars, su.prior_input),
      "weight_net_forward": flops.count_flops(su.g_fwd, su.state["params"],
                                              su.state["batch_stats"], su.feats["feat"]),
      "step_jaxpr": flops.count_flops(su.step_fn, su.state, su.batch, su.rng, su.consts),
  }


def memory_of(compiled) -> dict:
  """XLA's memory plan of a compiled step (bytes per device), empty where it is not reported."""
  try:
    m = compiled.memory_analysis()
    return {"argument_bytes": int(m.argument_size_in_bytes),
            "output_bytes": int(m.output_size_in_bytes),
            "temp_bytes": int(m.temp_size_in_bytes),
            "alias_bytes": int(m.alias_size_in_bytes)}
  except (AttributeError, NotImplementedError, RuntimeError, TypeError):
    return {}


def device_memory() -> dict:
  """The first device's allocator limit and peak use (bytes), empty where not reported."""
  stats = jax.devices()[0].memory_stats() or {}
  return {k: int(stats[k]) for k in ("bytes_limit", "peak_bytes_in_use") if k in stats}


def _host_inputs(su, host: np.random.Generator) -> dict:
  batch = _random_like(su.batch, host, nonneg=True)
  if not su.cached:
    batch["image"] = _random_like(su.images, host)
  elif su.case == "shared_feature":  # signed concepts and priors in Case 2
    batch.update(_random_like({k: su.feats[k] for k in ("y", "y_i", "w")}, host))
  batch["mask"] = np.ones(su.batch["mask"].shape, bool)
  return batch


def time_setup(su, mesh, *, warmup: int, steps: int, profile_dir: str = "",
               profile_steps: int = 3) -> dict:
  """Compiles and times the step (and, uncached, the performer forward and the prior alone).

  With ``profile_dir``, also traces ``profile_steps`` more steps with ``jax.profiler`` into it
  and summarises the trace and the optimised HLO (``bench_profile``) under ``"profile"``.
  """
  rep, dat = parallel.replicated(mesh), parallel.data_sharded(mesh)
  host = np.random.default_rng(0)
  state = jax.jit(su.make_state, out_shardings=rep)(su.rng)
  rng = jax.device_put(su.rng, rep)
  perf_vars = {} if su.cached else jax.jit(su.init_perf, out_shardings=rep)(su.rng)
  batch = parallel.to_global(_host_inputs(su, host), mesh)
  t0 = time.perf_counter()
  compiled = loop.jit_step(su.step_fn, mesh, num_consts=1).lower(
      state, batch, rng, perf_vars).compile()
  out = {"compile_s": time.perf_counter() - t0,
         "flops_xla": flops.xla_flops(compiled, mesh.devices.size),
         "memory": memory_of(compiled)}
  holder = {"state": state}

  def step():
    holder["state"], metrics = compiled(holder["state"], batch, rng, perf_vars)
    return holder["state"], metrics

  out["ms_per_step"] = ms_per_call(step, warmup=warmup, steps=steps)
  if profile_dir:
    try:
      out["profile"] = bench_profile.profile(step, profile_dir, steps=profile_steps,
                                             hlo_text=compiled.as_text())
    except Exception as err:  # pylint: disable=broad-except  # a profiler fault keeps the row
      print(f"profiling failed ({type(err).__name__}: {err}); the row keeps its timings",
            flush=True)
  out["memory"].update(device_memory())
  if not su.cached:
    fwd = jax.jit(su.fwd_fn, in_shardings=(rep, dat))
    out["perf_fwd_ms"] = ms_per_call(lambda: fwd(perf_vars, batch["image"]), warmup=warmup,
                                     steps=steps)
    x = parallel.to_global(_random_like(su.prior_input, host, nonneg=True), mesh)
    prior = jax.jit(su.prior_fn, in_shardings=(rep, dat))
    out["prior_ms"] = ms_per_call(lambda: prior(perf_vars, x), warmup=warmup, steps=steps)
    out["prior_share"] = out["prior_ms"] / out["perf_fwd_ms"]
  return out


def _out_of_memory(err: Exception) -> bool:
  text = str(err)
  return "RESOURCE_EXHAUSTED" in text or "Out of memory" in text or "out of memory" in text


def bench_one(args, case: str, precision: str, cached: bool, mesh, batch_size: int,
              profile_dir: str = "") -> dict:
  """One row: FLOP counts and (unless ``--flops_only``) timings of one setting.

  A setting that does not fit in the devices' memory gives a row with ``error`` set and no
  timings instead of stopping the run.
  """
  parallel.check_batch_size(batch_size, mesh, "--batch_size")
  args = types.SimpleNamespace(**{**vars(args), "batch_size": batch_size})
  su = build(args, case, precision, cached)
  comp = count_components(su)
  analytic = 3 * comp["weight_net_forward"]
  if not cached:
    analytic += comp["performer_forward"] + comp["prior"]
  n, b = mesh.devices.size, batch_size
  row = {"device": jax.devices()[0].device_kind, "n": n, "case": case, "batch": b,
         "precision": precision, "cache": int(cached), "performer": args.performer,
         "weight_net_depth": args.weight_net_depth, "image_size": args.image_size,
         "num_concepts": su.feats["y_i"].shape[-1], "flops_analytic": analytic,
         "flops_components": comp, "flops_xla": None, "compile_s": None, "ms_per_step": None,
         "img_per_s": None, "tflops_per_s": None, "peak_share": None, "perf_fwd_ms": None,
         "prior_ms": None, "prior_share": None, "memory": {}, "error": None}
  if args.flops_only:
    return row
  try:
    row.update(time_setup(su, mesh, warmup=args.warmup, steps=args.steps,
                          profile_dir=profile_dir, profile_steps=args.profile_steps))
  except Exception as err:  # pylint: disable=broad-except
    if not _out_of_memory(err):
      raise
    row["error"] = "out of memory"
    return row
  seconds = row["ms_per_step"] * 1e-3
  peak = flops.peak_tflops(row["device"], precision)
  row.update(img_per_s=b / seconds, tflops_per_s=analytic / seconds / 1e12)
  row["peak_share"] = row["tflops_per_s"] / (peak * n) if peak else None
  return row
