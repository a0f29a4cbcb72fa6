"""The report section "Can this explanation be trusted?" from fabricated arrays and metrics."""

import os

import numpy as np

from xplain_jax import fidelity
from xplain_jax.report import fidelity_section as fs
from xplain_jax.report import html


def _metrics(diff):
  rng = np.random.default_rng(0)
  c, d = rng.normal(size=(40, 5)), rng.normal(size=(40, 5))
  one = fidelity.summarize(c, d, sign_threshold=0.1, num_resamples=50)
  return {"fidelity": {"baseline": {**one, "deletion_area": -0.2}, "prior": one,
                       "prior_minus_baseline": diff},
          "fidelity_reference": {"random": one, "shuffled_alpha": one, "prior_weights": one},
          "sanity": {"randomized_performer_similarity": {"mean": 0.1, "low": 0.05, "high": 0.15}},
          "performer": {"accuracy": 90.0, "concept_accuracy": fidelity_section_acc()}}


def fidelity_section_acc():
  return {"per_concept": {"red_circle": 95.0, "green_square": 71.0}, "mean": 83.0,
          "worst": "green_square"}


def test_section_has_table_verdict_panels_and_sanity(tmp_path):
  diff = fidelity.paired_difference_interval(np.full(30, 0.2) + np.linspace(0, 0.01, 30),
                                             np.zeros(30), num_resamples=100)
  metrics = _metrics(diff)
  rng = np.random.default_rng(1)
  data = {v: {"alpha": rng.normal(size=(4, 5)), "concepts": rng.normal(size=(4, 5)),
              "delta": rng.normal(size=(4, 5))} for v in ("baseline", "prior")}
  presence = np.array([[1, 0, 1, 0, 1]] * 4)
  names = ["red_circle", "green_square", "border", "speckles", "warm_tint"]
  fig = lambda name: os.path.join(str(tmp_path), "figures", name)
  deletion = {"counts": np.arange(6), "curves": {"prior": np.linspace(1, 0, 6),
                                                 "random": rng.normal(size=(4, 6))}}
  title, blocks = fs.build_fidelity_section(
      metrics, fig=fig, data=data, images=rng.random((4, 8, 8, 3)), names=names,
      presence=presence, deletion=deletion, num_images=2)
  assert title == fs.TITLE
  header, rows = next(b for b in blocks if b[0] == "table")[1:]
  assert header[0] == "explanation" and "interventional_rank_correlation" in header
  assert [r[0] for r in rows] == [t for _, t in fs.ROWS]
  text = " ".join(b[1] for b in blocks if b[0] == "p")
  assert "prior explainer is measurably closer" in text and "Sanity check" in text
  figures = [b[1] for b in blocks if b[0] == "figure"]
  assert len(figures) == 3 and all(os.path.isfile(p) for p in figures)
  page = html.render_html([(title, blocks)], "t")
  assert "green_square" in page and "Can this explanation be trusted?" in page


def test_verdict_says_no_measurable_difference_when_interval_holds_zero():
  diff = {"mean": 0.01, "low": -0.02, "high": 0.04, "significant": False}
  assert "no measurable difference" in fs.verdict({"fidelity": {"prior_minus_baseline": diff}})
  assert fs.verdict({}) is None


def test_presence_names_follow_the_truth_not_the_prediction():
  assert fs.presence_names(["green_square", "border"], [1, 0]) == ["green_square", "no border"]


def test_missing_metrics_give_notes_not_errors(tmp_path):
  title, blocks = fs.build_fidelity_section({}, fig=lambda n: str(tmp_path / n))
  assert all(b[0] == "note" for b in blocks)
