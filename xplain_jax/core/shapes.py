"""Trace-time shape checks shared by the maths modules.

Shapes are static under `jax.jit`, so these checks run once per trace and cost
nothing at run time. Every failure is a `ValueError` whose one-line message
names the function, the offending argument, its shape and the expected shape,
e.g. ``prior_loss: alpha has shape (8, 39) but w has shape (8, 40); both must
be [B, n]``.

Shape specs are written as in the docstrings, ``"[B, H, W, n]"``; their rank is
the number of comma-separated entries.

References:
  Chen et al. 2019, "Explaining Neural Networks Semantically and
  Quantitatively"; docs/method.md sections 2-5.
"""

from typing import Any, Optional, Sequence, Tuple

import numpy as np

Shape = Tuple[int, ...]


def shape_of(x: Any) -> Shape:
  """Returns the static shape of an array, tracer or Python scalar."""
  return tuple(np.shape(x))


def spec_rank(spec: str) -> int:
  """Returns the rank of a spec such as ``"[B, H, W, n]"`` (here 4)."""
  inner = spec.strip().strip("[]").strip()
  return 0 if not inner else len(inner.split(","))


def check_rank(fn: str, name: str, x: Any, spec: str) -> Shape:
  """Checks that `x` has the rank of `spec` and returns its shape.

  Args:
    fn: name of the calling function, used in the message.
    name: name of the argument, used in the message.
    x: array-like to check.
    spec: expected shape, e.g. ``"[B, n]"``.

  Returns:
    The shape of `x` as a tuple.

  Raises:
    ValueError: if the rank differs, e.g. ``filter_concepts: x has shape
      (8, 14, 14); expected [B, H, W, n] (rank 4)``.
  """
  shape = shape_of(x)
  rank = spec_rank(spec)
  if len(shape) != rank:
    raise ValueError(
        f"{fn}: {name} has shape {shape}; expected {spec} (rank {rank}).")
  return shape


def check_same_shape(fn: str, name_a: str, a: Any, name_b: str, b: Any,
                     spec: str) -> Shape:
  """Checks that `a` and `b` both have the rank of `spec` and equal shapes.

  Raises:
    ValueError: e.g. ``prior_loss: alpha has shape (8, 39) but w has shape
      (8, 40); both must be [B, n]``.
  """
  sa, sb = shape_of(a), shape_of(b)
  rank = spec_rank(spec)
  if sa != sb or len(sa) != rank:
    raise ValueError(
        f"{fn}: {name_a} has shape {sa} but {name_b} has shape {sb}; "
        f"both must be {spec}.")
  return sa


def check_shape(fn: str, name: str, x: Any, expected: Shape, spec: str,
                hint: str = "") -> Shape:
  """Checks that `x` has exactly the shape `expected`.

  Args:
    fn: name of the calling function.
    name: name of the argument or of the callable whose output is checked,
      e.g. ``"concepts_fn returned"``.
    x: array-like to check.
    expected: the expected shape.
    spec: the symbolic form of the expected shape, e.g. ``"[B]"``.
    hint: optional extra sentence telling the user what to do.

  Raises:
    ValueError: e.g. ``priors.filter_prior: head_fn returned shape (8, 1);
      expected (8,) = [B]``.
  """
  shape = shape_of(x)
  if shape != tuple(expected):
    msg = f"{fn}: {name} shape {shape}; expected {tuple(expected)} = {spec}."
    if hint:
      msg += " " + hint
    raise ValueError(msg)
  return shape


def check_optional_mask(fn: str, mask: Optional[Any], batch: int) -> None:
  """Checks that an optional row mask is None or has shape ``(batch,)``."""
  if mask is None:
    return
  shape = shape_of(mask)
  if shape != (batch,):
    raise ValueError(
        f"{fn}: mask has shape {shape}; expected ({batch},) = [B], one bool "
        "per row (True = valid).")


def check_choice(fn: str, name: str, value: Any, allowed: Sequence[str]) -> str:
  """Checks that `value` is one of `allowed` and returns it."""
  if value not in allowed:
    allowed_str = ", ".join(map(repr, allowed))
    raise ValueError(f"{fn}: unknown {name} {value!r}; allowed: {allowed_str}.")
  return value
