r"""What one explanation costs per image on the own-model digits case: the faithful explainer
(one pass of its weight network g) against the performer's own effects it is trained toward —
gradient × input (one backward pass), filter deletion Δ (n + 1 head passes) and sampled Shapley
values (M·(n + 1) head passes) — in ms per image after compilation.

  python launch/bench/bench_explain_cost.py            # one seed's CNN, the API's default g
  python launch/bench/bench_explain_cost.py --quick    # smaller, for the test

Prints one line per explanation (the minimum over ``--repeats`` timed calls of a batch, divided
by the batch size) and its ratio to g's pass.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "examples"))  # the digits case it measures
import own_model_digits as digits  # noqa: E402  pylint: disable=g-import-not-at-top
from xplain_jax import api, fidelity  # noqa: E402
from xplain_jax.train import featurizers


def _ms_per_image(fn, x, repeats: int) -> float:
  jax.block_until_ready(fn(x))          # compile
  best = np.inf
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(x))
    best = min(best, time.perf_counter() - t0)
  return 1000.0 * best / len(x)


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--quick", action="store_true", help="small sizes (seconds)")
  p.add_argument("--batch", type=int, default=256)
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--permutations", type=int, default=64, help="Shapley's sampled orders M")
  a = p.parse_args(argv)
  size = digits.SIZES["quick" if a.quick else "full"]
  tr_im, tr_d, te_im, _ = digits.load_split(0, size)
  net, v = digits.train_cnn(tr_im, tr_d, seed=0, size=size)
  features = lambda im: net.apply(v, im, method=digits.DigitsCNN.features)
  head = lambda x: net.apply(v, x, method=digits.DigitsCNN.head)[:, digits.TARGET_DIGIT]
  fz = featurizers.filter_featurizer(features, head, clip_prior=False, target="deletion")
  train = api.featurize_dataset(fz, tr_im)
  explainer = api.fit_explainer(train, case="filter", variant="faithful", epochs=1,
                                depth=size["depth"], width=size["width"], log_every=10 ** 6)
  x = np.asarray(features(te_im[:a.batch]))
  x = np.concatenate([x] * int(np.ceil(a.batch / len(x))))[:a.batch]
  g_pass = jax.jit(lambda m: explainer_alpha(explainer, m))
  rows = {
      "faithful explainer (one pass of g)": g_pass,
      "gradient × input (one backward pass)": jax.jit(lambda m: fidelity.gradient_x_input(
          head, m)),
      "deletion Δ (n + 1 head passes)": jax.jit(lambda m: fidelity.filter_deletion_effects(
          head, m)),
      f"sampled Shapley, M = {a.permutations} (M·(n + 1) passes)": jax.jit(
          lambda m: fidelity.filter_shapley_effects(head, m,
                                                    num_permutations=a.permutations)),
  }
  out = {name: _ms_per_image(fn, jnp.asarray(x), a.repeats) for name, fn in rows.items()}
  base = out["faithful explainer (one pass of g)"]
  print(f"batch {a.batch}, map {x.shape[1:]}, {jax.devices()[0].platform}")
  for name, ms in out.items():
    print(f"{name}: {ms:.3f} ms/image ({ms / base:.2f}× g's pass)")
  return out


def explainer_alpha(explainer, x):
  """α [B,n] of a fitted explainer on maps x, traceable (no host round trip)."""
  from xplain_jax.train import explainer as explainer_lib  # pylint: disable=import-outside-toplevel
  return explainer_lib.alpha_batch(explainer.variables, x, g=explainer.g,
                                   alpha_scale=float(explainer.alpha_scale))


if __name__ == "__main__":
  main()
