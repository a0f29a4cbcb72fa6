"""Experiment 1 over seeds and both performer layouts: part selectivity against two chance
levels, filters per part, and the summary table.

The parts stage's ``selectivity`` counts a filter's strong peaks on background as on no part,
while its ``selectivity_chance`` assumes peaks on the object. This script adds the chance level
of peaks uniform over the whole image, the share of peaks on the object, and the selectivity of
the peaks that are on the object, for the interpretable and the ordinary layer. ``paper`` is
configs/parts.py as it is (the paper's layout); ``old`` is the earlier layout (the original top
conv masked after its ReLU, constant filter-loss weight; the explainer as configured):

  for layout in paper old; do for s in 0 1 2; do
    W=runs/exp1/parts_${layout}_s$s
    python launch/run.py --config=configs/parts.py --workdir=$W --config.seed=$s \\
        --config.stages=performer,explainer,evaluate --config.explainer.variants=prior \\
        $(python examples/exp1_parts_seeds.py flags $layout)
    python examples/exp1_parts_seeds.py posthoc $W $s $layout > runs/exp1/posthoc_${layout}_s$s.json
    # the explainer from the paper's start (α = g(feat), b = 0) on the same performers:
    cp -al $W ${W}_paperstart \\
        && rm -r ${W}_paperstart/{explainer_prior,eval,metrics.json,config.json}
    python launch/run.py --config=configs/parts.py --workdir=${W}_paperstart --config.seed=$s \\
        --config.stages=explainer,evaluate --config.explainer.variants=prior \\
        --config.explainer.auto_scale=False $(python examples/exp1_parts_seeds.py flags $layout)
  done; done
  python examples/exp1_parts_seeds.py table runs/exp1   # the README's Experiment-1 table

``posthoc`` restores the two finished performers of a run (no training) and also measures the
performer's logit drop when each part is removed (``source.counterfactuals``); ``cells`` counts
the 16×16 map cells each part covers (the data alone); ``concepts WORKDIR`` summarises a run's
test y_i and logits from its feature cache.
"""

import contextlib
import json
import math
import os
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from configs import parts as parts_config  # noqa: E402
from xplain_jax import data  # noqa: E402
from xplain_jax.infra import parallel
from xplain_jax.core import parts
from xplain_jax.spec import stages  # noqa: E402
from xplain_jax.evaluators import parts as parts_eval  # noqa: E402
from xplain_jax.run import pipeline  # noqa: E402
from xplain_jax.train import performer as performer_lib  # noqa: E402

T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571}  # two-sided 95 % t quantiles

# Config overrides of each performer layout (``launch/run.py`` flags, ``posthoc``'s config).
LAYOUTS = {
    "paper": {},
    "old": {"performer.model.added_layer": False, "performer.model.mask_order": "post_relu",
            "performer.filter_loss_schedule": "constant"},
}


def layout_config(layout: str, seed: int):
  """configs/parts.py with ``seed`` and the layout's overrides."""
  c = parts_config.get_config("")
  c.seed = seed
  for path, value in LAYOUTS[layout].items():
    *parents, leaf = path.split(".")
    block = c
    for p in parents:
      block = block[p]
    block[leaf] = value
  return c


def flags(layout: str) -> str:
  """The ``--config.FIELD=VALUE`` flags of a layout."""
  return " ".join(f"--config.{k}={v}" for k, v in LAYOUTS[layout].items())


def _maps(cfg, spec, stage, workdir, mesh, rng, train_src, test_src, fingerprint):
  """Positive test images' ``top_conv`` [N,h,w,C] of a finished performer, their part masks,
  and the mean drop of the performer's logit when each part is removed from them [P]."""
  loader = data.Loader(train_src, cfg.performer.batch_size, seed=cfg.seed, shuffle=True,
                       drop_remainder=True, process_index=jax.process_index(),
                       process_count=jax.process_count())  # as the performer stage reads it
  perf, variables = performer_lib.train_performer(cfg, spec, workdir=workdir, mesh=mesh,
                                                  train_loader=loader, rng=rng, stage=stage,
                                                  fingerprint=fingerprint)
  apply = jax.jit(lambda v, im: perf.apply(v, im, train=False))
  maps, masks, logits, labels = [], [], [], []
  for start in range(0, len(test_src), 100):
    batch = test_src.get_batch(np.arange(start, min(start + 100, len(test_src))))
    out, inter = apply(variables, batch["image"])
    maps.append(np.asarray(inter["top_conv"]))
    logits.append(np.asarray(out)[:, 0])
    masks.append(batch["part_mask"])
    labels.append(batch["labels"][:, 0] > 0.5)
  positive = np.concatenate(labels)
  index, logit = np.flatnonzero(positive), np.concatenate(logits)[positive]
  drops = []
  for part in range(len(spec.part_names)):  # the performer's reliance on each part
    without = [np.asarray(apply(variables, test_src.counterfactuals(index[i:i + 100], part))[0])
               for i in range(0, len(index), 100)]
    drops.append(float(np.mean(logit - np.concatenate(without)[:, 0])))
  return np.concatenate(maps)[positive], np.concatenate(masks)[positive], drops


