r"""Benchmark of the full explainer training step (Adam), data-parallel over every device.

  python launch/bench.py --case=shared_feature --batch_size=256 --precision=bfloat16 --cache=0
  python launch/bench.py --case=filter,shared_feature --cache=0,1 --small --steps=2 --warmup=1
  python launch/bench.py --flops_only      # the FLOP table alone, full size, no computation

Uncached (``--cache=0``), one step runs the frozen performer (VGG-16 on 224x224 images) and the
priors inside the jitted step (``train.featurize.make_featurizer``), then the weight network
(ResNet-152 on the 14x14x512 top conv map) forward and backward and the Adam update:

* Case 1, ``--case=filter``: the concepts are the top conv's filters; ``priors.filter_prior``
  (one VJP through the performer's head above "top_conv"), clipped at 0; positive α and the
  cross-entropy prior (Experiment 1).
* Case 2, ``--case=shared_feature``: 39 concepts out of 40 outputs; ``priors.
  shared_feature_prior`` at fc6 (one VJP, one JVP and 39 rows of a reverse Jacobian); signed α
  and the MSE prior (Experiment 2).

Cached (``--cache=1``) runs only the weight-network step on precomputed ``feat, y, y_i, w``.
The performer forward and the prior are also timed alone, and the prior's share of the forward
is printed (target for Case 2: at most 10%). ``--small`` swaps in tiny models (tiny_vgg at
64 px, a depth-10 weight network) so that the script runs in well under a minute on a CPU;
``--json=PATH`` writes the rows. Comma-separated lists in ``--case``, ``--precision`` and
``--cache`` give one row per combination.

FLOPs per step are counted twice: by XLA (``compile().cost_analysis()["flops"]``, times the
device count, since XLA reports one partition of the SPMD program) and analytically from the
jaxprs (``xplain_jax.flops``): performer forward once (frozen) + the prior's own VJP/JVP work
(including its re-run of the layers above the prior's feature) + 3x the weight network's
forward (trained: forward, input gradient, weight gradient). Achieved TFLOP/s and the share of
the devices' peak use the analytic count.

The performer forward dominates the uncached step. The analytic count per image
(``--flops_only --batch_size=1``; VGG-16 at 224 px, ResNet-152 of width 64 on 14x14x512; the
same in float32 and bfloat16):

  component                              Case 1 (filter)   Case 2 (shared_feature)
  performer forward (frozen, x1)           30.93 GFLOP        30.93 GFLOP
  prior (VJP / VJP+JVP+jacrev)              0.48 GFLOP         1.49 GFLOP
  weight network fwd+bwd (3 x forward)      5.65 GFLOP         5.62 GFLOP
  total                                    37.06 GFLOP        38.05 GFLOP
  performer forward share                    83.5%              81.3%

so a cached step (the weight network alone, 5.6 GFLOP per image) costs about a seventh of an
uncached one, and the Case-2 prior for 39 concepts is 4.8% of the performer forward in FLOPs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import types

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

from xplain_jax import data, flops, parallel, priors  # noqa: E402
from xplain_jax.train import explainer, loop  # noqa: E402
from xplain_jax.train import featurize as featurize_lib  # noqa: E402
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
COLUMNS = ("device", "n", "case", "batch", "precision", "cache", "ms/step", "img/s",
           "GFLOP/step XLA", "GFLOP/step analytic", "TFLOP/s", "% peak", "fwd ms", "prior ms",
           "prior/fwd")


def parse_args(argv=None) -> argparse.Namespace:
  """The flags; ``--small`` (or the full size) fills in the model flags left unset."""
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--case", default="shared_feature", help="filter | shared_feature (list ok)")
  p.add_argument("--batch_size", type=int, default=256, help="global batch")
  p.add_argument("--precision", default="float32", help="float32 | bfloat16 (list ok)")
  p.add_argument("--cache", default="0", help="0 (performer in the step) | 1 (list ok)")
  p.add_argument("--steps", type=int, default=20, help="timed steps (median reported)")
  p.add_argument("--warmup", type=int, default=3, help="untimed steps after compiling")
  p.add_argument("--performer", default=None, help="performer name (default vgg16)")
  p.add_argument("--weight_net_depth", type=int, default=None, help="default 152")
  p.add_argument("--weight_net_width", type=int, default=None, help="default 64")
  p.add_argument("--image_size", type=int, default=None, help="default 224")
  p.add_argument("--num_outputs", type=int, default=40, help="Case 2 performer outputs")
  p.add_argument("--target_index", type=int, default=0, help="Case 2 explained output")
  p.add_argument("--learning_rate", type=float, default=1e-4, help="Adam step size")
  p.add_argument("--beta", type=float, default=0.2, help="prior loss weight β")
  p.add_argument("--prior_share_target", type=float, default=0.10,
                 help="Case 2 prior time / performer forward time to stay under")
  p.add_argument("--num_devices", type=int, default=0, help="0 = all visible devices")
  p.add_argument("--small", action="store_true", help="tiny models, for CPU smoke runs")
  p.add_argument("--flops_only", action="store_true", help="count FLOPs, time nothing")
  p.add_argument("--json", default="", help="write the rows to this path")
  args = p.parse_args(argv)
  defaults = SMALL if args.small else FULL
  for name, value in zip(("performer", "weight_net_depth", "image_size", "weight_net_width"),
                         defaults):
    if getattr(args, name) is None:
      setattr(args, name, value)
  return args


def _split(text: str, choices, what: str) -> list[str]:
  items = [s.strip() for s in text.split(",") if s.strip()]
  bad = [s for s in items if s not in choices]
  if bad or not items:
    raise ValueError(f"--{what}={text!r} has {bad or 'nothing'}; choose from {list(choices)}.")
  return items


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
      performer=dict(arch=args.performer, interpretable=False, model={}),
      explainer=dict(depth=args.weight_net_depth, width=args.weight_net_width, beta=args.beta,
                     optimizer=dict(name="adam", learning_rate=args.learning_rate),
                     **CASES[case]),
  ))


def make_prior_fn(perf, spec, *, prior_method: str, clip_prior: bool):
  """The featurizer's prior alone: ``(prior(variables, x) -> w [B,n], name of x)``.

  x is "top_conv" [B,H,W,C] float32 (Case 1) or "fc6" [B,D] float32 (Case 2), as in
  ``train.featurize.make_featurizer``.
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


