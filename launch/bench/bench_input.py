"""Host-side input throughput (``launch/bench/bench.py --input``): can the host feed the
accelerator?

Each source is timed on this host's CPU, in images per second, and per core (the rate divided
by the threads used, at most the cores available):

* ``jpeg``: CelebA-like faces (178×218 JPEGs that this benchmark writes with PIL into a
  temporary folder) read from disk, decoded, centre-cropped, resized to ``S`` and normalised
  (``celeba.CelebASource.get_batch`` with 1..N threads); ``jpeg uint8`` stops before
  normalising (``preprocess.crop_resize``; the normalisation would then run on the device);
  ``jpeg + prefetch`` is the whole path a training loop takes, ``Loader`` batches through
  ``prefetch_to_mesh`` onto the devices;
* ``synthetic``: rendering synthetic-attribute images (paid once per dataset) and gathering
  batches from the rendered in-memory arrays (what every step pays);
* ``feature cache``: batches of random rows of a memory-mapped feature cache (``.npy`` files of
  14×14×512 bfloat16 maps, y, y_i, w, written here first: the reads come from the page cache,
  not the disk); ``uint8 image cache`` the same for decoded, resized ``S×S`` uint8 images (decode
  each JPEG once, then every epoch reads pixels).

It ends with the cores needed to feed ``--target_img_s`` images per second from JPEGs.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
import time

import ml_dtypes
import numpy as np
from PIL import Image

from xplain_jax.infra import parallel
from xplain_jax import utils
from xplain_jax.data import celeba, feature_cache, input_pipeline, prefetch, preprocess
from xplain_jax.data import synthetic_attributes as sa

CELEBA_HW = (218, 178)  # aligned CelebA faces, H×W
INPUT_COLUMNS = ("source", "threads", "batch", "img/s", "img/s per core", "MB/s out")


def fake_face_jpeg(rng: np.random.Generator, quality: int = 90) -> bytes:
  """A 178×218 JPEG with a face photo's statistics: smooth shapes plus mild noise (~15 KB)."""
  small = rng.integers(0, 256, (14, 12, 3), dtype=np.uint8)
  smooth = Image.fromarray(small).resize(CELEBA_HW[::-1], Image.Resampling.BICUBIC)
  pixels = np.asarray(smooth).astype(np.int16) + rng.integers(-12, 13, CELEBA_HW + (3,))
  buf = io.BytesIO()
  Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=quality)
  return buf.getvalue()


class JpegFiles:
  """CelebA-like records read from JPEG files on each access (as a data source reads them)."""

  def __init__(self, paths: list[str]):
    self.paths = paths
    self.attributes = {n: False for n in celeba.ATTRIBUTE_NAMES}

  def __len__(self) -> int:
    return len(self.paths)

  def __getitem__(self, i: int) -> dict:
    with open(self.paths[i], "rb") as f:
      return {"image": f.read(), "attributes": self.attributes}


def write_jpegs(directory: str, num: int, seed: int = 0) -> list[str]:
  """Writes ``num`` fake faces ``face_00000.jpg, ...`` into ``directory``; their paths."""
  rng = np.random.default_rng(seed)
  paths = []
  for i in range(num):
    paths.append(os.path.join(directory, f"face_{i:05d}.jpg"))
    with open(paths[-1], "wb") as f:
      f.write(fake_face_jpeg(rng))
  return paths


def rate(fn, items: int, repeats: int) -> float:
  """Items per second of ``fn()`` (which handles ``items`` items): the best of ``repeats``."""
  best = math.inf
  for _ in range(max(1, repeats)):
    t0 = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - t0)
  return items / best


def _row(source: str, threads: int, batch: int, img_s: float, bytes_per_img: int) -> dict:
  cores = min(threads, os.cpu_count() or 1)
  return {"source": source, "threads": threads, "batch": batch, "img_per_s": img_s,
          "img_per_s_per_core": img_s / cores, "mb_per_s": img_s * bytes_per_img / 1e6}


def bench_jpeg(paths, *, size: int, batch: int, threads: list[int], repeats: int) -> list[dict]:
  """Rows for the JPEG sources: decode+resize+normalise per thread count, uint8, prefetch."""
  records = JpegFiles(paths)
  idx = np.arange(batch) % len(paths)
  rows = []
  for t in threads:
    src = celeba.CelebASource(records, image_size=size, num_threads=t)
    rows.append(_row("jpeg", t, batch, rate(lambda: src.get_batch(idx), batch, repeats),
                     size * size * 12))
  uint8 = lambda: [preprocess.crop_resize(records[int(i)]["image"], size) for i in idx]
  rows.append(_row("jpeg uint8", 1, batch, rate(uint8, batch, repeats), size * size * 3))
  t, mesh = max(threads), parallel.make_mesh()
  b = min(batch, len(paths))
  loader = input_pipeline.Loader(celeba.CelebASource(records, image_size=size, num_threads=t),
                           max(mesh.devices.size, b - b % mesh.devices.size), seed=0)

  def through_prefetch(steps: int = 4):
    for _, b in prefetch.prefetch_to_mesh(loader, mesh, start_step=0, num_steps=steps, size=2):
      b["image"].block_until_ready()

  rows.append(_row("jpeg + prefetch", t, loader.batch_size,
                   rate(through_prefetch, 4 * loader.batch_size, 1), size * size * 12))
  return rows


