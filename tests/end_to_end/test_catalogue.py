"""Every bad input of ``tests/end_to_end/catalogue_cases.py`` ends in one clear line and damages
nothing.

Each command-line case runs ``launch/run.py`` as a subprocess and checks: the exit status; that
the last line of stderr is one ``error: ...`` line holding the case's words; that stderr holds
no traceback; and that every file that was in the workdir before the run is still there,
byte for byte (a file the case names as repaired must be back to its undamaged content). The
in-process cases check the ``ValueError`` (or ``XplainError``) message of the data layer, the
functional API and the result files. A case marked ``skip`` waits for wiring outside this area.
Subprocesses run two at a time and share a JAX compilation cache.
"""

import concurrent.futures
import errno
import glob
import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from subprocesses import subprocess_env

from catalogue_cases import CASES, TINY

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# A small config for the runs that compute: 32 training images, 2 performer steps.
PREPARED_CONFIG = [
    TINY, "--config.dataset.num_train=32", "--config.dataset.num_test=16",
    "--config.performer.batch_size=16", "--config.explainer.batch_size=16",
    "--config.evals.explainer.batch_size=16", "--config.performer.num_epochs=1",
    "--config.checkpoint_every_steps=1", "--config.log_every_steps=1",
]
CLI_CASES = [c for c in CASES if c["kind"] == "cli"]
RUN_CASES = [c for c in CLI_CASES if not c.get("skip")]
API_IDS = [c["id"] for c in CASES if c["kind"] == "api"]
NEEDS_PREPARED = {c["id"] for c in CLI_CASES if any("{prepared}" in a for a in c["argv"])}


def run_cli(argv, env=None, timeout=300) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, os.path.join(ROOT, "launch", "run.py")] + list(argv),
                        cwd=ROOT, env=subprocess_env(env), capture_output=True, text=True,
                        timeout=timeout)


def file_hashes(path: str) -> dict:
  """relative path -> sha256 of every file under ``path`` (or of ``path`` itself)."""
  if os.path.isfile(path):
    files = [path]
  else:
    files = [p for p in glob.glob(os.path.join(path, "**", "*"), recursive=True)
             if os.path.isfile(p)]
  return {os.path.relpath(p, path) if p != path else ".":
          hashlib.sha256(open(p, "rb").read()).hexdigest() for p in files}


