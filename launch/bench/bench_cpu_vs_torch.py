r"""This project's training steps against a torch eager implementation of the same maths, on CPU.

Three steps are timed side by side in one process, in this project's code (the real builders,
jitted as the trainer jits them) and in plain torch eager (same layers, shapes, batch, float32,
Adam):

- ``performer``: the performer's training step of ``--config`` (the main job's by default):
  forward, logistic loss, backward, Adam;
- ``explainer_case2``: the explainer's step on cached feature maps of the same config (Case 2:
  the ResNet weight network g on the performer's "top_conv" map, distillation + MSE prior loss);
- ``explainer_digits``: the explainer's step of the own-model digits case (Case 1: maps
  [64,8,8,32], ResNet-10 of width 32, softplus α, cross-entropy prior; ``DIGITS``).

Each repeat times ``--steps`` steps back to back in each framework, interleaved so that a change
of load hits both; min and median over ``--repeats`` are printed with their ratio (this project's
ms per step ÷ torch's: below 1 is faster). torch gets as many threads as XLA:CPU uses.

  python launch/bench/bench_cpu_vs_torch.py [--config=configs/synthetic.py[:tiny]] [--repeats=10]
  python launch/bench/bench_cpu_vs_torch.py --config=configs/synthetic.py:tiny --quick   # seconds
  python launch/bench/bench_cpu_vs_torch.py --only=performer --kernel_gradient=taps   # models.conv
  python launch/bench/bench_cpu_vs_torch.py --only=performer --profile=/tmp/prof  # where it goes

``--profile=DIR`` traces 3 more steps of this project's side (``jax.profiler``) and prints their
thread time by category and the costliest XLA operations, each with the JAX operation it came
from (``bench_profile``).

Results: docs/scaling.md ("CPU against torch eager").
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import types

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# torch's OpenMP threads wait passively (read when torch loads): libgomp's default spinning, on a
# CPU shared with other jobs, measured ~100 ms per parallel op instead of ~1 ms here.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import bench_profile  # noqa: E402
import bench_step  # noqa: E402
import torch_reference as tref  # noqa: E402
from xplain_jax import data, models  # noqa: E402
from xplain_jax.infra import host_memory, parallel  # noqa: E402
from xplain_jax.models import conv as conv_lib  # noqa: E402
from xplain_jax.models import flops  # noqa: E402
from xplain_jax.run import command as run_command  # noqa: E402
from xplain_jax.spec import config_base  # noqa: E402
from xplain_jax.train import explainer, loop, optim  # noqa: E402
from xplain_jax.train import features as features_lib  # noqa: E402
from xplain_jax.train import performer as performer_lib  # noqa: E402
from xplain_jax.train import state as state_lib  # noqa: E402

# The own-model digits case (examples/own_model_digits.py through api.fit_explainer's defaults):
# map [B,8,8,32], ResNet-10 of width 32, batch 64, Adam 1e-3, Case 1 (β = 10).
DIGITS = dict(map_shape=(8, 8, 32), depth=10, width=32, batch=64, learning_rate=1e-3, beta=10.0)
DEFAULTS = dict(repeats=10, steps=5, warmup=3)
STEPS = ("performer", "explainer", "explainer_digits")  # explainer: the config's case
QUICK = dict(repeats=3, steps=2, warmup=1)


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--config", default="configs/synthetic.py", help="FILE[:ARG], the main job's")
  p.add_argument("--repeats", type=int, help=f"timed repeats, min and median kept ({DEFAULTS})")
  p.add_argument("--steps", type=int, help="steps per repeat (their mean is one time)")
  p.add_argument("--warmup", type=int, help="untimed steps after compiling")
  p.add_argument("--torch_threads", type=int, default=0,
                 help="torch's intra-op threads (0: as many as XLA:CPU uses)")
  p.add_argument("--quick", action="store_true", help=f"a smoke run, unset flags from {QUICK}")
  p.add_argument("--kernel_gradient", default="", choices=("",) + conv_lib.KERNEL_GRADIENTS,
                 help="the performer's config.performer.kernel_gradient (default: the config's)")
  p.add_argument("--only", default="", help=f"comma-separated steps of {STEPS} (default: all)")
  p.add_argument("--profile", default="",
                 help="a folder: trace this project's steps there and print where they go")
  args = p.parse_args(argv)
  unknown = sorted(set(filter(None, args.only.split(","))) - set(STEPS))
  if unknown:
    p.error(f"--only names unknown steps {unknown}; use some of {STEPS}")
  for name, value in (QUICK if args.quick else DEFAULTS).items():
    if getattr(args, name) is None:
      setattr(args, name, value)
  return args


def jax_step_fn(step_fn, state, batch, mesh, consts=()):
  """The step jitted as the trainer jits it (``loop.jit_step``), compiled; returns
  ``(call, compile seconds, XLA's FLOPs per step)``; ``call.compiled`` is the compiled step."""
  state, batch = parallel.replicate(state, mesh), parallel.to_global(batch, mesh)
  rng = jax.random.PRNGKey(0)
  t0 = time.perf_counter()
  compiled = loop.jit_step(step_fn, mesh, num_consts=len(consts)).lower(
      state, batch, rng, *consts).compile()
  seconds, holder = time.perf_counter() - t0, {"state": state}

  def call():
    holder["state"], metrics = compiled(holder["state"], batch, rng, *consts)
    return metrics["loss"]
  call.compiled = compiled  # its optimised HLO names the operations of a profile
  return call, seconds, flops.xla_flops(compiled, mesh.devices.size)


def performer_pair(config, mesh, host: np.random.Generator) -> types.SimpleNamespace:
  """The performer's step of ``config`` in both frameworks, on the same random batch."""
  spec, p = data.get_spec(config), config.performer
  module = performer_lib.build_performer(config, spec)
  b, s, n = p.batch_size, config.dataset.image_size, len(spec.output_names)
  steps_per_epoch = config.dataset.num_train // b
  batch = {"image": host.standard_normal((b, s, s, 3), np.float32),
           "labels": (host.random((b, n)) > 0.5).astype(np.float32), "mask": np.ones(b, bool)}
  optimizer = optim.make_optimizer(p.optimizer, total_steps=p.num_epochs * steps_per_epoch)
  params, stats = state_lib.split_variables(
      performer_lib.init_variables(module, s, jax.random.PRNGKey(0)))
  step = performer_lib.make_train_step(module, optimizer, filter_loss_weight=p.filter_loss_weight,
                                       steps_per_epoch=steps_per_epoch,
                                       filter_schedule=p.filter_loss_schedule)
  call, compile_s, xla = jax_step_fn(step, state_lib.create_state(params, stats, optimizer),
                                     batch, mesh)
  net = tref.TorchPerformer(module, n, s).train()
  images, labels = tref.nchw(batch["image"]), torch.from_numpy(batch["labels"])
  schedule = optim.learning_rate_schedule(p.optimizer, total_steps=p.num_epochs * steps_per_epoch)
  t_step = tref.torch_step_fn(
      net, lambda: F.binary_cross_entropy_with_logits(net(images), labels), schedule)
  return types.SimpleNamespace(name="performer", shape=f"images [{b},{s},{s},3] -> {n} logits",
                               jax=call, torch=t_step, compile_s=compile_s, flops=xla)


def explainer_pair(name: str, g, feats: dict, *, prior_kind: str, beta: float, optimizer_config,
                   steps_per_epoch: int, mesh) -> types.SimpleNamespace:
  """The explainer's cached-features step (``explainer.make_train_step``) in both frameworks.

  Args:
    feats: host arrays ``feat`` [B,H,W,C], ``y`` [B], ``y_i`` [B,n], ``w`` [B,n] float32.
  """
  b, (h, wd, c) = feats["feat"].shape[0], feats["feat"].shape[1:]
  optimizer = optim.make_optimizer(optimizer_config, total_steps=steps_per_epoch)
  params, stats = explainer.init_params(g, feats["feat"].shape, jax.random.PRNGKey(0))
  step = explainer.make_train_step(g, optimizer, beta=beta, steps_per_epoch=steps_per_epoch,
                                   prior_kind=prior_kind)
  call, compile_s, xla = jax_step_fn(step, state_lib.create_state(params, stats, optimizer),
                                     {**feats, "mask": np.ones(b, bool)}, mesh, consts=({},))
  net = tref.TorchWeightNet(g, feats["feat"].shape[1:]).train()
  bias, x = torch.zeros((), requires_grad=True), tref.nchw(feats["feat"])
  y, y_i, w = (torch.from_numpy(feats[k]) for k in ("y", "y_i", "w"))
  lam = beta  # λ = β/√t at t = 1, as the JAX step has it in its first epoch

  def loss():
    alpha = net(x)
    y_hat = (alpha * y_i).sum(-1) + bias
    return (y - y_hat).square().mean() + lam * tref.torch_prior_loss(alpha, w, prior_kind)
  schedule = optim.learning_rate_schedule(optimizer_config, total_steps=steps_per_epoch)
  return types.SimpleNamespace(
      name=name, shape=f"maps [{b},{h},{wd},{c}], ResNet stages {tuple(g.stage_sizes)} of "
                       f"width {g.width}, n={feats['w'].shape[1]}",
      jax=call, torch=tref.torch_step_fn(net, loss, schedule, (bias,)), compile_s=compile_s,
      flops=xla)


def random_features(host, shape: tuple, n: int, *, signed: bool) -> dict:
  """Cached features with the signs the case gives: maps ≥ 0; y_i, w signed in Case 2."""
  sign = (lambda v: v) if signed else np.abs
  b = shape[0]
  return {"feat": np.abs(host.standard_normal(shape, np.float32)),
          "y": host.standard_normal(b, np.float32),
          "y_i": sign(host.standard_normal((b, n), np.float32)),
          "w": sign(host.standard_normal((b, n), np.float32))}


def case2_pair(config, mesh, host) -> types.SimpleNamespace:
  """The config's explainer step on cached features of its performer's map (shapes by
  ``jax.eval_shape`` of the real featurizer)."""
  spec, e = data.get_spec(config), config.explainer
  module = performer_lib.build_performer(config, spec)
  s = config.dataset.image_size
  featurize = features_lib.make_featurizer(module, spec, prior_method=e.prior_method,
                                            clip_prior=e.clip_prior, feature=e.feature)
  perf_vars = jax.eval_shape(lambda r: performer_lib.init_variables(module, s, r),
                             jax.random.PRNGKey(0))
  images = jax.ShapeDtypeStruct((e.batch_size, s, s, 3), jnp.float32)
  shapes = jax.eval_shape(featurize, perf_vars, images)
  n = shapes["y_i"].shape[-1]
  g = explainer.build_weight_net(config, n)
  feats = random_features(host, shapes["feat"].shape, n, signed=not e.positive)
  return explainer_pair(f"explainer_{'case2' if e.case == 'shared_feature' else 'case1'}", g,
                        feats, prior_kind=e.prior_kind, beta=e.beta,
                        optimizer_config=e.optimizer, mesh=mesh,
                        steps_per_epoch=config.dataset.num_train // e.batch_size)


def digits_pair(mesh, host) -> types.SimpleNamespace:
  """The own-model digits case's Case-1 explainer step (``DIGITS``)."""
  d, n = DIGITS, DIGITS["map_shape"][-1]
  g = models.get_weight_net(d["depth"], num_outputs=n, positive=True, width=d["width"])
  feats = random_features(host, (d["batch"],) + d["map_shape"], n, signed=False)
  return explainer_pair("explainer_digits", g, feats, prior_kind="cross_entropy", beta=d["beta"],
                        optimizer_config=config_base.optimizer("adam", d["learning_rate"]),
                        steps_per_epoch=1, mesh=mesh)


def time_pair(pair, *, repeats: int, steps: int, warmup: int) -> dict:
  """ms per step of both sides: ``repeats`` times ``steps`` steps each, the sides interleaved."""
  times = {"jax": [], "torch": []}
  for side in times:
    bench_step.ms_per_call(getattr(pair, side), warmup=warmup, steps=1)
  for _ in range(repeats):
    for side in times:
      times[side].append(bench_step.ms_per_call(getattr(pair, side), warmup=0, steps=steps))
  return {side: (min(t), statistics.median(t)) for side, t in times.items()}


def report_lines(pair, t: dict) -> list[str]:
  (jmin, jmed), (tmin, tmed) = t["jax"], t["torch"]
  rate = lambda ms: f"{pair.flops / ms / 1e6:.1f}" if pair.flops else "?"
  return [f"{pair.name}: {pair.shape}",
          f"  xplain_jax  min {jmin:9.2f} ms  median {jmed:9.2f} ms  ({rate(jmin)} GFLOP/s at min;"
          f" compile {pair.compile_s:.1f} s)",
          f"  torch eager min {tmin:9.2f} ms  median {tmed:9.2f} ms  ({rate(tmin)} GFLOP/s at min)",
          f"ratio {pair.name}: {jmin / tmin:.2f} (min), {jmed / tmed:.2f} (median)"]


def profile_lines(pair, directory: str, top: int = 12) -> list[str]:
  """Where this project's step goes: 3 traced steps, by category and costliest operation."""
  s = bench_profile.profile(pair.jax, os.path.join(directory, pair.name), steps=3,
                            hlo_text=pair.jax.compiled.as_text())
  short = lambda label: "/".join(label.split("/")[1:])[-90:]  # noqa: E731  (less "jit(step)")
  lines = [f"profile {pair.name}: {s['device_ms_per_step']:.1f} ms of thread time per step "
           f"({s['line'] or 'no XLA threads found'}), wall {s['wall_ms_per_step']:.1f} ms; trace "
           f"{s['trace']}", "  by category: " + ", ".join(
               f"{c} {ms:.1f} ms" for c, ms in s["categories"].items())]
  lines += [f"  {t['ms_per_step']:7.1f} ms  {t['category']:<14} {t['name']:<26} "
            f"{short(t['label'])}" for t in s["top"][:top]]
  return lines


def main(argv=None) -> dict:
  """Builds, times and prints every step; returns ``{name: (ratio of minima, of medians)}``."""
  args = parse_args(argv)
  tuned = host_memory.tune()  # as launch/run.py; both sides share the process's allocator
  threads = len(os.sched_getaffinity(0))  # the CPUs XLA:CPU's thread pool is sized to
  torch.set_num_threads(args.torch_threads or threads)
  config = run_command.load_config(args.config)
  if args.kernel_gradient:
    config.performer.kernel_gradient = args.kernel_gradient
  mesh = parallel.make_mesh(1)
  host = np.random.default_rng(0)
  wait = os.environ.get("OMP_WAIT_POLICY")
  print(f"{jax.devices()[0].device_kind} x{threads} CPUs: XLA:CPU uses {threads} threads, "
        f"torch.set_num_threads({torch.get_num_threads()}) with OMP_WAIT_POLICY={wait} (torch "
        f"{torch.__version__}, jax {jax.__version__}); --config={args.config}, {args.repeats} "
        f"repeats of {args.steps} steps after {args.warmup} warm-up steps; float32; GFLOP/s "
        f"from XLA's count of the step; performer.kernel_gradient="
        f"{config.performer.kernel_gradient}; malloc tuning "
        f"{'on' if tuned else 'off'} ({host_memory.ENV_VAR})", flush=True)
  ratios = {}
  builders = dict(performer=lambda: performer_pair(config, mesh, host),
                  explainer=lambda: case2_pair(config, mesh, host),
                  explainer_digits=lambda: digits_pair(mesh, host))
  only = [n for n in args.only.split(",") if n] or list(STEPS)
  for name in only:
    pair = builders[name]()
    t = time_pair(pair, repeats=args.repeats, steps=args.steps, warmup=args.warmup)
    print("\n".join(report_lines(pair, t)), flush=True)
    if args.profile:
      print("\n".join(profile_lines(pair, args.profile)), flush=True)
    ratios[pair.name] = (t["jax"][0] / t["torch"][0], t["jax"][1] / t["torch"][1])
  return ratios


if __name__ == "__main__":
  main()
