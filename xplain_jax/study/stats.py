"""Summary statistics of repeated runs: means, 95 % t-intervals, paired differences.

Pure functions of lists of floats; no files. ``summarize([0.1, 0.3, 0.2])`` gives mean, sample
standard deviation (ddof = 1), n and the two-sided 95 % Student-t interval
``mean ± t_{0.975, n-1} · std / √n``; ``paired`` does the same for the differences a − b of
matched samples and adds the paired t-test's p-value (``scipy.stats.ttest_rel``).

References: Student's t-interval for a mean; the paired t-test on matched differences.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
from scipy import stats as sps

from xplain_jax import utils

CONFIDENCE = 0.95


def _finite(values: Iterable) -> list[float]:
  return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def summarize(values: Sequence[float], *, confidence: float = CONFIDENCE) -> dict:
  """Mean, std (ddof = 1), n and the t-interval of ``values`` (None/NaN entries dropped).

  Returns:
    dict with ``mean``, ``std``, ``n``, ``ci_low``, ``ci_high``, ``half_width``; statistics that
    need more samples than there are (std and interval for n < 2, everything for n = 0) are None.
  """
  x = np.asarray(_finite(values), np.float64)
  n = int(x.size)
  out = dict(mean=None, std=None, n=n, ci_low=None, ci_high=None, half_width=None)
  if n == 0:
    return out
  out["mean"] = float(x.mean())
  if n < 2:
    return out
  std = float(x.std(ddof=1))
  half = float(sps.t.ppf(0.5 + confidence / 2, n - 1) * std / math.sqrt(n))
  out.update(std=std, half_width=half, ci_low=out["mean"] - half, ci_high=out["mean"] + half)
  return out


def paired(a: Sequence[float], b: Sequence[float], *, confidence: float = CONFIDENCE) -> dict:
  """Statistics of the differences ``a[k] − b[k]`` over pairs where both are finite.

  Adds ``p_value``, the two-sided paired t-test of mean difference 0 (None for n < 2 or when
  every difference is equal, where the test is undefined).
  """
  if len(a) != len(b):
    raise ValueError(f"paired samples of different lengths ({len(a)} vs {len(b)}); pass one "
                     "value of each per run, None where a run is missing.")
  keep = [(float(x), float(y)) for x, y in zip(a, b) if x is not None and y is not None
          and math.isfinite(float(x)) and math.isfinite(float(y))]
  out = summarize([x - y for x, y in keep], confidence=confidence)
  out["p_value"] = None
  if out["n"] >= 2 and out["std"]:
    xs, ys = zip(*keep)
    out["p_value"] = float(sps.ttest_rel(xs, ys).pvalue)
  return out


def numeric_leaves(tree: dict) -> dict[str, float]:
  """Every numeric leaf of a nested dict as ``{"dotted.path": float}`` (bools excluded)."""
  return {path: float(value) for path, value in utils.flatten(tree).items()
          if isinstance(value, (int, float)) and not isinstance(value, bool)}
