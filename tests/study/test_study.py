"""Studies: grid expansion, performer sharing, aggregation against hand computations, SLURM
text, and a tiny study end to end (killed mid-way and resumed; parallel workers).

Expected statistics are derived independently of scipy: Student-t quantiles in closed form for
1 and 2 degrees of freedom (t_{0.975,1} = tan(0.475π), t_{0.975,2} = 0.95/√(2·0.975·0.025)) and
the df = 1 two-sided p-value 1 − (2/π)·arctan|t|.
"""

import json
import math
import os
import re
import signal
import subprocess
import sys
import time

import ml_collections
import numpy as np
import pytest

from subprocesses import subprocess_env

from xplain_jax.spec import stages
from xplain_jax.run import workdir as workdir_lib
from xplain_jax.study import aggregate, commands, grid, runner, slurm, stats

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
T1 = math.tan(0.475 * math.pi)                      # t_{0.975} with 1 degree of freedom
T2 = 0.95 / math.sqrt(2 * 0.975 * 0.025)            # t_{0.975} with 2 degrees of freedom
# The tiny β study shrunk further for the tests: 64 training images, batches of 16.
SETS = ["dataset.num_train=64", "dataset.num_test=32", "performer.batch_size=16",
        "explainer.batch_size=16", "evals.explainer.batch_size=16", "checkpoint_every_steps=2",
        "stages=performer,explainer,evaluate"]
TINY = "configs/studies/beta_sweep.py:tiny"


def _ci(values, t):
  x = np.asarray(values, np.float64)
  half = t * x.std(ddof=1) / math.sqrt(len(x))
  return x.mean(), half


# ---------------------------------------------------------------- statistics

def test_summarize_matches_closed_form_t_quantiles():
  for values, t in (([1.0, 4.0], T1), ([2.0, 3.0, 7.0], T2)):
    s = stats.summarize(values)
    mean, half = _ci(values, t)
    assert s["n"] == len(values) and s["mean"] == pytest.approx(mean)
    assert s["half_width"] == pytest.approx(half, rel=1e-6)
    assert s["ci_low"] == pytest.approx(mean - half) and s["ci_high"] == pytest.approx(mean + half)


def test_summarize_drops_missing_and_handles_small_n():
  assert stats.summarize([None, float("nan")])["mean"] is None
  one = stats.summarize([5.0, None])
  assert one["n"] == 1 and one["mean"] == 5.0 and one["half_width"] is None


def test_paired_difference_and_p_value_df1():
  a, b = [3.0, 5.5], [1.0, 2.0]  # differences 2.0, 3.5
  p = stats.paired(a, b)
  d = np.array([2.0, 3.5])
  t_stat = d.mean() / (d.std(ddof=1) / math.sqrt(2))
  assert p["mean"] == pytest.approx(2.75)
  assert p["half_width"] == pytest.approx(T1 * d.std(ddof=1) / math.sqrt(2), rel=1e-6)
  assert p["p_value"] == pytest.approx(1 - 2 / math.pi * math.atan(abs(t_stat)), rel=1e-6)
  assert stats.paired([1.0, None, 2.0], [0.0, 1.0, None])["n"] == 1
  with pytest.raises(ValueError, match="different lengths"):
    stats.paired([1.0], [1.0, 2.0])


def test_numeric_leaves_keeps_numbers_only():
  flat = stats.numeric_leaves({"a": {"b": 1, "c": "x", "d": True}, "e": 2.5,
                               "fidelity": {"prior": {"interventional_rank_correlation": 0.3}}})
  assert flat == {"a.b": 1.0, "e": 2.5, "fidelity.prior.interventional_rank_correlation": 0.3}


# ---------------------------------------------------------------- grid and sharing

def _axes(**axes):
  c = ml_collections.ConfigDict()
  for k, v in axes.items():
    c[k] = v
  return c


