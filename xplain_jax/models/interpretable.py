"""The interpretable conv layer of Zhang, Wu & Zhu (CVPR 2018): part templates, mask, filter loss.

Each filter of the interpretable (top) conv layer should fire on one object part, wherever that
part is in the image, and stay silent otherwise. Two pieces make it so:

* the **mask** (forward pass): for every image and filter, the strongest unit μ̂ of the map picks
  the positive template T_μ̂ and the layer multiplies the map by it, which keeps activations near
  μ̂ and suppresses the rest. Two orders exist. Zhang et al. mask the post-ReLU map and output
  ``max(x ∘ T_μ̂, 0)``; Chen et al. (2019, appendix "Details in Experiment 1") place the mask
  *between the top conv and its ReLU*, so the mask's output ``conv ∘ T_μ̂`` is signed and the ReLU
  follows it; that signed output is the explainer's x (``InterpretableMask(signed=True)``);
* the **filter loss** (training): ``Loss_f = −MI(X; T)``, the mutual information between the
  feature maps of a batch and the templates {T_μ} ∪ {T⁻}; it is low when each image's map looks
  like one template (a single bump, at the part's place in that image) and negative images stay
  silent (like T⁻).

This module follows the formulation of the paper (not the authors' MatConvNet release):
templates on the unit grid of the map, ``T_μ[i,j] = τ·max(1 − β‖(i,j) − μ‖₁/n, −1)``, ``T⁻ = −τ``
everywhere, ``τ = 0.5/n²``, ``β = 4``, ``μ̂ = argmax`` (not the activation-weighted centroid), and
a fixed (not learned) template width. For an ``H×W`` map with ``H ≠ W``, ``n = √(H·W)`` (so
``τ = 0.5/(H·W)``); for the usual square maps ``n = H = W``. Templates are indexed in row-major
order: template ``t`` is centred at ``μ = (t // W, t % W)``, the same order as an argmax over the
flattened map.

References:
  Zhang, Wu, Zhu. Interpretable Convolutional Neural Networks. CVPR 2018.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

PAPER_BETA = 4.0
PAPER_TAU_NUMERATOR = 0.5  # τ = 0.5 / n²


def default_tau(h: int, w: int | None = None) -> float:
  """The paper's τ = 0.5/n² for an n×n map (0.5/(H·W) for H×W)."""
  w = h if w is None else w
  return PAPER_TAU_NUMERATOR / (h * w)


def _check_map(x, name: str = "x"):
  if x.ndim != 4:
    raise ValueError(f"{name} has shape {tuple(x.shape)}; expected a feature map [B,H,W,C].")


def _grid_templates(h: int, w: int, tau: float, beta: float) -> jnp.ndarray:
  """Positive templates of an H×W map: [H*W, H, W] float32, template t centred at (t//W, t%W)."""
  n = math.sqrt(h * w)
  ii, jj = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
  mu_i, mu_j = ii.reshape(-1), jj.reshape(-1)
  dist = (np.abs(ii[None] - mu_i[:, None, None]) + np.abs(jj[None] - mu_j[:, None, None]))
  t = tau * np.maximum(1.0 - beta * dist / n, -1.0)
  return jnp.asarray(t, jnp.float32)


def templates(n: int, tau: float | None = None, beta: float = PAPER_BETA) -> jnp.ndarray:
  """The n² positive templates of an n×n feature map.

  Args:
    n: side of the (square) feature map.
    tau: template scale τ; ``None`` -> the paper's 0.5/n².
    beta: template width β (paper: 4); the template reaches 0 at L1 distance n/β from μ.

  Returns:
    [n*n, n, n] float32; ``templates(n)[a*n + b]`` is ``T_μ`` with ``μ = (a, b)``:
    ``T_μ[i,j] = τ·max(1 − β(|i−a| + |j−b|)/n, −1)``.
  """
  if n <= 0:
    raise ValueError(f"templates needs a positive map size n, got {n}.")
  tau = default_tau(n) if tau is None else tau
  return _grid_templates(n, n, tau, beta)


def mask_for_peaks(x: jnp.ndarray, tau: float | None = None,
                   beta: float = PAPER_BETA) -> jnp.ndarray:
  """The template ``T_μ̂`` selected for each image and filter, μ̂ = argmax of the map.

  Args:
    x: [B,H,W,C] float, post-ReLU feature map.
    tau: template scale; ``None`` -> 0.5/(H·W).
    beta: template width β.

  Returns:
    [B,H,W,C] float32 mask (a constant: gradients are stopped). Ties in the argmax go to the
    first position in row-major order (an all-zero map selects μ̂ = (0, 0); its output is 0).
  """
  _check_map(x)
  b, h, w, c = x.shape
  tau = default_tau(h, w) if tau is None else tau
  flat = jax.lax.stop_gradient(x).reshape(b, h * w, c)
  peak = jnp.argmax(flat, axis=1)  # [B,C]
  mu_i, mu_j = peak // w, peak % w
  ii = jnp.arange(h)[None, :, None, None]
  jj = jnp.arange(w)[None, None, :, None]
  dist = jnp.abs(ii - mu_i[:, None, None, :]) + jnp.abs(jj - mu_j[:, None, None, :])
  n = math.sqrt(h * w)
  mask = tau * jnp.maximum(1.0 - beta * dist / n, -1.0)
  return jax.lax.stop_gradient(mask.astype(jnp.float32))


