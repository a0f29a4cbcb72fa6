"""launch/paired_columns.py: runs that differ only in one axis value, paired by the rest."""

import importlib.util
import json
import os

import numpy as np
import pytest
from scipy import stats as sps

from xplain_jax.errors import DataError

_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "launch",
                     "paired_columns.py")
_spec = importlib.util.spec_from_file_location("paired_columns", _PATH)
paired_columns = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(paired_columns)

FIELD = "explainer.consistency_target"


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
  out = paired_columns.compare(_study(tmp_path, table), FIELD, "rendered", "gradient_x_input",
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
  text = paired_columns.render(out, "rendered", "gradient_x_input")
  assert f"{d.mean():+.3f} ± {half:.3f}" in text and "(n=4)" in text


def test_unreadable_or_unpaired_studies_are_refused_in_one_line(tmp_path, capsys):
  with pytest.raises(SystemExit) as e:
    paired_columns.main([f"--workdir={tmp_path}", f"--field={FIELD}", "--a=x", "--b=y",
                         "--metrics=m"])
  assert e.value.code == 2
  assert "study.json cannot be read" in capsys.readouterr().err
  workdir = _study(tmp_path / "s", {(0, "rendered"): 0.1, (0, "gradient_x_input"): None})
  with pytest.raises(DataError, match="no finished pair"):
    paired_columns.compare(workdir, FIELD, "rendered", "gradient_x_input", ["m"])
  with pytest.raises(DataError, match="no run of the study varies 'dataset.rule'"):
    paired_columns.compare(workdir, "dataset.rule", "a", "b", ["m"])
