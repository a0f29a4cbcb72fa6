"""xplain_jax.study.paired and ``launch/study.py --pair``: runs that differ only in one axis
value, paired by the rest."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats as sps

from xplain_jax.errors import DataError
from xplain_jax.study import paired

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIELD = "explainer.consistency_target"


def _pair_cli(workdir, a, b, metrics, field=FIELD) -> subprocess.CompletedProcess:
  """``launch/study.py --pair`` on ``workdir``, as a user runs it."""
  return subprocess.run([sys.executable, os.path.join(ROOT, "launch", "study.py"),
                         f"--workdir={workdir}", f"--pair={field}", f"--a={a}", f"--b={b}",
                         f"--metrics={metrics}"], cwd=ROOT, capture_output=True, text=True,
                        timeout=120)


def _one_error_line(out: subprocess.CompletedProcess) -> str:
  """The command's single ``error:`` line, after checking it exited 2 and printed no table."""
  err = out.stderr.strip()
  assert out.returncode == 2, (out.returncode, err)
  assert err.startswith("error: ") and "\n" not in err, err
  assert not out.stdout.strip(), out.stdout
  return err


def _refused(call) -> str:
  """The one-line message of the ``DataError`` ``call`` raises."""
  with pytest.raises(DataError) as e:
    call()
  msg = str(e.value)
  assert "\n" not in msg, msg
  return msg


def _study(tmp_path, table):
  """A study workdir: ``table`` = {(seed, target): irc or None (unfinished)}."""
  runs = []
  for (seed, target), irc in table.items():
    name = f"seed={seed}__task={target}"
    runs.append({"name": name, "point": {"seed": seed, "dataset.seed": seed, FIELD: target}})
    os.makedirs(tmp_path / name)
    if irc is not None:
      with open(tmp_path / name / "metrics.json", "w") as f:
        json.dump({"fidelity": {"faithful": {"irc": {"mean": irc}}}}, f)
  with open(tmp_path / "study.json", "w") as f:
    json.dump({"runs": runs}, f)
  return str(tmp_path)


def test_pairs_by_seed_and_matches_a_hand_paired_t_test(tmp_path):
  rendered = {0: 0.40, 1: 0.31, 2: 0.52, 3: 0.47}
  gxi = {0: 0.35, 1: 0.30, 2: 0.41, 3: 0.44}
  table = {(s, "rendered"): v for s, v in rendered.items()}
  table.update({(s, "gradient_x_input"): v for s, v in gxi.items()})
  table[(4, "rendered")] = 0.9          # its partner never finished: left out
  table[(4, "gradient_x_input")] = None
  table[(5, "rendered")] = 0.9          # no partner at all: left out
  out = paired.compare(_study(tmp_path, table), FIELD, "rendered", "gradient_x_input",
                       ["fidelity.faithful.irc.mean"])
  assert sorted(out["pairs"]) == [[f"seed={s}__task=rendered", f"seed={s}__task=gradient_x_input"]
                                  for s in range(4)]
  s = out["fidelity.faithful.irc.mean"]
  d = np.array([rendered[k] - gxi[k] for k in range(4)])
  assert s["n"] == 4 and s["mean"] == pytest.approx(d.mean())
  half = sps.t.ppf(0.975, 3) * d.std(ddof=1) / np.sqrt(4)
  assert s["half_width"] == pytest.approx(half)
  assert s["p_value"] == pytest.approx(sps.ttest_rel(list(rendered.values()),
                                                     list(gxi.values())).pvalue)
  text = paired.render(out, "rendered", "gradient_x_input")
  assert f"{d.mean():+.3f} ± {half:.3f}" in text and "(n=4)" in text


def test_unreadable_or_unpaired_studies_are_refused_in_one_line(tmp_path):
  msg = _refused(lambda: paired.compare(str(tmp_path), FIELD, "x", "y", ["m"]))
  assert "study.json cannot be read" in msg
  workdir = _study(tmp_path / "s", {(0, "rendered"): 0.1, (0, "gradient_x_input"): None})
  with pytest.raises(DataError, match="no finished pair"):
    paired.compare(workdir, FIELD, "rendered", "gradient_x_input", ["m"])
  with pytest.raises(DataError, match="no run of the study varies 'dataset.rule'"):
    paired.compare(workdir, "dataset.rule", "a", "b", ["m"])