def test_grid_product_names_templates_and_sharing_rule():
  runs = grid.make_runs("configs/x.py:cat={dataset.category}",
                        _axes(beta=dict(explainer=dict(beta=(0.0, 1.0))),
                              cat=dict(dataset=dict(category=("a", "b"))),
                              seed=dict(seed=(0, 1), dataset=dict(seed=(5, 6)))),
                        fixed=dict(evals=dict(explainer=dict(batch_size=8))))
  assert len(runs) == 8 and len({r.name for r in runs}) == 8
  r = runs[0]
  assert r.name == "beta=0.0__cat=a__seed=5"  # an axis is named by its first field (key order)
  assert r.config == "configs/x.py:cat=a" and "dataset.category" not in r.overrides
  assert r.overrides == {"evals.explainer.batch_size": 8, "explainer.beta": 0.0,
                         "dataset.seed": 5, "seed": 0}
  groups = grid.share_groups(runs)
  assert len(groups) == 4  # β is explainer-side; category and seed are performer-side
  for lead, followers in groups.items():
    assert len(followers) == 1
  assert not grid.performer_side("explainer.beta") and not grid.performer_side("explainer.seed")
  for f in stages.FEATURIZER_FIELDS + ("seed", "dataset.seed", "performer.arch",
                                      stages.FEATURE_BATCH_FIELD):
    assert grid.performer_side(f), f
  # Fields that decide neither the performer nor its features: where the data lives, the
  # evaluators', the stages to run.
  for f in ("dataset.data_dir", "stages", "explainer.variants") + tuple(
      f"{b}.num_images" for b in stages.EVAL_BLOCKS):
    assert not grid.performer_side(f), f


def test_grid_rejects_bad_axes():
  with pytest.raises(ValueError, match="one length"):
    grid.expand_axes(_axes(a=dict(seed=(0, 1), dataset=dict(seed=(0,)))))
  with pytest.raises(ValueError, match="two study axes"):
    grid.expand_axes(_axes(a=dict(seed=(0,)), b=dict(seed=(1,))))
  with pytest.raises(ValueError, match="no axis sets"):
    grid.make_runs("c.py:{performer.arch}", _axes(a=dict(seed=(0,))))


def test_device_groups_split_devices_among_workers():
  assert runner.device_groups(["0", "1", "2", "3", "4"], 2) == ["0,1,2", "3,4"]
  assert runner.device_groups([], 3) == [None, None, None]
  with pytest.raises(ValueError, match="at most one worker per device"):
    runner.device_groups(["0"], 2)


def test_seed_run_hard_links_and_is_atomic(tmp_path):
  lead = tmp_path / "lead"
  (lead / "performer" / "ckpt").mkdir(parents=True)
  (lead / "performer" / "ckpt" / "w.bin").write_bytes(b"abc")
  (lead / "explainer_prior").mkdir()
  (tmp_path / "f.seeding").mkdir()  # left by a kill while seeding
  seeded = runner.seed_run(str(lead), str(tmp_path / "f"), leader="lead",
                           share=["performer", "features"])
  assert seeded == ["performer"] and not (tmp_path / "f.seeding").exists()
  assert not (tmp_path / "f" / "explainer_prior").exists()
  assert os.stat(lead / "performer/ckpt/w.bin").st_ino == os.stat(
      tmp_path / "f/performer/ckpt/w.bin").st_ino
  assert runner.shared_from(str(tmp_path / "f")) == "lead"
  assert runner.seed_run(str(lead), str(tmp_path / "f"), leader="lead", share=["performer"]) == []


