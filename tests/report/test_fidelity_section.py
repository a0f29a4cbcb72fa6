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
  present = set(metrics["fidelity"]) | set(metrics["fidelity_reference"])
  assert [r[0] for r in rows] == [t for k, t in fs.ROWS if k in present]
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


def test_table_shows_peers_with_their_cost_and_the_paired_differences():
  rng = np.random.default_rng(2)
  one = fidelity.summarize(rng.normal(size=(30, 4)), rng.normal(size=(30, 4)),
                           sign_threshold=0.1, num_resamples=50)
  cost = lambda **k: {"forward_passes": 0, "backward_passes": 0, "explainer_passes": 0, **k}
  diff = {"mean": -0.03, "low": -0.05, "high": -0.01, "num_images": 30, "significant": True}
  metrics = {"fidelity": {"prior": {**one, "cost": cost(explainer_passes=1)},
                          "faithful": one, "prior_minus_least_squares": diff,
                          "faithful_minus_gradient_x_input": diff},
             "fidelity_reference": {
                 "least_squares": {**one, "cost": cost(seconds_per_image=2e-7, fit_rows=500)},
                 "integrated_gradients": {**one, "cost": cost(forward_passes=8,
                                                              backward_passes=8)},
                 "delta": {"cost": cost(forward_passes=21, seconds_per_image=0.004)}}}
  header, rows = fs.fidelity_table(metrics)
  assert header[-2:] == list(fs.COST_COLUMNS)
  by_title = {r[0]: r for r in rows}
  assert [r[0] for r in rows][:2] == ["explainer, with prior loss", "explainer, faithful"]
  assert by_title[dict(fs.ROWS)["integrated_gradients"]][-2:] == ["8 fwd + 8 bwd", "—"]
  assert by_title[dict(fs.ROWS)["least_squares"]][-2:] == ["fit once on 500 rows", "2e-07"]
  assert by_title[dict(fs.ROWS)["prior"]][-2] == "1 pass of g"
  assert by_title[dict(fs.ROWS)["delta"]][1] == "—"   # the yardstick has no scores
  assert all("{" not in c and "[" not in c for r in rows for c in r)
  header, rows = fs.paired_table(metrics)
  assert rows == [["prior − least squares", "-0.030", "-0.050 – -0.010", "yes"],
                  ["faithful − gradient × input", "-0.030", "-0.050 – -0.010", "yes"]]
