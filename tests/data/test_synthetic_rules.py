"""The benchmark regimes of the synthetic attributes (``dataset.rule``): planted contributions
against hand computations, counterfactuals that change one concept only, the promised
co-occurrence and shortcut, the rule as a config field; the regimes study's table on fabricated
run folders (every explainer's and peer's figures per regime with t-intervals, paired
differences, absent peers, "no measurable difference" where a paired interval includes 0)."""

import importlib
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from xplain_jax import data
from xplain_jax.data import synthetic_attributes as sa
from xplain_jax.data import synthetic_rules as rules
from xplain_jax.errors import ConfigError, DataError
from xplain_jax.study import aggregate, commands, render

S, SEED = 32, 21
NAMES = list(sa.CONCEPT_NAMES)
N_OBJ = len(sa.COLOURS) * len(sa.SHAPES)
IDX = NAMES.index


def _scenes(rule, n, seed=SEED):
  return [sa.scene(seed, i, image_size=S, rule=rule) for i in range(n)]


def _hand_terms(sc, rule):
  """The planted terms of one scene, written out from the rules' description."""
  a = {name: bool(sc["attrs"][k]) for k, name in enumerate(NAMES)}
  s = {name: 1.0 if on else -1.0 for name, on in a.items()}
  out = np.zeros((2, len(NAMES)))
  for t, target in enumerate(("target_a", "target_b")):
    for name, weight in sa.TARGET_RULES[target].items():
      out[t, IDX(name)] = weight * s[name]
  if rule == "context":
    border = a["border"]
    out[0, IDX("red_circle")] = (2.0 if border else -2.0) * s["red_circle"]
    upper = sc["cell"][IDX("blue_triangle")] in (0, 1, 2)  # cells 0..2: the grid's top row
    out[0, IDX("blue_triangle")] = 2.2 if (a["blue_triangle"] and upper) else 0.0
  return out


@pytest.mark.parametrize("rule", rules.RULES)
def test_gt_contrib_and_labels_follow_the_hand_computed_rule(rule):
  n = 24
  d = sa.make_dataset(n, image_size=S, seed=SEED, rule=rule)
  for i, sc in enumerate(_scenes(rule, n)):
    np.testing.assert_array_equal(d["labels"][i, :len(NAMES)], sc["attrs"])
    hand = _hand_terms(sc, rule)
    np.testing.assert_allclose(d["gt_contrib"][i], hand, atol=1e-6)
    for t in range(2):  # label: the image's uniform draw below sigmoid(2 z)
      p = 1.0 / (1.0 + math.exp(-2.0 * hand[t].sum()))
      if abs(sc["label_u"][t] - p) > 1e-5:
        assert d["labels"][i, len(NAMES) + t] == float(sc["label_u"][t] < p)


def test_context_rule_has_both_signs_and_defeats_one_global_alpha():
  d = sa.make_dataset(800, image_size=S, seed=SEED, rule="context")
  gt, a = d["gt_contrib"][:, 0], d["labels"][:, :len(NAMES)]
  rc, border = IDX("red_circle"), IDX("border")
  # red_circle's weight is +2 with a border, −2 without: both occur.
  weight = gt[:, rc] * (2 * a[:, rc] - 1)
  assert set(np.unique(weight)) == {-2.0, 2.0}
  np.testing.assert_array_equal(weight > 0, a[:, border] > 0)
  # No single α over the concepts (plus a bias) reproduces the planted logit; it does linearly.
  x = np.c_[2 * a - 1, np.ones(len(a))]
  for rule, low, high in (("context", 0.3, 0.8), ("linear", 0.999, 1.001)):
    z = sa.make_dataset(800, image_size=S, seed=SEED, rule=rule)["gt_contrib"][:, 0].sum(-1)
    fit = x @ np.linalg.lstsq(x, z, rcond=None)[0]
    r2 = 1 - np.mean((fit - z) ** 2) / np.var(z)
    assert low < r2 < high, (rule, r2)


@pytest.mark.parametrize("split", ["train", "test"])
def test_redundant_pairs_always_co_occur_in_both_splits(split):
  src = sa.load(split, num_examples=300, image_size=S, seed=3, rule="redundant")
  a = src.arrays["labels"][:, :len(NAMES)]
  for concept, partner in rules.REDUNDANT_PAIRS:
    np.testing.assert_array_equal(a[:, IDX(concept)], a[:, IDX(partner)])
    assert 0.2 < a[:, IDX(concept)].mean() < 0.8
    assert sa.TARGET_RULES["target_a"].get(partner, 0) == 0
    assert sa.TARGET_RULES["target_b"].get(partner, 0) == 0
  # Under the linear rule the same pairs are drawn independently.
  lin = sa.load(split, num_examples=300, image_size=S, seed=3).arrays["labels"]
  assert (lin[:, IDX("red_circle")] != lin[:, IDX("blue_square")]).mean() > 0.2


