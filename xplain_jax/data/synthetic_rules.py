"""The synthetic attributes' vocabulary and planted rules: one per benchmark regime.

``dataset.rule`` picks how the target labels (and, for two regimes, the concept attributes)
of ``xplain_jax.data.synthetic_attributes`` are made. Every regime keeps the images, the
counterfactual rendering and the label noise of the default; only what is planted differs.
Write ``a_k`` in {0, 1} for concept k's presence and ``s_k = 2 a_k − 1``. The planted logit of
target t is the sum of per-concept terms, ``z_t = Σ_k c_{t,k}``, and its label is
``Bernoulli(sigmoid(temperature · z_t))``; the terms ``c_{t,k}`` are ``gt_contrib``, the planted
per-image contributions. ``target_b`` follows the linear rule in every regime (a control); the
regimes change ``target_a``, the default config's explained target.

* ``linear`` (default, unchanged): ``c_{t,k} = v_{t,k} s_k`` with the fixed sparse weights
  ``TARGET_RULES``. One α for every image can be faithful.
* ``context``: a concept's weight depends on the image. ``red_circle`` weighs +2.0 when the
  image has a ``border`` and −2.0 when it has none (``c = 2.0 s_border s_red_circle``), and a
  ``blue_triangle`` counts only when it is present in the upper row of the 3×3 grid
  (``c = 2.2 a_k [row 0]``: 0 when absent or lower down; its position is fixed per image, so
  adding it in a counterfactual puts it where it would have been). Other terms are linear. No
  single α can be faithful: over the data red_circle's weight averages 0. A faithful
  explanation credits red_circle with the sign the border gives it, and blue_triangle only in
  the upper row.
* ``redundant``: the linear rule, but concepts are drawn in pairs that always co-occur, in the
  training and in the test split (``REDUNDANT_PAIRS``: ``blue_square`` copies ``red_circle``,
  ``dark_corner`` copies ``horizontal_stripes``; the partners weigh 0 in both targets). The
  performer cannot tell from its labels which of a pair matters, and a distillation-only
  explainer may credit either one alone: the paper's "bias-interpreting" case its prior is
  meant for. ``gt_contrib`` credits only the rule's concept. The counterfactual toggles one
  concept of a pair alone (the partner stays), so the measured effect Δ_k shows what the
  performer uses; a faithful explanation follows Δ, which may differ from the planted split.
* ``shortcut``: the linear rule, plus a nuisance attribute of weight 0 (``bright_background``)
  that agrees with target_a's drawn label with probability ``SHORTCUT_AGREEMENT`` = 0.9 (drawn
  after the label; it leaves the label unchanged), in training and in test. A performer picks it
  up; Δ shows it while the planted rule gives it 0, and a faithful explanation shows it.

Why the test split has the training split's distribution in every regime: the explainer is
evaluated, as in the paper, on held-out images of the data the performer was trained on; a
co-occurrence or shortcut that also holds on the test images is the case where accuracy cannot
reveal it and only an explanation can. The counterfactual images (one concept toggled) are the
only images that break a pair or a shortcut.
"""

from __future__ import annotations

import numpy as np

from xplain_jax.errors import DataError

RULES = ("linear", "context", "redundant", "shortcut")
COLOUR_NAMES = ("red", "green", "blue")
SHAPES = ("circle", "square", "triangle", "cross")
GLOBAL_ATTRIBUTES = ("bright_background", "horizontal_stripes", "vertical_stripes", "border",
                     "speckles", "dark_corner", "diagonal_line", "warm_tint")
CONCEPT_NAMES = tuple(f"{c}_{s}" for c in COLOUR_NAMES for s in SHAPES) + GLOBAL_ATTRIBUTES
NUM_OBJECTS = len(COLOUR_NAMES) * len(SHAPES)
GRID = 3  # objects occupy distinct cells of a GRID x GRID layout

# Sparse signed weights v_{t,k} of the linear rule (concept name -> weight; others are 0).
TARGET_RULES = {
    "target_a": {"red_circle": 2.0, "green_square": -1.6, "horizontal_stripes": -1.3,
                 "blue_triangle": 1.1, "border": 0.9, "red_cross": 0.7, "warm_tint": -0.5},
    "target_b": {"blue_circle": -2.0, "red_square": 1.6, "speckles": 1.3,
                 "green_triangle": -1.0, "vertical_stripes": 0.7, "diagonal_line": 0.5},
}
TARGET_NAMES = tuple(TARGET_RULES)

