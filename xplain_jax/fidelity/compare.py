"""Every fidelity figure of an explanation, its references and its peers, from arrays and callables.

``explanation_fidelity`` is the entry point (the pipeline's "fidelity" evaluator and
``api.evaluate`` call it): given the explainers' α and b, the test concepts and scores, the
training concepts and scores and the performer's effects (Case 2: measured by the caller, e.g.
``fidelity.rendering_effects``; Case 1: measured here from the head), it builds the peers and
scores each with ``scores.summarize``, as it scores the explainers. ``evaluate_fidelity`` does
the scoring of contributions handed to it. Rows of ``metrics.json["fidelity_reference"]``:

* ``random``: each image's contributions ``α_k y_k`` permuted over concepts, the chance floor;
* ``shuffled_alpha``: α permuted over concepts, times the true ``y_k``;
* ``prior_weights``: α = w, contributions ``w_k y_k``;
* ``least_squares`` (and in Case 1 ``least_squares_nonnegative``): one α for every image, fitted
  on the training split (``peers.least_squares_alpha``); it predicts y, so it has a
  ``relative_deviation``;
* Case 1: ``gradient_x_input`` and ``integrated_gradients`` (``peers``);
* ``planted``: the planted contributions themselves, where the data has them;
* ``delta``: only the ``cost`` of measuring the effects.
Each scored row carries ``cost``: passes per image of the performer (Case 1: its head above x;
Case 2 rendering: the whole performer), backward passes, passes of the explainer g, and the
measured ``seconds_per_image`` (after compilation) where this module ran it.
``metrics.json["fidelity"]`` holds per variant its scores and cost, ``prior_minus_baseline``
and ``<variant>_minus_least_squares`` (Case 1 also ``<variant>_minus_gradient_x_input``): paired
differences of the interventional rank correlation over the same images.
"""

from __future__ import annotations

import time
from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from xplain_jax.errors import DataError
from xplain_jax.fidelity import effects, peers, scores

CASES = ("filter", "shared_feature")


def _check(name: str, a, shape) -> np.ndarray:
  a = np.asarray(a, np.float32)
  if a.shape != shape:
    raise DataError(f"fidelity: {name} has shape {a.shape}; expected {shape} "
                    "(one row per test image, one column per concept).")
  return a


