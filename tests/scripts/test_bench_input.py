"""launch/bench/bench.py --input (bench_input.py) on tiny settings: the fake CelebA files, every
source's row, and the cores-needed arithmetic. No timing assertions: rates are only checked to be
positive and consistent with each other."""

from __future__ import annotations

import importlib.util
import io
import json
import math
import pathlib
import sys

import numpy as np
import pytest
from PIL import Image

from xplain_jax.data import celeba, preprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
  spec = importlib.util.spec_from_file_location("bench", ROOT / "launch" / "bench" / "bench.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)  # puts launch/ on sys.path
  return module


@pytest.fixture(scope="module")
def bench_input(bench):
  return sys.modules.get("bench_input") or importlib.import_module("bench_input")


def test_fake_faces_are_celeba_sized_jpegs(bench_input):
  data = bench_input.fake_face_jpeg(np.random.default_rng(0))
  with Image.open(io.BytesIO(data)) as img:
    assert img.format == "JPEG" and img.size == (178, 218) and img.mode == "RGB"
  assert 3_000 < len(data) < 60_000  # CelebA's aligned faces are ~10 KB each


def test_jpeg_files_read_back_as_records(bench_input, tmp_path):
  paths = bench_input.write_jpegs(str(tmp_path), 3, seed=1)
  assert [pathlib.Path(p).name for p in paths] == ["face_00000.jpg", "face_00001.jpg",
                                                    "face_00002.jpg"]
  records = bench_input.JpegFiles(paths)
  assert len(records) == 3 and records[1]["image"] == pathlib.Path(paths[1]).read_bytes()
  batch = celeba.CelebASource(records, image_size=16, num_threads=2).get_batch(np.array([2, 0]))
  np.testing.assert_array_equal(batch["image"][0],
                                preprocess.preprocess_image(records[2]["image"], 16))
  assert batch["labels"].shape == (2, 40)


def test_cores_needed_from_the_single_thread_rate(bench_input):
  rows = [{"source": "jpeg", "threads": 1, "img_per_s": 700.0},
          {"source": "jpeg", "threads": 2, "img_per_s": 1300.0},
          {"source": "jpeg uint8", "threads": 1, "img_per_s": 1000.0}]
  assert bench_input.cores_needed(rows, 9000.0) == {"jpeg": 13, "jpeg uint8": 9}
  assert bench_input.cores_needed(rows[1:2], 9000.0) == {}


def test_input_benchmark_end_to_end(bench, tmp_path, capsys):
  out = tmp_path / "input.json"
  result = bench.main(["--input", "--small", "--input_images=12", "--input_batch=8",
                       "--input_threads=1,2", "--input_repeats=1", "--input_synthetic=4",
                       "--input_cache_rows=24", "--target_img_s=9000", f"--json={out}"])
  assert json.loads(out.read_text()) == json.loads(json.dumps(result))
  sources = [(r["source"], r["threads"]) for r in result["rows"]]
  assert sources == [("jpeg", 1), ("jpeg", 2), ("jpeg uint8", 1), ("jpeg + prefetch", 2),
                     ("synthetic render", 1), ("synthetic gather", 1),
                     ("feature cache (mmap)", 1), ("uint8 image cache (mmap)", 1)]
  for r in result["rows"]:
    assert r["img_per_s"] > 0 and r["mb_per_s"] > 0
    assert r["img_per_s_per_core"] == pytest.approx(r["img_per_s"] / min(r["threads"],
                                                                         result["cpus"]))
  one = {r["source"]: r["img_per_s"] for r in result["rows"] if r["threads"] == 1}
  assert result["cores_needed"] == {"jpeg": math.ceil(9000 / one["jpeg"]),
                                    "jpeg uint8": math.ceil(9000 / one["jpeg uint8"])}
  text = capsys.readouterr().out
  assert "| source | threads | batch | img/s | img/s per core | MB/s out |" in text
  assert "cores to feed 9,000 img/s from 'jpeg'" in text
