r"""Where XLA:CPU loses the performer's training step: one 3×3 conv layer's forward, input
gradient and kernel gradient, and the kernel gradient computed as one matmul of the input's
patches with the output gradient (``lax.conv_general_dilated_patches``) and as one matmul per
kernel tap (``models.conv``, what ``performer.kernel_gradient`` "taps"/"auto" uses on CPU); and
the gradient of a 2×2/2 max-pool of the layer's output, as XLA lowers ``nn.max_pool``'s
(select-and-scatter) and as ``models.layers.max_pool_tiles`` computes it; in ms per call.

  python launch/bench/bench_conv_grad.py                 # [64,32,32,32] -> 64 channels
  XLA_FLAGS=--xla_cpu_use_thunk_runtime=false python launch/bench/bench_conv_grad.py  # a flag tried

Prints the minimum over ``--repeats`` calls after compilation, for the machine it runs on.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import flax.linen as nn  # noqa: E402
from xplain_jax.models import conv as conv_lib  # noqa: E402
from xplain_jax.models import layers  # noqa: E402

DIMS = ("NHWC", "HWIO", "NHWC")


def conv(x, k):
  return jax.lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=DIMS)


def kernel_grad_by_patches(x, k, dy):
  """∂/∂k of Σ conv(x, k)·dy as patches(x)ᵀ·dy: [kh,kw,C,O] (the same value as XLA's)."""
  kh, kw, c, _ = k.shape
  p = jax.lax.conv_general_dilated_patches(x, (kh, kw), (1, 1), "SAME", dimension_numbers=DIMS)
  dk = jnp.einsum("bhwp,bhwo->po", p, dy)              # p = c·kh·kw + i·kw + j
  return dk.reshape(c, kh, kw, -1).transpose(1, 2, 0, 3)


def _ms(fn, *args, repeats: int) -> float:
  jax.block_until_ready(fn(*args))
  best = np.inf
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    best = min(best, time.perf_counter() - t0)
  return 1000.0 * best


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--size", type=int, default=32)
  p.add_argument("--channels", default="32,64", help="in,out")
  p.add_argument("--repeats", type=int, default=5)
  a = p.parse_args(argv)
  cin, cout = (int(c) for c in a.channels.split(","))
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.random((a.batch, a.size, a.size, cin)), jnp.float32)
  k = jnp.asarray(rng.random((3, 3, cin, cout)), jnp.float32)
  dy = jnp.asarray(rng.random((a.batch, a.size, a.size, cout)), jnp.float32)
  loss = lambda k_, x_: jnp.sum(conv(x_, k_) * dy)
  by_xla = jax.jit(jax.grad(loss))
  by_patches = jax.jit(lambda k_, x_: kernel_grad_by_patches(x_, k_, dy))
  by_taps = jax.jit(lambda k_, x_: conv_lib.kernel_gradient_by_taps(x_, dy, k_.shape,
                                                                     ((1, 1), (1, 1))))
  np.testing.assert_allclose(by_patches(k, x), by_xla(k, x), rtol=1e-3)
  np.testing.assert_allclose(by_taps(k, x), by_xla(k, x), rtol=1e-3)
  y = conv(x, k)  # the pool's input: the layer's output
  dp = jnp.asarray(rng.random((a.batch, a.size // 2, a.size // 2, cout)), jnp.float32)
  pool_xla = jax.jit(jax.grad(lambda y_: jnp.sum(nn.max_pool(y_, (2, 2), (2, 2)) * dp)))
  pool_tiles = jax.jit(jax.grad(lambda y_: jnp.sum(layers.max_pool_tiles(y_, 2) * dp)))
  np.testing.assert_array_equal(pool_tiles(y), pool_xla(y))
  out = {"forward": _ms(jax.jit(conv), x, k, repeats=a.repeats),
         "input gradient": _ms(jax.jit(jax.grad(loss, argnums=1)), k, x, repeats=a.repeats),
         "kernel gradient (XLA)": _ms(by_xla, k, x, repeats=a.repeats),
         "kernel gradient (patches · dy)": _ms(by_patches, k, x, repeats=a.repeats),
         "kernel gradient (taps, models.conv)": _ms(by_taps, k, x, repeats=a.repeats),
         "2x2 max-pool gradient (XLA)": _ms(pool_xla, y, repeats=a.repeats),
         "2x2 max-pool gradient (tiles, models.layers)": _ms(pool_tiles, y, repeats=a.repeats)}
  print(f"x {tuple(x.shape)}, kernel {tuple(k.shape)}, {jax.devices()[0].platform}")
  for name, ms in out.items():
    print(f"{name}: {ms:.1f} ms")
  return out


if __name__ == "__main__":
  main()