def test_explainers_come_from_the_first_finished_run_that_differs_only_in_beta(tmp_path):
  runs = grid.make_runs("configs/synthetic.py", _axes(
      beta=dict(explainer=dict(beta=(0.0, 0.2))), seed=dict(explainer=dict(seed=(0, 1)))))
  by = {r.name: r for r in runs}
  also = (["explainer_baseline"], ["explainer.beta"])
  lead, other_seed = by["beta=0.0__seed=0"], by["beta=0.0__seed=1"]
  target = by["beta=0.2__seed=1"]
  assert runner.explainer_donor(target, [lead], also) is None  # the seeds differ
  assert runner.explainer_donor(target, [lead, other_seed], also) is other_seed
  assert runner.explainer_donor(target, [lead, other_seed], ([], ["explainer.beta"])) is None
  # Seeding takes the performer from the leader and the baseline from the donor.
  for name, sub in (("lead", "performer"), ("donor", "explainer_baseline")):
    (tmp_path / name / sub).mkdir(parents=True)
    (tmp_path / name / sub / "done.json").write_text(name)
  seeded = runner.seed_run(str(tmp_path / "lead"), str(tmp_path / "r"), leader="lead",
                           share=["performer"],
                           donor=(str(tmp_path / "donor"), "donor", ["explainer_baseline"]))
  assert seeded == ["performer", "explainer_baseline"]
  assert (tmp_path / "r/explainer_baseline/done.json").read_text() == "donor"
  record = json.loads((tmp_path / "r" / runner.SHARED_FROM).read_text())
  assert record == {"leader": "lead", "explainers_from": "donor", "folders": seeded}


# ---------------------------------------------------------------- aggregation on fabricated runs

def _record(run_dir, run, finished=True, **changed):
  """Writes the command.json that launch/run.py writes for ``run`` (``changed`` overrides)."""
  want = runner.expected_command(run)
  workdir_lib.record_command(str(run_dir), want["config"], dict(want["overrides"], **changed),
                             finished=finished)


def _fake_study() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.name, c.base, c.replicates, c.share, c.require = "fake", "configs/synthetic.py", "seed", "", ""
  c.fixed = ml_collections.ConfigDict()
  c.axes = _axes(beta=dict(explainer=dict(beta=(0.0, 1.0))), seed=dict(seed=(0, 1, 2)))
  c.table = ml_collections.ConfigDict(dict(
      columns="explainer.beta", rows="", variants="baseline,prior", variant_metrics="entropy",
      metrics="performer.accuracy", paired="prior-baseline", metric_pairs="", average_column=True,
      labels={}))
  return c


def test_aggregation_matches_hand_computation(tmp_path):
  c = _fake_study()
  runs = {r.name: r for r in commands.runs_of(c)}
  rng = np.random.default_rng(0)
  planted = {}
  for beta in (0.0, 1.0):
    for seed in (0, 1, 2):
      name = f"beta={beta}__seed={seed}"
      if (beta, seed) == (1.0, 2):
        continue  # a missing run
      base, prior = rng.normal(2.0, 0.1), rng.normal(2.3, 0.1)
      planted[name] = (base, prior)
      d = tmp_path / name
      d.mkdir()
      (d / "metrics.json").write_text(json.dumps({
          "baseline": {"entropy": base}, "prior": {"entropy": prior},
          "performer": {"accuracy": 80.0 + seed},
          "fidelity": {"prior": {"interventional_rank_correlation": 0.1 * seed}}}))
      _record(d, runs[name])
  (tmp_path / "beta=1.0__seed=2").mkdir()  # cut off: no metrics.json
  study = commands.write_outputs(c, str(tmp_path))
  agg = study["aggregate"]
  assert agg["columns"] == ["0.0", "1.0", "all"] and agg["missing"] == ["beta=1.0__seed=2"]
  cell = {(x["metric"], x["column"]): x for x in agg["cells"]}
  b0 = [planted[f"beta=0.0__seed={s}"][1] for s in range(3)]
  mean, half = _ci(b0, T2)
  assert cell[("prior.entropy", "0.0")]["mean"] == pytest.approx(mean)
  assert cell[("prior.entropy", "0.0")]["half_width"] == pytest.approx(half, rel=1e-6)
  b1 = [planted[f"beta=1.0__seed={s}"][1] for s in range(2)]
  mean, half = _ci(b1, T1)
  c1 = cell[("prior.entropy", "1.0")]
  assert (c1["n"], c1["missing"]) == (2, ["beta=1.0__seed=2"])
  assert c1["mean"] == pytest.approx(mean) and c1["half_width"] == pytest.approx(half, rel=1e-6)
  assert cell[("performer.accuracy", "all")]["mean"] == pytest.approx((80 + 81 + 82 + 80 + 81) / 5)
  pair = {x["column"]: x for x in agg["paired"]}["1.0"]
  d = np.array([planted[f"beta=1.0__seed={s}"][1] - planted[f"beta=1.0__seed={s}"][0]
                for s in range(2)])
  t_stat = d.mean() / (d.std(ddof=1) / math.sqrt(2))
  assert (pair["a"], pair["b"]) == ("prior.entropy", "baseline.entropy")
  assert pair["mean"] == pytest.approx(d.mean())
  assert pair["p_value"] == pytest.approx(1 - 2 / math.pi * math.atan(abs(t_stat)), rel=1e-6)
  leaf = agg["leaves"]["all"]["fidelity.prior.interventional_rank_correlation"]
  assert leaf["n"] == 5 and leaf["mean"] == pytest.approx((0 + .1 + .2 + 0 + .1) / 5)
  sweep = agg["sweeps"]["beta"]
  assert sweep["values"] == [0.0, 1.0] and sweep["series"]["prior.entropy"][1]["n"] == 2
  assert [r["status"] for r in study["runs"]].count("missing") == 1
  md = (tmp_path / "study.md").read_text()
  assert "[1 missing]" in md and "prior − baseline" in md
  assert (tmp_path / "figures" / "sweep_beta.png").stat().st_size > 0
  assert json.loads((tmp_path / "study.json").read_text())["aggregate"] == json.loads(
      json.dumps(agg))
  assert "<table>" in (tmp_path / "study.html").read_text()


