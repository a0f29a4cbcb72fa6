"""Experiment 1 end to end: the shrunk parts config through every stage, user annotations,
configs."""

import glob
import json
import os
import shutil

import numpy as np
import pytest

from configs import parts as parts_config
from configs import pascal_part as pascal_config
from xplain_jax import data
from xplain_jax.core import parts
from xplain_jax.run import workdir as workdir_lib
from xplain_jax.data import pascal_part as pp
from xplain_jax.errors import DataError
from xplain_jax.evaluators import parts as parts_eval
from xplain_jax.run import pipeline
from xplain_jax.train import performer as performer_lib


def _tiny_config():
  c = parts_config.get_config("tiny,tiny")
  c.stages = "performer,explainer,evaluate"  # the report is tested elsewhere
  return c


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("parts_tiny"))
  config = _tiny_config()
  return workdir, config, pipeline.train_and_evaluate(config, workdir)


@pytest.mark.slow
def test_tiny_parts_run_writes_every_result(tiny_run):
  workdir, config, metrics = tiny_run
  n = config.performer.model.top_channels
  num_test = config.dataset.num_test
  names = list(data.get_spec(config).part_names)
  # (a) the suggested annotation, readable and covering every filter.
  f2p, part_names = parts.load_part_annotation(os.path.join(workdir, "parts.json"))
  assert f2p.shape == (n,) and list(part_names) == names
  # (b) part contributions = the annotated filters' α_i y_i summed, per variant.
  for variant in ("baseline", "prior"):
    ev = np.load(os.path.join(workdir, "eval", f"{variant}.npz"))
    assert ev["part_contrib"].shape == (num_test, len(names))
    contrib = ev["alpha"] * ev["concepts"]
    for p in range(len(names)):
      np.testing.assert_allclose(ev["part_contrib"][:, p], contrib[:, f2p == p].sum(1),
                                 rtol=1e-5, atol=1e-6)
  # (c), (d) Grad-CAM maps, part masks and filter regions for the report.
  with np.load(os.path.join(workdir, "eval", "images.npz"), allow_pickle=False) as im:
    k = im["images"].shape[0]
    assert im["gradcam"].shape[0] == k and im["gradcam"].ndim == 3
    assert np.all((im["gradcam"] >= 0) & (im["gradcam"] <= 1))
    assert im["part_mask"].shape == im["images"].shape[:3]
    assert im["part_mask"].min() >= -1 and im["part_mask"].max() < len(names)
    regions, region_names = im["filter_regions"], im["filter_region_names"]
    assert regions.ndim == 4 and regions.shape[0] == config.evals.parts.num_regions
    assert regions.shape[-1] == 3 and region_names.dtype.kind == "U"
    assert len(region_names) == regions.shape[0]
  # (e) part metrics.
  with open(os.path.join(workdir, "metrics.json")) as f:
    on_disk = json.load(f)
  m = on_disk["parts"]
  assert m == metrics["parts"]
  for key in ("selectivity_interpretable", "selectivity_ordinary", "selectivity_chance"):
    assert 0.0 <= m[key] <= 1.0, key
  assert 0.0 <= m["ordinary_performer_accuracy"] <= 100.0
  assert sum(m["filters_per_part"].values()) == n
  for variant in ("baseline", "prior"):
    assert set(m["contributions"][variant]) == set(names) | {parts.NONE}
    ev = np.load(os.path.join(workdir, "eval", f"{variant}.npz"))
    assert m["contributions"][variant][names[0]] == pytest.approx(
        float(ev["part_contrib"][:, 0].mean()), rel=1e-5, abs=1e-6)
    assert np.isfinite(on_disk[variant]["entropy"])
  assert os.path.exists(os.path.join(workdir, "performer_ordinary", "done.json"))
  with open(os.path.join(workdir, "eval", "meta.json")) as f:
    meta = json.load(f)
  assert meta["part_names"] == names and len(meta["concept_names"]) == n