# context: (target, concept, guard): the concept's linear weight with the guard's sign s_guard.
CONTEXT_SIGN_FLIP = (("target_a", "red_circle", "border"),)
# context: (target, concept, weight): weight · a_k when the object sits in grid row 0, else 0.
CONTEXT_UPPER_ROW = (("target_a", "blue_triangle", 2.2),)
# redundant: (concept of the rule, partner of weight 0 that copies it).
REDUNDANT_PAIRS = (("red_circle", "blue_square"), ("horizontal_stripes", "dark_corner"))
# shortcut: (target, nuisance of weight 0) and how often the nuisance equals the target's label.
SHORTCUT = ("target_a", "bright_background")
SHORTCUT_AGREEMENT = 0.9


def check_rule(rule: str) -> None:
  """Raises DataError unless ``rule`` is one of ``RULES``."""
  if rule not in RULES:
    raise DataError(f"unknown synthetic rule dataset.rule={rule!r}; choose one of {list(RULES)}.")


def rule_weights(target: str) -> np.ndarray:
  """The linear rule's weights ``v_t`` of a target over ``CONCEPT_NAMES``: [n] float32."""
  if target not in TARGET_RULES:
    raise DataError(f"unknown synthetic target {target!r}; choose one of {list(TARGET_NAMES)}.")
  v = np.zeros(len(CONCEPT_NAMES), np.float32)
  for name, weight in TARGET_RULES[target].items():
    v[CONCEPT_NAMES.index(name)] = weight
  return v


def tie_partners(attrs: np.ndarray, rule: str) -> np.ndarray:
  """``attrs`` [n] bool with every redundant partner set to its concept (``redundant`` only)."""
  if rule != "redundant":
    return attrs
  attrs = attrs.copy()
  for concept, partner in REDUNDANT_PAIRS:
    attrs[CONCEPT_NAMES.index(partner)] = attrs[CONCEPT_NAMES.index(concept)]
  return attrs


def planted_terms(attrs: np.ndarray, cells: np.ndarray, rule: str) -> np.ndarray:
  """The planted per-concept terms ``c_{t,k}`` of one image (its ``gt_contrib``).

  Args:
    attrs: [n] bool (or 0/1) concept presence.
    cells: [NUM_OBJECTS] int, each object's grid cell (row-major; row = cell // GRID), drawn
      whether or not the object is present.
    rule: one of ``RULES``.

  Returns:
    [T,n] float32 over ``TARGET_NAMES`` and ``CONCEPT_NAMES``; ``z_t`` is the row sum.
  """
  check_rule(rule)
  signs = 2.0 * np.asarray(attrs, np.float32) - 1.0                # [n] float32
  v = np.stack([rule_weights(t) for t in TARGET_NAMES])             # [T,n]
  terms = signs[None, :] * v                                        # [T,n]
  if rule == "context":
    for target, name, guard in CONTEXT_SIGN_FLIP:
      t, k = TARGET_NAMES.index(target), CONCEPT_NAMES.index(name)
      terms[t, k] = v[t, k] * signs[CONCEPT_NAMES.index(guard)] * signs[k]
    for target, name, weight in CONTEXT_UPPER_ROW:
      t, k = TARGET_NAMES.index(target), CONCEPT_NAMES.index(name)
      terms[t, k] = weight * float(attrs[k]) * float(int(cells[k]) // GRID == 0)
  return terms.astype(np.float32)


def label_probability(logits: np.ndarray, temperature: float) -> np.ndarray:
  """``sigmoid(temperature · z)`` of planted logits ``z`` [..., T] (same shape)."""
  return 1.0 / (1.0 + np.exp(-temperature * logits))


def set_shortcut(attrs: np.ndarray, cells: np.ndarray, label_u: np.ndarray, u: float,
                 temperature: float) -> np.ndarray:
  """``shortcut``: ``attrs`` [n] bool with the nuisance set from the target's label.

  The label is the one ``make_dataset`` draws (``label_u[t] < sigmoid(temperature · z_t)``);
  the nuisance equals it when ``u < SHORTCUT_AGREEMENT`` and is its complement otherwise.
  The nuisance weighs 0, so setting it leaves ``z_t`` unchanged.
  """
  target, nuisance = SHORTCUT
  t = TARGET_NAMES.index(target)
  logits = planted_terms(attrs, cells, "shortcut").sum(-1)[None]    # [1,T]
  label = bool(label_u[t] < label_probability(logits, temperature)[0, t])
  attrs = attrs.copy()
  attrs[CONCEPT_NAMES.index(nuisance)] = label if u < SHORTCUT_AGREEMENT else not label
  return attrs
