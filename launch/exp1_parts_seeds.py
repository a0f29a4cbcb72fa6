"""Experiment 1 over seeds: part selectivity against two chance levels, and the summary table.

The parts stage's ``selectivity`` counts a filter's strong peaks on background as on no part,
while its ``selectivity_chance`` assumes peaks on the object. This study adds the chance level
of peaks uniform over the whole image, the share of peaks on the object, and the selectivity of
the peaks that are on the object, for the interpretable and the ordinary added layer:

  for s in 0 1 2; do
    python launch/run.py --config=configs/parts.py --workdir=runs/exp1/parts_paper_s$s \\
        --config.seed=$s --config.stages=performer,explainer,evaluate
    python launch/exp1_parts_seeds.py posthoc runs/exp1/parts_paper_s$s $s \\
        > runs/exp1/posthoc_s$s.json
  done
  python launch/exp1_parts_seeds.py table runs/exp1   # the README's Experiment-1 table

``posthoc`` restores the two finished performers of a run (no training).
"""

import json
import math
import os
import sys

import jax
import numpy as np

from configs import parts as parts_config
from xplain_jax import data, parallel, parts
from xplain_jax.train import parts_eval, pipeline
from xplain_jax.train import performer as performer_lib

T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571}  # two-sided 95 % t quantiles


def _maps(cfg, spec, stage, workdir, mesh, rng, train_src, test_src):
  """Positive test images' ``top_conv`` [N,h,w,C] of a finished performer, and part masks."""
  loader = pipeline._loader(train_src, cfg, cfg.performer.batch_size)  # pylint: disable=protected-access
  perf, variables = performer_lib.train_performer(cfg, spec, workdir=workdir, mesh=mesh,
                                                  train_loader=loader, rng=rng, stage=stage)
  apply = jax.jit(lambda v, im: perf.apply(v, im, train=False)[1]["top_conv"])
  maps, masks, labels = [], [], []
  for start in range(0, len(test_src), 100):
    batch = test_src.get_batch(np.arange(start, min(start + 100, len(test_src))))
    maps.append(np.asarray(apply(variables, batch["image"])))
    masks.append(batch["part_mask"])
    labels.append(batch["labels"][:, 0] > 0.5)
  positive = np.concatenate(labels)
  return np.concatenate(maps)[positive], np.concatenate(masks)[positive]


def posthoc(workdir: str, seed: int) -> dict:
  """Selectivity figures of a finished ``configs/parts.py`` run with ``--config.seed=seed``."""
  c = parts_config.get_config("")
  c.seed = seed
  spec = data.get_spec(c)
  mesh = parallel.make_mesh(c.num_devices)
  rng = jax.random.fold_in(jax.random.PRNGKey(seed), 1)
  train_src = data.get_source(c, "train", workdir=workdir)
  test_src = data.get_source(c, "test", workdir=workdir)
  num_parts, p = len(spec.part_names), c.parts
  out = {}
  for name, cfg, stage in (("interpretable", c, "performer"),
                           ("ordinary", parts_eval.ordinary_config(c), parts_eval.ORDINARY_STAGE)):
    x, masks = _maps(cfg, spec, stage, workdir, mesh, rng, train_src, test_src)
    scores = parts.part_scores(x, masks, num_parts, top_fraction=p.top_fraction)
    on = scores.sum(1)
    f2p, _ = parts.assign_filters_to_parts(x, masks, num_parts, threshold=p.threshold,
                                           top_fraction=p.top_fraction)
    out[f"{name}_selectivity"] = float(scores.max(1).mean())
    out[f"{name}_on_object"] = float(on.mean())
    out[f"{name}_given_on_object"] = float((scores.max(1)[on > 0] / on[on > 0]).mean())
    out[f"{name}_filters_per_part"] = {n: int((f2p == i).sum())
                                       for i, n in enumerate(spec.part_names)}
    out[f"{name}_filters_per_part"]["none"] = int((f2p < 0).sum())
  share = np.stack([(masks == q + 1).mean(axis=(1, 2)) for q in range(num_parts)], 1)
  out["chance_on_object"] = parts_eval.selectivity_chance(masks, num_parts)
  out["chance_whole_image"] = float(share.mean(0).max())
  out["object_share_of_image"] = float(share.sum(1).mean())
  return out


def _interval(values) -> str:
  v = np.asarray(values, float)
  if len(v) < 2:
    return f"{v.mean():.3f}"
  return f"{v.mean():.3f} ± {T95[len(v) - 1] * v.std(ddof=1) / math.sqrt(len(v)):.3f}"


def table(root: str) -> str:
  """The Markdown table over the seeds found in ``root`` (``parts_paper_s*`` + posthoc)."""
  rows, seeds = {}, []
  for s in range(10):
    run, extra = os.path.join(root, f"parts_paper_s{s}"), os.path.join(root, f"posthoc_s{s}.json")
    if not (os.path.exists(os.path.join(run, "metrics.json")) and os.path.exists(extra)):
      continue
    seeds.append(s)
    m = json.load(open(os.path.join(run, "metrics.json")))
    ph = json.load(open(extra))
    values = {
        "performer accuracy %": m["performer"]["accuracy"],
        "ordinary performer accuracy %": m["parts"]["ordinary_performer_accuracy"],
        "prior explainer accuracy %": m["prior"]["accuracy"],
        "prior explainer entropy (nats)": m["prior"]["entropy"],
        "prior explainer relative deviation": m["prior"]["relative_deviation"],
        "part selectivity, interpretable layer": ph["interpretable_selectivity"],
        "part selectivity, ordinary added layer": ph["ordinary_selectivity"],
        "chance: peaks uniform on the object (`selectivity_chance`)": ph["chance_on_object"],
        "chance: peaks uniform on the image": ph["chance_whole_image"],
        "share of peaks on the object, interpretable": ph["interpretable_on_object"],
        "share of peaks on the object, ordinary": ph["ordinary_on_object"],
        "selectivity of the peaks on the object, interpretable": ph["interpretable_given_on_object"],
        "selectivity of the peaks on the object, ordinary": ph["ordinary_given_on_object"],
    }
    for k, v in values.items():
      rows.setdefault(k, []).append(v)
  lines = [f"| seeds {', '.join(map(str, seeds))}: mean ± 95 % t-interval | |", "|---|---|"]
  lines += [f"| {k} | {_interval(v)} |" for k, v in rows.items()]
  return "\n".join(lines)


if __name__ == "__main__":
  if sys.argv[1:2] == ["posthoc"]:
    print(json.dumps(posthoc(sys.argv[2], int(sys.argv[3]))))
  elif sys.argv[1:2] == ["table"]:
    print(table(sys.argv[2]))
  else:
    raise SystemExit("usage: exp1_parts_seeds.py posthoc WORKDIR SEED | table ROOT")
