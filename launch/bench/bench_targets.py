r"""What the consistency targets cost: featurizing one batch with and without them.

Random-initialised performers of ``configs/synthetic.py:tiny`` (Case 2) and
``configs/parts.py:tiny`` (Case 1); one batch of training images; the minimum over
``--repeats`` repetitions after one compiling call. Case 2 ``rendered`` is the jitted
featurizer plus ``train.features.rendered_targets`` on the host (n re-renders and n performer
calls per image), as ``featurize_split`` runs them while writing the training cache; two more
rows split it into the host's re-renders alone (``data.scenes.toggled_once``) and the n
performer calls alone, on renders made beforehand:

  python launch/bench/bench_targets.py [--batch=64] [--repeats=15]

Prints one markdown row per (case, target) with milliseconds per batch and the ratio to the
featurizer without targets.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from configs import parts, synthetic  # noqa: E402  pylint: disable=wrong-import-position
from xplain_jax import data, fidelity, models  # noqa: E402  pylint: disable=wrong-import-position
from xplain_jax.data import scenes  # noqa: E402  pylint: disable=wrong-import-position
from xplain_jax.train import (  # noqa: E402  pylint: disable=wrong-import-position
    features as features_lib)


def _performer(config, spec, images):
  perf = models.get_performer(config.performer.arch, num_outputs=len(spec.output_names),
                              **config.performer.model)
  return perf, perf.init(jax.random.PRNGKey(0), images[:1])


def _best(fn, repeats: int) -> float:
  """Seconds of the fastest of ``repeats`` calls of ``fn`` (after one untimed call)."""
  jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return min(times)


def _rendered_parts(perf, variables, spec, src, names, idx, base, repeats) -> list[dict]:
  """The rendered target's two halves: the re-renders, and the n performer calls on them."""
  columns = fidelity.renderer_columns(spec.concept_names, names)
  renders = lambda: scenes.toggled_once(src, idx, columns)(idx, int(columns[0]))  # noqa: E731
  held = scenes.toggled_once(src, idx, columns)
  toggled = [held(idx, int(k)) for k in columns]
  y_fn = jax.jit(lambda im: perf.apply(variables, im, train=False)[0][:, spec.target_index])
  calls = lambda: [y_fn(im) for im in toggled]  # noqa: E731
  return [dict(case=spec.case, target=f"rendered: {what}", ms=1e3 * s, ratio=s / base)
          for what, s in (("the re-renders alone", _best(renders, repeats)),
                          (f"the {len(columns)} performer calls alone", _best(calls, repeats)))]


def bench(batch: int = 64, repeats: int = 15) -> list[dict]:
  """Rows ``{case, target, ms, ratio}``."""
  rows = []
  for case, config in (("shared_feature", synthetic.get_config("tiny")),
                       ("filter", parts.get_config("tiny"))):
    config.dataset.num_train = batch
    spec = data.get_spec(config)
    src = data.get_source(config, "train")
    images = np.asarray(src.get_batch(np.arange(batch))["image"], np.float32)
    perf, variables = _performer(config, spec, images)
    base = None
    for target in ("",) + features_lib.TARGETS[case]:
      split = []
      fz = jax.jit(features_lib.make_featurizer(perf, spec, target=target))
      if target in features_lib.SOURCE_TARGETS:
        names = data.renderer_concept_names(config, spec.concept_names)
        extra = features_lib.rendered_targets(perf, variables, spec, src, names,
                                              batch_size=batch)
        idx = np.arange(batch)
        fn = lambda fz=fz, extra=extra, idx=idx: extra(idx, jax.device_get(fz(variables, images)))
        split = _rendered_parts(perf, variables, spec, src, names, idx, base, repeats)
      else:
        fn = lambda fz=fz: fz(variables, images)
      seconds = _best(fn, repeats)
      base = seconds if not target else base
      rows.append(dict(case=case, target=target or "none", ms=1e3 * seconds,
                       ratio=seconds / base))
      rows += split
  return rows


def main(argv=None) -> list[dict]:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--repeats", type=int, default=15)
  args = p.parse_args(argv)
  rows = bench(args.batch, args.repeats)
  print(f"| case | target | featurize {args.batch} images (ms) | × no target |")
  print("|---|---|---|---|")
  for r in rows:
    print(f"| {r['case']} | {r['target']} | {r['ms']:.0f} | {r['ratio']:.1f}× |")
  return rows


if __name__ == "__main__":
  main()