def test_a_numeric_axis_pairs_every_finished_run_including_the_last(tmp_path):
  """Mutations: ``pairs`` drops the last matched pair, or stops reading the axis values as the
  command line names them (here numbers: ``--a=1`` is the study's 1.0). Every pair finished."""
  runs = []
  for seed in range(3):
    for value, m in ((1.0, 0.8 + 0.01 * seed), (0.25, 0.6 + 0.01 * seed)):
      name = f"seed={seed}__beta={value}"
      runs.append({"name": name, "point": {"seed": seed, "explainer.beta": value}})
      os.makedirs(tmp_path / name)
      with open(tmp_path / name / "metrics.json", "w") as f:
        json.dump({"m": m}, f)
  with open(tmp_path / "study.json", "w") as f:
    json.dump({"runs": runs}, f)
  out = paired.compare(str(tmp_path), "explainer.beta", "1", "0.25", ["m"])
  assert out["pairs"] == [[f"seed={s}__beta=1.0", f"seed={s}__beta=0.25"] for s in range(3)]
  s = out["m"]
  assert s["n"] == 3 and s["mean"] == pytest.approx(0.2) and s["missing"] == []


def test_pairs_reads_the_command_lines_numbers_as_the_studys():
  """Mutation: ``pairs`` stops reading the axis values as numbers (``--a=1`` names the study's
  1.0). The pairing itself is checked, with no study folder, so the mutation shows as a wrong
  list of pairs, not as the later "no finished pair" refusal."""
  runs = [{"name": f"s{seed}_b{value}", "point": {"seed": seed, "explainer.beta": value}}
          for seed in range(2) for value in (1.0, 0.25, 3)]
  assert paired.pairs(runs, "explainer.beta", "1", "0.25") == [("s0_b1.0", "s0_b0.25"),
                                                              ("s1_b1.0", "s1_b0.25")]
  assert paired.pairs(runs, "explainer.beta", "3.0", "1e0") == [("s0_b3", "s0_b1.0"),
                                                               ("s1_b3", "s1_b1.0")]
  assert paired.pairs(runs, "explainer.beta", "one", "0.25") == []
  flags = [{"name": f"r{v}", "point": {"seed": 0, "explainer.positive": v}}
           for v in (True, False)]
  assert paired.pairs(flags, "explainer.positive", "True", "False") == [("rTrue", "rFalse")]
  assert paired.pairs(flags, "explainer.positive", "1", "0") == []  # a flag is not a number


def test_nan_pairs_are_left_out_and_counted(tmp_path):
  """Mutation: ``stats.paired`` keeps a pair whose second value is NaN (the mean and p-value
  become NaN). The pair is dropped, the count of pairs used says so, and the table names it."""
  table = {(s, "rendered"): 0.5 + 0.1 * s for s in range(4)}
  table.update({(s, "gradient_x_input"): 0.4 + 0.05 * s for s in range(4)})
  table[(3, "gradient_x_input")] = float("nan")
  out = paired.compare(_study(tmp_path, table), FIELD, "rendered", "gradient_x_input",
                       ["fidelity.faithful.irc.mean"])
  s = out["fidelity.faithful.irc.mean"]
  assert s["n"] == 3 and np.isfinite(s["mean"]) and np.isfinite(s["p_value"])
  assert s["missing"] == [["seed=3__task=rendered", "seed=3__task=gradient_x_input"]]
  assert "(n=3)" in paired.render(out, "rendered", "gradient_x_input")
  assert "[1 missing]" in paired.render(out, "rendered", "gradient_x_input")


def test_paired_drops_nan_on_either_side_and_gives_no_p_value_for_equal_differences():
  """Mutations: ``stats.paired`` keeps NaN pairs; its p-value guard for zero spread goes
  (equal differences then give p = 0.0 or NaN instead of none)."""
  from xplain_jax.study import stats
  s = stats.paired([1.0, 2.0, float("nan"), 4.0, 5.0], [0.5, 1.5, 3.0, float("nan"), 4.0])
  assert s["n"] == 3 and s["mean"] == pytest.approx((0.5 + 0.5 + 1.0) / 3)
  assert s["p_value"] is not None and np.isfinite(s["p_value"])
  equal = stats.paired([1.0, 2.0, 3.0], [0.5, 1.5, 2.5])
  assert equal["n"] == 3 and equal["mean"] == pytest.approx(0.5) and equal["p_value"] is None
  assert stats.paired([1.0], [0.0])["p_value"] is None