def damage(workdir: str, what: str) -> None:
  """Breaks the prepared workdir as a case asks."""
  if what == "all_checkpoints":  # truncate the largest file of every checkpoint
    for step_dir in glob.glob(os.path.join(workdir, "performer", "ckpt", "*")):
      files = [p for p in glob.glob(os.path.join(step_dir, "**", "*"), recursive=True)
               if os.path.isfile(p)]
      with open(max(files, key=os.path.getsize), "r+b") as f:
        f.truncate(7)
  elif what == "metrics_json":
    with open(os.path.join(workdir, "metrics.json"), "w") as f:
      f.write('{"performer": {"accuracy": 5')  # cut short
  elif what == "config_json_truncated":
    path = os.path.join(workdir, "config.json")
    with open(path, "r+b") as f:
      f.truncate(os.path.getsize(path) // 2)
  elif what == "config_json_replaced":
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write("# my own notes on this run, not JSON\nbeta = 0.2\n")
  elif what == "config_json_deleted":
    os.remove(os.path.join(workdir, "config.json"))
  elif what == "performer_checkpoints_deleted":
    shutil.rmtree(os.path.join(workdir, "performer", "ckpt"))
  elif what == "eval_npz":
    for p in glob.glob(os.path.join(workdir, "eval", "*.npz")):
      with open(p, "r+b") as f:
        f.truncate(100)
  elif what == "data_cache":
    for p in glob.glob(os.path.join(workdir, "data", "*train*.npz")):
      with open(p, "r+b") as f:
        f.seek(os.path.getsize(p) // 2)
        f.write(b"\0garbage\0" * 64)
  else:
    raise ValueError(f"unknown damage {what!r}")


def prepare(root: str) -> str:
  """A workdir whose performer stage has finished (2 steps, checkpoints 1 and 2)."""
  workdir = os.path.join(root, "prepared")
  out = run_cli(PREPARED_CONFIG + [f"--workdir={workdir}", "--config.stages=performer"])
  assert out.returncode == 0, out.stderr[-3000:]
  return workdir


def run_case(case: dict, root: str, prepared: str | None) -> dict:
  """Sets up the case's folders, runs it, and returns what the test checks."""
  base = os.path.join(root, case["id"])
  os.makedirs(base)
  paths = {"workdir": os.path.join(base, "workdir"), "empty": os.path.join(base, "empty"),
           "file": os.path.join(base, "afile"), "prepared": os.path.join(base, "prepared")}
  os.makedirs(paths["workdir"])
  os.makedirs(paths["empty"])
  with open(os.path.join(paths["workdir"], "notes.txt"), "w") as f:
    f.write("a file of the user's that no run may touch\n")
  with open(paths["file"], "w") as f:
    f.write("a regular file\n")
  if "config_file" in case:
    paths["config_file"] = os.path.join(base, case.get("config_name", "config_case.py"))
    with open(paths["config_file"], "w") as f:
      f.write(case["config_file"])
  with socket.socket() as sock:  # a port nobody listens on (for the multi-host case)
    sock.bind(("localhost", 0))
    paths["port"] = str(sock.getsockname()[1])
  originals = {}
  if prepared is not None:
    shutil.copytree(prepared, paths["prepared"])
    originals = file_hashes(paths["prepared"])
    if case.get("damage"):
      damage(paths["prepared"], case["damage"])
  argv = []
  for a in case["argv"]:
    argv += PREPARED_CONFIG if a == "{prepared_config}" else [a.format(**paths)]
  watched = [paths["workdir"], paths["file"], paths["prepared"], paths["empty"]]
  lock = None
  if case.get("hold_lock"):
    from xplain_jax.run import workdir as workdir_lib
    lock = workdir_lib.lock(paths["workdir"])
  before = {p: file_hashes(p) for p in watched if os.path.exists(p)}
  try:
    out = run_cli(argv, env=case.get("env"))
  finally:
    if lock is not None:
      lock.close()
  after = {p: file_hashes(p) if os.path.exists(p) else {} for p in before}
  return dict(out=out, before=before, after=after, originals=originals, paths=paths)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
  """Runs every command-line case, two at a time; the prepared workdir is made first."""
  root = str(tmp_path_factory.mktemp("catalogue"))
  out = {}
  with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
    prepared = pool.submit(prepare, root)
    futures = {c["id"]: pool.submit(run_case, c, root, None)
               for c in RUN_CASES if c["id"] not in NEEDS_PREPARED}
    workdir = prepared.result()
    futures.update({c["id"]: pool.submit(run_case, c, root, workdir)
                    for c in RUN_CASES if c["id"] in NEEDS_PREPARED})
    for k, f in futures.items():
      out[k] = f.result()
  return out


def test_catalogue_is_big_and_unique():
  ids = [c["id"] for c in CASES]
  assert len(ids) == len(set(ids))
  assert len(CLI_CASES) >= 25
  assert set(API_IDS) == set(API_CASES)


@pytest.mark.slow
@pytest.mark.parametrize("case", CLI_CASES, ids=[c["id"] for c in CLI_CASES])
def test_cli_case(case, results):
  if case.get("skip"):
    pytest.skip(case["skip"])
  r = results[case["id"]]
  out = r["out"]
  stderr = out.stderr
  lines = [ln for ln in stderr.splitlines() if ln.strip()]
  expected = case["exit"] if isinstance(case["exit"], tuple) else (case["exit"],)
  assert out.returncode in expected, (out.returncode, stderr[-2000:])
  assert "Traceback" not in stderr, stderr[stderr.index("Traceback") - 300:][:1500]
  if case["exit"] == 0:
    assert not any(ln.startswith("error:") for ln in lines), stderr[-2000:]
    text = stderr.lower()
  else:
    assert lines, "nothing on stderr"
    last = lines[-1]
    assert last.startswith("error: "), lines[-3:]
    assert sum(ln.startswith("error:") for ln in lines) == 1, lines
    assert len(last) < 700, last  # one readable line
    text = last.lower()
  for word in case["words"]:
    assert word.lower() in text, (word, text)
  # Nothing that was there before the run is damaged (repaired files are back to the original).
  repaired = set(case.get("repaired", ()))
  for path, before in r["before"].items():
    after = r["after"][path]
    for rel, digest in before.items():
      if os.path.basename(rel) in ("run.lock", "command.json"):  # the latest run's command
        continue
      assert rel in after, f"{rel} disappeared from {path}"
      want = r["originals"][rel] if rel in repaired else digest
      assert after[rel] == want, f"{rel} in {path} was changed"
    if case["exit"] == 2:  # a config or usage problem is found before anything is written
      assert set(after) <= set(before), (path, sorted(set(after) - set(before)))


@pytest.mark.slow
def test_nan_stop_keeps_last_good_checkpoint(results):
  """The NaN case names the stage and step, and only checkpoints before that step exist."""
  r = results["loss_blows_up"]
  last = r["out"].stderr.strip().splitlines()[-1]
  bad = int(re.search(r"step (\d+):", last).group(1))
  kept = int(re.search(r"last good checkpoint \(step (\d+)\)", last).group(1))
  ckpt = os.path.join(r["paths"]["workdir"], "performer", "ckpt")
  steps = sorted(int(d) for d in os.listdir(ckpt) if d.isdigit())
  assert kept < bad and steps and steps[-1] == kept, (steps, last)


# --- in-process cases -------------------------------------------------------------------------


def _images_wrong_shape(tmp_path):
  from xplain_jax import data
  src = data.ArraySource({"image": np.zeros((8, 16, 16), np.float32)})
  data.Loader(src, 4, shuffle=False).batch(0)


def _images_wrong_dtype(tmp_path):
  from xplain_jax import data
  src = data.ArraySource({"image": np.zeros((8, 16, 16, 3), np.uint8)})
  data.Loader(src, 4, shuffle=False).batch(0)


def _images_nan(tmp_path):
  from xplain_jax import data
  images = np.ones((8, 16, 16, 3), np.float32)
  images[3, 2, 2, 1] = np.nan
  images[5, 0, 0, 0] = np.inf
  data.Loader(data.ArraySource({"image": images}), 8, shuffle=False).batch(0)


def _concepts_shape_mismatch(tmp_path):
  from xplain_jax.core import explain
  explain.explainer_output(np.zeros((4, 3), np.float32), np.zeros((4, 5), np.float32), 0.0)


def _nan_metric_not_written(tmp_path):
  from xplain_jax.infra import checkpoint
  path = os.path.join(tmp_path, "metrics.json")
  checkpoint.write_json_atomic(path, {"prior": {"entropy": 1.0}})
  try:
    checkpoint.write_json_atomic(path, {"prior": {"entropy": float("nan")}})
  finally:
    assert checkpoint.read_json(path) == {"prior": {"entropy": 1.0}}  # the previous file kept


def _damaged_feature_cache(tmp_path):
  import jax.numpy as jnp
  from xplain_jax import data
  from xplain_jax.infra import parallel
  from xplain_jax.data import feature_cache
  from xplain_jax.train import features
  rng = np.random.default_rng(0)
  src = data.ArraySource({"image": rng.normal(size=(10, 4, 4, 3)).astype(np.float32),
                          "labels": np.zeros((10, 1), np.float32)})
  featurize = lambda v, x: {"feat": x * v, "y": jnp.sum(x, (1, 2, 3)), "y_i": jnp.sum(x, (1, 2)),
                            "w": jnp.mean(x, (1, 2))}
  mesh = parallel.make_mesh(1)
  kw = dict(directory=str(tmp_path / "features"), batch_size=4, mesh=mesh, shard_size=4)
  first = features.featurize_split(featurize, jnp.float32(2.0), src, **kw).arrays
  shard = tmp_path / "features" / "shard-00001.npz"
  shard.write_bytes(shard.read_bytes()[:40])  # truncated
  assert feature_cache.load_cache(kw["directory"]) is None  # never trusted
  again = features.featurize_split(featurize, jnp.float32(2.0), src, **kw).arrays
  for k in first:
    np.testing.assert_array_equal(again[k], first[k])


def _damaged_result_npz(tmp_path):
  from xplain_jax.infra import checkpoint
  path = os.path.join(tmp_path, "metrics_arrays.npz")
  checkpoint.save_npz_atomic(path, alpha=np.ones((4, 3), np.float32))
  with open(path, "r+b") as f:
    f.truncate(60)
  checkpoint.load_npz(path)


def _disk_full_result_file(tmp_path):
  from xplain_jax.infra import checkpoint
  from xplain_jax import utils
  path = os.path.join(tmp_path, "metrics.json")
  checkpoint.write_json_atomic(path, {"ok": 1})

  def full(f):
    f.write("{")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
  try:
    utils.write_atomic(path, full, binary=False)
  finally:
    assert os.listdir(tmp_path) == ["metrics.json"]  # no temporary file left
    assert checkpoint.read_json(path) == {"ok": 1}  # the previous file kept


def _disk_full_data_cache(tmp_path):
  from unittest import mock
  from xplain_jax.data import synthetic_attributes
  with mock.patch("numpy.savez", side_effect=OSError(errno.ENOSPC, "No space left on device")):
    try:
      synthetic_attributes.load("test", num_examples=2, image_size=32, cache_dir=str(tmp_path))
    finally:
      assert os.listdir(tmp_path) == []  # no temporary file left


def _damaged_eval_npz(tmp_path):
  from xplain_jax import report
  os.makedirs(tmp_path / "eval")
  (tmp_path / "metrics.json").write_text('{"prior": {"entropy": 1.0}}')
  (tmp_path / "eval" / "meta.json").write_text('{"variants": ["prior"]}')
  (tmp_path / "eval" / "prior.npz").write_bytes(b"PK\x03\x04 truncated")
  report.write_report(str(tmp_path))


def _disk_full_checkpoint(tmp_path):
  import jax.numpy as jnp
  from xplain_jax.infra import checkpoint
  ckpt = checkpoint.Checkpointer(str(tmp_path / "ckpt"))
  ckpt.save(1, {"w": jnp.ones(3)})

  def full(*args, **kwargs):  # what orbax (TensorStore) raises on a full disk
    raise ValueError("RESOURCE_EXHAUSTED: Error writing local file: No space left on device")
  ckpt._manager.save = full  # pylint: disable=protected-access
  try:
    ckpt.save(2, {"w": jnp.ones(3)})
  finally:
    assert ckpt.steps() == [1]  # the previous checkpoint kept, nothing half-made


API_CASES = {
    "disk_full_checkpoint": _disk_full_checkpoint,
    "damaged_eval_npz": _damaged_eval_npz,
    "images_wrong_shape": _images_wrong_shape,
    "images_wrong_dtype": _images_wrong_dtype,
    "images_nan": _images_nan,
    "concepts_shape_mismatch": _concepts_shape_mismatch,
    "nan_metric_not_written": _nan_metric_not_written,
    "damaged_feature_cache": _damaged_feature_cache,
    "damaged_result_npz": _damaged_result_npz,
    "disk_full_result_file": _disk_full_result_file,
    "disk_full_data_cache": _disk_full_data_cache,
}


# Known gaps in files outside this test's reach, each with the fix it needs.
KNOWN_GAPS: dict = {c["id"]: pytest.mark.skip(reason=c["skip"])
                    for c in CASES if c["kind"] == "api" and c.get("skip")}


@pytest.mark.parametrize("case_id", [pytest.param(i, marks=KNOWN_GAPS.get(i, ())) for i in API_IDS])
def test_api_case(case_id, tmp_path):
  from xplain_jax.errors import XplainError
  case = next(c for c in CASES if c["id"] == case_id)
  if not case["words"]:  # a case that recovers by itself
    API_CASES[case_id](tmp_path)
    return
  with pytest.raises((ValueError, XplainError)) as info:
    API_CASES[case_id](tmp_path)
  msg = str(info.value)
  assert "\n" not in msg, msg
  for word in case["words"]:
    assert word.lower() in msg.lower(), (word, msg)


ELSEWHERE = [c for c in CASES if c["kind"] == "elsewhere"]


@pytest.mark.parametrize("case", ELSEWHERE, ids=[c["id"] for c in ELSEWHERE])
def test_elsewhere_cases_name_an_existing_test(case):
  """A case run by another test file names a test that exists (the catalogue never points at
  nothing); that test asserts the exit status, the one error line and the undisturbed rerun."""
  path, _, name = case["tested_in"].partition("::")
  with open(os.path.join(ROOT, path), encoding="utf-8") as f:
    assert re.search(rf"^def {re.escape(name)}\(", f.read(), re.M), case["tested_in"]
  assert case["exit"] is not None and case["fix"]