@pytest.mark.parametrize("split", ["train", "test"])
def test_shortcut_nuisance_agrees_with_the_label_as_promised(split):
  n = 600
  short = sa.load(split, num_examples=n, image_size=S, seed=5, rule="shortcut").arrays
  lin = sa.load(split, num_examples=n, image_size=S, seed=5).arrays
  target, nuisance = rules.SHORTCUT
  k, t = IDX(nuisance), len(NAMES) + sa.TARGET_NAMES.index(target)
  agree = np.mean(short["labels"][:, k] == short["labels"][:, t])
  assert abs(agree - rules.SHORTCUT_AGREEMENT) < 4 * math.sqrt(0.09 / n), agree
  assert abs(np.mean(lin["labels"][:, k] == lin["labels"][:, t]) - 0.5) < 0.1
  # The nuisance weighs 0: labels, the other concepts and gt_contrib are the linear rule's.
  others = [j for j in range(lin["labels"].shape[1]) if j != k]
  np.testing.assert_array_equal(short["labels"][:, others], lin["labels"][:, others])
  np.testing.assert_array_equal(short["gt_contrib"][:, :, k], 0.0)


def _region(sc, k):
  """Pixels concept k may change: its object's cell, or its pattern not under an object."""
  if k < N_OBJ:
    cell, size = int(sc["cell"][k]), S // sa.GRID
    box = np.zeros((S, S), bool)
    r, c = divmod(cell, sa.GRID)
    box[r * size:(r + 1) * size, c * size:(c + 1) * size] = True
    return box
  return sa.attribute_pattern(sc, NAMES[k], S)


@pytest.mark.parametrize("rule", ["context", "redundant", "shortcut"])
def test_counterfactuals_change_only_the_toggled_concept(rule):
  n = 6
  d = sa.make_dataset(n, image_size=S, seed=SEED, rule=rule)
  scenes = _scenes(rule, n)
  for name in ("red_circle", "blue_square", "blue_triangle", "border", "horizontal_stripes",
               "dark_corner", "bright_background"):
    k = IDX(name)
    cf = sa.render_toggled(SEED, np.arange(n), k, image_size=S, rule=rule)
    for i, sc in enumerate(scenes):
      changed = np.abs(cf[i] - d["image"][i]).max(-1) > 0
      assert changed.any(), (rule, name, i)
      assert not (changed & ~_region(sc, k)).any(), (rule, name, i)
      flipped = sc["attrs"].copy()
      flipped[k] = ~flipped[k]  # the partner / the nuisance stay as drawn
      np.testing.assert_allclose(cf[i], sa.render_scene(sc, flipped, S) * 2 - 1, atol=1e-6)


def test_cache_file_names_hold_the_rule(tmp_path):
  a = sa.load("train", num_examples=4, image_size=S, seed=1, cache_dir=str(tmp_path),
              rule="redundant")
  b = sa.load("train", num_examples=4, image_size=S, seed=1, cache_dir=str(tmp_path))
  files = sorted(p.name for p in tmp_path.iterdir())
  assert len(files) == 2 and any("redundant" in f for f in files)
  again = sa.load("train", num_examples=4, image_size=S, seed=1, cache_dir=str(tmp_path),
                  rule="redundant")
  np.testing.assert_array_equal(again.arrays["labels"], a.arrays["labels"])
  assert len(b) == 4


def test_unknown_rule_is_refused_in_one_line():
  with pytest.raises(DataError, match="dataset.rule") as e:
    sa.make_dataset(2, image_size=S, rule="nonlinear")
  assert "\n" not in str(e.value)
  c = importlib.import_module("configs.synthetic").get_config("tiny")
  c.dataset.rule = "nonlinear"
  with pytest.raises(ConfigError, match="dataset.rule"):
    data.get_spec(c)
  p = importlib.import_module("configs.parts").get_config("tiny,tiny")
  p.dataset.rule = "context"
  with pytest.raises(ConfigError, match="only to synthetic_attributes"):
    data.get_spec(p)



# ---------------------------------------------------------------- no single α under `context`

