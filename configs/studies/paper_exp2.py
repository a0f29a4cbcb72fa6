r"""The paper's Experiment-2 tables: CelebA targets attractive, heavy makeup, male, young ×
baseline/prior, GPU, real data (prepare CelebA first, see configs/celeba.py).

Columns are the targets plus ``Avg.`` pooling the four (as the paper's last column); cells are
mean ± 95 % interval over the seeds (n = seeds; n = 4 × seeds for Avg.), prior − baseline rows
are per-run differences on the same performer with a paired t-test. ``explainer.target`` is
read by the featurizer, so each target trains its own performer under the study's conservative
sharing rule (the performer itself learns all 40 attributes either way).

  python launch/study.py --config=configs/studies/paper_exp2.py --workdir=studies/exp2 \
      --config.fixed.performer.init_from=/path/to/vgg16-397923af.pth --jobs=4

Argument: ``seeds=N`` (default 3), ``tiny`` (64 px smoke run), comma-separated.
"""

import importlib.util
import os

import ml_collections

from xplain_jax.study import blocks

TARGETS = ("attractive", "heavy_makeup", "male", "young")
LABELS = {"attractive": "attractive", "heavy_makeup": "makeup", "male": "male",
          "young": "young", "all": "Avg."}


def _load(name: str):
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), name)
  spec = importlib.util.spec_from_file_location(f"_study_{name[:-3]}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  a = _load("paper_table1.py").parse_arg(arg or "seeds=3")
  if a["by_category"]:
    raise ValueError("paper_exp2.py has no categories; use seeds=N and/or tiny.")
  c = ml_collections.ConfigDict()
  c.name = "paper_exp2"
  c.base = "configs/celeba.py:target={explainer.target}" + (",tiny" if a["tiny"] else "")
  c.fixed = ml_collections.ConfigDict(dict(dataset=dict(data_dir=""),
                                           performer=dict(init_from="")))
  c.axes = ml_collections.ConfigDict()
  c.axes.target = dict(explainer=dict(target=TARGETS))
  c.axes.seed = dict(seed=tuple(range(a["seeds"])))
  c.replicates = "seed"
  c.share = blocks.SHARE
  c.require = ""
  c.table = blocks.table(columns="explainer.target", average_column=True,
                         variant_metrics="entropy,accuracy,relative_deviation",
                         metrics="performer.accuracy", labels=LABELS)
  c.slurm = blocks.slurm(time="12:00:00", gpus_per_task=1, cpus_per_task=16)
  return c
