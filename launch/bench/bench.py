r"""Benchmark of the full explainer training step (Adam), data-parallel over every device.

  python launch/bench/bench.py --case=shared_feature --batch_size=256 --precision=bfloat16 --cache=0
  python launch/bench/bench.py --case=filter,shared_feature --cache=0,1 --small --steps=2 --warmup=1
  python launch/bench/bench.py --flops_only      # the FLOP table alone, full size, no computation
  python launch/bench/bench.py --input           # host-side input throughput (bench_input.py)

Uncached (``--cache=0``), one step runs the frozen performer (VGG-16 on 224x224 images) and the
priors inside the jitted step (``train.features.make_featurizer``), then the weight network
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
``--json=PATH`` writes the rows. Comma-separated lists in ``--case``, ``--precision``,
``--cache`` and ``--batch_size`` give one row per combination; a setting that does not fit in
memory gives a row marked OOM. Timed steps are dispatched back to back (the host runs ahead, as
in training) and averaged. ``--profile=DIR`` traces a few more steps of every uncached bfloat16
row with ``jax.profiler`` and prints where the device time goes (bench_profile.py). The code is
split into bench_step.py (build and time one setting), bench_report.py (tables; also the one GPU
table of several runs, see launch/bench/gpu_bench.sh), bench_profile.py and bench_input.py.

FLOPs per step are counted twice: by XLA (``compile().cost_analysis()["flops"]``, times the
device count, since XLA reports one partition of the SPMD program) and analytically from the
jaxprs (``xplain_jax.models.flops``): performer forward once (frozen) + the prior's own VJP/JVP work
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
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_report  # noqa: E402
import bench_step  # noqa: E402
from bench_report import COLUMNS, format_breakdown, format_table  # noqa: E402,F401
from bench_step import CASES, FULL, SMALL  # noqa: E402,F401

from xplain_jax.infra import parallel  # noqa: E402
from xplain_jax import utils  # noqa: E402
from xplain_jax.train import optim  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
  """The flags; ``--small`` (or the full size) fills in the model flags left unset."""
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--case", default="shared_feature", help="filter | shared_feature (list ok)")
  p.add_argument("--batch_size", default="256", help="global batch (list ok)")
  p.add_argument("--precision", default="float32", help="float32 | bfloat16 (list ok)")
  p.add_argument("--cache", default="0", help="0 (performer in the step) | 1 (list ok)")
  p.add_argument("--steps", type=int, default=20, help="timed steps (mean reported)")
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
  p.add_argument("--profile", default="", help="trace uncached bfloat16 rows into this folder")
  p.add_argument("--profile_steps", type=int, default=3, help="steps in each trace")
  p.add_argument("--json", default="", help="write the rows to this path")
  g = p.add_argument_group("input benchmark (--input)")
  g.add_argument("--input", action="store_true", help="time the host-side input instead")
  g.add_argument("--input_images", type=int, default=256, help="JPEG files to write and read")
  g.add_argument("--input_batch", type=int, default=128, help="images per timed batch")
  g.add_argument("--input_threads", default="", help="thread counts (default 1,2,4,..,cores)")
  g.add_argument("--input_repeats", type=int, default=3, help="timed batches (best kept)")
  g.add_argument("--input_synthetic", type=int, default=64, help="synthetic images to render")
  g.add_argument("--input_cache_rows", type=int, default=1024, help="feature-cache examples")
  g.add_argument("--target_img_s", type=float, default=9000.0, help="rate the host must feed")
  args = p.parse_args(argv)
  defaults = SMALL if args.small else FULL
  for name, value in zip(("performer", "weight_net_depth", "image_size", "weight_net_width"),
                         defaults):
    if getattr(args, name) is None:
      setattr(args, name, value)
  return args


def _split(text: str, choices, what: str) -> list[str]:
  items = utils.split_list(text)
  bad = [s for s in items if s not in choices]
  if bad or not items:
    raise ValueError(f"--{what}={text!r} has {bad or 'nothing'}; choose from {list(choices)}.")
  return items


def _batch_sizes(text: str) -> list[int]:
  try:
    sizes = [int(s) for s in utils.split_list(text)]
  except ValueError:
    sizes = []
  if not sizes or min(sizes) <= 0:
    raise ValueError(f"--batch_size={text!r}: give positive integers, e.g. 256 or 256,1024.")
  return sizes


def _print_prior_targets(rows: list[dict], target: float) -> None:
  for r in rows:
    if r["case"] == "shared_feature" and r["prior_share"] is not None:
      ok = "met" if r["prior_share"] <= target else "NOT met"
      print(f"Case-2 prior ({r['num_concepts']} concepts, {r['precision']}): "
            f"{100 * r['prior_share']:.1f}% of the performer forward; target <= "
            f"{100 * target:.0f}%: {ok}")


def main(argv=None):
  """Runs every requested combination, prints the table, returns the rows.

  With ``--input``, runs the input benchmark instead and returns its results (a dict).
  """
  args = parse_args(argv)
  if args.input:
    import bench_input  # pylint: disable=g-import-not-at-top
    result = bench_input.run(args)
    if args.json:
      with open(args.json, "w") as f:
        json.dump(result, f, indent=1)
    return result
  cases = _split(args.case, tuple(CASES), "case")
  precisions = _split(args.precision, tuple(optim.COMPUTE_DTYPES), "precision")
  caches = [c == "1" for c in _split(args.cache, ("0", "1"), "cache")]
  batches = _batch_sizes(args.batch_size)
  mesh = parallel.make_mesh(args.num_devices)
  rows = []
  for case in cases:
    for precision in precisions:
      for cached in caches:
        for batch in batches:
          profile = ""
          if args.profile and not cached and precision == "bfloat16":
            profile = os.path.join(args.profile, f"{case}_b{batch}")
          rows.append(bench_step.bench_one(args, case, precision, cached, mesh, batch, profile))
          print(format_breakdown(rows[-1]), flush=True)
          if rows[-1].get("profile"):
            print(bench_report.format_profile(rows[-1]), flush=True)
  print()
  print(format_table(rows))
  _print_prior_targets(rows, args.prior_share_target)
  if args.json:
    with open(args.json, "w") as f:
      json.dump(rows, f, indent=1)
  return rows


if __name__ == "__main__":
  main()
