r"""Where XLA:CPU loses the performer's training step: one 3×3 conv layer's forward, input
gradient and kernel gradient, and the kernel gradient computed as one matmul of the input's
patches with the output gradient (``lax.conv_general_dilated_patches``), as one matmul per
kernel tap (``models.conv``, what ``performer.kernel_gradient`` "taps"/"auto" uses on CPU) and
four other matmul forms tried (the shifted copies concatenated, taps per image, taps per row,
the patches gathered); the gradient of a 2×2/2 max-pool of the layer's output, as XLA lowers
``nn.max_pool``'s (select-and-scatter) and as ``models.layers.max_pool_tiles`` computes it; and,
where torch is installed, torch eager's (oneDNN's) forward, input gradient and kernel gradient of
the same layer (NCHW and channels-last), with as many threads as XLA:CPU uses; in ms per call.

  python launch/bench/bench_conv_grad.py                 # [64,32,32,32] -> 64 channels
  XLA_FLAGS=--xla_cpu_use_thunk_runtime=false python launch/bench/bench_conv_grad.py  # a flag tried

Prints the minimum over ``--repeats`` calls after compilation, for the machine it runs on.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # torch's threads sleep, not spin (scaling.md)

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


def _padded(x, kh: int, kw: int):
  """The input padded as "SAME" pads it for a kh×kw kernel at stride 1."""
  return jnp.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))


def _shifted(x, kh: int, kw: int):
  """The input's kh·kw shifted copies ("SAME", stride 1): [kh·kw] of [B,H,W,C]."""
  h, w = x.shape[1:3]
  xp = _padded(x, kh, kw)
  return [xp[:, i:i + h, j:j + w] for i in range(kh) for j in range(kw)]


# Other ways tried of writing the kernel gradient as matmuls; each equals XLA's (checked).
def kernel_grad_by_concat(x, k, dy):
  """The shifted copies concatenated along channels, then one matmul with dy."""
  kh, kw, c, o = k.shape
  p = jnp.concatenate(_shifted(x, kh, kw), axis=-1)    # p = (i·kw + j)·c + c'
  return jnp.einsum("bhwp,bhwo->po", p, dy).reshape(kh, kw, c, o)


def kernel_grad_by_image_taps(x, k, dy):
  """One matmul per tap and image (a batched matmul over the images), summed over them."""
  kh, kw, c, o = k.shape
  b, n = dy.shape[0], dy.shape[1] * dy.shape[2]
  taps = [jnp.einsum("bqc,bqo->co", s.reshape(b, n, c), dy.reshape(b, n, o))
          for s in _shifted(x, kh, kw)]
  return jnp.stack(taps).reshape(kh, kw, c, o)


def kernel_grad_by_rows(x, k, dy):
  """kw copies shifted along the width, concatenated; one matmul per kernel row."""
  kh, kw, c, o = k.shape
  h, w = dy.shape[1:3]
  xp = _padded(x, kh, kw)
  pw = jnp.concatenate([xp[:, :, j:j + w] for j in range(kw)], axis=-1)
  rows = [jnp.einsum("bhwp,bhwo->po", pw[:, i:i + h], dy) for i in range(kh)]
  return jnp.stack(rows).reshape(kh, kw, c, o)


def kernel_grad_by_gather(x, k, dy):
  """The patches gathered from the padded input at static positions, then one matmul with dy."""
  kh, kw, c, o = k.shape
  b, h, w = dy.shape[:3]
  xp = _padded(x, kh, kw)
  rows = (np.arange(h)[:, None, None, None] + np.arange(kh)[None, None, :, None]) * xp.shape[2]
  cols = np.arange(w)[None, :, None, None] + np.arange(kw)[None, None, None, :]
  idx = (rows + cols).reshape(-1)                      # output pixel, then tap, row-major
  p = jnp.take(xp.reshape(b, -1, c), idx, axis=1).reshape(-1, kh * kw * c)
  return jnp.einsum("np,no->po", p, dy.reshape(-1, o)).reshape(kh, kw, c, o)


def torch_rows(x, k, dy, *, repeats: int) -> tuple:
  """torch eager's kernel gradient [kh,kw,C,O] and ``{row: ms}`` of its forward, input gradient
  and kernel gradient of the layer, on as many threads as XLA:CPU's pool; () without torch."""
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    return ()
  torch.set_num_threads(len(os.sched_getaffinity(0)))
  tx = torch.from_numpy(np.array(x)).permute(0, 3, 1, 2).contiguous()
  tk = torch.from_numpy(np.array(k)).permute(3, 2, 0, 1).contiguous()
  tdy = torch.from_numpy(np.array(dy)).permute(0, 3, 1, 2).contiguous()
  back = lambda g, x_, mask: torch.ops.aten.convolution_backward(  # noqa: E731
      g, x_, tk, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, mask)
  last = lambda t: t.contiguous(memory_format=torch.channels_last)  # noqa: E731
  with torch.no_grad():
    dk = back(tdy, tx, [False, True, False])[1].permute(2, 3, 1, 0).numpy()
    rows = {"torch eager: forward": lambda: torch.nn.functional.conv2d(tx, tk, padding=1),
            "torch eager: input gradient": lambda: back(tdy, tx, [True, False, False]),
            "torch eager: kernel gradient": lambda: back(tdy, tx, [False, True, False]),
            "torch eager: kernel gradient (channels-last)":
                lambda: back(last(tdy), last(tx), [False, True, False])}
    return dk, {name: _ms(fn, repeats=repeats, block=False) for name, fn in rows.items()}


def _ms(fn, *args, repeats: int, block: bool = True) -> float:
  wait = jax.block_until_ready if block else (lambda v: v)  # torch's calls return when done
  wait(fn(*args))
  best = np.inf
  for _ in range(repeats):
    t0 = time.perf_counter()
    wait(fn(*args))
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
  others = {name: jax.jit(lambda k_, x_, f=f: f(x_, k_, dy)) for name, f in (
      ("shifted copies concatenated · dy", kernel_grad_by_concat),
      ("taps, a matmul per image", kernel_grad_by_image_taps),
      ("rows: kw shifted copies, a matmul per row", kernel_grad_by_rows),
      ("patches gathered · dy", kernel_grad_by_gather))}
  for fn in others.values():
    np.testing.assert_allclose(fn(k, x), by_xla(k, x), rtol=1e-3)
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
         **{f"kernel gradient ({name})": _ms(fn, k, x, repeats=a.repeats)
            for name, fn in others.items()},
         "2x2 max-pool gradient (XLA)": _ms(pool_xla, y, repeats=a.repeats),
         "2x2 max-pool gradient (tiles, models.layers)": _ms(pool_tiles, y, repeats=a.repeats)}
  torch_side = torch_rows(x, k, dy, repeats=a.repeats)
  if torch_side:
    np.testing.assert_allclose(torch_side[0], by_xla(k, x), rtol=1e-3)
    out.update(torch_side[1])
  print(f"x {tuple(x.shape)}, kernel {tuple(k.shape)}, {jax.devices()[0].platform}")
  for name, ms in out.items():
    print(f"{name}: {ms:.1f} ms")
  return out


if __name__ == "__main__":
  main()