def evaluate_fidelity(alphas: Mapping[str, np.ndarray], y_i: np.ndarray, w: np.ndarray,
                      delta: np.ndarray, *, key: jax.Array, sign_threshold: float,
                      num_resamples: int, gt_contrib: np.ndarray | None = None,
                      deletion_fn: Callable[[np.ndarray], np.ndarray] | None = None,
                      deletion_counts: np.ndarray | None = None, y: np.ndarray | None = None,
                      biases: Mapping[str, float] | None = None,
                      peer_contribs: Mapping[str, np.ndarray] | None = None,
                      peer_predictions: Mapping[str, np.ndarray] | None = None,
                      costs: Mapping[str, dict] | None = None,
                      paired_peers: tuple[str, ...] = ()) -> tuple[dict, dict, dict]:
  """Scores each explainer, the references and the given peers against ``delta``.

  Args:
    alphas: variant ("baseline", "prior", ...) -> α [N,n].
    y_i: [N,n] concept values; w: [N,n] prior weights; delta: [N,n] measured effects.
    key: PRNG key of the random reference and the random deletion order.
    sign_threshold: effects at or below it do not count in ``sign_agreement``.
    num_resamples: bootstrap resamples of every interval.
    gt_contrib: [N,n] planted contributions, when known.
    deletion_fn: Case 1: ``order [N,n] int -> y after deletions [N,J]``.
    deletion_counts: [J] the deletion counts of ``deletion_fn``'s columns.
    y: [N] the performer's scores; with ``biases`` (variant -> b) the explainers' and the peers'
      ``relative_deviation`` is reported.
    peer_contribs: peer name -> contributions [N,n], scored as a reference row.
    peer_predictions: peer name -> its prediction of y [N] (peers that predict y).
    costs: row name -> cost dict, stored as the row's ``cost``.
    paired_peers: peers p for the paired differences ``<variant>_minus_<p>``.

  Returns:
    ``(fidelity, fidelity_reference, arrays)``: the two ``metrics.json`` blocks, and
    ``arrays``: name -> array to save (``"<variant>/deletion_curve"`` [N,J],
    ``"reference/<name>/contrib"`` [N,n], ``"deletion_counts"`` [J], ...).
  """
  if not alphas:
    raise DataError("evaluate_fidelity: no explainer variants given; pass alphas={variant: α}.")
  n_img, n = np.shape(y_i)
  y_i = _check("y_i", y_i, (n_img, n))
  w, delta = _check("w", w, (n_img, n)), _check("delta", delta, (n_img, n))
  alphas = {v: _check(f"alpha of {v}", a, (n_img, n)) for v, a in alphas.items()}
  gt = None if gt_contrib is None else _check("gt_contrib", gt_contrib, (n_img, n))
  y = None if y is None else _check("y", np.reshape(y, -1), (n_img,))
  costs, peer_predictions = dict(costs or {}), dict(peer_predictions or {})
  k_random, k_shuffle, k_order = jax.random.split(key, 3)
  first = jnp.asarray(alphas["prior"] if "prior" in alphas else next(iter(alphas.values())))
  ref_contribs = {  # reference name -> contributions [N,n]
      "random": np.asarray(peers.shuffled_alpha(k_random, first * y_i)),
      "shuffled_alpha": np.asarray(peers.shuffled_alpha(k_shuffle, first)) * y_i,
      "prior_weights": w * y_i}
  ref_contribs.update({p: _check(f"contributions of {p}", c, (n_img, n))
                       for p, c in (peer_contribs or {}).items()})

  def summary(contrib, y_hat=None, with_gt=True):
    return scores.summarize(contrib, delta, sign_threshold=sign_threshold,
                            num_resamples=num_resamples, gt_contrib=gt if with_gt else None,
                            y=None if y_hat is None else y, y_hat=y_hat)

  predicts = y is not None and biases is not None
  fid = {v: summary(a * y_i, np.sum(a * y_i, axis=1) + biases[v] if predicts else None)
         for v, a in alphas.items()}
  ref = {r: summary(c, peer_predictions.get(r) if y is not None else None, r != "planted")
         for r, c in ref_contribs.items()}
  for name, cost in costs.items():
    (fid if name in fid else ref).setdefault(name, {})["cost"] = dict(cost)
  arrays = {f"reference/{r}/contrib": c for r, c in ref_contribs.items()}
  per_image = {name: np.asarray(scores.interventional_rank_correlation(c, delta))
               for name, c in {**{v: a * y_i for v, a in alphas.items()}, **ref_contribs}.items()}
  pairs = [("prior", "baseline")] if {"prior", "baseline"} <= set(alphas) else []
  pairs += [(v, p) for p in paired_peers if p in ref_contribs for v in alphas]
  for a, b in pairs:
    name = "prior_minus_baseline" if (a, b) == ("prior", "baseline") else f"{a}_minus_{b}"
    fid[name] = scores.paired_difference_interval(per_image[a], per_image[b],
                                                  num_resamples=num_resamples)
  if deletion_fn is not None:
    counts = np.arange(n + 1) if deletion_counts is None else np.asarray(deletion_counts)
    arrays["deletion_counts"] = counts
    orders = {v: effects.order_by(jnp.asarray(a * y_i)) for v, a in alphas.items()}
    orders.update({r: effects.order_by(jnp.asarray(c)) for r, c in ref_contribs.items()
                   if r not in ("random", "shuffled_alpha")})
    orders["random"] = effects.random_order(k_order, n_img, n)
    for name, order in orders.items():
      curves = np.asarray(deletion_fn(np.asarray(order)), np.float32)
      block = fid[name] if name in fid else ref[name]
      block["deletion_area"] = effects.deletion_area(curves, counts)
      prefix = "" if name in fid else "reference/"
      arrays[f"{prefix}{name}/deletion_curve"] = curves
  return fid, ref, arrays


def batched_rows(jitted: Callable, *arrays, batch_size: int | None) -> np.ndarray:
  """``jitted`` over row batches of ``arrays`` (the last batch padded with its last row, so one
  compilation; examples must be independent), concatenated: [N,...]."""
  num = len(arrays[0])
  size = num if not batch_size else min(int(batch_size), num)
  outs = []
  for lo in range(0, num, size):
    rows = [np.asarray(a[lo:lo + size]) for a in arrays]
    pad = size - len(rows[0])
    rows = [np.concatenate([r, np.repeat(r[-1:], pad, axis=0)]) if pad else r for r in rows]
    outs.append(np.asarray(jax.block_until_ready(jitted(*rows))))
  return np.concatenate(outs)[:num]