def posthoc(workdir: str, seed: int, layout: str = "paper") -> dict:
  """Selectivity figures of a finished ``configs/parts.py`` run of ``layout`` and ``seed``."""
  c = layout_config(layout, seed)
  spec = data.get_spec(c)
  mesh = parallel.make_mesh(c.num_devices)
  rng = jax.random.fold_in(jax.random.PRNGKey(seed), 1)
  train_src = data.get_source(c, "train", workdir=workdir)
  test_src = data.get_source(c, "test", workdir=workdir)
  num_parts, p = len(spec.part_names), c.evals.parts
  out = {}
  for name, cfg, stage in (("interpretable", c, "performer"),
                           ("ordinary", performer_lib.ordinary_config(c), pipeline.ORDINARY_STAGE)):
    x, masks, drops = _maps(cfg, spec, stage, workdir, mesh, rng, train_src, test_src,
                            stages.stage_fingerprint(c, stage))
    out[f"{name}_logit_drop_without"] = dict(zip(spec.part_names, drops))
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


def cells(map_size: int = 16) -> dict:
  """Per part: map cells it touches, and cells where it is the only part, per positive test
  image of configs/parts.py (the data alone; 16×16 is the top map of its 64 px images)."""
  c = parts_config.get_config("")
  spec = data.get_spec(c)
  test_src = data.get_source(c, "test", workdir=None)
  batch = test_src.get_batch(np.arange(len(test_src)))
  masks = batch["part_mask"][batch["labels"][:, 0] > 0.5]
  occ = parts.part_occupancy(masks, (map_size, map_size), len(spec.part_names))  # [N,h,w,P]
  alone = occ / np.maximum(occ.sum(-1, keepdims=True), 1e-12) > 0.99
  return {name: {"cells": float((occ[..., q] > 0).sum((1, 2)).mean()),
                 "cells_alone": float(alone[..., q].sum((1, 2)).mean())}
          for q, name in enumerate(spec.part_names)}


def concepts(workdir: str) -> dict:
  """The test split's concepts y_i and logits y of a finished run (its feature cache)."""
  from xplain_jax.data import feature_cache  # pylint: disable=import-outside-toplevel
  cached = feature_cache.load_cache(os.path.join(workdir, "features", "test"))
  y_i = np.asarray(cached.columns["y_i"], np.float64)
  y = np.asarray(cached.columns["y"], np.float64).reshape(len(y_i), -1)[:, 0]
  return {"negative_share": float((y_i < 0).mean()), "median_abs": float(np.median(np.abs(y_i))),
          "logit_min": float(y.min()), "logit_max": float(y.max())}


def _interval(values) -> str:
  v = np.asarray(values, float)
  if len(v) < 2:
    return f"{v.mean():.3f}"
  return f"{v.mean():.3f} ± {T95[len(v) - 1] * v.std(ddof=1) / math.sqrt(len(v)):.3f}"