def _shown(seed, n, rule):
  """What n images of ``rule`` show (concepts a [n,20], blue triangle in the top row [n]), their
  target_a labels and planted contributions [n,20] (as make_dataset, without rendering)."""
  scenes = [sa.scene(seed, i, image_size=S, rule=rule) for i in range(n)]
  a = np.stack([sc["attrs"] for sc in scenes]).astype(np.float32)
  upper = np.array([sc["cell"][IDX("blue_triangle")] // sa.GRID == 0 for sc in scenes], np.float32)
  gt = np.stack([rules.planted_terms(sc["attrs"], sc["cell"][:N_OBJ], rule) for sc in scenes])[:, 0]
  u = np.array([sc["label_u"][0] for sc in scenes])
  return a, upper, (u < rules.label_probability(gt.sum(1), 2.0)).astype(np.float32), gt


def _ls_vs_planted(rule):
  """A tiny performer (an MLP on what the image shows) trained on ``rule``'s target_a labels; Δ_k
  toggles concept k in its input, as the counterfactual rendering does in the image. Returns the
  paired interval of (planted − least squares) per-image interventional rank correlation."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import optax  # pylint: disable=import-outside-toplevel
  from xplain_jax import fidelity  # pylint: disable=import-outside-toplevel
  feats = lambda a, up: jnp.concatenate([2 * a - 1, (a[:, IDX("blue_triangle")] * up)[:, None]], 1)
  a, up, labels, _ = _shown(1, 1500, rule)
  k1, k2 = jax.random.split(jax.random.PRNGKey(0))
  params = {"w1": jax.random.normal(k1, (21, 16)) * 0.3, "b1": jnp.zeros(16),
            "w2": jax.random.normal(k2, (16,)) * 0.1, "b2": jnp.zeros(())}
  f = lambda p, x: jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
  opt = optax.adamw(1e-2, weight_decay=1e-3)
  x = feats(a, up)

  @jax.jit
  def step(p, state):
    g = jax.grad(lambda q: optax.sigmoid_binary_cross_entropy(f(q, x), labels).mean())(p)
    updates, state = opt.update(g, state, p)
    return optax.apply_updates(p, updates), state

  state = opt.init(params)
  for _ in range(200):
    params, state = step(params, state)
  alpha, _ = fidelity.least_squares_alpha(np.asarray(2 * a - 1), np.asarray(f(params, x)))
  ta, tup, _, gt = _shown(2, 200, rule)
  y = np.asarray(f(params, feats(ta, tup)))
  flip = lambda k: np.where(np.arange(len(NAMES)) == k, 1 - ta, ta)
  delta = np.stack([y - np.asarray(f(params, feats(flip(k), tup))) for k in range(len(NAMES))], 1)
  ls = np.asarray(fidelity.interventional_rank_correlation(alpha * (2 * ta - 1), delta))
  planted = np.asarray(fidelity.interventional_rank_correlation(gt, delta))
  return fidelity.paired_difference_interval(planted, ls, num_resamples=1000)


@pytest.mark.slow
def test_least_squares_is_measurably_less_faithful_than_the_planted_rule_under_context():
  context, linear = _ls_vs_planted("context"), _ls_vs_planted("linear")
  # One α for every image cannot follow red_circle's sign flip: the planted per-image
  # contributions rank the performer's effects measurably better, and by far more than under
  # the linear rule (where the gap is the performer's own nonlinearity).
  assert context["low"] > 0, context
  assert context["low"] > linear["high"], (context, linear)


# ---------------------------------------------------------------- the study's table

T1 = math.tan(0.475 * math.pi)  # t_{0.975} with 1 degree of freedom (two seeds)
IRC = "interventional_rank_correlation"


def _study(arg):
  return importlib.import_module("configs.studies.regimes").get_config(arg)


def _metrics(b, p, ls, *, planted=None, dev=0.05, others=()):
  """A run's metrics.json: baseline and prior as given, further variants ``others`` at 0.4."""
  fid = {"baseline": {IRC: {"mean": b}, "relative_deviation": {"mean": dev}},
         "prior": {IRC: {"mean": p}, "relative_deviation": {"mean": dev + 0.01}}}
  fid.update({v: {IRC: {"mean": 0.4}, "relative_deviation": {"mean": 0.03}} for v in others})
  ref = {"prior_weights": {IRC: {"mean": 0.2}}}
  if ls is not None:
    ref["least_squares"] = {IRC: {"mean": ls}, "relative_deviation": {"mean": 0.02}}
  if planted is not None:
    ref["planted"] = {IRC: {"mean": planted}}
  return {"baseline": {"accuracy": 80.0}, "prior": {"accuracy": 79.0},
          **{v: {"accuracy": 78.0} for v in others},
          "performer": {"accuracy": 81.0}, "fidelity": fid, "fidelity_reference": ref}


def _build(c, root):
  runs, spec = commands.runs_of(c), commands.table_spec(c)
  results = aggregate.collect(runs, str(root), commands.required(c))
  numbers = aggregate.aggregate(
      runs, results, columns=spec["columns"], rows=spec["rows"], variants=spec["variants"],
      variant_metrics=spec["variant_metrics"], metrics=spec["metrics"], paired=spec["paired"],
      metric_pairs=spec["metric_pairs"], average_column=spec["average_column"])
  study = dict(name=c.name, base=c.base, table=spec, sharing=[], aggregate=numbers,
               runs=[dict(name=r.name, status="missing" if results[r.name] is None else
                          "complete") for r in runs])
  return numbers, render.markdown(study, [])


def test_regimes_table_on_fabricated_runs(tmp_path):
  c = _study("tiny")
  fake = {  # (rule, seed) -> (baseline, prior, least squares or None: the peer absent, planted)
      ("linear", 0): (0.50, 0.60, 0.20, 0.7), ("linear", 1): (0.52, 0.47, 0.21, 0.7),
      ("context", 0): (0.30, 0.35, 0.10, None), ("context", 1): (0.31, 0.36, None, None)}
  others = [v for v in commands.table_spec(c)["variants"] if v not in ("baseline", "prior")]
  for run in commands.runs_of(c):
    b, p, ls, planted = fake[(run.point["dataset.rule"], run.point["seed"])]
    (tmp_path / run.name).mkdir()
    (tmp_path / run.name / "metrics.json").write_text(
        json.dumps(_metrics(b, p, ls, planted=planted, others=others)))
  numbers, md = _build(c, tmp_path)
  assert numbers["columns"] == ["linear", "context"]
  cell = {(x["metric"], x["column"]): x for x in numbers["cells"]}
  pair = {(x["a"], x["b"], x["column"]): x for x in numbers["paired"]}
  ls = f"fidelity_reference.least_squares.{IRC}.mean"
  prior, base = f"fidelity.prior.{IRC}.mean", f"fidelity.baseline.{IRC}.mean"
  # Peer cells: mean ± t·sd/√n over seeds (hand computed).
  x = np.array([0.20, 0.21])
  assert cell[(ls, "linear")]["mean"] == pytest.approx(0.205)
  assert cell[(ls, "linear")]["half_width"] == pytest.approx(T1 * x.std(ddof=1) / math.sqrt(2))
  # An absent peer: the context cell has one run, the planted row none at all.
  assert cell[(ls, "context")]["n"] == 1 and cell[(ls, "context")]["mean"] == 0.10
  assert cell[(f"fidelity_reference.planted.{IRC}.mean", "context")]["n"] == 0
  # Paired: explainer − least squares and prior − baseline, per run then over seeds.
  d = np.array([0.60 - 0.20, 0.47 - 0.21])
  got = pair[(prior, ls, "linear")]
  assert got["mean"] == pytest.approx(d.mean())
  assert got["half_width"] == pytest.approx(T1 * d.std(ddof=1) / math.sqrt(2))
  assert pair[(prior, base, "context")]["mean"] == pytest.approx(0.05)
  assert pair[(prior, ls, "context")]["n"] == 1
  # Rendered: named rows, "–" for absent peers, and the verdict where an interval includes 0.
  lines = {l.split(" | ")[0].lstrip("| "): l for l in md.splitlines() if l.startswith("| ")}
  title = lambda path: render.metric_title(path, c.table.labels)
  assert title(ls) == "rank corr. with Δ · least squares (one α)"
  assert render.pair_title(title(prior), title(ls)) == (
      "rank corr. with Δ · explainer, prior − least squares (one α)")
  row = lines[title(f"fidelity_reference.planted.{IRC}.mean")]
  assert row.split(" | ")[1].startswith("0.700") and row.endswith("| – |")  # linear | context
  # linear, prior − baseline: +0.10 and −0.05 -> interval includes 0; context: +0.05 twice ->
  # no interval (sd 0); baseline − least squares on linear: 0.30, 0.31 -> excludes 0.
  assert render.NO_DIFFERENCE in lines[render.pair_title(title(prior), title(base))].split(" | ")[1]
  assert render.NO_DIFFERENCE not in lines[render.pair_title(title(base), title(ls))]
  assert "+0.305" in lines[render.pair_title(title(base), title(ls))]


def test_regimes_table_for_the_parts_case_pairs_gradient_x_input():
  t = _study("parts").table
  assert t.columns == ""
  gxi = f"fidelity_reference.gradient_x_input.{IRC}.mean"
  assert gxi in t.metrics.split(",")
  assert f"fidelity.prior.{IRC}.mean:{gxi}" in t.metric_pairs.split(",")
  # gradient × input predicts no y: it has no relative deviation row or pair.
  assert "gradient_x_input.relative_deviation" not in t.metrics + t.metric_pairs


@pytest.mark.parametrize("arg, n_runs, base", [
    ("", 20, "configs/synthetic.py"), ("full", 20, "configs/synthetic.py"),
    ("tiny", 4, "configs/synthetic.py:tiny"), ("parts", 5, "configs/parts.py"),
    ("parts_tiny", 2, "configs/parts.py:tiny,tiny")])
def test_study_variants(arg, n_runs, base):
  c = _study(arg)
  runs = commands.runs_of(c)
  assert len(runs) == n_runs and c.base == base
  assert {r.config for r in runs} == {base}
  if arg == "full":
    # The default job's sizes: only the grid's fields, the variants and their weight.
    assert all(set(r.overrides) - {"explainer.variants", "explainer.faithful_weight"}
               == {"seed", "dataset.seed", "dataset.rule"} for r in runs)
  assert all(r.overrides["explainer.faithful_weight"] == 1.0 for r in runs)
  if arg == "":
    assert runs[0].overrides["evals.sanity.enabled"] is False
  assert "fidelity" in commands.required(c)
  with pytest.raises(ValueError, match="regimes.py"):
    _study("huge")


# ---------------------------------------------------------------- the tiny study end to end

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHRINK = ["dataset.num_train=64", "dataset.num_test=16", "performer.batch_size=16",
          "explainer.batch_size=16", "evals.explainer.batch_size=16", "checkpoint_every_steps=2",
          "evals.fidelity.num_resamples=50", "stages=performer,explainer,evaluate"]


@pytest.mark.slow
def test_tiny_regimes_study_runs_end_to_end(tmp_path):
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  # The paper's two variants only (the further ones are the explainer tests' business): every
  # run still trains, scores and tabulates its explainers beside the peers.
  cmd = [sys.executable, "launch/study.py", "--config=configs/studies/regimes.py:tiny",
         f"--workdir={tmp_path}", "--config.table.variants=baseline,prior",
         *[f"--set={s}" for s in SHRINK + ["explainer.variants=baseline,prior"]]]
  out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
  assert out.returncode == 0, out.stderr[-2000:]
  study = json.loads((tmp_path / "study.json").read_text())
  agg = study["aggregate"]
  assert agg["columns"] == ["linear", "context"] and agg["missing"] == []
  cell = {(x["metric"], x["column"]): x for x in agg["cells"]}
  for column in ("linear", "context"):
    for who in ("fidelity.baseline", "fidelity.prior", "fidelity_reference.least_squares",
                "fidelity_reference.planted"):
      assert cell[(f"{who}.{IRC}.mean", column)]["n"] == 2, (who, column)
    cache = sorted(os.listdir(tmp_path / f"seed=0__task={column}" / "data"))
    assert cache == [f"synthetic_attributes_v2_{column}_{split}_{n}_64_0.npz"
                     for split, n in (("test", 16), ("train", 64))]
  pairs = {(p["a"], p["b"], p["column"]) for p in agg["paired"]}
  assert (f"fidelity.prior.{IRC}.mean", f"fidelity_reference.least_squares.{IRC}.mean",
          "context") in pairs
  assert "rank corr. with Δ · least squares (one α)" in (tmp_path / "study.md").read_text()


def test_more_explainer_variants_get_trained_and_tabulated(monkeypatch):
  module = importlib.import_module("configs.studies.regimes")
  monkeypatch.setattr(module, "VARIANTS", ("baseline", "prior", "ls_start"))
  c = module.get_config("")
  run = commands.runs_of(c)[0]
  assert run.overrides["explainer.variants"] == "baseline,prior,ls_start"
  assert run.overrides["explainer.width"] == 8  # the CPU-sized fields stay
  assert f"fidelity.ls_start.{IRC}.mean" in c.table.metrics.split(",")
  assert "ls_start" in commands.required(c)