def median_ms(call, *, warmup: int, steps: int) -> float:
  """Median wall time (ms) of ``call()`` over ``steps`` runs after ``warmup`` runs."""
  for _ in range(warmup):
    jax.block_until_ready(call())
  times = []
  for _ in range(max(1, steps)):
    t0 = time.perf_counter()
    jax.block_until_ready(call())
    times.append(time.perf_counter() - t0)
  return 1e3 * statistics.median(times)


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
  featurize = featurize_lib.make_featurizer(perf, spec, prior_method=e.prior_method,
                                            clip_prior=e.clip_prior, feature=e.feature)
  feats = jax.eval_shape(featurize, perf_vars, images)
  g = explainer.build_weight_net(config, feats["y_i"].shape[-1])
  optimizer = state_lib.make_optimizer(e.optimizer, total_steps=1)
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


def time_setup(su, mesh, *, warmup: int, steps: int) -> dict:
  """Compiles and times the step (and, uncached, the performer forward and the prior alone)."""
  rep, dat = parallel.replicated(mesh), parallel.data_sharded(mesh)
  host = np.random.default_rng(0)
  state = jax.jit(su.make_state, out_shardings=rep)(su.rng)
  rng = jax.device_put(su.rng, rep)
  perf_vars = {} if su.cached else jax.jit(su.init_perf, out_shardings=rep)(su.rng)
  batch = _random_like(su.batch, host, nonneg=True)
  if not su.cached:
    batch["image"] = _random_like(su.images, host)
  elif su.case == "shared_feature":  # signed concepts and priors in Case 2
    batch.update(_random_like({k: su.feats[k] for k in ("y", "y_i", "w")}, host))
  batch["mask"] = np.ones(su.batch["mask"].shape, bool)
  batch = parallel.to_global(batch, mesh)
  t0 = time.perf_counter()
  compiled = loop.jit_step(su.step_fn, mesh, num_consts=1).lower(
      state, batch, rng, perf_vars).compile()
  out = {"compile_s": time.perf_counter() - t0,
         "flops_xla": flops.xla_flops(compiled, mesh.devices.size)}
  holder = {"state": state}

  def step():
    holder["state"], metrics = compiled(holder["state"], batch, rng, perf_vars)
    return holder["state"], metrics

  out["ms_per_step"] = median_ms(step, warmup=warmup, steps=steps)
  if not su.cached:
    fwd = jax.jit(su.fwd_fn, in_shardings=(rep, dat))
    out["perf_fwd_ms"] = median_ms(lambda: fwd(perf_vars, batch["image"]), warmup=warmup,
                                   steps=steps)
    x = parallel.to_global(_random_like(su.prior_input, host, nonneg=True), mesh)
    prior = jax.jit(su.prior_fn, in_shardings=(rep, dat))
    out["prior_ms"] = median_ms(lambda: prior(perf_vars, x), warmup=warmup, steps=steps)
    out["prior_share"] = out["prior_ms"] / out["perf_fwd_ms"]
  return out


