"""Kill anywhere, lose nothing; NaN stops a run cleanly; degenerate inputs give defined results.

``test_kill_anywhere_resume_equals_uninterrupted`` runs ``launch/run.py`` on a shrunk tiny
synthetic config once uninterrupted, then in a second workdir kills it with SIGKILL four times
(seeded random moments inside the performer, feature-cache, explainer and evaluation stages),
damages the newest performer and explainer checkpoints, and reruns until it finishes. The
final checkpoints, evaluation arrays, metric logs and ``metrics.json`` must equal the
uninterrupted run's exactly (tolerance 0: same seeds, same compiled code, same CPU).
"""

import glob
import json
import os
import random
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from subprocesses import subprocess_env

from configs import synthetic
from xplain_jax import data, evaluators
from xplain_jax.infra import parallel
from xplain_jax.train import features as features_lib
from xplain_jax.train import explainer as explainer_lib
from xplain_jax.train import loop
from xplain_jax.train import performer as performer_lib
from xplain_jax.train.logger import NonFiniteError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# 64 training images in batches of 16: 8 performer steps and 8 steps per explainer variant,
# a checkpoint every 2 steps.
ARGS = [
    "--config=configs/synthetic.py:tiny", "--config.dataset.num_train=64",
    "--config.dataset.num_test=32", "--config.performer.batch_size=16",
    "--config.explainer.batch_size=16", "--config.evals.explainer.batch_size=16",
    "--config.checkpoint_every_steps=2", "--config.log_every_steps=1",
    "--config.stages=performer,explainer,evaluate",
]
TOTAL_STEPS = 8
SEED = 20190927


_env = subprocess_env


def _start(workdir: str, log_path: str) -> subprocess.Popen:
  log = open(log_path, "a")
  return subprocess.Popen([sys.executable, os.path.join(ROOT, "launch", "run.py"),
                           f"--workdir={workdir}"] + ARGS, cwd=ROOT, env=_env(), stdout=log,
                          stderr=subprocess.STDOUT)


def _logged_steps(workdir: str, stage: str) -> int:
  path = os.path.join(workdir, "logs", f"{stage}.jsonl")
  if not os.path.exists(path):
    return 0
  with open(path) as f:
    return len([ln for ln in f if ln.strip().endswith("}")])


def _stage_now(workdir: str) -> str:
  """The stage a run is in, from the markers it has written."""
  for stage, marker in (("performer", "performer/done.json"),
                        ("features", "features/train/done.json"),
                        ("explainer", "explainer_prior/done.json"),
                        ("evaluate", "metrics.json")):
    if not os.path.exists(os.path.join(workdir, marker)):
      return stage
  return "finished"


def _untimed(obj):
  """A metrics.json object without its measured times (keys naming seconds)."""
  if isinstance(obj, dict):
    return {k: _untimed(v) for k, v in obj.items() if "seconds" not in k}
  return obj


def _kill_plan(rng: random.Random) -> list:
  """(stage, trigger, extra delay): kill ``delay`` seconds after ``trigger(workdir)`` holds."""
  k_perf = rng.randint(1, TOTAL_STEPS - 1)
  k_expl = rng.randint(1, 2 * TOTAL_STEPS - 1)  # over both variants
  expl = lambda w: (_logged_steps(w, "explainer_baseline")
                    + _logged_steps(w, "explainer_prior")) >= k_expl
  return [
      ("performer", lambda w: _logged_steps(w, "performer") >= k_perf, rng.uniform(0, 0.3)),
      ("features", lambda w: os.path.isdir(os.path.join(w, "features", "train")),
       rng.uniform(0, 0.3)),
      ("explainer", expl, rng.uniform(0, 0.3)),
      ("evaluate", lambda w: os.path.isdir(os.path.join(w, "features", "test")),
       rng.uniform(0, 0.3)),
  ]


def _run_and_kill(workdir, log_path, trigger, delay, timeout=240) -> tuple[bool, str]:
  """Starts the run, SIGKILLs it ``delay`` s after ``trigger``; (killed?, stage at the kill)."""
  proc = _start(workdir, log_path)
  t0 = time.time()
  while proc.poll() is None and not trigger(workdir):
    assert time.time() - t0 < timeout, "the run neither reached the kill point nor ended"
    time.sleep(0.01)
  time.sleep(delay)
  if proc.poll() is not None:
    return False, "finished"
  stage = _stage_now(workdir)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  return proc.returncode == -signal.SIGKILL, stage