# ---------------------------------------------------------------- SLURM text

def _emit(tmp_path, spec, *extra):
  out = subprocess.run(
      [sys.executable, "launch/study.py", f"--config={spec}", f"--workdir={tmp_path}/s",
       "--emit=slurm", *extra], cwd=ROOT, capture_output=True, text=True, check=True)
  return out.stdout


def _tasks(text):
  return re.findall(r"^  (\d+)\) (.*) ;;$", text, re.M)


def test_emitted_slurm_array_and_dependent_aggregation(tmp_path):
  spec = "configs/studies/synthetic_seeds.py:tiny"
  assert "2 grid points" in _emit(tmp_path, spec, "--set=stages=performer,explainer,evaluate")
  array = (tmp_path / "s" / "study_array.sbatch").read_text()
  assert re.search(r"^#SBATCH --array=0-1$", array, re.M)
  tasks = _tasks(array)
  assert [int(k) for k, _ in tasks] == [0, 1]
  for (k, cmd), r in zip(tasks, commands.runs_of(core_config(spec))):
    assert cmd.count("launch/run.py") == 1 and f"--workdir={tmp_path}/s/{r.name}" in cmd
    assert "--config.stages=performer,explainer,evaluate" in cmd and "--seed-run" not in cmd
  assert not (tmp_path / "s" / "study_followers.sbatch").exists()  # no run shares a performer
  agg = (tmp_path / "s" / "study_aggregate.sbatch").read_text()
  assert "launch/study.py" in agg and "--aggregate-only" in agg and f"--config={spec}" in agg
  submit = (tmp_path / "s" / "submit.sh").read_text()
  assert "ARRAY_ID=$(sbatch --parsable" in submit
  assert re.search(r"sbatch --dependency=afterany:\$ARRAY_ID \S*study_aggregate.sbatch", submit)
  assert not any((tmp_path / "s").glob("seed=*"))  # nothing was run


