"""xplain_jax: explaining neural networks semantically and quantitatively.

The maths of the method is a set of pure functions over arrays and callables:

    from xplain_jax import concepts, priors, losses, metrics, explain

Those names (and ``featurizers``) are the stable public ones; they live in ``xplain_jax.core``
(``featurizers`` in ``xplain_jax.train``) and are imported here on first use.
docs/contributing.md draws the package's layers.
"""

import importlib

__version__ = "0.1.0"

# Public short names -> the module each stands for.
_PUBLIC = {
    "concepts": "xplain_jax.core.concepts",
    "priors": "xplain_jax.core.priors",
    "losses": "xplain_jax.core.losses",
    "metrics": "xplain_jax.core.metrics",
    "explain": "xplain_jax.core.explain",
    "shapes": "xplain_jax.core.shapes",
    "gradcam": "xplain_jax.core.gradcam",
    "featurizers": "xplain_jax.train.featurizers",
}


def __getattr__(name):
  if name in _PUBLIC:
    module = importlib.import_module(_PUBLIC[name])
    globals()[name] = module
    return module
  raise AttributeError(f"module 'xplain_jax' has no attribute {name!r}")


def __dir__():
  return sorted(list(globals()) + list(_PUBLIC))
