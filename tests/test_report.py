"""Tests of the report package on fake workdirs made here."""

import json
import math
import os
import re

import numpy as np
from PIL import Image
import pytest

from xplain_jax import report
from xplain_jax.report import tables

DPI = 80
CASES = ("shared_feature", "filter")


def _metrics():
  return {
      "performer": {"accuracy": 0.93871234, "num_params": 1234},
      "baseline": {"entropy": 1.23456789, "accuracy": 0.81234567,
                   "relative_deviation": 0.04567891,
                   "gt_rank_correlation": 0.51234999},
      "prior": {"entropy": 1.98765432, "accuracy": 0.80999876,
                "relative_deviation": 0.05111111,
                "gt_rank_correlation": 0.77777777, "extra_score": 2.5},
      "meta": {"seed": 0},
  }


def _make_workdir(root, case, *, n=6, num=10, k=4, parts=3, optional=True,
                  logs=True):
  """Writes a fake workdir of the pipeline's schema; returns its metrics."""
  rng = np.random.default_rng(0)
  os.makedirs(root / "eval")
  os.makedirs(root / "logs")
  metrics = _metrics()
  (root / "metrics.json").write_text(json.dumps(metrics))
  names = ["Beard", "Smiling", "Male", "Bangs", "Young", "Blond"][:n]
  meta = {"target_name": "Attractive", "concept_names": names, "case": case,
          "beta": 0.2, "num_epochs": 5, "variants": ["baseline", "prior"],
          "machine": "cpu"}
  if case == "filter":
    meta["part_names"] = ["head", "torso", "legs"][:parts]
  (root / "eval" / "meta.json").write_text(json.dumps(meta))
  for v in ("baseline", "prior"):
    arrays = {"alpha": rng.normal(size=(num, n)),
              "concepts": rng.normal(size=(num, n)),
              "y": rng.normal(size=num), "y_hat": rng.normal(size=num),
              "labels": rng.integers(0, 2, size=num),
              "prior_w": rng.normal(size=(num, n))}
    if optional:
      arrays["gt_contrib"] = rng.normal(size=(num, n))
      if case == "filter":
        arrays["part_contrib"] = rng.normal(size=(num, parts))
    np.savez(root / "eval" / f"{v}.npz", **arrays)
  if optional:
    images = {"images": rng.uniform(size=(k, 16, 16, 3)).astype(np.float32),
              "gradcam": rng.uniform(size=(k, 5, 5)).astype(np.float32)}
    if case == "filter":
      images["part_mask"] = rng.integers(-1, parts, size=(k, 16, 16))
      images["filter_regions"] = rng.uniform(size=(5, 8, 8, 3)).astype(
          np.float32)
      images["filter_region_names"] = np.array([f"f{i}" for i in range(5)])
    np.savez(root / "eval" / "images.npz", **images)
  if optional and logs:
    for stage in ("performer", "explainer_baseline", "explainer_prior"):
      lines = [json.dumps({"step": s, "epoch": s // 3 + 1,
                           "loss": 1.0 / (s + 1), "distill_loss": 0.5,
                           "lambda": 0.2 / math.sqrt(s // 3 + 1),
                           "entropy": 1.0 + 0.01 * s})
               for s in range(8)]
      (root / "logs" / f"{stage}.jsonl").write_text("\n".join(lines) + "\n")
  return metrics


def _referenced_pngs(text, pattern):
  return re.findall(pattern, text)


def _check_pngs(workdir, rel_paths):
  assert rel_paths, "the report references no figure"
  for rel in rel_paths:
    path = workdir / rel
    assert path.is_file(), f"{rel} referenced but not written"
    with Image.open(path) as im:
      assert im.format == "PNG"
      assert im.size[0] >= 100 and im.size[1] >= 80, (rel, im.size)
      im.verify()


def _markdown_metrics_table(md):
  """Parses the first Markdown table whose header starts with `model`."""
  lines = md.splitlines()
  start = next(i for i, l in enumerate(lines) if l.startswith("| model |"))
  header = [c.strip() for c in lines[start].strip("|").split("|")]
  rows = {}
  for line in lines[start + 2:]:
    if not line.startswith("|"):
      break
    cells = [c.strip() for c in line.strip("|").split("|")]
    rows[cells[0]] = dict(zip(header[1:], cells[1:]))
  return rows


@pytest.mark.parametrize("case", CASES)
def test_full_report(tmp_path, case):
  metrics = _make_workdir(tmp_path, case)
  path = report.write_report(str(tmp_path), num_images=3, top_k=4, dpi=DPI)
  assert path == str(tmp_path / "report.html")
  page = (tmp_path / "report.html").read_text(encoding="utf-8")
  md = (tmp_path / "report.md").read_text(encoding="utf-8")
  html_pngs = _referenced_pngs(page, r"<img src='([^']+\.png)'")
  md_pngs = _referenced_pngs(md, r"!\[[^\]]*\]\(([^)]+\.png)\)")
  assert sorted(html_pngs) == sorted(md_pngs)
  assert len(set(html_pngs)) == len(html_pngs)
  _check_pngs(tmp_path, html_pngs)
  expected = {f"figures/explain_{i:03d}.png" for i in range(3)} | {
      "figures/contribution_distribution.png", "figures/gt_scatter.png",
      "figures/prior_weight.png", "figures/training_performer.png",
      "figures/training_explainer_baseline.png",
      "figures/training_explainer_prior.png"}
  if case == "filter":
    expected |= {f"figures/parts_{i:03d}.png" for i in range(3)}
    expected.add("figures/filter_regions.png")
  assert set(html_pngs) == expected
  # Every section whose inputs exist is drawn; only the Case-1 extras that
  # the shared-feature workdir lacks are skipped, with a note.
  skipped = re.findall(r"<h2>([^<]+)</h2>\s*<p class='note'>", page)
  assert skipped == ([] if case == "filter" else
                     ["Contributions per object part", "Filter regions"])
  # Tables hold the values of metrics.json, 4 decimals, in the right cells.
  rows = _markdown_metrics_table(md)
  titles = {"performer": "performer",
            "baseline": "explainer, baseline (no prior loss)",
            "prior": "explainer, with prior loss"}
  for model, values in metrics.items():
    if model == "meta":
      continue
    for key, value in values.items():
      cell = f"{value:.4f}" if isinstance(value, float) else str(value)
      assert rows[titles[model]][key] == cell, (model, key)
      assert f"<td>{cell}</td>" in page
  assert rows["performer"]["entropy"] == "—"
  for key in ("entropy", "accuracy", "relative_deviation",
              "gt_rank_correlation"):
    assert tables.METRIC_DESCRIPTIONS[key][:30] in page


def test_no_name_labels_in_report(tmp_path):
  _make_workdir(tmp_path, "shared_feature", n=3, logs=False)
  for v in ("baseline", "prior"):
    with np.load(tmp_path / "eval" / f"{v}.npz") as f:
      arrays = dict(f)
    # Image 0: Beard absent (y < 0) with the largest |α y| = 3, Smiling
    # present next (2 · 0.5 = 1), Male last (0.1 · 1 = 0.1).
    arrays["alpha"][0] = [1.5, 2.0, 0.1]
    arrays["concepts"][0] = [-2.0, 0.5, 1.0]
    np.savez(tmp_path / "eval" / f"{v}.npz", **arrays)
  report.write_report(str(tmp_path), num_images=1, top_k=2, dpi=DPI)
  page = (tmp_path / "report.html").read_text(encoding="utf-8")
  assert "-3.000 no Beard, +1.000 Smiling" in page
  assert "Male" not in page.split("figures/explain_000.png")[1].split(
      "planted")[0]


def test_top_reasons_hand_made():
  names = ["Beard", "Smiling", "Male"]
  concepts = np.array([-1.0, 2.0, 0.5])
  contrib = np.array([0.5, 0.1, 3.0]) * concepts  # [-0.5, 0.2, 1.5]
  assert tables.top_reasons(contrib, concepts, names, "shared_feature", 2) == [
      ("Male", 1.5), ("no Beard", -0.5)]
  assert tables.top_reasons(contrib, concepts, names, "filter", 3) == [
      ("Male", 1.5), ("Beard", -0.5), ("Smiling", pytest.approx(0.2))]
  assert tables.concept_label("Bangs", 0.0, "shared_feature") == "Bangs"


def test_entropy_and_rank_correlation_closed_forms():
  n = 5
  h = tables.contribution_entropy(
      np.array([np.full(n, -0.3), np.eye(n)[2] * 4.0, np.zeros(n),
                [1.0, -1.0, 0.0, 0.0, 0.0]]))
  np.testing.assert_allclose(h, [math.log(n), 0.0, 0.0, math.log(2)],
                             atol=1e-12)
  x = np.array([3.0, 1.0, 2.0, 5.0])
  assert tables.rank_correlation(x, x ** 3) == pytest.approx(1.0)
  assert tables.rank_correlation(x, -x) == pytest.approx(-1.0)
  # Ties: ranks of [1, 1, 2] are [0.5, 0.5, 2]; with [1, 2, 3] the Pearson
  # correlation of the ranks is 0.75 / sqrt(1.5 * 2) = sqrt(3) / 2.
  assert tables.rank_correlation([1.0, 1.0, 2.0], [1.0, 2.0, 3.0]) == (
      pytest.approx(math.sqrt(3) / 2))
  assert math.isnan(tables.rank_correlation([1.0, 1.0], [1.0, 2.0]))


def test_only_metrics(tmp_path):
  (tmp_path / "metrics.json").write_text(json.dumps(
      {"prior": {"entropy": 2.0, "accuracy": 0.5}}))
  report.write_report(str(tmp_path), dpi=DPI)
  page = (tmp_path / "report.html").read_text(encoding="utf-8")
  md = (tmp_path / "report.md").read_text(encoding="utf-8")
  assert "<img" not in page and "](figures/" not in md
  for title in ("Explanations of individual images", "Filter regions",
                "Training curves", "Prior-loss weight"):
    section = page.split(f"<h2>{title}</h2>")[1].split("<h2>")[0]
    assert "class='note'" in section, title
  rows = _markdown_metrics_table(md)
  assert list(rows) == ["explainer, with prior loss"]
  assert rows["explainer, with prior loss"] == {"entropy": "2.0000",
                                                 "accuracy": "0.5000"}


@pytest.mark.parametrize("case", CASES)
def test_optional_files_absent(tmp_path, case):
  _make_workdir(tmp_path, case, optional=False)
  # A log without any drawable key, with a broken line, gives a note.
  (tmp_path / "logs" / "odd.jsonl").write_text('{"step": 1}\nnot json\n')
  report.write_report(str(tmp_path), num_images=2, dpi=DPI)
  page = (tmp_path / "report.html").read_text(encoding="utf-8")
  pngs = _referenced_pngs(page, r"<img src='([^']+\.png)'")
  _check_pngs(tmp_path, pngs)
  assert set(pngs) == {"figures/explain_000.png", "figures/explain_001.png",
                       "figures/contribution_distribution.png",
                       "figures/prior_weight.png"}
  assert "logs/odd.jsonl holds no curve to draw." in page
  for title in ("Contributions per object part", "Filter regions",
                "Explainer against the planted ground truth",
                "Training curves"):
    section = page.split(f"<h2>{title}</h2>")[1].split("<h2>")[0]
    assert "class='note'" in section and "<img" not in section, title
  assert "eval/images.npz not found" in page


def test_mismatched_optional_array_is_ignored(tmp_path):
  _make_workdir(tmp_path, "filter", logs=False)
  with np.load(tmp_path / "eval" / "images.npz") as f:
    images = dict(f)
  images["gradcam"] = images["gradcam"][:1]  # 1 map for 4 images
  np.savez(tmp_path / "eval" / "images.npz", **images)
  report.write_report(str(tmp_path), num_images=2, dpi=DPI)
  page = (tmp_path / "report.html").read_text(encoding="utf-8")
  assert "gradcam has shape (1, 5, 5)" in page


def test_unreadable_meta_falls_back(tmp_path):
  _make_workdir(tmp_path, "shared_feature", logs=False)
  (tmp_path / "eval" / "meta.json").write_text("{not json")
  report.write_report(str(tmp_path), num_images=1, dpi=DPI)
  page = (tmp_path / "report.html").read_text(encoding="utf-8")
  assert "eval/meta.json absent or not a JSON object" in page
  # Without the case, concepts keep their plain (numbered) names.
  assert "concept 0" in page and "no concept" not in page
  section = page.split("<h2>Prior-loss weight</h2>")[1].split("<h2>")[0]
  assert "β or num_epochs unknown" in section and "<img" not in section


def test_missing_metrics_raises(tmp_path):
  with pytest.raises(FileNotFoundError, match="evaluate stage"):
    report.write_report(str(tmp_path))
