"""The model-randomisation sanity check and the performer's per-concept reliability.

Sanity check (Adebayo et al. 2018): re-initialise the performer's layers above the explained
feature, train the explainer on that randomised performer, and compare its contributions with
those of the trained performer, image by image. An explanation that describes the performer
changes when the performer is destroyed: a faithful method gives a *low* similarity; a high one
means the explanation comes from the input or the concepts, not from the performer.

The performer's own concept predictions are what every explanation is phrased in, so their
accuracy per concept (`concept_accuracy`) says how far each named reason can be trusted.

References:
  Adebayo et al. 2018, "Sanity Checks for Saliency Maps", Section 3 (model randomisation);
  Chen et al. 2019, Section 4.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from xplain_jax.core import metrics, shapes
from xplain_jax.errors import ConfigError, DataError

Array = jax.Array

# The layers of a ``models.ConvPerformer`` above each intermediate the method reads.
LAYERS_ABOVE = {"top_conv": ("fc6", "fc7", "fc8"), "fc6": ("fc7", "fc8")}


def layers_above(feature: str) -> tuple[str, ...]:
  """Names of a ``ConvPerformer``'s parameter subtrees above ``feature`` ("top_conv", "fc6")."""
  if feature not in LAYERS_ABOVE:
    raise ConfigError(f"no known layers above feature {feature!r}; use one of "
                      f"{sorted(LAYERS_ABOVE)} or name the layers to re-initialise yourself.")
  return LAYERS_ABOVE[feature]


def _reinit_leaf(key: Array, name: str, leaf: Array) -> Array:
  """Flax's defaults: kernels LeCun-normal over their fan-in, biases 0, scales 1."""
  if name == "kernel":
    fan_in = int(np.prod(leaf.shape[:-1]))
    return (jax.random.normal(key, leaf.shape, jnp.float32) / np.sqrt(fan_in)).astype(leaf.dtype)
  if name == "scale":
    return jnp.ones_like(leaf)
  return jnp.zeros_like(leaf)


def randomize_layers(variables: dict, layer_names: Sequence[str], key: Array) -> dict:
  """A copy of ``variables`` whose ``params[name]`` subtrees are re-initialised at random.

  Args:
    variables: a Flax variables dict with a ``"params"`` collection.
    layer_names: top-level names in ``params`` (e.g. ``layers_above("fc6")``).
    key: PRNG key; each leaf gets its own key folded from its position.

  Returns:
    The new variables (other layers and collections shared, unchanged).
  """
  params = variables["params"]
  missing = [n for n in layer_names if n not in params]
  if missing or not layer_names:
    raise ConfigError(f"cannot re-initialise layers {list(missing) or list(layer_names)}: the "
                      f"performer's parameters hold {sorted(params)}; name some of those.")
  new_params = dict(params)
  for i, name in enumerate(layer_names):
    flat = jax.tree_util.tree_flatten_with_path(params[name])
    leaves, treedef = flat
    keys = jax.random.split(jax.random.fold_in(key, i), max(len(leaves), 1))
    new = [_reinit_leaf(k, str(getattr(p[-1], "key", p[-1])), leaf)
           for k, (p, leaf) in zip(keys, leaves)]
    new_params[name] = jax.tree_util.tree_unflatten(treedef, new)
  return {**variables, "params": new_params}


def contribution_similarity(contrib_a: Array, contrib_b: Array) -> Array:
  """Per image, Spearman over concepts between ``|contrib_a|`` and ``|contrib_b|``: [B].

  The sanity check's figure is its mean with ``contrib_a`` from the trained performer's
  explainer and ``contrib_b`` from the randomised performer's.
  """
  shapes.check_same_shape("fidelity.sanity.contribution_similarity", "contrib_a", contrib_a,
                          "contrib_b", contrib_b, "[B, n]")
  return jax.vmap(metrics.rank_correlation)(jnp.abs(contrib_a), jnp.abs(contrib_b))


def concept_accuracy(logits: np.ndarray, labels: np.ndarray, names: Sequence[str]) -> dict:
  """The performer's accuracy on each concept attribute (``logit > 0`` against the label).

  Args:
    logits: [N,n] the performer's concept logits.
    labels: [N,n] true presence in {0,1}.
    names: n concept names.

  Returns:
    ``{"per_concept": {name: %}, "mean": %, "worst": name}``.
  """
  logits, labels = np.asarray(logits), np.asarray(labels)
  if logits.shape != labels.shape or logits.ndim != 2 or logits.shape[1] != len(names):
    raise DataError(f"concept_accuracy: logits {logits.shape}, labels {labels.shape}, "
                    f"{len(names)} names; pass [N, n] arrays and n names.")
  acc = 100.0 * np.mean((logits > 0) == (labels > 0.5), axis=0)
  per = {str(name): float(a) for name, a in zip(names, acc)}
  return {"per_concept": per, "mean": float(acc.mean()), "worst": str(names[int(np.argmin(acc))])}
