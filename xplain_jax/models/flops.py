"""FLOP counting from a function's jaxpr, XLA's own count, and accelerator peaks.

Only the benchmarks use it (``launch/bench/bench_step.py``, ``launch/bench/bench_cpu_vs_torch.py``:
utilisation against the accelerator's peak); the pipeline and the API never import it.

``count_flops(fn, *args)`` traces ``fn`` to a jaxpr (no computation: ``args`` may be
``jax.ShapeDtypeStruct``s, so full-size models cost nothing to count) and sums the FLOPs of its
``conv_general_dilated`` and ``dot_general`` equations from their shapes, two per multiply-add:

* convolution: ``2 · |out| · (kernel spatial size) · (kernel input features)``, with the kernel's
  input features already divided by ``feature_group_count``, and divided by the input
  (``lhs_``) dilation: the zeros a transposed convolution (the input gradient of a strided conv)
  inserts are not work, so that gradient costs what its forward conv costs. Zero padding counts
  as data (the usual analytic count; XLA's ``cost_analysis`` skips taps that fall into the
  padding, so it reads lower on padded convs over small maps);
* dot product: ``2 · |out| · (product of the contracted sizes)``.

Element-wise work (activations, normalisation, the optimiser) is left out: it is memory-bound
and small next to the convolutions and matrix products. Sub-jaxprs are followed: ``jit``, custom
derivative rules (their primal body), ``remat``; ``scan`` bodies count ``length`` times; ``cond``
counts its most expensive branch; a ``while`` loop's body counts once (its trip count is not
known from the trace).

    >>> import jax, jax.numpy as jnp
    >>> count_flops(lambda a, b: a @ b, jnp.ones((8, 16)), jnp.ones((16, 4)))
    1024

The rule of thumb for training follows from the backward pass: a trained layer costs its
forward FLOPs three times (forward, gradient with respect to its input, gradient with respect to
its weights); a frozen one only once.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
from jax.extend import core

# Peak dense TFLOP/s by device kind and precision (NVIDIA data sheets, SXM parts, without
# structured sparsity). "float32" is the TF32 tensor-core rate, which XLA uses for float32
# convolutions and matrix products on these GPUs at the default precision; "float32_strict"
# is the CUDA-core rate (``jax.default_matmul_precision("highest")``).
PEAK_TFLOPS = {
    "h100": {"bfloat16": 989.0, "float16": 989.0, "float32": 495.0, "float32_strict": 67.0},
    "h200": {"bfloat16": 989.0, "float16": 989.0, "float32": 495.0, "float32_strict": 67.0},
    "a100": {"bfloat16": 312.0, "float16": 312.0, "float32": 156.0, "float32_strict": 19.5},
}


def conv_flops(rhs_shape, out_shape, dimension_numbers, lhs_dilation=None) -> int:
  """FLOPs of one ``lax.conv_general_dilated``.

  Args:
    rhs_shape: kernel shape.
    out_shape: output shape.
    dimension_numbers: a ``lax.ConvDimensionNumbers`` (``rhs_spec`` = (out features,
      in features, *spatial) axes of the kernel).
    lhs_dilation: the input dilation per spatial axis (None: no dilation).

  Returns:
    ``2 · prod(out_shape) · prod(kernel spatial) · kernel in-features / prod(lhs_dilation)``
    (rounded down).
  """
  rhs_spec = dimension_numbers.rhs_spec
  in_features = rhs_shape[rhs_spec[1]]
  window = math.prod(rhs_shape[d] for d in rhs_spec[2:])
  return 2 * math.prod(out_shape) * window * in_features // math.prod(lhs_dilation or ())


def dot_flops(lhs_shape, out_shape, dimension_numbers) -> int:
  """FLOPs of one ``lax.dot_general``: ``2 · prod(out_shape) · prod(contracted sizes)``.

  Args:
    lhs_shape: left operand shape.
    out_shape: result shape.
    dimension_numbers: ``((lhs_contract, rhs_contract), (lhs_batch, rhs_batch))``.
  """
  (lhs_contract, _), _ = dimension_numbers
  return 2 * math.prod(out_shape) * math.prod(lhs_shape[d] for d in lhs_contract)


def _eqn_flops(eqn) -> int:
  name = eqn.primitive.name
  if name == "conv_general_dilated":
    return conv_flops(eqn.invars[1].aval.shape, eqn.outvars[0].aval.shape,
                      eqn.params["dimension_numbers"], eqn.params["lhs_dilation"])
  if name == "dot_general":
    return dot_flops(eqn.invars[0].aval.shape, eqn.outvars[0].aval.shape,
                     eqn.params["dimension_numbers"])
  if name == "scan":
    return eqn.params["length"] * jaxpr_flops(eqn.params["jaxpr"])
  if name == "cond":
    return max(jaxpr_flops(b) for b in eqn.params["branches"])
  if name in ("custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr"):
    body = eqn.params.get("call_jaxpr", eqn.params.get("fun_jaxpr"))
    return jaxpr_flops(body) if body is not None else 0
  # jit / pjit / remat / while / closed_call ...: every sub-jaxpr in the parameters, once.
  return sum(jaxpr_flops(j) for j in _sub_jaxprs(eqn.params))


def _sub_jaxprs(params: dict):
  for value in params.values():
    items = value if isinstance(value, (tuple, list)) else (value,)
    for item in items:
      if isinstance(item, (core.Jaxpr, core.ClosedJaxpr)):
        yield item


def jaxpr_flops(jaxpr: Any) -> int:
  """Convolution and matrix-product FLOPs of a ``Jaxpr`` or ``ClosedJaxpr``."""
  if isinstance(jaxpr, core.ClosedJaxpr):
    jaxpr = jaxpr.jaxpr
  return sum(_eqn_flops(eqn) for eqn in jaxpr.eqns)


def count_flops(fn: Callable, *args, **kwargs) -> int:
  """Convolution and matrix-product FLOPs of one call ``fn(*args, **kwargs)``.

  Args:
    fn: a JAX-traceable function (a model's ``apply``, a whole train step, ...).
    *args, **kwargs: its arguments: arrays or ``jax.ShapeDtypeStruct`` pytrees.

  Returns:
    The FLOP count (an exact integer, two per multiply-add).
  """
  return jaxpr_flops(jax.make_jaxpr(fn)(*args, **kwargs))


def xla_flops(compiled, num_devices: int = 1) -> float | None:
  """FLOPs per call as XLA's cost analysis of a compiled function counts them.

  Args:
    compiled: ``jax.jit(f).lower(...).compile()``.
    num_devices: devices the computation is partitioned over; XLA reports the cost of one
      partition of an SPMD program, so it is multiplied by this.

  Returns:
    The count, or None when the backend does not report one.
  """
  try:
    cost = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except  (backends without cost analysis raise)
    return None
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  if not cost or cost.get("flops") is None or cost["flops"] <= 0:
    return None
  return float(cost["flops"]) * num_devices


def peak_tflops(device_kind: str, precision: str) -> float | None:
  """Peak dense TFLOP/s of one device of ``device_kind`` in ``precision``, None if unknown.

  Args:
    device_kind: ``jax.devices()[0].device_kind``, e.g. "NVIDIA H100 80GB HBM3".
    precision: "bfloat16", "float16", "float32" (TF32 tensor cores) or "float32_strict".
  """
  kind = device_kind.lower()
  for key, peaks in PEAK_TFLOPS.items():
    if key in kind:
      return peaks.get(precision)
  return None
