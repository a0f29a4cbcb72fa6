"""The report reads cleanly: each metric family in its own table, no cell holding an object or a
list."""

import html.parser
import json
import math
import os

import pytest

from configs import synthetic
from xplain_jax import report
from xplain_jax.report import tables

INTERVAL = {"mean": 0.5, "low": 0.25, "high": 0.75, "num_images": 10}


class _Cells(html.parser.HTMLParser):
  """The text of every <td> and <th> of a page."""

  def __init__(self):
    super().__init__()
    self.cells, self._open = [], None

  def handle_starttag(self, tag, attrs):
    if tag in ("td", "th"):
      self._open = []

  def handle_endtag(self, tag):
    if tag in ("td", "th") and self._open is not None:
      self.cells.append("".join(self._open))
      self._open = None

  def handle_data(self, data):
    if self._open is not None:
      self._open.append(data)


def _cells(page):
  parser = _Cells()
  parser.feed(page)
  return parser.cells


def _markdown_cells(md):
  return [c.strip() for line in md.splitlines() if line.startswith("|")
          for c in line.strip().strip("|").split(" | ")]


def _numeric_leaves(value, path=()):
  """(path, number) of every number of a metrics.json object, intervals by mean, low, high."""
  if isinstance(value, dict):
    keys = ("mean", "low", "high") if tables.is_interval(value) else value
    for k in keys:
      yield from _numeric_leaves(value[k], path + (k,))
  elif isinstance(value, list):
    for i, v in enumerate(value):
      yield from _numeric_leaves(v, path + (i,))
  elif isinstance(value, (int, float)) and not isinstance(value, bool):
    yield path, value


def _check_page(workdir, metrics, digits=4):
  page = open(os.path.join(workdir, "report.html"), encoding="utf-8").read()
  md = open(os.path.join(workdir, "report.md"), encoding="utf-8").read()
  cells = _cells(page)
  assert cells, "the report has no table"
  for cell in cells + _markdown_cells(md):
    assert "{" not in cell and "[" not in cell, cell
  # Nothing of metrics.json is lost: every number is in some cell of the page.
  text = "\n".join(cells)
  for path, number in _numeric_leaves({k: v for k, v in metrics.items() if k != "meta"}):
    shown = tables.format_value(number, digits)
    assert shown in text or (isinstance(number, float) and math.isnan(number)), (path, shown)


def _metrics_with_families():
  return {
      "performer": {"accuracy": 0.9, "concept_accuracy": {
          "per_concept": {"red_circle": 91.0, "border": 88.5}, "mean": 89.75,
          "worst": ["border", 88.5]}},
      "baseline": {"entropy": 2.1, "accuracy": 0.8, "relative_deviation": 0.05},
      "prior": {"entropy": 2.2, "accuracy": 0.7, "relative_deviation": 0.06},
      "fidelity": {
          "baseline": {"interventional_rank_correlation": INTERVAL, "sign_agreement": 0.61},
          "prior": {"interventional_rank_correlation": dict(INTERVAL, mean=0.45),
                    "sign_agreement": 0.62, "deletion_curve_mean": list(range(20))},
          "prior_minus_baseline": {"mean": -0.05, "low": -0.125, "high": 0.0625}},
      "fidelity_reference": {
          "random": {"interventional_rank_correlation": dict(INTERVAL, mean=0.01)},
          "peers": {"least_squares": {"interventional_rank_correlation": dict(INTERVAL, mean=0.3),
                                      "seconds": 1.5},
                    "integrated_gradients": {"interventional_rank_correlation":
                                             dict(INTERVAL, mean=0.35), "seconds": 7.25}}},
      "sanity": {"randomized_performer_similarity": dict(INTERVAL, mean=-0.09),
                 "layers": ["fc7", "fc8"], "enabled": True},
      "meta": {"target": "target_a"},
  }


def test_interval_and_list_cells():
  assert tables.format_value(INTERVAL, 3) == "0.500 (0.250 – 0.750)"
  assert tables.format_value(["fc7", "fc8"]) == "fc7, fc8"
  assert tables.format_value({"a": 1, "b": [1.0, 2.5]}, 1) == "a: 1; b: 1.0, 2.5"


def test_families_become_tables_with_named_columns():
  metrics = _metrics_with_families()
  header, rows = tables.metrics_table(metrics)
  assert header == ["model", "entropy", "accuracy", "relative_deviation"]
  assert [r[0] for r in rows] == ["performer", "explainer, baseline (no prior loss)",
                                  "explainer, with prior loss"]
  found = {title: (h, r) for title, h, r in tables.metric_family_tables(metrics, 3)
           if h[0] != "quantity"}
  # More keys than variants: one column per variant, one row per metric; an interval's other
  # keys get rows of their own.
  h, r = found["fidelity"]
  assert h == ["fidelity", "baseline", "prior"]
  assert r == [["interventional_rank_correlation", "0.500 (0.250 – 0.750)",
                "0.450 (0.250 – 0.750)"],
               ["interventional_rank_correlation: num_images", "10", "10"],
               ["sign_agreement", "0.610", "0.620"]]
  # A group of records (the peers) is one table, a column per peer; a long list its own table.
  h, r = found["fidelity_reference / peers"]
  assert h == ["fidelity_reference / peers", "least_squares", "integrated_gradients"]
  assert r[0] == ["interventional_rank_correlation", "0.300 (0.250 – 0.750)",
                  "0.350 (0.250 – 0.750)"]
  assert r[2] == ["seconds", "1.500", "7.250"]
  h, r = found["fidelity / prior / deletion_curve_mean"]
  assert h == ["index", "value"] and len(r) == 20 and r[19] == ["19", "19"]
  assert tables.family_tables("g", {"a": {"x": 1}, "b": {"x": 2}, "c": {"x": 3}}) == [
      ("g", ["g", "x"], [["a", "1"], ["b", "2"], ["c", "3"]])]  # more entries than keys: rows
  pairs = {title: dict(r) for title, h, r in tables.metric_family_tables(metrics, 3)
           if h[0] == "quantity"}
  assert pairs["performer / concept_accuracy / per_concept"] == {"red_circle": "91.000",
                                                                 "border": "88.500"}
  assert pairs["fidelity"] == {"prior_minus_baseline": "-0.050 (-0.125 – 0.062)"}
  assert pairs["sanity"]["layers"] == "fc7, fc8"
  assert pairs["performer / concept_accuracy"]["worst"] == "border, 88.500"


def test_report_cells_hold_no_object_or_list(tmp_path):
  metrics = _metrics_with_families()
  (tmp_path / "metrics.json").write_text(json.dumps(metrics))
  report.write_report(str(tmp_path), dpi=60)
  _check_page(str(tmp_path), metrics)


@pytest.mark.slow
def test_tiny_run_report_cells_hold_no_object_or_list(tmp_path):
  from xplain_jax.run import pipeline  # pylint: disable=g-import-not-at-top
  config = synthetic.get_config("tiny")
  config.evals.sanity.enabled = True  # every metric family of the default run
  metrics = pipeline.train_and_evaluate(config, str(tmp_path))
  assert {"fidelity", "fidelity_reference", "sanity"} <= set(metrics)
  _check_page(str(tmp_path), json.loads((tmp_path / "metrics.json").read_text()))
