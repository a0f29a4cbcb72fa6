"""xplain_jax: explaining neural networks semantically and quantitatively.

The maths of the method is a set of pure functions over arrays and callables:

    from xplain_jax import concepts, priors, losses, metrics, explain
"""

__version__ = "0.1.0"