class InterpretableMask(nn.Module):
  """The mask layer of an interpretable conv layer: x -> x ∘ T_μ̂ (then ReLU), per image and filter.

  Two placements (no parameters in either):

  * ``signed=False`` (Zhang et al. 2018's order): after the top conv's ReLU, output
    ``max(x ∘ T_μ̂, 0)``;
  * ``signed=True`` (Chen et al.'s appendix: the mask between the top conv and its ReLU): x is
    the pre-ReLU conv output and the layer returns ``x ∘ T_μ̂``, signed; the caller applies the
    ReLU. This output is the explainer's concept map, so y_i = Σ_hw x_i can be negative.

  The template is selected from the argmax position (the same position before or after a ReLU
  whenever the map has a positive unit) and treated as a constant in the backward pass, as in the
  paper, so ``∂out/∂x = T_μ̂`` (where the output is positive, for ``signed=False``).

  Attributes:
    tau: template scale τ; ``None`` -> the paper's 0.5/n² of the incoming map.
    beta: template width β (paper: 4).
    unit_peak: ``False`` (paper): the mask is ``T_μ̂`` itself, so the output at the peak is
      ``τ·x`` (τ ≈ 0.0026 for a 14×14 map); ``True``: the mask is ``T_μ̂/τ`` (peak 1), the scale
      of the authors' released code, which keeps the input scale a pre-trained next layer saw.

    signed: ``True``: x is the pre-ReLU conv output and the product ``x ∘ T_μ̂`` is returned as it
      is (the paper's order); ``False``: x is post-ReLU and ``max(x ∘ T_μ̂, 0)`` is returned.

  Example:
    >>> y = InterpretableMask().apply({}, x)   # x [B,H,W,C] post-ReLU; y has x's shape
  """

  tau: float | None = None
  beta: float = PAPER_BETA
  unit_peak: bool = False
  signed: bool = False

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    """x: [B,H,W,C] map (pre-ReLU when ``signed``) -> [B,H,W,C] masked map, x's dtype."""
    _check_map(x)
    _, h, w, _ = x.shape
    tau = default_tau(h, w) if self.tau is None else self.tau
    mask = mask_for_peaks(x, tau, self.beta)
    if self.unit_peak:
      mask = mask / tau
    out = x * mask.astype(x.dtype)
    return out if self.signed else jnp.maximum(out, 0)


def filter_mutual_information(x: jnp.ndarray, *, tau: float | None = None,
                              beta: float = PAPER_BETA,
                              alpha: float | None = None) -> jnp.ndarray:
  """MI(X; T) of each filter over a batch of feature maps, in nats.

  With the n² positive templates T_μ and the negative template T⁻ = −τ:
  ``p(T_μ) = α/n²``, ``p(T⁻) = 1 − α`` (paper: α = n²/(1 + n²), so every template has prior
  1/(1 + n²)); ``p(x|T) = exp(tr(xᵀT))/Z_T`` with ``Z_T`` summed over the images of the batch;
  ``p(x) = Σ_T p(T) p(x|T)``; ``MI = Σ_T p(T) Σ_x p(x|T) log(p(x|T)/p(x))``. Everything is
  computed in log space (logsumexp). MI is 0 when all maps of the batch are equal (then no
  template tells them apart) and at most the entropy of the prior, log(1 + n²).

  Args:
    x: [B,H,W,C] float, feature maps of the batch (see ``filter_loss`` for which map).
    tau: template scale τ; ``None`` -> 0.5/(H·W).
    beta: template width β.
    alpha: prior mass of the positive templates; ``None`` -> n²/(1 + n²), n² = H·W.

  Returns:
    [C] float32 (float64 for float64 maps), the mutual information of each filter.
  """
  _check_map(x)
  _, h, w, _ = x.shape
  hw = h * w
  tau = default_tau(h, w) if tau is None else tau
  alpha = hw / (1.0 + hw) if alpha is None else alpha
  if not 0.0 < alpha < 1.0:
    raise ValueError(f"alpha = {alpha} must lie in (0, 1): it is the prior mass p(T+).")
  x = x.astype(jnp.promote_types(x.dtype, jnp.float32))  # bf16 maps are summed in float32
  temps = _grid_templates(h, w, tau, beta).astype(x.dtype)
  pos = jnp.einsum("bhwc,thw->btc", x, temps)  # tr(xᵀT_μ)
  neg = -tau * jnp.sum(x, axis=(1, 2))[:, None, :]  # tr(xᵀT⁻)
  scores = jnp.concatenate([pos, neg], axis=1)  # [B, T, C], T = hw + 1
  log_p_x_t = scores - jax.nn.logsumexp(scores, axis=0, keepdims=True)
  log_prior = jnp.concatenate([jnp.full((hw,), math.log(alpha / hw)),
                               jnp.full((1,), math.log(1.0 - alpha))])
  log_p_x = jax.nn.logsumexp(log_prior[None, :, None] + log_p_x_t, axis=1, keepdims=True)
  inner = jnp.sum(jnp.exp(log_p_x_t) * (log_p_x_t - log_p_x), axis=0)  # [T, C]
  return jnp.sum(jnp.exp(log_prior)[:, None] * inner, axis=0)