@pytest.mark.slow
def test_user_annotation_is_used(tiny_run, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(tiny_run[0], workdir)  # the finished stages, reused below
  # The recorded config.json would refuse a changed evals.parts.annotation as "another experiment".
  os.remove(os.path.join(workdir, "config.json"))
  config = tiny_run[1]
  n = config.performer.model.top_channels
  # Every filter on "leg" except filter 0 on "muzzle" and filter 1 on none: names the masks
  # do not have, so they can only come from the file.
  f2p = np.zeros(n, np.int32)
  f2p[0], f2p[1] = 1, -1
  path = str(tmp_path / "mine.json")
  parts.save_part_annotation(path, f2p, ("leg", "muzzle"))
  config = _tiny_config()
  config.stages = "evaluate"  # reuses the finished stages of the run
  config.evals.parts.annotation = path
  metrics = pipeline.train_and_evaluate(config, workdir)
  m = metrics["parts"]
  assert m["annotation"] == path and m["part_names"] == ["leg", "muzzle"]
  assert m["filters_per_part"] == {"leg": n - 2, "muzzle": 1, "none": 1}
  ev = np.load(os.path.join(workdir, "eval", "prior.npz"))
  contrib = ev["alpha"] * ev["concepts"]
  # Signed y_i (the paper's mask order) make the part sums cancel: float32 rounding is
  # relative to the summed magnitudes, not to the sum.
  atol = 1e-6 * max(1.0, float(np.abs(contrib).sum(1).max()))
  np.testing.assert_allclose(ev["part_contrib"][:, 1], contrib[:, 0], rtol=1e-5, atol=atol)
  np.testing.assert_allclose(ev["part_contrib"][:, 0], contrib[:, 2:].sum(1), rtol=1e-5,
                             atol=atol)


def test_annotation_of_the_wrong_size_is_refused(tmp_path):
  config = _tiny_config()
  bad = tmp_path / "short.json"
  parts.save_part_annotation(bad, np.zeros(3, np.int32), ("leg",))
  config.evals.parts.annotation = str(bad)
  top_conv = np.ones((2, 4, 4, 5), np.float32)
  with pytest.raises(ValueError, match="annotate every filter"):
    parts_eval.load_or_suggest_annotation(config.evals.parts, ("head",), top_conv, None,
                                          workdir=str(tmp_path))
  config.evals.parts.annotation = ""
  with pytest.raises(DataError, match="no part masks"):
    parts_eval.load_or_suggest_annotation(config.evals.parts, ("head",), top_conv, None,
                                          workdir=str(tmp_path))


def test_crop_regions_centres_on_the_cell():
  # A 16x16 image, 4x4 grid: cell (1, 2) covers pixels rows 4..7, cols 8..11, centre (6, 10).
  img = np.zeros((1, 16, 16, 3), np.float32)
  img[0, 6, 10] = 1.0
  out = parts_eval.crop_regions(img, np.array([[1, 2]]), (4, 4), region_size=0.25)
  assert out.shape == (1, 4, 4, 3)
  assert out[0, 2, 2, 0] == 1.0           # rows 4..7, cols 8..11 -> the pixel at (2, 2)
  edge = parts_eval.crop_regions(img, np.array([[3, 3]]), (4, 4), region_size=0.5)
  assert edge.shape == (1, 8, 8, 3)       # shifted inside: rows 8..15, cols 8..15
  np.testing.assert_array_equal(edge[0], img[0, 8:, 8:])


def test_peak_cells_finds_the_maximum():
  tc = np.zeros((3, 4, 5, 2), np.float32)
  tc[2, 1, 3, 0] = 5.0
  tc[0, 3, 0, 1] = 2.0
  tc[1, 0, 0, 1] = 1.0
  np.testing.assert_array_equal(parts_eval.peak_cells(tc, [0, 1]), [[2, 1, 3], [0, 3, 0]])


def test_selectivity_chance_by_hand():
  # Image 0: part 1 has 3 pixels, part 2 has 1 -> shares (0.75, 0.25); image 1: only part 2.
  m = np.zeros((2, 2, 2), np.int32)
  m[0] = [[1, 1], [1, 2]]
  m[1] = [[2, 0], [0, 0]]
  assert parts_eval.selectivity_chance(m, 2) == pytest.approx(max(0.375, 0.625))


def test_ordinary_config_drops_only_the_interpretable_parts():
  c = parts_config.get_config("")
  o = performer_lib.ordinary_config(c)
  assert not o.performer.interpretable and o.performer.filter_loss_weight == 0.0
  assert c.performer.interpretable and c.performer.filter_loss_weight > 0.0  # unchanged
  assert o.performer.model.to_dict() == c.performer.model.to_dict()
  assert o.performer.optimizer.to_dict() == c.performer.optimizer.to_dict()


@pytest.mark.parametrize("arch", parts_config.ARCHS)
def test_parts_config_builds_for_every_arch(arch):
  for arg in (arch, f"{arch},tiny", f"arch={arch}"):
    c = parts_config.get_config(arg)
    spec = data.get_spec(c)
    assert spec.case == "filter" and c.explainer.case == "filter"
    assert c.performer.interpretable and c.explainer.positive and c.explainer.clip_prior
    assert c.explainer.prior_kind == "cross_entropy" and c.explainer.beta == 10.0
  with pytest.raises(ValueError, match="unknown config argument"):
    parts_config.get_config("resnet")


@pytest.mark.parametrize("arch", pascal_config.ARCHS)
@pytest.mark.parametrize("category", pp.ANIMALS)
def test_pascal_part_config_builds(arch, category):
  c = pascal_config.get_config(f"arch={arch},category={category}")
  assert c.dataset.name == "pascal_part" and c.dataset.category == category
  assert c.dataset.image_size == 224 and c.performer.arch == arch
  spec = data.get_spec(c)
  assert spec.case == "filter" and spec.output_names == (category,)
  assert spec.part_names == pp.PART_NAMES
  assert c.performer.model.get("top_channels", None) in (None, pascal_config.NUM_FILTERS[arch])


def test_pascal_part_config_rejects_bad_arguments():
  assert pascal_config.CATEGORIES == pp.ANIMALS
  with pytest.raises(ValueError, match="category"):
    pascal_config.get_config("category=unicorn")
  with pytest.raises(ValueError, match="arch"):
    pascal_config.get_config("arch=resnet50")


@pytest.mark.slow
def test_a_finished_run_passes_its_own_identity_check(tiny_run):
  # launch/run.py compares every recorded identity (stage markers and checkpoint metas) with
  # the config before rerunning; the ordinary performer's checkpoints must carry the run's
  # identity too, or a finished parts run could never be rerun or resumed by a study.
  workdir, config, _ = tiny_run
  metas = glob.glob(os.path.join(workdir, "performer_ordinary", "ckpt", "*", "meta", "metadata"))
  assert metas
  workdir_lib.check_recorded_identities(config, workdir)
