"""Experiment 2 end to end: the shrunk CelebA config through every stage on mock TFDS data.

``tfds.testing.mock_data`` replaces ``tfds.data_source`` with random records drawn from the real
``celeb_a`` feature spec (218x178 images, the 40 attributes), so the run goes through
``data.get_source`` -> ``celeba.load`` exactly as a prepared dataset would, without TensorFlow
or files. Also: ImageNet initialisation from a torchvision-layout AlexNet file, and the error for
a dataset that was never prepared.
"""

import json
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tensorflow_datasets as tfds

from configs import celeba as celeba_config
from xplain_jax import data, models
from xplain_jax.data import celeba
from xplain_jax.report import figures, tables
from xplain_jax.run import pipeline
from xplain_jax.train import performer as performer_lib

TARGET = "Attractive"
# The 39 concepts, derived from the TFDS feature spec rather than from the project's tables.
OTHERS = [n for n in sorted(tfds.builder("celeb_a").info.features["attributes"].keys())
          if n != TARGET]


def _tiny_config():
  c = celeba_config.get_config("target=attractive,tiny")
  # Two steps per stage: 32 train images at batch 16; 16 test images, one eval batch.
  c.dataset.image_size, c.dataset.num_train, c.dataset.num_test = 32, 32, 16
  c.evals.explainer.num_report_images = 2
  return c


def _mock_celeba():
  return tfds.testing.mock_data(num_examples=32, policy=tfds.testing.MockPolicy.USE_CODE)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  """Runs every stage; records the labels of each bar chart the report stage draws."""
  workdir = str(tmp_path_factory.mktemp("celeba_tiny"))
  config = _tiny_config()
  drawn, original = [], figures._barh

  def spy(ax, reasons, title):
    original(ax, reasons, title)
    drawn.append((title, [t.get_text() for t in ax.get_yticklabels()]))

  with _mock_celeba(), pytest.MonkeyPatch.context() as mp:
    mp.setattr(figures, "_barh", spy)
    metrics = pipeline.train_and_evaluate(config, workdir)
  return workdir, config, metrics, drawn


def test_source_gives_the_common_layout():
  config = _tiny_config()
  with _mock_celeba():
    train, test = data.get_source(config, "train"), data.get_source(config, "test")
    assert len(train) == 32 and len(test) == 16  # num_test limits the 32 mock records
    batch = test.get_batch(np.arange(3))
  assert batch["image"].shape == (3, 32, 32, 3) and batch["image"].dtype == np.float32
  assert batch["labels"].shape == (3, 40) and set(np.unique(batch["labels"])) <= {0.0, 1.0}