@pytest.mark.parametrize("metrics, words", [
    ("fidelity.faithful.irc.meen", ["'fidelity.faithful.irc.meen'", "did you mean",
                                    "fidelity.faithful.irc.mean"]),
    ("", ["names no metric"]),
    ("zzz", ["'zzz'", "in no finished run"]),
])
def test_a_misspelt_or_empty_metric_is_refused_in_one_line(tmp_path, metrics, words):
  workdir = _study(tmp_path, {(0, "rendered"): 0.1, (0, "gradient_x_input"): 0.2})
  msg = _refused(lambda: paired.table(workdir, FIELD, "rendered", "gradient_x_input", metrics))
  for w in words:
    assert w in msg, (w, msg)


def test_a_equal_to_b_is_refused(tmp_path):
  workdir = _study(tmp_path, {(0, "rendered"): 0.1, (0, "gradient_x_input"): 0.2})
  msg = _refused(lambda: paired.table(workdir, FIELD, "rendered", "rendered", "m"))
  assert "--a and --b are both 'rendered'" in msg


@pytest.mark.parametrize("study", [
    {"runs": {"a": {"name": "a", "point": {}}}},
    {"runs": [{"name": "a"}]},
    {"runs": [{"point": {"x": 1}}]},
    {"runs": ["a"]},
    [1, 2],
    {"runs": [{"name": "a", "point": [1]}]},
])
def test_an_oddly_shaped_study_json_is_refused_in_one_line(tmp_path, study):
  with open(tmp_path / "study.json", "w") as f:
    json.dump(study, f)
  msg = _refused(lambda: paired.table(str(tmp_path), FIELD, "x", "y", "m"))
  assert "study.json" in msg and "--aggregate-only" in msg


@pytest.mark.parametrize("study", [
    {"runs": {"a": {"name": "a", "point": {}}}},
    {"runs": [{"name": "a"}]},
    {"runs": [{"point": {"x": 1}}]},
    {"runs": ["a"]},
    {"runs": [{"name": "a", "point": [1]}]},
    {"runs": [{"name": 3, "point": {}}]},
])
def test_read_study_refuses_an_odd_shape_itself(tmp_path, study):
  """Mutation: ``read_study``'s shape check goes. The pairing would then fail on the odd
  entries with a KeyError or AttributeError and a traceback; ``read_study`` itself refuses
  them, in one line that says how to rewrite the file."""
  with open(tmp_path / "study.json", "w") as f:
    json.dump(study, f)
  msg = _refused(lambda: paired.read_study(str(tmp_path)))
  assert "is not a study launch/study.py wrote" in msg and "--aggregate-only" in msg


def test_study_py_pair_prints_the_table_and_runs_nothing(tmp_path):
  """``launch/study.py --pair`` prints ``paired.table`` of the finished study, exit 0, and
  writes nothing into the study's folder."""
  table = {(s, "rendered"): 0.5 + 0.1 * s for s in range(3)}
  table.update({(s, "gradient_x_input"): 0.4 + 0.03 * s for s in range(3)})
  workdir = _study(tmp_path, table)
  before = sorted(os.listdir(workdir))
  out = _pair_cli(workdir, "rendered", "gradient_x_input", "fidelity.faithful.irc.mean")
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.strip() == paired.table(workdir, FIELD, "rendered", "gradient_x_input",
                                            "fidelity.faithful.irc.mean")
  assert "(n=3)" in out.stdout and sorted(os.listdir(workdir)) == before


@pytest.mark.parametrize("case", ["misspelt_metric", "a_is_b", "odd_study_json"])
def test_study_py_pair_refusals_are_one_line_and_exit_2(tmp_path, case):
  """The catalogue's refusals of ``launch/study.py --pair``: exit status 2, one ``error:`` line
  with the words docs/troubleshooting.md quotes, no table."""
  workdir = _study(tmp_path, {(0, "rendered"): 0.1, (0, "gradient_x_input"): 0.2})
  if case == "misspelt_metric":
    err = _one_error_line(_pair_cli(workdir, "rendered", "gradient_x_input",
                                    "fidelity.faithful.irc.meen"))
    assert "in no finished run's metrics.json" in err and "did you mean" in err
  elif case == "a_is_b":
    err = _one_error_line(_pair_cli(workdir, "rendered", "rendered", "m"))
    assert "--a and --b are both 'rendered'" in err
  else:
    with open(tmp_path / "study.json", "w") as f:
      json.dump({"runs": ["a"]}, f)
    err = _one_error_line(_pair_cli(workdir, "x", "y", "m"))
    assert "study.json" in err and "--aggregate-only" in err
