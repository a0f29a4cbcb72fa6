"""TensorBoard event files beside the JSON-lines logs, read back with tbparse."""

import json
import os

import pytest

from xplain_jax.train import logger

tbparse = pytest.importorskip("tbparse")
# tbparse sorts with pandas' deprecated inplace keyword; nothing of this project.
pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword")


def _log(workdir, stage, steps, start=0, scale=1.0):
  writer = logger.make_writer(str(workdir), stage, total_steps=max(steps), start_step=start)
  for s in steps:
    writer.write_scalars(s, {"loss": scale / s, "lambda": 0.2 / s ** 0.5, "epoch": s / 2})
  writer.close()


def _scalars(logdir):
  """{(run, tag): {step: value}} of every event file under logdir."""
  frame = tbparse.SummaryReader(str(logdir), extra_columns={"dir_name"}).scalars
  out = {}
  for run, tag, step, value in zip(frame["dir_name"], frame["tag"], frame["step"], frame["value"]):
    assert step not in out.setdefault((run, tag), {}), (run, tag, step)  # no step twice
    out[(run, tag)][int(step)] = float(value)
  return out


def _jsonl(workdir, stage):
  with open(os.path.join(workdir, "logs", f"{stage}.jsonl"), encoding="utf-8") as f:
    return [json.loads(line) for line in f]


def test_every_stage_of_a_run_and_of_a_study_reads_back(tmp_path):
  runs = {"beta=0.2": tmp_path / "beta=0.2", "beta=1": tmp_path / "beta=1"}
  for i, workdir in enumerate(runs.values()):
    _log(workdir, "performer", [1, 2, 3], scale=1.0 + i)
    _log(workdir, "explainer_prior", [2, 4], scale=3.0 + i)
  for i, (name, workdir) in enumerate(runs.items()):
    # `tensorboard --logdir` over one run: one TensorBoard run per stage, beside the JSONL.
    got = _scalars(workdir)
    assert {run for run, _ in got} == {os.path.join("logs", "performer"),
                                       os.path.join("logs", "explainer_prior")}
    for stage in ("performer", "explainer_prior"):
      for rec in _jsonl(workdir, stage):
        for tag in ("loss", "lambda", "epoch"):
          assert got[(os.path.join("logs", stage), tag)][rec["step"]] == pytest.approx(
              rec[tag], rel=1e-6)
    assert got[(os.path.join("logs", "performer"), "loss")] == pytest.approx(
        {1: 1.0 + i, 2: (1.0 + i) / 2, 3: (1.0 + i) / 3}, rel=1e-6)
  # Over a study's folder: every run's every stage.
  assert {run for run, _ in _scalars(tmp_path)} == {
      os.path.join(name, "logs", stage) for name in runs
      for stage in ("performer", "explainer_prior")}


def test_resumed_stage_holds_what_its_jsonl_holds(tmp_path):
  _log(tmp_path, "explainer_prior", [1, 2, 3, 4])
  _log(tmp_path, "explainer_prior", [3, 4, 5], start=2, scale=10.0)  # resumed at step 2
  got = _scalars(tmp_path)[(os.path.join("logs", "explainer_prior"), "loss")]
  assert got == pytest.approx({1: 1.0, 2: 0.5, 3: 10 / 3, 4: 2.5, 5: 2.0}, rel=1e-6)
  assert got == pytest.approx({r["step"]: r["loss"] for r in _jsonl(tmp_path, "explainer_prior")},
                              rel=1e-6)


def test_a_stage_restored_whole_leaves_its_event_files_alone(tmp_path):
  _log(tmp_path, "performer", [1, 2, 3])
  folder = tmp_path / "logs" / "performer"
  before = {p.name: p.read_bytes() for p in folder.iterdir()}
  writer = logger.make_writer(str(tmp_path), "performer", total_steps=3, start_step=3)
  writer.close()  # nothing left to run: no step written
  assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
  assert _scalars(tmp_path / "logs")[("performer", "loss")] == pytest.approx(
      {1: 1.0, 2: 0.5, 3: 1 / 3})
