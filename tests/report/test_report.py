"""Tests of the report package on fake workdirs made here."""

import json
import math
import os
import re

import numpy as np
from PIL import Image
import pytest

import ml_collections
from xplain_jax import data
from xplain_jax import report
from xplain_jax.errors import CheckpointError
from xplain_jax.report import tables
from xplain_jax import evaluators
from xplain_jax.evaluators import explainer as evaluate_lib

DPI = 80
CASES = ("shared_feature", "filter")


def _config():
  c = ml_collections.ConfigDict()
  c.dataset = ml_collections.ConfigDict({"name": "fake"})
  c.explainer = ml_collections.ConfigDict({"beta": 0.2, "num_epochs": 5})
  c.evals = ml_collections.ConfigDict({"explainer": {"batch_size": 4, "top_k": 4}})
  return c


def _make_workdir(root, case, *, n=6, num=10, k=4, parts=3, optional=True,
                  logs=True, alpha=None, concepts=None):
  """Writes a workdir as the evaluators write it (from random arrays).

  Returns:
    the metrics written to metrics.json.
  """
  rng = np.random.default_rng(0)
  names = ("Beard", "Smiling", "Male", "Bangs", "Young", "Blond")[:n]
  spec = data.Spec(case, ("Attractive",) + names, 0, tuple(range(1, n + 1)),
                   names, part_names=("head", "torso", "legs")[:parts]
                   if case == "filter" else ())
  y_i = rng.normal(size=(num, n)).astype(np.float32)
  if concepts is not None:
    y_i[:len(concepts)] = concepts
  test = {"y": rng.normal(size=num).astype(np.float32), "y_i": y_i,
          "w": rng.normal(size=(num, n)).astype(np.float32),
          "labels": rng.integers(0, 2, size=(num, n + 1)).astype(np.float32)}
  if optional:
    test["gt_contrib"] = rng.normal(size=(num, n)).astype(np.float32)
  alphas = {v: rng.normal(size=(num, n)).astype(np.float32)
            for v in ("baseline", "prior")}
  if alpha is not None:
    for a in alphas.values():
      a[:len(alpha)] = alpha
  ctx = evaluators.EvalContext(
      config=_config(), spec=spec, workdir=str(root), mesh=None, test=test,
      alpha=alphas, bias={"baseline": 0.1, "prior": -0.2}, explainers={},
      concept_names=names,
      images=rng.uniform(size=(k if optional else 0, 16, 16, 3)))
  out = evaluate_lib.evaluate(ctx, ctx.config.evals.explainer)
  if optional:
    out.arrays["images"]["gradcam"] = rng.uniform(size=(k, 5, 5))
    if case == "filter":  # what the parts evaluator adds
      for v in alphas:
        out.arrays[v]["part_contrib"] = rng.normal(size=(num, parts))
      out.arrays["images"].update(
          part_mask=rng.integers(-1, parts, size=(k, 16, 16)),
          filter_regions=rng.uniform(size=(5, 8, 8, 3)).astype(np.float32),
          filter_region_names=np.array([f"f{i}" for i in range(5)]))
  else:
    del out.arrays["images"]
  metrics = evaluators.write_outputs(str(root), out)
  os.makedirs(root / "logs", exist_ok=True)
  if optional and logs:
    for stage in ("performer", "explainer_baseline", "explainer_prior"):
      lines = [json.dumps({"step": s, "epoch": s // 3 + 1,
                           "loss": 1.0 / (s + 1), "distill_loss": 0.5,
                           "lambda": 0.2 / math.sqrt(s // 3 + 1),
                           "entropy": 1.0 + 0.01 * s})
               for s in range(8)]
      (root / "logs" / f"{stage}.jsonl").write_text("\n".join(lines) + "\n")
  return json.loads((root / "metrics.json").read_text())


def _sections(page):
  return re.findall(r"<h2>([^<]+)</h2>", page)


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
  path = report.write_report(str(tmp_path), num_images=3, dpi=DPI)
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
  # What a case cannot have is left out, not shown as an empty section.
  assert "class='note'" not in page
  extras = ["Contributions per object part", "Filter regions"]
  assert all((t in _sections(page)) == (case == "filter") for t in extras)
  # Tables hold the values of metrics.json, 4 decimals, in the right cells.
  rows = _markdown_metrics_table(md)
  titles = {"performer": "performer",
            "baseline": "explainer, baseline (no prior loss)",
            "prior": "explainer, with prior loss",
            "prior_weights": "prior_weights"}
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


def test_run_table_lists_each_fact_once(tmp_path):
  _make_workdir(tmp_path, "shared_feature", logs=False)
  md = (tmp_path / "report.md")
  report.write_report(str(tmp_path), num_images=1, dpi=DPI)
  lines = md.read_text(encoding="utf-8").splitlines()
  start = lines.index("| key | value |")
  keys = []
  for line in lines[start + 2:]:
    if not line.startswith("|"):
      break
    keys.append(line.strip("|").split("|")[0].strip())
  assert len(keys) == len(set(keys)), keys
  assert "target" not in keys and keys.count("machine") == 1


def test_report_reads_what_the_evaluator_saved(tmp_path, monkeypatch):
  _make_workdir(tmp_path, "shared_feature", logs=False)
  for v in ("baseline", "prior"):  # planted values no metric would give
    with np.load(tmp_path / "eval" / f"{v}.npz") as f:
      arrays = dict(f)
    arrays["entropy"] = np.full_like(arrays["entropy"], 7.0)
    arrays["share"] = np.full_like(arrays["share"], 0.25)
    np.savez(tmp_path / "eval" / f"{v}.npz", **arrays)
  metrics = json.loads((tmp_path / "metrics.json").read_text())
  metrics["prior"]["gt_rank_correlation"] = 0.123
  (tmp_path / "metrics.json").write_text(json.dumps(metrics))
  seen = {}
  real_dist = report.figures.plot_contribution_distribution
  real_gt = report.figures.plot_gt_scatter

  def dist(shares, entropies, path, **kw):
    seen["shares"], seen["entropies"] = shares, entropies
    return real_dist(shares, entropies, path, **kw)

  def gt(explained, planted, path, **kw):
    seen["rho"] = kw["rank_correlation"]
    return real_gt(explained, planted, path, **kw)

  monkeypatch.setattr(report.figures, "plot_contribution_distribution", dist)
  monkeypatch.setattr(report.figures, "plot_gt_scatter", gt)
  report.write_report(str(tmp_path), num_images=1, dpi=DPI)
  assert all(np.all(h == 7.0) for h in seen["entropies"].values())
  assert all(np.all(c == 0.25) for c in seen["shares"].values())
  assert seen["rho"]["prior"] == 0.123


def test_no_name_labels_in_report(tmp_path):
  # Image 0: Beard absent (y < 0) with the largest |α y| = 3, Smiling
  # present next (2 · 0.5 = 1), Male last (0.1 · 1 = 0.1).
  _make_workdir(tmp_path, "shared_feature", n=3, logs=False,
                alpha=[[1.5, 2.0, 0.1]], concepts=[[-2.0, 0.5, 1.0]])
  with np.load(tmp_path / "eval" / "images.npz") as f:
    np.testing.assert_array_equal(f["top_index_prior"][0], [0, 1, 2])
  report.write_report(str(tmp_path), num_images=1, dpi=DPI)
  page = (tmp_path / "report.html").read_text(encoding="utf-8")
  assert "-3.000 no Beard, +1.000 Smiling, +0.100 Male" in page


def test_name_reasons_hand_made():
  names = ["Beard", "Smiling", "Male"]
  concepts = np.array([-1.0, 2.0, 0.5])
  contrib = np.array([0.5, 0.1, 3.0]) * concepts  # [-0.5, 0.2, 1.5]
  assert tables.name_reasons([2, 0], contrib, concepts, names,
                             "shared_feature") == [("Male", 1.5),
                                                   ("no Beard", -0.5)]
  assert tables.name_reasons([2, 0, 1], contrib, concepts, names,
                             "filter") == [
      ("Male", 1.5), ("Beard", -0.5), ("Smiling", pytest.approx(0.2))]
  assert tables.concept_label("Bangs", 0.0, "shared_feature") == "Bangs"


def test_only_metrics(tmp_path):
  (tmp_path / "metrics.json").write_text(json.dumps(
      {"prior": {"entropy": 2.0, "accuracy": 0.5}}))
  report.write_report(str(tmp_path), dpi=DPI)
  page = (tmp_path / "report.html").read_text(encoding="utf-8")
  md = (tmp_path / "report.md").read_text(encoding="utf-8")
  assert "<img" not in page and "](figures/" not in md
  for title in ("Explanations of individual images", "Filter regions",
                "Training curves", "Prior-loss weight"):
    assert title not in _sections(page), title
  rows = _markdown_metrics_table(md)
  assert list(rows) == ["explainer, with prior loss"]
  assert rows["explainer, with prior loss"] == {"entropy": "2.0000",
                                                 "accuracy": "0.5000"}


@pytest.mark.parametrize("case", CASES)
def test_optional_files_absent(tmp_path, case):
  _make_workdir(tmp_path, case, optional=False)
  # A log without any drawable key, with a broken line, draws nothing.
  (tmp_path / "logs" / "odd.jsonl").write_text('{"step": 1}\nnot json\n')
  report.write_report(str(tmp_path), num_images=2, dpi=DPI)
  page = (tmp_path / "report.html").read_text(encoding="utf-8")
  pngs = _referenced_pngs(page, r"<img src='([^']+\.png)'")
  _check_pngs(tmp_path, pngs)
  assert set(pngs) == {"figures/contribution_distribution.png",
                       "figures/prior_weight.png"}
  for title in ("Contributions per object part", "Filter regions",
                "Explainer against the planted ground truth",
                "Training curves"):
    assert title not in _sections(page), title
  assert "rerun the evaluate stage" in page


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
  assert "Prior-loss weight" not in _sections(page)  # β unknown: no curve


def test_missing_or_damaged_metrics_raises(tmp_path):
  with pytest.raises(CheckpointError, match="evaluate stage"):
    report.write_report(str(tmp_path))
  (tmp_path / "metrics.json").write_text("{not json")
  with pytest.raises(CheckpointError, match="not valid JSON.*evaluate"):
    report.write_report(str(tmp_path))
  (tmp_path / "metrics.json").write_text("[1, 2]")
  with pytest.raises(CheckpointError, match="not a JSON object"):
    report.write_report(str(tmp_path))