def test_emitted_slurm_runs_followers_after_their_performers(tmp_path):
  _emit(tmp_path, TINY)
  runs = commands.runs_of(core_config(TINY))
  groups = grid.share_groups(runs)
  followers = [f for fs in groups.values() for f in fs]
  first = _tasks((tmp_path / "s" / "study_array.sbatch").read_text())
  second_text = (tmp_path / "s" / "study_followers.sbatch").read_text()
  second = _tasks(second_text)
  assert re.search(rf"^#SBATCH --array=0-{len(followers) - 1}$", second_text, re.M)
  assert len(first) == len(groups) and len(second) == len(followers)
  for lead, (_, cmd) in zip(groups, first):
    assert cmd.count("launch/run.py") == 1 and f"/{lead} " in cmd + " "
  for name, (_, cmd) in zip(followers, second):
    assert cmd.count("launch/run.py") == 1 and f"--seed-run={name} && " in cmd
  submit = (tmp_path / "s" / "submit.sh").read_text()
  assert re.search(r"ARRAY_ID_2=\$\(sbatch --parsable --dependency=afterany:\$ARRAY_ID \S*"
                   r"study_followers.sbatch\)", submit)
  assert re.search(r"sbatch --dependency=afterany:\$ARRAY_ID:\$ARRAY_ID_2 \S*study_aggregate",
                   submit)


@pytest.mark.slow  # four launch/study.py subprocesses: 16 s
def test_seed_run_copies_a_finished_leader_only(tmp_path):
  runs = commands.runs_of(core_config(TINY))
  lead, followers = next(iter(grid.share_groups(runs).items()))
  cmd = [sys.executable, "launch/study.py", f"--config={TINY}", f"--workdir={tmp_path}",
         f"--seed-run={followers[0]}"]
  (tmp_path / lead / "performer").mkdir(parents=True)
  (tmp_path / lead / "performer" / "done.json").write_text("{}")
  out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
  assert "nothing to seed" in out.stdout and not (tmp_path / followers[0]).exists()
  (tmp_path / lead / "metrics.json").write_text(json.dumps({"baseline": {}, "prior": {}}))
  by_name = {r.name: r for r in runs}
  _record(tmp_path / lead, by_name[lead], finished=False)  # cut off in its report stage
  out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
  assert "nothing to seed" in out.stdout and not (tmp_path / followers[0]).exists()
  _record(tmp_path / lead, by_name[lead])
  out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
  assert "seeded performer" in out.stdout
  assert runner.shared_from(str(tmp_path / followers[0])) == lead
  bad = subprocess.run(cmd[:-1] + ["--seed-run=nope"], cwd=ROOT, capture_output=True, text=True)
  assert bad.returncode == 2 and bad.stderr.startswith("error: --seed-run='nope'")


def core_config(spec: str):
  from ml_collections import config_flags  # noqa: F401  (registers the loader)
  import importlib.util
  path, _, arg = spec.partition(":")
  s = importlib.util.spec_from_file_location("_study_cfg", os.path.join(ROOT, path))
  m = importlib.util.module_from_spec(s)
  s.loader.exec_module(m)
  return m.get_config(arg)


# ---------------------------------------------------------------- a tiny study end to end

_env = subprocess_env


def _study_cmd(workdir, *extra):
  return [sys.executable, "launch/study.py", f"--config={TINY}", f"--workdir={workdir}",
          *[f"--set={s}" for s in SETS], *extra]


def _performer_trained(run_dir, stage="performer") -> bool:
  """Whether the run logged training steps of ``stage`` (a restored stage logs none)."""
  path = os.path.join(run_dir, "logs", f"{stage}.jsonl")
  return os.path.exists(path) and os.path.getsize(path) > 0


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory):
  """The tiny study, SIGKILLed (with its runs) once its first run finished, then rerun."""
  w = str(tmp_path_factory.mktemp("study_a"))
  runs = commands.runs_of(core_config(TINY), SETS)
  first = os.path.join(w, runs[0].name, "metrics.json")
  proc = subprocess.Popen(_study_cmd(w), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                          stderr=subprocess.STDOUT, start_new_session=True)
  deadline = time.time() + 600
  while not os.path.exists(first) and proc.poll() is None and time.time() < deadline:
    time.sleep(0.2)
  time.sleep(3.0)  # let the next run get under way
  killed = proc.poll() is None
  os.killpg(proc.pid, signal.SIGKILL)  # the study and the run it started
  proc.wait()
  before = os.stat(first)
  rerun = subprocess.run(_study_cmd(w), cwd=ROOT, env=_env(), capture_output=True, text=True,
                         timeout=900)
  return dict(workdir=w, runs=runs, killed=killed, before=before, rerun=rerun)


