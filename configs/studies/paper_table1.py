r"""The paper's Table 1 (and Table 2): AlexNet, VGG-M, VGG-S, VGG-16 × the six Pascal-Part
animal categories × baseline/prior, GPU, real data (prepare it first, see configs/pascal_part.py).

Columns are the architectures; each cell pools the six categories (and the seeds), as the
paper averages over categories: mean ± 95 % interval, n = 6 × seeds. The prior − baseline rows
are per-run differences (same performer). ``by_category`` adds a row per category (the
appendix's Tables 3-5).

  python launch/study.py --config=configs/studies/paper_table1.py --workdir=studies/table1 \
      --config.fixed.dataset.data_dir=DATA_DIR --jobs=8      # one GPU per worker
  python launch/study.py --config=configs/studies/paper_table1.py --workdir=studies/table1 \
      --config.fixed.dataset.data_dir=DATA_DIR --emit=slurm  # a SLURM job array

ImageNet weights (torchvision files) per architecture, in the order alexnet, vgg_m, vgg_s,
vgg16 ("" = from scratch):
``--config.axes.arch.performer.init_from="('/w/alexnet.pth','','','/w/vgg16.pth')"``.
Argument: ``seeds=N`` (default 1), ``by_category``, ``tiny`` (64 px smoke run), comma-separated.
"""

import ml_collections

from xplain_jax import utils
from xplain_jax.study import blocks

ARCHS = ("alexnet", "vgg_m", "vgg_s", "vgg16")
CATEGORIES = ("bird", "cat", "cow", "dog", "horse", "sheep")
LABELS = {"alexnet": "AlexNet", "vgg_m": "VGG-M", "vgg_s": "VGG-S", "vgg16": "VGG-16",
          "all": "Avg."}


def parse_arg(arg: str) -> dict:
  out = dict(seeds=1, by_category=False, tiny=False)
  for part in utils.split_list(arg):
    if part.startswith("seeds=") and part[6:].isdigit() and int(part[6:]) > 0:
      out["seeds"] = int(part[6:])
    elif part in ("by_category", "tiny"):
      out[part] = True
    else:
      raise ValueError(f"unknown argument {part!r}; use seeds=N (N >= 1), by_category and/or "
                       "tiny, comma-separated.")
  return out


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  a = parse_arg(arg)
  c = ml_collections.ConfigDict()
  c.name = "paper_table1"
  c.base = ("configs/pascal_part.py:arch={performer.arch},category={dataset.category}"
            + (",tiny" if a["tiny"] else ""))
  c.fixed = ml_collections.ConfigDict(dict(dataset=dict(data_dir="")))
  c.axes = ml_collections.ConfigDict()
  c.axes.arch = dict(performer=dict(arch=ARCHS, init_from=("",) * len(ARCHS)))
  c.axes.category = dict(dataset=dict(category=CATEGORIES))
  c.axes.seed = dict(seed=tuple(range(a["seeds"])))
  c.replicates = "seed"
  c.share = blocks.SHARE
  c.require = ""
  c.table = blocks.table(
      columns="performer.arch", rows="dataset.category" if a["by_category"] else "",
      variant_metrics="entropy,accuracy,relative_deviation",
      metrics="performer.accuracy,parts.selectivity_interpretable,parts.selectivity_ordinary",
      metric_pairs="parts.selectivity_interpretable:parts.selectivity_ordinary",
      labels=LABELS)
  c.slurm = blocks.slurm(time="12:00:00", gpus_per_task=1, cpus_per_task=16)
  return c