def bench_one(args, case: str, precision: str, cached: bool, mesh) -> dict:
  """One row: FLOP counts and (unless ``--flops_only``) timings of one setting."""
  parallel.check_batch_size(args.batch_size, mesh, "--batch_size")
  su = build(args, case, precision, cached)
  comp = count_components(su)
  analytic = 3 * comp["weight_net_forward"]
  if not cached:
    analytic += comp["performer_forward"] + comp["prior"]
  n, b = mesh.devices.size, args.batch_size
  row = {"device": jax.devices()[0].device_kind, "n": n, "case": case, "batch": b,
         "precision": precision, "cache": int(cached), "performer": args.performer,
         "weight_net_depth": args.weight_net_depth, "image_size": args.image_size,
         "num_concepts": su.feats["y_i"].shape[-1], "flops_analytic": analytic,
         "flops_components": comp, "flops_xla": None, "compile_s": None, "ms_per_step": None,
         "img_per_s": None, "tflops_per_s": None, "peak_share": None, "perf_fwd_ms": None,
         "prior_ms": None, "prior_share": None}
  if args.flops_only:
    return row
  row.update(time_setup(su, mesh, warmup=args.warmup, steps=args.steps))
  seconds = row["ms_per_step"] * 1e-3
  peak = flops.peak_tflops(row["device"], precision)
  row.update(img_per_s=b / seconds, tflops_per_s=analytic / seconds / 1e12)
  row["peak_share"] = row["tflops_per_s"] / (peak * n) if peak else None
  return row


def _num(x, fmt: str) -> str:
  return "n/a" if x is None else format(x, fmt)


def format_table(rows: list[dict]) -> str:
  """The results as a Markdown table with ``COLUMNS``."""
  lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
  for r in rows:
    cells = [r["device"], str(r["n"]), r["case"], str(r["batch"]), r["precision"],
             str(r["cache"]), _num(r["ms_per_step"], ".1f"), _num(r["img_per_s"], ".1f"),
             _num(r["flops_xla"] and r["flops_xla"] / 1e9, ".2f"),
             _num(r["flops_analytic"] / 1e9, ".2f"), _num(r["tflops_per_s"], ".3f"),
             _num(r["peak_share"] and 100 * r["peak_share"], ".1f"),
             _num(r["perf_fwd_ms"], ".1f"), _num(r["prior_ms"], ".1f"),
             _num(r["prior_share"] and 100 * r["prior_share"], ".1f") +
             ("%" if r["prior_share"] is not None else "")]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def format_breakdown(r: dict) -> str:
  """The analytic FLOP count of one row, component by component (GFLOP, 1e9)."""
  c, b = r["flops_components"], r["batch"]
  line = lambda label, x: f"  {label:<42}{x / 1e9:12.2f} GFLOP  ({x / 1e9 / b:.3f} per image)"
  lines = [f"FLOPs per step, {r['case']} cache={r['cache']} {r['precision']} batch={b} "
           f"({r['performer']} at {r['image_size']} px, weight net depth {r['weight_net_depth']},"
           f" {r['num_concepts']} concepts):"]
  if not r["cache"]:
    lines += [line("performer forward (frozen, x1)", c["performer_forward"]),
              line("+ prior (its VJP/JVP work, x1)", c["prior"])]
  g = c["weight_net_forward"]
  lines += [line(f"+ weight net fwd+bwd (3 x {g / 1e9:.2f})", 3 * g),
            line("= analytic total", r["flops_analytic"])]
  if not r["cache"]:
    share = c["performer_forward"] / r["flops_analytic"]
    lines.append(f"  performer forward share of the analytic total: {100 * share:.1f}%")
  lines.append(line("traced step jaxpr (conv + dot equations)", c["step_jaxpr"]))
  if r["flops_xla"] is not None:
    lines.append(line("XLA cost_analysis", r["flops_xla"]))
  return "\n".join(lines)


def main(argv=None) -> list[dict]:
  """Runs every requested combination, prints the table, returns the rows."""
  args = parse_args(argv)
  cases = _split(args.case, tuple(CASES), "case")
  precisions = _split(args.precision, tuple(state_lib.COMPUTE_DTYPES), "precision")
  caches = [c == "1" for c in _split(args.cache, ("0", "1"), "cache")]
  mesh = parallel.make_mesh(args.num_devices)
  rows = []
  for case in cases:
    for precision in precisions:
      for cached in caches:
        rows.append(bench_one(args, case, precision, cached, mesh))
        print(format_breakdown(rows[-1]), flush=True)
  print()
  print(format_table(rows))
  for r in rows:
    if r["case"] == "shared_feature" and r["prior_share"] is not None:
      ok = "met" if r["prior_share"] <= args.prior_share_target else "NOT met"
      print(f"Case-2 prior ({r['num_concepts']} concepts, {r['precision']}): "
            f"{100 * r['prior_share']:.1f}% of the performer forward; target <= "
            f"{100 * args.prior_share_target:.0f}%: {ok}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(rows, f, indent=1)
  return rows


if __name__ == "__main__":
  main()