@pytest.mark.slow
def test_tiny_study_resumes_after_kill_without_redoing_finished_runs(killed_and_resumed):
  k = killed_and_resumed
  assert k["killed"], "the study finished before it could be killed"
  assert k["rerun"].returncode == 0, k["rerun"].stdout + k["rerun"].stderr
  first = k["runs"][0]
  assert f"skip {first.name} (finished)" in k["rerun"].stdout
  after = os.stat(os.path.join(k["workdir"], first.name, "metrics.json"))
  assert (after.st_ino, after.st_mtime_ns) == (k["before"].st_ino, k["before"].st_mtime_ns)
  study = json.loads(open(os.path.join(k["workdir"], "study.json")).read())
  assert all(r["status"] == "complete" for r in study["runs"]) and not study["aggregate"]["missing"]


@pytest.mark.slow
def test_runs_that_share_a_performer_train_it_once(killed_and_resumed):
  k = killed_and_resumed
  study = json.loads(open(os.path.join(k["workdir"], "study.json")).read())
  groups = grid.share_groups(k["runs"])
  # 2 seeds × 2 β: the β share a performer (the seeds too where there is an explainer seed).
  assert len(groups) < len(k["runs"]) and all(len(f) >= 1 for f in groups.values())
  assert sorted(study["sharing"], key=lambda s: s["trained_in"]) == sorted(
      [dict(trained_in=lead, reused_by=f) for lead, f in groups.items()],
      key=lambda s: s["trained_in"])
  trained = [r.name for r in k["runs"] if _performer_trained(os.path.join(k["workdir"], r.name))]
  assert sorted(trained) == sorted(groups)  # only the leaders' logs have performer steps
  for lead, followers in groups.items():
    for f in followers:
      assert runner.shared_from(os.path.join(k["workdir"], f)) == lead
  # The baseline (λ ≡ 0) does not read β: a follower differing only in β from a run of its
  # group that ran before it (the leader, or an earlier follower) reuses that run's baseline.
  by_name = {r.name: r for r in k["runs"]}
  shared = 0
  for lead, followers in groups.items():
    for i, f in enumerate(followers):
      earlier = [by_name[lead]] + [by_name[x] for x in followers[:i]]
      same = any(runner.differs_only_in(e, by_name[f], ["explainer.beta"]) for e in earlier)
      assert _performer_trained(os.path.join(k["workdir"], f), "explainer_baseline") != same
      shared += same
  assert shared == 2  # 2 explainer seeds × 2 β: the β = 0.2 runs of both seeds


@pytest.mark.slow
def _untimed(study: dict) -> dict:
  """``study`` without its sharing record and the measured times (``*seconds*`` leaves)."""
  out = {k: v for k, v in study.items() if k != "sharing"}
  agg = dict(out["aggregate"])
  agg["leaves"] = {col: {leaf: v for leaf, v in leaves.items() if "seconds" not in leaf}
                   for col, leaves in agg["leaves"].items()}
  agg["cells"] = [c for c in agg["cells"] if "seconds" not in str(c.get("metric"))]
  out["aggregate"] = agg
  return out


@pytest.mark.slow
def test_parallel_unshared_study_gives_the_same_numbers(killed_and_resumed, tmp_path):
  """Two workers, every run training its own performer and baseline: sharing changes nothing."""
  no_share = ["--config.share=", "--config.share_explainers="]
  out = subprocess.run(_study_cmd(str(tmp_path), "--jobs=2", *no_share), cwd=ROOT, env=_env(),
                       capture_output=True, text=True, timeout=900)
  assert out.returncode == 0, out.stdout + out.stderr
  a = json.loads(open(os.path.join(killed_and_resumed["workdir"], "study.json")).read())
  b = json.loads(open(tmp_path / "study.json").read())
  assert b["sharing"] == [] and a["sharing"]
  assert _untimed(a) == _untimed(b)
  text = open(tmp_path / "study.json").read()
  again = subprocess.run(_study_cmd(str(tmp_path), "--aggregate-only", *no_share), cwd=ROOT,
                         env=_env(), capture_output=True, text=True, timeout=300)
  assert again.returncode == 0 and open(tmp_path / "study.json").read() == text