def _values(m: dict, ph: dict) -> dict:
  """The table's rows for one run: its ``metrics.json`` and its posthoc JSON."""
  values = {
      "performer accuracy %": m["performer"]["accuracy"],
      "ordinary performer accuracy %": m["parts"]["ordinary_performer_accuracy"],
      "prior explainer accuracy %": m["prior"]["accuracy"],
      "prior explainer entropy (nats)": m["prior"]["entropy"],
      "prior explainer relative deviation": m["prior"]["relative_deviation"],
      "part selectivity, interpretable layer": ph["interpretable_selectivity"],
      "part selectivity, ordinary layer": ph["ordinary_selectivity"],
      "chance: peaks uniform on the object (`selectivity_chance`)": ph["chance_on_object"],
      "chance: peaks uniform on the image": ph["chance_whole_image"],
      "share of peaks on the object, interpretable": ph["interpretable_on_object"],
      "share of peaks on the object, ordinary": ph["ordinary_on_object"],
      "selectivity of the peaks on the object, interpretable": ph["interpretable_given_on_object"],
      "selectivity of the peaks on the object, ordinary": ph["ordinary_given_on_object"],
  }
  for name in ("interpretable", "ordinary"):
    for part, count in ph[f"{name}_filters_per_part"].items():
      values[f"filters on {part}, {name}"] = count
  for name in ("interpretable", "ordinary"):
    for part, drop in ph.get(f"{name}_logit_drop_without", {}).items():
      values[f"logit drop without the {part}, {name} performer"] = drop
  values["part selectivity, interpretable − ordinary (paired)"] = (
      ph["interpretable_selectivity"] - ph["ordinary_selectivity"])
  return values


def collect(root: str, layout: str) -> tuple[list, dict]:
  """``(seeds, {row: [value per seed]})`` of the finished runs of ``layout`` under ``root``."""
  rows, seeds = {}, []
  for s in range(10):
    run = os.path.join(root, f"parts_{layout}_s{s}")
    extra = os.path.join(root, f"posthoc_{layout}_s{s}.json")
    if not (os.path.exists(os.path.join(run, "metrics.json")) and os.path.exists(extra)):
      continue
    seeds.append(s)
    with open(os.path.join(run, "metrics.json")) as f, open(extra) as g:
      for k, v in _values(json.load(f), json.load(g)).items():
        rows.setdefault(k, []).append(v)
    start = os.path.join(run + "_paperstart", "metrics.json")
    if os.path.exists(start):
      with open(start) as f:
        prior = json.load(f)["prior"]
      for k, name in (("accuracy", "accuracy %"), ("entropy", "entropy (nats)"),
                      ("relative_deviation", "relative deviation")):
        rows.setdefault(f"prior explainer {name}, paper's start (`auto_scale=False`)",
                        []).append(prior[k])
  return seeds, rows


def table(root: str) -> str:
  """The Markdown table, one column per layout with finished runs under ``root``."""
  found = {layout: collect(root, layout) for layout in LAYOUTS}
  found = {k: v for k, v in found.items() if v[0]}
  names = list(dict.fromkeys(k for _, rows in found.values() for k in rows))
  head = [f"{layout} layout, seeds {', '.join(map(str, seeds))}"
          for layout, (seeds, _) in found.items()]
  paired = len(found) == 2 and len({tuple(seeds) for seeds, _ in found.values()}) == 1
  if paired:
    head.append("paper − old, paired by seed")
  lines = ["| mean ± 95 % t-interval | " + " | ".join(head) + " |",
           "|---|" + "---|" * len(head)]
  for k in names:
    cells = [_interval(rows[k]) if len(rows.get(k, ())) == len(seeds) else "–"
             for seeds, rows in found.values()]
    if paired:
      (_, a), (_, b) = found["paper"], found["old"]
      ok = len(a.get(k, ())) == len(b.get(k, ())) == len(found["paper"][0])
      cells.append(_interval(np.subtract(a[k], b[k])) if ok else "–")
    lines.append(f"| {k} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


if __name__ == "__main__":
  if sys.argv[1:2] == ["posthoc"]:
    with contextlib.redirect_stdout(sys.stderr):  # progress lines; stdout is the JSON
      result = posthoc(sys.argv[2], int(sys.argv[3]), *sys.argv[4:5])
    print(json.dumps(result))
  elif sys.argv[1:2] == ["concepts"]:
    print(json.dumps(concepts(sys.argv[2])))
  elif sys.argv[1:2] == ["cells"]:
    print(json.dumps(cells()))
  elif sys.argv[1:2] == ["flags"]:
    print(flags(sys.argv[2]))
  elif sys.argv[1:2] == ["table"]:
    print(table(sys.argv[2]))
  else:
    raise SystemExit("usage: exp1_parts_seeds.py posthoc WORKDIR SEED [LAYOUT] | flags LAYOUT | "
                     "cells | concepts WORKDIR | table ROOT")
