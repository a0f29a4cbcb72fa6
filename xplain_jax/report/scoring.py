"""How the report's numbers add up: per-image bars that sum to y, and where τ was chosen.

* ``image_reasons``: an image's top reasons followed by the other concepts' sum, the bias and
  the residual y − ŷ, so that the bars of a per-image figure add up to the y printed above it (a
  negative logit explained by positive filter sums shows the negative bias that carries it).
* ``accuracy_section``: the performer scored at τ = 0 *and* at its own best τ beside each
  explainer at its best τ, and the images on which the best τ was chosen.
"""

from __future__ import annotations

import numpy as np

from xplain_jax.core import explain

TITLE = "Accuracy and where the threshold τ was chosen"


def image_reasons(indices, contrib, concepts, names, case, *, absent="no {}", y_hat=None,
                  y=None):
  """One image's bars: its top reasons, then the other concepts' sum, the bias b = ŷ − Σ c
  and, given y, the residual y − ŷ, so that the bars add up to y (or to ŷ without y).

  Args:
    indices: [k] int, the top concepts, largest |contribution| first.
    contrib: [n] the image's contributions; concepts: [n] its y_i (for absent names).
    names: n names; case: "filter" or "shared_feature" (Case 2 names absent concepts).
    absent: the absent-concept pattern (``explain.concept_label``; None: plain names).
    y_hat, y: the explainer's and the performer's scores of the image.

  Returns:
    list of (label, value) pairs.
  """
  indices = np.asarray(indices, np.int64).ravel()
  contrib = np.asarray(contrib, np.float64)
  out = [(explain.concept_label(names[i], concepts[i], case == "shared_feature", absent),
          float(contrib[i])) for i in indices]
  if y_hat is None:
    return out
  rest = float(contrib.sum() - contrib[indices].sum())
  if len(indices) < len(contrib):
    others = len(contrib) - len(indices)
    out.append((f"other {others} concept{'' if others == 1 else 's'}", rest))
  out.append(("bias b", float(y_hat) - float(contrib.sum())))
  if y is not None:
    out.append(("residual y − ŷ", float(y) - float(y_hat)))
  return out


def accuracy_section(metrics: dict, meta: dict, digits: int = 2):
  """``(TITLE, blocks)`` from ``metrics.json``: one row per model, the τ it is scored at and
  its accuracy; empty when the performer's best τ was not recorded."""
  perf = metrics.get("performer") if isinstance(metrics.get("performer"), dict) else {}
  if "accuracy_best_threshold" not in perf:
    return TITLE, []
  f = lambda v: f"{float(v):.{digits}f}"
  rows = [["performer, y > τ at τ = 0", "0", f(perf["accuracy"])],
          ["performer, y > τ at its own best τ", f(perf["best_threshold"]),
           f(perf["accuracy_best_threshold"])]]
  for v in meta.get("variants") or []:
    m = metrics.get(v)
    if isinstance(m, dict) and "accuracy" in m and "threshold" in m:
      rows.append([f"explainer {v}, ŷ > τ at its own best τ", f(m["threshold"]),
                   f(m["accuracy"])])
  where = meta.get("threshold_chosen_on", "the evaluated images' own labels")
  note = (f"Each best τ is the accuracy-maximising threshold chosen on {where}, so it is an "
          "upper bound for new images; compare the explainer with the performer at its own "
          "best τ, not at τ = 0.")
  return TITLE, [("table", ["model, rule", "τ", "accuracy (%)"], rows), ("p", note)]