# ---------------------------------------------------------------- the runner on a stand-in run

FAKE_RUN = r'''
import json, os, sys
args = dict(a[2:].split("=", 1) for a in sys.argv[1:])
w = args["workdir"]
if args.get("config.seed") == "13":
  sys.exit(1)  # a run that fails
os.makedirs(os.path.join(w, "logs"), exist_ok=True)
if not os.path.exists(os.path.join(w, "performer", "done.json")):
  os.makedirs(os.path.join(w, "performer"), exist_ok=True)
  open(os.path.join(w, "performer", "done.json"), "w").write("{}")
  open(os.path.join(w, "logs", "performer.jsonl"), "w").write('{"step": 1}\n')
if not os.path.exists(os.path.join(w, "explainer_baseline", "done.json")):
  os.makedirs(os.path.join(w, "explainer_baseline"), exist_ok=True)
  open(os.path.join(w, "explainer_baseline", "done.json"), "w").write("{}")
  open(os.path.join(w, "logs", "explainer_baseline.jsonl"), "w").write('{"step": 1}\n')
beta = float(args["config.explainer.beta"])
json.dump({"visible": os.environ.get("CUDA_VISIBLE_DEVICES")},
          open(os.path.join(w, "env.json"), "w"))
json.dump({"baseline": {"entropy": 1.0}, "prior": {"entropy": 1.0 + beta}},
          open(os.path.join(w, "metrics.json"), "w"))
json.dump({"config": args["config"], "finished": True,
           "overrides": {k[7:]: v for k, v in args.items() if k.startswith("config.")}},
          open(os.path.join(w, "command.json"), "w"))
'''


@pytest.mark.slow
def test_runner_phases_sharing_failures_devices_and_skips(tmp_path):
  root = tmp_path / "repo"
  (root / "launch").mkdir(parents=True)
  (root / "launch" / "run.py").write_text(FAKE_RUN)
  runs = grid.make_runs("configs/synthetic.py", _axes(beta=dict(explainer=dict(beta=(0.0, 1.0))),
                                                      seed=dict(seed=(0, 13))))
  w = str(tmp_path / "study")
  lines = []
  status = runner.run_study(runs, w, variants=["baseline", "prior"], share=["performer"], jobs=2,
                            also_share=(["explainer_baseline"], ["explainer.beta"]),
                            devices=["0", "1", "2", "3"], repo_root=str(root), echo=lines.append)
  assert status == {"beta=0.0__seed=0": "ok", "beta=1.0__seed=0": "ok",
                    "beta=0.0__seed=13": "failed (rc 1)", "beta=1.0__seed=13": "failed (rc 1)"}
  assert runner.shared_from(os.path.join(w, "beta=1.0__seed=0")) == "beta=0.0__seed=0"
  assert not _performer_trained(os.path.join(w, "beta=1.0__seed=0"))
  assert _performer_trained(os.path.join(w, "beta=0.0__seed=0"))
  assert not os.path.exists(os.path.join(w, "beta=1.0__seed=0", "logs", "explainer_baseline.jsonl"))
  assert os.path.isdir(os.path.join(w, "beta=1.0__seed=0", "explainer_baseline"))
  assert runner.shared_from(os.path.join(w, "beta=1.0__seed=13")) is None  # its leader failed
  for name in ("beta=0.0__seed=0", "beta=1.0__seed=0"):
    visible = json.load(open(os.path.join(w, name, "env.json")))["visible"]
    assert visible in ("0,1", "2,3")
  assert os.path.getsize(os.path.join(w, "logs", "beta=0.0__seed=13.log")) > 0
  again = runner.run_study(runs, w, variants=["baseline", "prior"], share=["performer"],
                           repo_root=str(root), echo=lines.append)
  assert again["beta=0.0__seed=0"] == again["beta=1.0__seed=0"] == "finished"
  assert "[study] skip beta=1.0__seed=0 (finished)" in lines