def filter_loss(x: jnp.ndarray, *, tau: float | None = None, beta: float = PAPER_BETA,
                alpha: float | None = None, reduction: str = "sum") -> jnp.ndarray:
  """The filter loss −MI(X; T) of the interpretable layer, reduced over filters.

  Which map: the paper adds the loss to "the feature map x of the filter after the ReLU
  operation", the map the mask is computed from, i.e. the performer's
  ``inter["top_conv_relu"]`` (pre-mask). The function itself takes any [B,H,W,C] map, so the
  masked ``inter["top_conv"]`` can be passed too (its values are τ-scaled, so pass ``tau``
  accordingly if that is wanted). The batch should contain positive and negative images: Z_T
  is a sum over the batch, and the negative template rewards silence on negatives.

  The total training loss is ``task_loss + λ · filter_loss(x)`` with a small λ (ports of the
  paper use ~5e-6 with the sum over filters).

  Args:
    x: [B,H,W,C] float, post-ReLU feature maps of one batch.
    tau: template scale τ; ``None`` -> 0.5/(H·W).
    beta: template width β (paper: 4).
    alpha: prior mass of the positive templates; ``None`` -> H·W/(1 + H·W).
    reduction: ``"sum"`` over filters (the paper's Σ_f Loss_f) or ``"mean"``.

  Returns:
    float32 scalar, ≤ 0, finite and differentiable in x.
  """
  if reduction not in ("sum", "mean"):
    raise ValueError(f"reduction={reduction!r} is not known; use 'sum' or 'mean'.")
  mi = filter_mutual_information(x, tau=tau, beta=beta, alpha=alpha)
  return -jnp.sum(mi) if reduction == "sum" else -jnp.mean(mi)


def mean_max_activation(x: jnp.ndarray, positive: jnp.ndarray | None = None) -> jnp.ndarray:
  """Mean over (positive) images and filters of each filter's strongest unit, a constant.

  The scale the filter-loss weight follows (the released code keeps a running mean of the same
  quantity per filter, ``sliceMag``, over positive images).

  Args:
    x: [B,H,W,C] float, the post-ReLU map of the interpretable layer.
    positive: [B] bool, the images that count (the target category's); ``None`` -> all.

  Returns:
    float32 scalar ≥ 0 (0 when no image counts); gradients are stopped.
  """
  _check_map(x)
  peaks = jnp.max(jax.lax.stop_gradient(x).astype(jnp.float32), axis=(1, 2)).mean(-1)  # [B]
  if positive is None:
    return jnp.mean(peaks)
  weight = positive.astype(jnp.float32)
  return jnp.sum(peaks * weight) / jnp.maximum(jnp.sum(weight), 1.0)


def filter_loss_weight(epoch, mean_max: float | jnp.ndarray = 1.0, *, base: float,
                       schedule: str = "epoch") -> jnp.ndarray:
  """λ_t of the filter loss in epoch t: ``base · mean_max / t`` (``"epoch"``) or ``base``.

  Zhang et al. (2018b) do not keep the filter loss's weight fixed: their released training code
  divides the filter loss's gradient by the epoch number and scales it with the layer's mean
  maximum activation, so the loss shapes the filters early and yields to the task loss later.
  ``schedule="constant"`` gives the fixed weight of earlier versions of this project.

  Args:
    epoch: t ≥ 1, int or int32 scalar (``step // steps_per_epoch + 1``).
    mean_max: the layer's mean maximum activation (``mean_max_activation``); 1.0 -> 1/t alone.
    base: λ_0, the weight in epoch 1 at unit activation.
    schedule: ``"epoch"`` (the released code's) or ``"constant"``.

  Returns:
    float32 scalar.
  """
  if schedule == "constant":
    return jnp.asarray(base, jnp.float32)
  if schedule != "epoch":
    raise ValueError(f"filter-loss schedule {schedule!r} is not known; use 'epoch' or 'constant'.")
  t = jnp.maximum(jnp.asarray(epoch, jnp.float32), 1.0)
  return base * jnp.asarray(mean_max, jnp.float32) / t