def bench_synthetic(*, size: int, num: int, batch: int, repeats: int) -> list[dict]:
  """Rows for the synthetic data: rendering (once per dataset) and batch gathers (every step)."""
  t0 = time.perf_counter()
  arrays = sa.make_dataset(num, image_size=size, seed=0)
  render = num / (time.perf_counter() - t0)
  src = input_pipeline.ArraySource(arrays)
  loader = input_pipeline.Loader(src, min(batch, num), seed=0, check=False)
  gather = rate(lambda: loader.batch(1), loader.batch_size, repeats)
  return [_row("synthetic render", 1, num, render, size * size * 12),
          _row("synthetic gather", 1, loader.batch_size, gather, size * size * 12)]


def bench_cache(directory: str, *, num: int, batch: int, repeats: int, feature=(14, 14, 512),
                num_concepts: int = 39, image_size: int = 0) -> list[dict]:
  """Rows for random batches of a memory-mapped feature cache of ``num`` examples (and, with
  ``image_size``, of a cache of decoded ``[S,S,3]`` uint8 images)."""
  rng = np.random.default_rng(0)
  feats = rng.standard_normal((num,) + feature, np.float32).astype(ml_dtypes.bfloat16)
  cache = feature_cache.write_cache(directory, {
      "feat": feats, "y": rng.standard_normal(num, np.float32),
      "y_i": rng.standard_normal((num, num_concepts), np.float32),
      "w": rng.standard_normal((num, num_concepts), np.float32)})
  del feats
  loader = input_pipeline.Loader(cache, min(batch, num), seed=0)
  steps = iter(range(10**9))
  per_img = 2 * math.prod(feature) + 4 * (1 + 2 * num_concepts)
  rows = [_row("feature cache (mmap)", 1, loader.batch_size,
               rate(lambda: loader.batch(next(steps)), loader.batch_size, repeats), per_img)]
  if image_size:  # decoded, resized uint8 images: decode once, then read like the features
    pixels = os.path.join(directory, "pixels")
    shape = (num, image_size, image_size, 3)
    cached = feature_cache.write_cache(
        pixels, {"pixels": rng.integers(0, 256, shape, dtype=np.uint8)})
    images = input_pipeline.Loader(cached, min(batch, num), seed=0,
                             check=False)
    rows.append(_row("uint8 image cache (mmap)", 1, images.batch_size,
                     rate(lambda: images.batch(next(steps)), images.batch_size, repeats),
                     math.prod(shape[1:])))
  return rows


def cores_needed(rows: list[dict], target: float) -> dict:
  """Cores to reach ``target`` img/s per JPEG path, from its single-thread rate."""
  out = {}
  for source in ("jpeg", "jpeg uint8"):
    one = [r for r in rows if r["source"] == source and r["threads"] == 1]
    if one:
      out[source] = math.ceil(target / one[0]["img_per_s"])
  return out


def format_rows(rows: list[dict]) -> str:
  """The rows as a Markdown table with ``INPUT_COLUMNS``."""
  lines = ["| " + " | ".join(INPUT_COLUMNS) + " |", "|" + "---|" * len(INPUT_COLUMNS)]
  for r in rows:
    lines.append(f"| {r['source']} | {r['threads']} | {r['batch']} | {r['img_per_s']:,.0f} | "
                 f"{r['img_per_s_per_core']:,.0f} | {r['mb_per_s']:,.0f} |")
  return "\n".join(lines)


def run(args) -> dict:
  """Runs every input benchmark with ``args`` (see ``bench.parse_args``); prints and returns."""
  cpus = os.cpu_count() or 1
  threads = ([int(t) for t in utils.split_list(args.input_threads)] if args.input_threads else
             sorted({1, 2, 4, 8, 16, cpus} & set(range(1, cpus + 1))))
  with tempfile.TemporaryDirectory() as tmp:
    paths = write_jpegs(tmp, args.input_images)
    rows = bench_jpeg(paths, size=args.image_size, batch=args.input_batch, threads=threads,
                      repeats=args.input_repeats)
    rows += bench_synthetic(size=args.image_size, num=args.input_synthetic,
                            batch=args.input_batch, repeats=args.input_repeats)
    rows += bench_cache(os.path.join(tmp, "features"), num=args.input_cache_rows,
                        batch=args.input_batch, repeats=args.input_repeats,
                        image_size=args.image_size)
  need = cores_needed(rows, args.target_img_s)
  print(f"Input pipeline on this host ({cpus} cores, {args.image_size}x{args.image_size} "
        f"outputs, {args.input_images} JPEGs of {CELEBA_HW[1]}x{CELEBA_HW[0]}):")
  print(format_rows(rows))
  for source, cores in need.items():
    print(f"cores to feed {args.target_img_s:,.0f} img/s from '{source}' (its 1-thread rate): "
          f"{cores}")
  return {"cpus": cpus, "rows": rows, "cores_needed": need, "target_img_s": args.target_img_s}
