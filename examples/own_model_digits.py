r"""Own-model case on real data: a small CNN trained on scikit-learn's handwritten digits,
its digit-3 logit explained by the conv32 filters (Case 1) with the public API.

The data ship with scikit-learn (1,797 real 8×8 images, no download), upsampled to 16×16 and
split 80/20, stratified, with the run's seed. Per seed a Flax CNN (conv16 → pool → conv32 →
fc64 → fc10) is trained with optax; y is its digit-3 logit, the concepts are the 32 filters of
the conv32 map x [B,8,8,32] (``featurizers.filter_featurizer``). Explainer variants
(``VARIANTS``; ``api.fit_explainer``) are scored by ``api.evaluate`` beside its peers (least
squares, α = w, gradient × input, integrated gradients) against the filters' deletion effects
Δ_k = y − y(x with filter k zeroed) on the test images.

  # choose the faithful variants' consistency weight on seeds kept apart from the evaluation
  python examples/own_model_digits.py --mode=select --out=runs/own_model_digits
  # evaluate every variant on seeds 0-4 with the chosen weights
  python examples/own_model_digits.py --mode=evaluate --out=runs/own_model_digits
  # the coordinate channels on a head that pools the map (a filter's place cannot matter)
  python examples/own_model_digits.py --mode=evaluate --head=pool --weight=1 \
      --variants=faithful,faithful_coords --out=runs/own_model_digits_pool

Outputs in ``--out``: ``selection.json``/``.md`` or ``results.json``/``.md`` (mean and 95 %
t-interval over seeds, paired differences over seeds), and ``seed_<mode>_<s>.json`` per seed
(a finished seed is read back, not recomputed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import flax.linen as nn
import jax
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from xplain_jax import api, utils  # noqa: E402
from xplain_jax.train import featurizers
from xplain_jax.errors import ConfigError  # noqa: E402
from xplain_jax.study import stats  # noqa: E402

# Sizes: the data used, the CNN's training and the explainers' (one setting for every variant).
# "full": every image and the API's defaults for the explainers (None: fit_explainer's own:
# 50 epochs, g sized to the map); "quick": a few seconds a fit, for the test.
SIZES = {
    "full": dict(num_images=None, image_size=16, cnn_epochs=15, cnn_batch=64, cnn_lr=1e-3,
                 explainer_epochs=None, depth=None, width=None, num_resamples=1000),
    "quick": dict(num_images=400, image_size=16, cnn_epochs=8, cnn_batch=32, cnn_lr=3e-3,
                  explainer_epochs=1, depth=10, width=8, num_resamples=100),
}
TARGET_DIGIT = 3
TEST_FRACTION = 0.2
SELECTION_SEEDS, EVALUATION_SEEDS = (100, 101, 102), (0, 1, 2, 3, 4)
WEIGHTS = (0.1, 1.0, 10.0)
# The consistency weight is selected for "faithful"; its relatives use the weight chosen for it
# (a rule fixed before any result). "faithful" has signed α (stages.VARIANTS);
# "faithful_positive": the same with the paper's positive Case-1 α; "faithful_coords": with two
# coordinate channels on g's input (this CNN's head flattens its 8×8 map, so a filter's effect
# depends on where it fires).
# "baseline_scaled_bias", "prior_scaled_bias": the paper's variants with the opt-in scaled bias
# (explainer.scaled_bias: b = b0 + std(y)·b_raw).
TUNED = ("faithful",)
VARIANTS = ("baseline", "prior", "ls_start", "faithful", "faithful_positive", "faithful_coords",
            "baseline_scaled_bias", "prior_scaled_bias")
# Variant − variant differences over seeds, when both were fitted (the addition's own effect).
VARIANT_PAIRS = (("faithful_coords", "faithful"), ("baseline_scaled_bias", "baseline"),
                 ("prior_scaled_bias", "prior"))
# The CNN's head: "flatten" (fc on the 8×8×32 map: a filter's effect depends on where it fires)
# or "pool" (fc on the map's spatial mean: it does not).
HEADS = ("flatten", "pool")
PEERS = ("least_squares", "least_squares_nonnegative", "prior_weights", "gradient_x_input",
         "integrated_gradients", "random")
CONSISTENCY_TARGETS = ("deletion", "gradient_x_input", "shapley")
DIFF_AGAINST = ("least_squares", "gradient_x_input")


class DigitsCNN(nn.Module):
  """conv16 → 2×2 max-pool → conv32 (the explained map) → fc64 → fc10; ``head_kind`` "pool"
  averages the map over its positions before fc64."""

  head_kind: str = "flatten"

  def setup(self):
    self.conv1, self.conv2 = nn.Conv(16, (3, 3)), nn.Conv(32, (3, 3))
    self.fc1, self.fc2 = nn.Dense(64), nn.Dense(10)

  def features(self, images):
    """images [B,16,16,1] -> x [B,8,8,32], the conv32 map after its ReLU."""
    h = nn.max_pool(nn.relu(self.conv1(images)), (2, 2), strides=(2, 2))
    return nn.relu(self.conv2(h))

  def head(self, x):
    """x [B,8,8,32] -> logits [B,10]."""
    h = x.mean(axis=(1, 2)) if self.head_kind == "pool" else x.reshape(x.shape[0], -1)
    return self.fc2(nn.relu(self.fc1(h)))

  def __call__(self, images):
    return self.head(self.features(images))


def load_split(seed: int, size: dict):
  """Digits upsampled to ``image_size``, pixels in [0,1], stratified 80/20 split by ``seed``.

  Returns:
    ``(train_images [M,S,S,1], train_digits [M], test_images [N,S,S,1], test_digits [N])``.
  """
  from sklearn import datasets, model_selection  # pylint: disable=import-outside-toplevel
  digits = datasets.load_digits()
  images = digits.images.astype(np.float32)[..., None] / 16.0     # [1797,8,8,1]
  labels = digits.target.astype(np.int32)
  if size["num_images"]:
    keep, _ = model_selection.train_test_split(
        np.arange(len(labels)), train_size=size["num_images"], stratify=labels,
        random_state=seed)
    images, labels = images[keep], labels[keep]
  s = size["image_size"]
  images = np.asarray(jax.image.resize(images, (len(images), s, s, 1), "linear"))
  tr, te = model_selection.train_test_split(np.arange(len(labels)), test_size=TEST_FRACTION,
                                            stratify=labels, random_state=seed)
  return images[tr], labels[tr], images[te], labels[te]


def train_cnn(images, digits, *, seed: int, size: dict, head: str = "flatten"):
  """Trains ``DigitsCNN`` by Adam on the cross-entropy; returns ``(net, variables)``."""
  net = DigitsCNN(head_kind=head)
  rng = jax.random.PRNGKey(seed)
  params = net.init(rng, images[:1])
  tx = optax.adam(size["cnn_lr"])
  opt = tx.init(params)

  @jax.jit
  def step(params, opt, x, d):
    def loss(p):
      return optax.softmax_cross_entropy_with_integer_labels(net.apply(p, x), d).mean()
    grads = jax.grad(loss)(params)
    updates, opt = tx.update(grads, opt, params)
    return optax.apply_updates(params, updates), opt

  order = np.random.default_rng(seed)
  b = size["cnn_batch"]
  for _ in range(size["cnn_epochs"]):
    perm = order.permutation(len(digits))
    for i in range(0, len(perm) - b + 1, b):
      params, opt = step(params, opt, images[perm[i:i + b]], digits[perm[i:i + b]])
  return net, params


def accuracy(net, variables, images, digits) -> float:
  pred = np.argmax(np.asarray(jax.jit(net.apply)(variables, images)), axis=-1)
  return float(np.mean(pred == digits))


def prepare(seed: int, size: dict, *, target: str, head: str = "flatten") -> dict:
  """One seed's performer and featurized arrays (train with ``"t"``, test).

  Returns:
    ``{"net", "variables", "accuracy", "head_fn", "train", "train_signed", "test",
    "test_target"}``; ``train_signed`` has the unclipped prior w (signed Case 1).
  """
  tr_im, tr_d, te_im, te_d = load_split(seed, size)
  net, v = train_cnn(tr_im, tr_d, seed=seed, size=size, head=head)
  features = lambda im: net.apply(v, im, method=DigitsCNN.features)
  head_fn = lambda x: net.apply(v, x, method=DigitsCNN.head)[:, TARGET_DIGIT]
  if target not in CONSISTENCY_TARGETS:
    raise ConfigError(f"consistency target {target!r}; use one of {list(CONSISTENCY_TARGETS)}.")
  fz = featurizers.filter_featurizer(features, head_fn)
  fz_signed = featurizers.filter_featurizer(features, head_fn, clip_prior=False)
  # the training images also carry the model's own effects t and y(∅) (the faithful variants')
  fz_train = featurizers.filter_featurizer(features, head_fn, target=target)
  train, test = api.featurize_dataset(fz_train, tr_im), api.featurize_dataset(fz, te_im)
  train.featurizer = fz
  train_signed = api.Features(train, w=api.featurize_dataset(fz_signed, tr_im)["w"])
  return dict(net=net, variables=v, accuracy=accuracy(net, v, te_im, te_d), head_fn=head_fn,
              train=train, train_signed=train_signed, test=test,
              test_target=te_d == TARGET_DIGIT)


def fit_variant(data: dict, variant: str, *, seed: int, size: dict, weight: float = 0.0):
  """Fits one explainer variant with ``api.fit_explainer`` (same epochs for every variant)."""
  common = dict(case="filter", depth=size["depth"], width=size["width"], seed=seed,
                log_every=10 ** 6)
  if size["explainer_epochs"] is not None:
    common["epochs"] = size["explainer_epochs"]
  faithful = dict(variant="faithful", consistency_weight=weight)
  settings = {
      "baseline": dict(variant="baseline"),
      "prior": dict(variant="prior"),
      "ls_start": dict(variant="ls_start"),
      "faithful": faithful,
      "faithful_positive": dict(faithful, positive=True, prior_kind="cross_entropy"),
      "faithful_coords": dict(faithful, coords=True),
      "baseline_scaled_bias": dict(variant="baseline", scaled_bias=True),
      "prior_scaled_bias": dict(variant="prior", scaled_bias=True),
  }[variant]
  signed = variant in ("faithful", "faithful_coords")
  feats = data["train_signed"] if signed else data["train"]
  return api.fit_explainer(feats, **common, **settings)


def score(data: dict, explainers: dict, *, size: dict) -> dict:
  """Per explanation (variants and ``PEERS``): interventional rank correlation and relative
  deviation (mean over the test images; deviation None where it does not predict y)."""
  m = api.evaluate(explainers, data["test"], labels=data["test_target"], train=data["train"],
                   num_resamples=size["num_resamples"])
  rows = {**{k: m["fidelity"][k] for k in explainers},
          **{k: m["fidelity_reference"][k] for k in PEERS}}
  return {k: {"irc": r["interventional_rank_correlation"]["mean"],
              "irc_low": r["interventional_rank_correlation"]["low"],
              "irc_high": r["interventional_rank_correlation"]["high"],
              "deviation": r.get("relative_deviation", {}).get("mean")} for k, r in rows.items()}


def run_seed(seed: int, size: dict, *, mode: str, weights: dict, target: str,
             variants=VARIANTS, head: str = "flatten") -> dict:
  """One seed: ``mode="select"`` fits ``TUNED`` at every weight of ``weights[variant]``;
  ``"evaluate"`` fits every variant of ``VARIANTS`` (tuned ones at ``weights[variant]``)."""
  start = time.time()
  data = prepare(seed, size, target=target, head=head)
  print(f"seed {seed}: performer test accuracy {data['accuracy']:.3f} "
        f"({time.time() - start:.0f} s)", flush=True)
  explainers, seconds = {}, {}
  jobs = ([(f"{v}@{w:g}", v, w) for v in TUNED for w in weights[v]] if mode == "select" else
          [(v, v, weights["faithful"] if v.startswith("faithful") else 0.0)
           for v in variants])
  for key, variant, w in jobs:
    t0 = time.time()
    explainers[key] = fit_variant(data, variant, seed=seed, size=size, weight=w)
    seconds[key] = round(time.time() - t0, 1)
    print(f"seed {seed}: fitted {key} in {seconds[key]} s", flush=True)
  scores = score(data, explainers, size=size)
  return dict(seed=seed, accuracy=data["accuracy"], scores=scores, fit_seconds=seconds,
              seconds=round(time.time() - start, 1))


def select(per_seed: list[dict], weights: dict) -> dict:
  """The rule, fixed before any result: per tuned variant, the weight with the highest mean
  interventional rank correlation over the selection seeds; means equal to 3 decimals go to
  the smaller weight."""
  chosen, table = {}, {}
  for v in TUNED:
    means = {w: float(np.mean([r["scores"][f"{v}@{w:g}"]["irc"] for r in per_seed]))
             for w in weights[v]}
    table[v] = {f"{w:g}": stats.summarize([r["scores"][f"{v}@{w:g}"]["irc"] for r in per_seed])
                for w in weights[v]}
    chosen[v] = max(sorted(means), key=lambda w: (round(means[w], 3), -w))
  return dict(chosen=chosen, irc=table)


def summary(per_seed: list[dict]) -> dict:
  """Mean and 95 % t-interval over seeds of each explanation's IRC and deviation, and paired
  differences over seeds (variant − least squares, variant − gradient × input)."""
  keys = list(per_seed[0]["scores"])
  col = lambda k, m: [r["scores"][k][m] for r in per_seed]
  out = {"accuracy": stats.summarize([r["accuracy"] for r in per_seed]),
         "rows": {k: {m: stats.summarize(col(k, m)) for m in ("irc", "deviation")} for k in keys}}
  out["paired"] = {f"{v}_minus_{p}": stats.paired(col(v, "irc"), col(p, "irc"))
                   for v in keys if v not in PEERS for p in DIFF_AGAINST}
  out["paired_variants"] = {
      f"{a}_minus_{b}": {m: stats.paired(col(a, m), col(b, m)) for m in ("irc", "deviation")}
      for a, b in VARIANT_PAIRS if a in keys and b in keys}
  return out


def _cell(s: dict) -> str:
  if s["mean"] is None:
    return "–"
  if s["ci_low"] is None:
    return f"{s['mean']:.3f}"
  return f"{s['mean']:.3f} [{s['ci_low']:.3f}, {s['ci_high']:.3f}]"


def markdown(result: dict, mode: str) -> str:
  """The Markdown tables of ``selection.json`` or ``results.json``."""
  n = len(result["seeds"])
  lines = [f"Seeds {list(result['seeds'])}; mean [95 % t-interval over {n} seeds].", ""]
  if mode == "select":
    lines += ["| variant | weight | interventional rank corr. |", "|---|---|---|"]
    for v, rows in result["selection"]["irc"].items():
      for w, s in rows.items():
        mark = " (chosen)" if float(w) == result["selection"]["chosen"][v] else ""
        lines.append(f"| {v} | {w}{mark} | {_cell(s)} |")
    return "\n".join(lines) + "\n"
  s = result["summary"]
  lines += [f"Performer test accuracy (10 classes): {_cell(s['accuracy'])}.", "",
            "| explanation | interventional rank corr. | relative deviation |", "|---|---|---|"]
  lines += [f"| {k} | {_cell(r['irc'])} | {_cell(r['deviation'])} |"
            for k, r in s["rows"].items()]
  lines += ["", "| paired difference (IRC) | mean [95 % t-interval] | p |", "|---|---|---|"]
  for k, d in s["paired"].items():
    p = "–" if d["p_value"] is None else f"{d['p_value']:.3g}"
    lines.append(f"| {k.replace('_minus_', ' − ')} | {_cell(d)} | {p} |")
  if s.get("paired_variants"):
    lines += ["", "| paired difference | IRC [95 % t-interval] | deviation [95 % t-interval] |",
              "|---|---|---|"]
    lines += [f"| {k.replace('_minus_', ' − ')} | {_cell(d['irc'])} | {_cell(d['deviation'])} |"
              for k, d in s["paired_variants"].items()]
  return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--mode", choices=("select", "evaluate"), required=True)
  p.add_argument("--out", required=True, help="output folder")
  p.add_argument("--seeds", default="", help="comma-separated; default: the mode's seeds")
  p.add_argument("--size", choices=sorted(SIZES), default="full")
  p.add_argument("--target", choices=CONSISTENCY_TARGETS, default="deletion",
                 help="the faithful variants' consistency target on the train images")
  p.add_argument("--weights", default=",".join(f"{w:g}" for w in WEIGHTS),
                 help="select: the consistency weights swept")
  p.add_argument("--selection", default="",
                 help="evaluate: selection.json (default: --out's)")
  p.add_argument("--weight", type=float, default=None,
                 help="evaluate: the faithful variants' weight, instead of a selection.json")
  p.add_argument("--variants", default=",".join(VARIANTS),
                 help="evaluate: the variants fitted (a comma-separated subset)")
  p.add_argument("--head", choices=HEADS, default="flatten",
                 help="the CNN's head: fc on the flattened map, or on its spatial mean")
  a = p.parse_args(argv)
  size = SIZES[a.size]
  variants = tuple(utils.split_list(a.variants))
  unknown = sorted(set(variants) - set(VARIANTS))
  if unknown or not variants:
    raise ConfigError(f"--variants={a.variants!r}: unknown {unknown}; use a subset of "
                      f"{list(VARIANTS)}.")
  seeds = ([int(s) for s in utils.split_list(a.seeds)] if a.seeds else
           list(SELECTION_SEEDS if a.mode == "select" else EVALUATION_SEEDS))
  if a.mode == "select":
    weights = {v: [float(w) for w in utils.split_list(a.weights)] for v in TUNED}
  elif a.weight is not None:
    weights = {v: float(a.weight) for v in TUNED}
  else:
    path = a.selection or os.path.join(a.out, "selection.json")
    if not os.path.exists(path):
      raise ConfigError(f"no selection at {path}; run --mode=select first or pass --selection.")
    with open(path) as f:
      weights = {v: float(w) for v, w in json.load(f)["selection"]["chosen"].items()}
  os.makedirs(a.out, exist_ok=True)
  start, per_seed = time.time(), []
  for s in seeds:
    path = os.path.join(a.out, f"seed_{a.mode}_{s}.json")
    if os.path.exists(path):
      with open(path) as f:
        per_seed.append(json.load(f))
      continue
    per_seed.append(run_seed(s, size, mode=a.mode, weights=weights, target=a.target,
                             variants=variants, head=a.head))
    with open(path, "w") as f:
      json.dump(per_seed[-1], f, indent=1)
  result = dict(mode=a.mode, seeds=seeds, size=a.size, sizes=size, target=a.target, head=a.head,
                weights=weights, per_seed=per_seed, wall_seconds=round(time.time() - start, 1))
  if a.mode == "select":
    result["selection"] = select(per_seed, weights)
  else:
    result["summary"] = summary(per_seed)
  name = "selection" if a.mode == "select" else "results"
  with open(os.path.join(a.out, f"{name}.json"), "w") as f:
    json.dump(result, f, indent=1)
  table = markdown(result, a.mode)
  with open(os.path.join(a.out, f"{name}.md"), "w") as f:
    f.write(table)
  print(table)
  return result


if __name__ == "__main__":
  main()