def timed_rows(fn: Callable, *arrays, batch_size: int | None) -> tuple[np.ndarray, float]:
  """``batched_rows(jax.jit(fn), ...)`` and its seconds per row, measured after compiling on
  the first batch: ``(out [N,...], seconds)``."""
  jitted = jax.jit(fn)
  size = len(arrays[0]) if not batch_size else min(int(batch_size), len(arrays[0]))
  batched_rows(jitted, *[a[:size] for a in arrays], batch_size=size)   # compile
  start = time.perf_counter()
  out = batched_rows(jitted, *arrays, batch_size=batch_size)
  return out, (time.perf_counter() - start) / len(arrays[0])


def _cost(forward: int, backward: int = 0, explainer: int = 0, seconds: float | None = None,
          **extra) -> dict:
  out = {"forward_passes": int(forward), "backward_passes": int(backward),
         "explainer_passes": int(explainer), **extra}
  if seconds is not None:
    out["seconds_per_image"] = float(seconds)
  return out


def explanation_fidelity(alphas: Mapping[str, np.ndarray], biases: Mapping[str, float],
                         y_i: np.ndarray, y: np.ndarray, w: np.ndarray, *, train_y_i, train_y,
                         key: jax.Array, sign_threshold: float, num_resamples: int,
                         ig_steps: int, case: str, delta: np.ndarray | None = None,
                         delta_cost: dict | None = None,
                         head_fn: Callable | None = None, x: np.ndarray | None = None,
                         gt_contrib: np.ndarray | None = None, deletion_steps: int | None = None,
                         batch_size: int | None = None,
                         explainer_seconds: Mapping[str, float] | None = None
                         ) -> tuple[dict, dict, dict]:
  """The fidelity of the explainers and of every peer on the same test images.

  Args:
    alphas: variant -> α [N,n]; biases: variant -> b (the explainers' ŷ = Σ_k α_k y_k + b).
    y_i: [N,n] test concept values; y: [N] the performer's scores; w: [N,n] prior weights.
    train_y_i: [M,n] and train_y: [M], the training split's concepts and scores (arrays or
      memory-mapped columns, read in row batches) for the least-squares peers; None skips them.
    key: PRNG key of the random references.
    sign_threshold: effects at or below it (units of y) do not count in ``sign_agreement``.
    num_resamples: bootstrap resamples of every interval.
    ig_steps: points on the integrated-gradients path (Case 1).
    case: "filter" (Case 1: concepts are the filters of x) or "shared_feature" (Case 2).
    delta: [N,n] measured effects; Case 2 needs it (e.g. ``fidelity.rendering_effects``); Case 1
      measures them from ``head_fn`` and x when None.
    delta_cost: the cost of a given ``delta`` (``forward_passes``, ``seconds_per_image`` ...).
    head_fn: Case 1, ``x [B,H,W,n] -> y [B]``, the performer above x (examples independent).
    x: Case 1, [N,H,W,n] the feature map whose filter sums are y_i.
    gt_contrib: [N,n] planted contributions, when known (scored as the row ``planted``).
    deletion_steps: Case 1 deletion curves sampled at this many deletion counts; None: none.
    batch_size: rows per call of the head (None: all at once).
    explainer_seconds: variant -> measured seconds per image of its α, when known.

  Returns:
    ``(fidelity, fidelity_reference, arrays)`` as ``evaluate_fidelity``, with the peers' rows,
    costs and paired differences (module docstring); arrays also hold ``delta`` [N,n] and, for
    each least-squares peer p, ``p/alpha`` [n] and ``p/bias`` [].
  """
  if case not in CASES:
    raise DataError(f"explanation_fidelity: case={case!r}; use one of {CASES}.")
  y_i = np.asarray(y_i, np.float32)
  n_img, n = y_i.shape
  contribs, predictions, costs, arrays = {}, {}, {}, {}
  deletion_fn = counts = None
  if case == "filter":
    if head_fn is None or x is None:
      raise DataError("explanation_fidelity: Case 1 (case='filter') needs head_fn and x (the "
                      "feature map [N,H,W,n] and the performer above it).")
    x = np.asarray(x, np.float32)
    if delta is None:
      delta, sec = timed_rows(lambda xb: effects.filter_deletion_effects(head_fn, xb), x,
                              batch_size=batch_size)
      delta_cost = _cost(n + 1, seconds=sec)
    contribs["gradient_x_input"], sec = timed_rows(
        lambda xb: peers.gradient_x_input(head_fn, xb), x, batch_size=batch_size)
    costs["gradient_x_input"] = _cost(1, 1, seconds=sec)
    contribs["integrated_gradients"], sec = timed_rows(
        lambda xb: peers.integrated_gradients(head_fn, xb, steps=ig_steps), x,
        batch_size=batch_size)
    costs["integrated_gradients"] = _cost(ig_steps, ig_steps, seconds=sec)
    costs["prior_weights"] = _cost(1, 1)   # w = Σ_hw ∂y/∂x, computed with the features
    if deletion_steps is not None:
      counts = effects.deletion_counts(n, int(deletion_steps))
      curve = jax.jit(lambda xb, ob: effects.deletion_curve(head_fn, xb, ob, counts))
      deletion_fn = lambda order: batched_rows(curve, x, order, batch_size=batch_size)
  elif delta is None:
    raise DataError("explanation_fidelity: Case 2 (case='shared_feature') needs the measured "
                    "effects delta [N,n], e.g. from fidelity.rendering_effects.")
  if train_y_i is not None:
    for name, nonneg in (("least_squares", False), ("least_squares_nonnegative", True)):
      if nonneg and case != "filter":
        continue
      start = time.perf_counter()
      alpha, b = peers.least_squares_alpha(train_y_i, train_y, nonnegative=nonneg)
      fit = time.perf_counter() - start
      start = time.perf_counter()
      contribs[name] = alpha * y_i
      predictions[name] = contribs[name].sum(axis=1) + b
      costs[name] = _cost(0, seconds=(time.perf_counter() - start) / n_img, fit_seconds=fit,
                          fit_rows=int(np.shape(train_y)[0]))
      arrays[f"{name}/alpha"], arrays[f"{name}/bias"] = alpha, np.float32(b)
  if gt_contrib is not None:
    contribs["planted"] = np.asarray(gt_contrib, np.float32)
  seconds = dict(explainer_seconds or {})
  costs.update({v: _cost(0, explainer=1, seconds=seconds.get(v)) for v in alphas})
  paired = ("least_squares",) + (("gradient_x_input",) if case == "filter" else ())
  fid, ref, more = evaluate_fidelity(
      alphas, y_i, w, delta, key=key, sign_threshold=sign_threshold,
      num_resamples=num_resamples, gt_contrib=gt_contrib, deletion_fn=deletion_fn,
      deletion_counts=counts, y=y, biases=biases, peer_contribs=contribs,
      peer_predictions=predictions, costs=costs, paired_peers=paired)
  if delta_cost is not None:
    ref["delta"] = {"cost": dict(delta_cost)}
  return fid, ref, {**arrays, **more, "delta": np.asarray(delta, np.float32)}