@pytest.mark.slow
def test_metrics_and_meta(tiny_run):
  workdir, config, metrics, _ = tiny_run
  with open(os.path.join(workdir, "metrics.json")) as f:
    on_disk = json.load(f)
  assert on_disk["performer"]["accuracy"] == pytest.approx(metrics["performer"]["accuracy"])
  assert on_disk["performer"]["num_test"] == 16
  for variant in ("baseline", "prior"):
    assert {"entropy", "accuracy", "relative_deviation"} <= set(on_disk[variant])
    assert "gt_rank_correlation" not in on_disk[variant]  # CelebA has no planted truth
    for key in ("entropy", "accuracy", "relative_deviation"):
      assert np.isfinite(on_disk[variant][key]), (variant, key)
    assert 0.0 <= on_disk[variant]["entropy"] <= np.log(39) + 1e-5
    assert 0.0 <= on_disk[variant]["accuracy"] <= 100.0
  assert on_disk["meta"]["dataset"] == "celeba" and on_disk["meta"]["num_concepts"] == 39
  with open(os.path.join(workdir, "eval", "meta.json")) as f:
    meta = json.load(f)
  assert meta["target_name"] == TARGET and meta["case"] == "shared_feature"
  assert meta["concept_names"] == OTHERS
  assert meta["beta"] == pytest.approx(0.2)  # the paper's β for Experiment 2
  for name in ("report.html", "report.md", "logs/performer.jsonl",
               "logs/explainer_baseline.jsonl", "logs/explainer_prior.jsonl"):
    assert os.path.exists(os.path.join(workdir, name)), name


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Sharding info not provided")
def test_concepts_are_the_other_attribute_logits(tiny_run):
  """y and y_i in eval/*.npz are the restored performer's logits of the named attributes."""
  workdir, config, _, _ = tiny_run
  ckpt_dir = os.path.join(workdir, "performer", "ckpt")
  step = max(int(s) for s in os.listdir(ckpt_dir) if s.isdigit())
  state = ocp.PyTreeCheckpointer().restore(os.path.join(ckpt_dir, str(step), "state"))
  spec = data.get_spec(config)
  module = performer_lib.build_performer(config, spec)
  with _mock_celeba():
    batch = data.get_source(config, "test").get_batch(np.arange(16))
  logits, _ = module.apply({"params": state["params"]}, batch["image"], train=False)
  logits = np.asarray(logits)
  ev = np.load(os.path.join(workdir, "eval", "prior.npz"))
  col = {n: i for i, n in enumerate(celeba.ATTRIBUTE_NAMES)}
  np.testing.assert_allclose(ev["y"], logits[:, col[TARGET]], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(ev["concepts"], logits[:, [col[n] for n in OTHERS]],
                             rtol=1e-4, atol=1e-5)
  np.testing.assert_array_equal(ev["labels"], batch["labels"][:, col[TARGET]])


@pytest.mark.slow
def test_report_bars_say_no_for_absent_attributes(tiny_run):
  workdir, _, _, drawn = tiny_run
  assert len(drawn) == 4  # 2 report images x (baseline, prior), top 5 reasons each
  signs = set()
  for k in range(2):
    for variant in ("baseline", "prior"):
      ev = np.load(os.path.join(workdir, "eval", f"{variant}.npz"))
      y_i = ev["concepts"][k]
      top = np.argsort(-np.abs(ev["alpha"][k] * y_i), kind="stable")[:5]
      want = [_absent(OTHERS[i]) if y_i[i] < 0 else OTHERS[i] for i in top]
      signs |= {bool(y_i[i] < 0) for i in top}
      title, labels = drawn[2 * k + (variant == "prior")]
      assert title.startswith(variant)
      concepts = [t for t in labels if not t.startswith(figures.NOT_CONCEPTS)]  # rest, b, y − ŷ
      assert concepts == want[::-1]  # the largest reason is drawn on top
  assert signs == {True, False}  # both kinds of label were exercised


def _absent(name):
  """How an absent attribute reads: "no X", and "X" for a negated name "No_X"."""
  return name[3:] if name.startswith("No_") else "no " + name


def test_concept_label_with_celeba_names():
  assert tables.concept_label("No_Beard", -0.7, "shared_feature") == "Beard"
  assert tables.concept_label("No_Beard", 0.7, "shared_feature") == "No_Beard"
  assert tables.concept_label("Eyeglasses", -0.4, "shared_feature") == "no Eyeglasses"
  assert tables.concept_label("Eyeglasses", 0.4, "shared_feature") == "Eyeglasses"
  assert tables.concept_label("Heavy_Makeup", -1e-3, "shared_feature") == "no Heavy_Makeup"
  assert tables.concept_label("filter_3", -2.0, "filter") == "filter_3"  # Case 1: no negation


def test_not_prepared_celeba_through_get_source(tmp_path):
  config = _tiny_config()
  config.dataset.data_dir = str(tmp_path)
  with pytest.raises(celeba.DatasetNotPreparedError) as info:
    data.get_source(config, "train")
  msg = str(info.value)
  assert "\n" not in msg and "CelebA is not prepared" in msg
  assert os.path.join(str(tmp_path), "celeb_a") in msg
  assert f"tfds build celeb_a --data_dir={tmp_path} --file_format=array_record" in msg


# ---- ImageNet initialisation from a torchvision file -------------------------------------------

def _torch_alexnet_state(torch):
  """A full-width AlexNet state dict with torchvision's key names (default torch init)."""
  nn = torch.nn
  torch.manual_seed(0)
  features = nn.Sequential(
      nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
      nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
      nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
      nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
      nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2))
  classifier = nn.Sequential(
      nn.Dropout(), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(),
      nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 1000))
  net = nn.Module()
  net.features, net.classifier = features, classifier
  return {k: v.numpy() for k, v in net.state_dict().items()}


@pytest.mark.slow
def test_imagenet_init_from_torchvision_file(tmp_path):
  torch = pytest.importorskip("torch")
  sd = _torch_alexnet_state(torch)
  path = str(tmp_path / "alexnet-owt.pth")
  torch.save({k: torch.from_numpy(v) for k, v in sd.items()}, path)
  variables = performer_lib.imagenet_init("alexnet", path, 40, jax.random.PRNGKey(0))
  p = jax.tree.map(np.asarray, variables["params"])
  # Same tree and shapes as a fresh 40-output AlexNet performer.
  module = models.get_performer("alexnet", num_outputs=40)
  shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), np.zeros((1, 63, 63, 3), np.float32))
  assert jax.tree.map(lambda s: s.shape, shapes["params"]) == jax.tree.map(np.shape, p)
  # Convs: torch OIHW -> HWIO.
  for i, index in enumerate((0, 3, 6, 8, 10)):
    np.testing.assert_array_equal(p[f"convs_{i}"]["kernel"],
                                  sd[f"features.{index}.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(p[f"convs_{i}"]["bias"], sd[f"features.{index}.bias"])
  # fc6 as a function: torch flattens the pooled 6x6x256 map as C,H,W, Flax as H,W,C.
  pooled = np.random.default_rng(0).normal(size=(6, 6, 256)).astype(np.float32)
  want = sd["classifier.1.weight"] @ pooled.transpose(2, 0, 1).reshape(-1)
  np.testing.assert_allclose(pooled.reshape(-1) @ p["fc6"]["kernel"], want, rtol=1e-4, atol=1e-4)
  np.testing.assert_array_equal(p["fc6"]["bias"], sd["classifier.1.bias"])
  np.testing.assert_array_equal(p["fc7"]["kernel"], sd["classifier.4.weight"].T)
  np.testing.assert_array_equal(p["fc7"]["bias"], sd["classifier.4.bias"])
  # The last layer is new: 40 outputs, zero bias, LeCun-normal kernel (std 1/sqrt(4096)).
  assert p["fc8"]["kernel"].shape == (4096, 40)
  np.testing.assert_array_equal(p["fc8"]["bias"], 0.0)
  assert p["fc8"]["kernel"].std() == pytest.approx(1 / 64, rel=0.05)