def _damage_newest(workdir: str, stage: str, how: str) -> int:
  """Damages the largest file of the newest checkpoint of ``stage``; returns that step."""
  ckpt = os.path.join(workdir, stage, "ckpt")
  step = max(int(d) for d in os.listdir(ckpt) if d.isdigit())
  files = [p for p in glob.glob(os.path.join(ckpt, str(step), "**", "*"), recursive=True)
           if os.path.isfile(p)]
  big = max(files, key=os.path.getsize)
  size = os.path.getsize(big)
  with open(big, "r+b") as f:
    if how == "truncate":
      f.truncate(size // 2)
    else:  # overwrite part of it in place: orbax itself reads this without complaint
      f.seek(size // 3)
      f.write(np.random.default_rng(0).bytes(size // 3))
  return step


def _final_state(workdir: str, stage: str) -> dict:
  import orbax.checkpoint as ocp
  ckpt = os.path.join(workdir, stage, "ckpt")
  step = max(int(d) for d in os.listdir(ckpt) if d.isdigit())
  tree = ocp.StandardCheckpointer().restore(os.path.join(ckpt, str(step), "state"))
  return {jax.tree_util.keystr(p): np.asarray(x)
          for p, x in jax.tree_util.tree_leaves_with_path(tree)}


def _results(workdir: str) -> dict:
  out = {}
  for stage in ("performer", "explainer_baseline", "explainer_prior"):
    out.update({f"{stage}{k}": v for k, v in _final_state(workdir, stage).items()})
  for path in sorted(glob.glob(os.path.join(workdir, "eval", "*.npz"))):
    with np.load(path) as f:
      out.update({f"{os.path.basename(path)}:{k}": f[k] for k in f.files})
  return out


def _json_lines(path: str) -> list:
  with open(path) as f:
    return [json.loads(ln) for ln in f if ln.strip()]


@pytest.mark.slow
def test_kill_anywhere_resume_equals_uninterrupted(tmp_path):
  ref, work = str(tmp_path / "uninterrupted"), str(tmp_path / "killed")
  log_path = str(tmp_path / "killed.log")
  proc = _start(ref, str(tmp_path / "uninterrupted.log"))
  assert proc.wait(timeout=400) == 0, open(tmp_path / "uninterrupted.log").read()[-3000:]

  landed = []
  for stage, trigger, delay in _kill_plan(random.Random(SEED)):
    killed, at = _run_and_kill(work, log_path, trigger, delay)
    landed.append((stage, killed, at))
  print("kills (aimed at, killed, stage at the kill):", landed)
  assert all(killed for _, killed, _ in landed), landed
  assert len({at for _, _, at in landed}) >= 3, landed  # the kills spread over the stages

  # A damaged newest checkpoint is reported, moved aside, and the previous one used.
  perf_step = _damage_newest(work, "performer", "overwrite")
  expl_step = _damage_newest(work, "explainer_prior", "truncate")
  with open(log_path) as f:
    before = len(f.read())
  for _ in range(3):
    proc = _start(work, log_path)
    if proc.wait(timeout=400) == 0:
      break
  assert proc.returncode == 0, open(log_path).read()[-3000:]
  with open(log_path) as f:
    last_runs = f.read()[before:]
  for stage, step in (("performer", perf_step), ("explainer_prior", expl_step)):
    assert f"checkpoint {step} in {os.path.join(work, stage, 'ckpt')} is unreadable" in last_runs
    assert os.path.isdir(os.path.join(work, stage, f"corrupt-ckpt-{step}"))
  assert "Traceback" not in open(log_path).read()

  # Identical to the uninterrupted run (tolerance 0).
  a, b = _results(ref), _results(work)
  assert sorted(a) == sorted(b)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  with open(os.path.join(ref, "metrics.json")) as f, open(os.path.join(work, "metrics.json")) as g:
    assert _untimed(json.load(f)) == _untimed(json.load(g))
  for name in ("performer", "explainer_baseline", "explainer_prior"):
    log_a = _json_lines(os.path.join(ref, "logs", f"{name}.jsonl"))
    log_b = _json_lines(os.path.join(work, "logs", f"{name}.jsonl"))
    assert [r["step"] for r in log_a] == list(range(1, TOTAL_STEPS + 1))
    assert log_a == log_b, name


# --- numerical guards ---------------------------------------------------------------------------


def _toy_run(tmp_path, step_fn, *, total=8, checkpoint_every=2, log_every=4):
  """loop.fit on a 3-parameter state with ``step_fn(state, step) -> (state, metrics)``."""
  mesh = parallel.make_mesh(1)
  state = parallel.replicate({"step": jnp.zeros((), jnp.int32), "params": jnp.ones(3)}, mesh)
  fn = loop.jit_step(lambda s, b, r: step_fn(s, s["step"]), mesh)
  loader = data.Loader(data.ArraySource({"x": np.zeros((16, 1), np.float32)}), 2, seed=0)
  return loop.fit(stage="toy", workdir=str(tmp_path), state=state, step_fn=fn, loader=loader,
                  mesh=mesh, total_steps=total, rng=jax.random.PRNGKey(0),
                  checkpoint_every=checkpoint_every, log_every=log_every)


def _ckpt_steps(tmp_path, stage="toy"):
  return sorted(int(d) for d in os.listdir(tmp_path / stage / "ckpt") if d.isdigit())


def test_nan_loss_names_stage_step_quantity_and_keeps_last_checkpoint(tmp_path):
  def step_fn(s, k):  # the 5th step's loss is NaN (k counts from 0)
    loss = jnp.where(k == 4, jnp.nan, 1.0)
    return {"step": s["step"] + 1, "params": s["params"] * 0.5}, {"loss": loss, "lr": 0.1}
  with pytest.raises(NonFiniteError) as info:
    _toy_run(tmp_path, step_fn)
  msg = str(info.value)
  assert "\n" not in msg
  for words in ("stage 'toy'", "step 5:", "loss is nan", "last good checkpoint (step 4)"):
    assert words in msg, msg
  assert _ckpt_steps(tmp_path) == [2, 4]
  logged = [r["step"] for r in _json_lines(tmp_path / "logs" / "toy.jsonl")]
  assert logged == [2, 4]  # the window holding the NaN was not logged


def test_non_finite_state_is_never_saved(tmp_path):
  def step_fn(s, k):  # metrics stay finite but the 3rd update makes a parameter Inf
    params = jnp.where(k == 2, s["params"].at[1].set(jnp.inf), s["params"])
    return {"step": s["step"] + 1, "params": params}, {"loss": jnp.float32(1.0)}
  with pytest.raises(NonFiniteError) as info:
    _toy_run(tmp_path, step_fn, log_every=1)
  msg = str(info.value)
  assert "step 4:" in msg and "train state ['params']" in msg and "(step 2)" in msg, msg
  assert _ckpt_steps(tmp_path) == [2]


def _tiny_performer_setup(tmp_path, images, check):
  config = synthetic.get_config("tiny")
  config.dataset.image_size = images.shape[1]
  spec = data.get_spec(config)
  src = data.ArraySource({"image": images,
                          "labels": np.zeros((len(images), len(spec.output_names)), np.float32)})
  loader = data.Loader(src, 8, seed=0, check=check)
  return dict(config=config, spec=spec, workdir=str(tmp_path), mesh=parallel.make_mesh(1),
              train_loader=loader, rng=jax.random.PRNGKey(0))


@pytest.mark.slow
def test_nan_images_are_stopped_by_the_loader_or_the_loss_guard(tmp_path):
  images = np.random.default_rng(0).normal(size=(16, 32, 32, 3)).astype(np.float32)
  images[9, 4, 4, 0] = np.nan  # record 9
  with pytest.raises(ValueError, match=r"images of records \[9\] contain NaN"):
    performer_lib.train_performer(**_tiny_performer_setup(tmp_path / "a", images, True))
  # Without the loader's check, the NaN reaches the loss and the guard stops the stage.
  with pytest.raises(NonFiniteError) as info:
    performer_lib.train_performer(**_tiny_performer_setup(tmp_path / "b", images, False))
  msg = str(info.value)
  step = int(msg.split("step ")[1].split(":")[0])
  order = [data.Loader(data.ArraySource({"x": np.zeros(16)}), 8, seed=0).indices(s)[0]
           for s in range(2)]
  assert step == 1 + next(s for s in range(2) if 9 in order[s]), msg  # the batch holding it
  assert "stage 'performer'" in msg and "is nan" in msg, msg
  saved = _ckpt_steps(tmp_path / "b", "performer")
  assert all(s < step for s in saved), (saved, msg)


# --- degenerate inputs ---------------------------------------------------------------------------


def _degenerate_features(n=64, concepts=5, seed=0):
  """Constant performer output y = 1.5 and all-zero priors w."""
  rng = np.random.default_rng(seed)
  return {"feat": rng.normal(size=(n, 4, 4, 8)).astype(np.float32),
          "y": np.full((n,), 1.5, np.float32),
          "y_i": rng.normal(size=(n, concepts)).astype(np.float32),
          "w": np.zeros((n, concepts), np.float32)}


@pytest.mark.slow
def test_zero_priors_and_constant_outputs_give_defined_metrics(tmp_path):
  feats = _degenerate_features()
  config = synthetic.get_config("tiny")
  config.explainer.batch_size, config.explainer.num_epochs = 16, 1
  config.checkpoint_every_steps, config.log_every_steps = 4, 1
  mesh = parallel.make_mesh(1)
  loader = data.Loader(data.ArraySource(feats), 16, seed=0)
  explainers = {}
  for variant in ("baseline", "prior"):  # the same rng: only λ differs
    explainers[variant] = explainer_lib.train_explainer(
        config, variant, workdir=str(tmp_path), mesh=mesh, loader=loader,
        feat_shape=feats["feat"].shape, num_concepts=5, rng=jax.random.PRNGKey(3))
  logs = _json_lines(tmp_path / "logs" / "explainer_prior.jsonl")
  assert all(np.isfinite(v) for r in logs for v in r.values())
  # ‖w‖ = 0 on every image: the prior loss is 0 (losses.prior_loss), so λ·L_prior adds nothing
  # and the prior variant trains exactly like the baseline.
  assert all(r["prior_loss"] == 0.0 and r["lambda"] > 0 for r in logs)
  base_params = jax.tree.leaves(explainers["baseline"].variables)
  for a, b in zip(base_params, jax.tree.leaves(explainers["prior"].variables)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

  spec = data.Spec("shared_feature", ("t",) + tuple(f"c{i}" for i in range(5)), 0,
                   tuple(range(1, 6)), tuple(f"c{i}" for i in range(5)))
  test = dict(feats, labels=(np.arange(64) % 2).astype(np.float32)[:, None],
              gt_contrib=np.ones((64, 5), np.float32))  # constant ground truth
  alpha, bias = evaluators.predict_alphas(explainers, test["feat"], batch_size=16)
  ctx = evaluators.EvalContext(config=config, spec=spec, workdir=str(tmp_path), mesh=None,
                               test=test, alpha=alpha, bias=bias, explainers=explainers,
                               concept_names=spec.concept_names,
                               images=np.zeros((2, 8, 8, 3), np.float32))
  result = evaluators.write_outputs(str(tmp_path), evaluators.run_evaluators(("explainer",), ctx))
  with open(tmp_path / "metrics.json") as f:
    on_disk = json.load(f)
  assert on_disk["prior"] == pytest.approx(result["prior"])
  y_hat = np.load(tmp_path / "eval" / "prior.npz")["y_hat"]
  # max y = min y: the range is taken as 1, so the deviation is the mean absolute error.
  assert on_disk["prior"]["relative_deviation"] == pytest.approx(np.mean(np.abs(1.5 - y_hat)),
                                                                 rel=1e-6)
  # A constant ground truth has no ranking: the rank correlation is defined as 0.
  assert on_disk["prior"]["gt_rank_correlation"] == 0.0
  # Every prediction y > 0 is "positive": the performer is right on the positive half.
  assert on_disk["performer"]["accuracy"] == 50.0
  for variant in ("baseline", "prior"):
    assert all(np.isfinite(v) for v in on_disk[variant].values())


def test_empty_evaluation_set_is_a_clear_error(tmp_path):
  empty = data.ArraySource({"image": np.zeros((0, 8, 8, 3), np.float32)})
  featurize = lambda v, x: {"y": jnp.sum(x, (1, 2, 3))}
  with pytest.raises(ValueError, match="the dataset is empty"):
    features_lib.featurize_split(featurize, {}, empty, directory=str(tmp_path / "f"),
                              batch_size=4, mesh=parallel.make_mesh(1))
  assert not os.path.exists(tmp_path / "f" / "done.json")