def files(arrays: Mapping[str, np.ndarray], alphas: Mapping[str, np.ndarray],
          y_i: np.ndarray) -> tuple[dict, dict]:
  """``explanation_fidelity``'s arrays laid out as the evaluators save them.

  Args:
    arrays: the third value ``explanation_fidelity`` returns.
    alphas: variant -> α [N,n]; y_i: [N,n].

  Returns:
    ``(per_variant, reference)``: variant -> ``delta`` [N,n], ``interventional_rank_correlation``
    [N] and (Case 1) ``deletion_curve`` [N,J] for ``eval/<variant>.npz``; and the arrays of
    ``eval/fidelity_reference.npz``: ``delta``, ``deletion_counts``, and per reference or peer
    r ``r_contrib`` [N,n], ``r_interventional_rank_correlation`` [N], ``r_deletion_curve``
    [N,J], ``r_alpha`` [n] and ``r_bias`` [] (least squares).
  """
  delta = np.asarray(arrays["delta"], np.float32)
  per_variant = {}
  for v, a in alphas.items():
    rho = scores.interventional_rank_correlation(np.asarray(a, np.float32) * y_i, delta)
    per_variant[v] = {"delta": delta, "interventional_rank_correlation": np.asarray(rho)}
    if f"{v}/deletion_curve" in arrays:
      per_variant[v]["deletion_curve"] = np.asarray(arrays[f"{v}/deletion_curve"])
  own = tuple(f"{v}/" for v in alphas)
  reference = {k.replace("reference/", "").replace("/", "_"): np.asarray(a)
               for k, a in arrays.items() if not k.startswith(own)}
  for k, c in arrays.items():
    if k.startswith("reference/") and k.endswith("/contrib"):
      name = k[len("reference/"):-len("/contrib")]
      reference[f"{name}_interventional_rank_correlation"] = np.asarray(
          scores.interventional_rank_correlation(c, delta))
  return per_variant, reference
