"""examples/exp1_parts_seeds.py's table and layout flags, on fabricated run folders (no
training)."""

import importlib.util
import json
import math
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
T95_2 = 12.706  # two-sided 95 % t quantile, 1 degree of freedom


def _load():
  spec = importlib.util.spec_from_file_location("exp1", ROOT / "examples" / "exp1_parts_seeds.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _write_run(root, layout, seed, *, selectivity, ordinary, deviation, paper_start=None):
  run = root / f"parts_{layout}_s{seed}"
  run.mkdir()
  metrics = {"performer": {"accuracy": 99.0}, "parts": {"ordinary_performer_accuracy": 98.0},
             "prior": {"accuracy": 95.0, "entropy": 3.0, "relative_deviation": deviation}}
  (run / "metrics.json").write_text(json.dumps(metrics))
  filters = {"head": 0, "torso": 3, "legs": 1, "tail": 0, "none": 0}
  posthoc = {f"{n}_{k}": v for n, s in (("interpretable", selectivity), ("ordinary", ordinary))
             for k, v in (("selectivity", s), ("on_object", 0.9), ("given_on_object", 0.8),
                          ("filters_per_part", filters),
                          ("logit_drop_without", {"head": 0.1, "torso": 20.0}))}
  posthoc.update(chance_on_object=0.5, chance_whole_image=0.1, object_share_of_image=0.2)
  (root / f"posthoc_{layout}_s{seed}.json").write_text(json.dumps(posthoc))
  if paper_start is not None:
    (root / f"parts_{layout}_s{seed}_paperstart").mkdir()
    (root / f"parts_{layout}_s{seed}_paperstart" / "metrics.json").write_text(json.dumps(
        {"prior": {"accuracy": 70.0, "entropy": 3.1, "relative_deviation": paper_start}}))


def _row(table, name):
  line = next(l for l in table.splitlines() if l.startswith(f"| {name} |"))
  return [c.strip() for c in line.strip("|").split("|")[1:]]


def test_table_means_intervals_and_paired_differences(tmp_path):
  exp1 = _load()
  _write_run(tmp_path, "paper", 0, selectivity=0.7, ordinary=0.5, deviation=0.02, paper_start=0.3)
  _write_run(tmp_path, "paper", 1, selectivity=0.9, ordinary=0.6, deviation=0.04, paper_start=0.5)
  _write_run(tmp_path, "old", 0, selectivity=0.4, ordinary=0.5, deviation=0.06)
  _write_run(tmp_path, "old", 1, selectivity=0.6, ordinary=0.5, deviation=0.08)
  _write_run(tmp_path, "old", 2, selectivity=0.6, ordinary=0.5, deviation=0.08)
  (tmp_path / "parts_old_s2" / "metrics.json").unlink()  # an unfinished run is left out
  table = exp1.table(str(tmp_path))
  assert "paper layout, seeds 0, 1" in table and "old layout, seeds 0, 1" in table
  # mean ± t·sd/√n by hand: values 0.7, 0.9 -> mean 0.8, sd 0.1414, half-width 12.706·0.1.
  half = T95_2 * math.sqrt(0.02) / math.sqrt(2)
  paper, old, diff = _row(table, "part selectivity, interpretable layer")
  assert paper == f"0.800 ± {half:.3f}" and old == f"0.500 ± {half:.3f}"
  assert diff == "0.300 ± 0.000"  # paper − old per seed: 0.3 and 0.3
  paired = _row(table, "part selectivity, interpretable − ordinary (paired)")
  assert paired[0] == f"0.250 ± {T95_2 * math.sqrt(0.005) / math.sqrt(2):.3f}"  # 0.2, 0.3
  # The paper's start exists for one layout only: the other cell and the difference are "–".
  assert _row(table, "prior explainer relative deviation, paper's start (`auto_scale=False`)") \
      == [f"0.400 ± {T95_2 * math.sqrt(0.02) / math.sqrt(2):.3f}", "–", "–"]


def test_layout_flags_and_config_agree():
  exp1 = _load()
  assert exp1.flags("paper") == ""
  flags = exp1.flags("old").split()
  assert "--config.performer.model.mask_order=post_relu" in flags
  c = exp1.layout_config("old", 2)
  assert c.seed == 2 and not c.performer.model.added_layer
  assert c.performer.model.mask_order == "post_relu"
  assert c.performer.filter_loss_schedule == "constant"
  with pytest.raises(KeyError):
    exp1.layout_config("new", 0)
