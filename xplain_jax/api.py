"""Explain your own model: featurize a dataset, fit an explainer, evaluate it, write a report.

No config and no workdir layout are needed; the pipeline's stages call the same functions
(``train.explainer.fit_weight_net``, ``train.evaluate.evaluate_arrays``). A complete Case-2
example (``model``, ``variables``, ``images`` and ``labels`` are the user's)::

    from xplain_jax import api, featurizers

    def features(images):                     # (map for g, shared feature h)
      _, inter = model.apply(variables, images, train=False)
      return inter["conv"], inter["hidden"]
    head = lambda h: model.apply(variables, h, method=model.head)   # h -> logits [B,K]
    fz = featurizers.shared_feature_featurizer(features, head, target=0, concepts=[1, 2, 3])
    data = api.featurize_dataset(fz, images)
    explainer = api.fit_explainer(data, case="shared_feature")
    print(api.evaluate({"prior": explainer}, data, labels=labels))
    print(explainer.explain(data["feat"][:2], data["y_i"][:2], names=["a", "b", "c"]))
    api.write_report("report_dir", {"prior": explainer}, data, labels=labels)

References:
  docs/method.md sections 1-5.
"""

from __future__ import annotations

import os
import warnings
from typing import Callable, Mapping, Sequence

import jax
import ml_collections
import numpy as np

from xplain_jax import data as data_lib
from xplain_jax import featurizers, models, parallel
from xplain_jax.errors import ConfigError
from xplain_jax.train import evaluate as evaluate_lib
from xplain_jax.train import evaluators
from xplain_jax.train import explainer as explainer_lib

Explainer = explainer_lib.Explainer
CASES = {"filter": ("cross_entropy", True, 10.0), "shared_feature": ("mse", False, 0.2)}
FEATURE_KEYS = explainer_lib.FEATURE_KEYS


def featurize_dataset(featurize: Callable, images, *, batch_size: int = 64) -> dict:
  """Runs a featurizer (``xplain_jax.featurizers``) over images, batch by batch.

  Args:
    featurize: ``images [B,S,S,3] -> {"feat", "y", "y_i", "w"}``.
    images: [N,S,S,3] array (any array-like with ``len`` and slicing).
    batch_size: images per call (the last batch may be smaller).

  Returns:
    Host numpy arrays ``{"feat": [N,H,W,C], "y": [N], "y_i": [N,n], "w": [N,n]}``.
  """
  if len(images) == 0:
    raise ConfigError("featurize_dataset got no images; pass an array [N,S,S,3] with N > 0.")
  fn = jax.jit(featurize)
  parts = [jax.device_get(fn(np.asarray(images[i:i + batch_size])))
           for i in range(0, len(images), batch_size)]
  out = {k: np.concatenate([np.asarray(p[k], np.float32) for p in parts]) for k in parts[0]}
  _check_features(out)
  return out


def fit_explainer(features: Mapping[str, np.ndarray], *, case: str = "shared_feature",
                  beta: float | None = None, prior_kind: str | None = None,
                  positive: bool | None = None, depth: int = 18, width: int = 32,
                  stem: str | None = None, epochs: int = 50, batch_size: int = 64,
                  optimizer: str = "adam", learning_rate: float = 1e-3,
                  schedule: str = "constant", grad_clip: float = 0.0,
                  weight_decay: float = 0.0, alpha_scale: float | str = "auto",
                  seed: int = 0, workdir: str | None = None, name: str = "explainer",
                  log_every: int = 100) -> Explainer:
  """Fits ``ŷ = Σ α_i y_i + b`` to featurized arrays by distillation with the prior loss.

  Args:
    features: ``{"feat": [N,H,W,C], "y": [N], "y_i": [N,n], "w": [N,n]}`` (host arrays,
      e.g. from ``featurize_dataset``).
    case: ``"filter"`` (Case 1: cross-entropy prior, softplus α, β = 10 by default) or
      ``"shared_feature"`` (Case 2: MSE prior, signed α, β = 0.2), as in the paper.
    beta: β of λ(t) = β/√t; 0 trains the paper's baseline.
    prior_kind, positive: override the case's prior form and α's sign constraint.
    depth, width, stem: the ResNet weight network g (``models.get_weight_net``; stem "paper",
      the default 7x7/2, or "small", 3x3/1).
    epochs, batch_size, optimizer, learning_rate, schedule, grad_clip, weight_decay: training.
    alpha_scale: ``"auto"`` scales g's output so that Σ α_i y_i starts with y's spread (Case-1
      filter sums can be in the hundreds, Case-2 logits of a fresh model vary by 0.01); a
      number fixes it (1.0: none, the paper's form and the pipeline's). The prior losses and
      the entropy do not depend on this scale.
    seed: the key of g's initialisation (b starts at mean(y) − mean(Σ α⁰_i y_i), so ŷ starts
      centred on y).
    workdir: where checkpoints and logs go (a rerun resumes); None keeps nothing on disk.
    name: the stage name used for logs and checkpoints.
    log_every: steps between console log lines.

  Returns:
    An ``Explainer`` with ``alpha``, ``predict``, ``contributions`` and ``explain``.
  """
  if case not in CASES:
    raise ConfigError(f"case={case!r}; use 'filter' (Case 1) or 'shared_feature' (Case 2).")
  default_kind, default_positive, default_beta = CASES[case]
  prior_kind = default_kind if prior_kind is None else prior_kind
  positive = default_positive if positive is None else bool(positive)
  beta = default_beta if beta is None else float(beta)
  feats = {k: np.asarray(v, np.float32) for k, v in _check_features(features).items()}
  n_images = len(feats["y"])
  _check_settings(feats, prior_kind=prior_kind, positive=positive, beta=beta,
                  batch_size=batch_size, epochs=epochs, case=case)
  mesh = parallel.make_mesh(1)
  g_kwargs = {} if stem is None else {"stem": stem}
  g = models.get_weight_net(depth, num_outputs=feats["y_i"].shape[1], positive=positive,
                            width=width, **g_kwargs)
  rng = jax.random.PRNGKey(seed)
  idx = np.arange(min(256, n_images))  # Σ α⁰_i y_i on a sample
  start = explainer_lib.initial_sum(g, feats["feat"][idx], feats["y_i"][idx],
                                    jax.random.fold_in(rng, 0))
  if alpha_scale == "auto":
    alpha_scale = explainer_lib.auto_alpha_scale(start, feats["y"])
  init_bias = float(np.mean(feats["y"]) - np.mean(start) * float(alpha_scale))
  loader = data_lib.Loader(data_lib.ArraySource({k: feats[k] for k in FEATURE_KEYS}),
                           min(batch_size, n_images), seed=seed, shuffle=True,
                           drop_remainder=True)
  opt = ml_collections.ConfigDict(dict(
      name=optimizer, learning_rate=float(learning_rate), schedule=schedule,
      grad_clip=float(grad_clip), weight_decay=float(weight_decay), warmup_steps=0,
      momentum=0.9))
  return explainer_lib.fit_weight_net(
      g, loader=loader, feat_shape=feats["feat"].shape, beta=beta, prior_kind=prior_kind,
      num_epochs=epochs, optimizer_config=opt, rng=rng, stage=name, workdir=workdir,
      mesh=mesh, alpha_scale=float(alpha_scale), checkpoint_every=10 ** 9,
      log_every=log_every, case=case, init_bias=init_bias)


def evaluate(explainers: Mapping[str, Explainer], features: Mapping[str, np.ndarray], *,
             labels, names: Sequence[str] | None = None,
             gt_contrib: np.ndarray | None = None) -> dict:
  """The metrics the pipeline writes to ``metrics.json``, for explainers of one dataset.

  Args:
    explainers: variant name -> ``Explainer`` (e.g. ``{"baseline": ..., "prior": ...}``).
    features: featurized test images (``featurize_dataset``).
    labels: [N] in {0,1}, the true label of the explained output (for the accuracies).
    names: the n concept names (default ``concept_<i>``).
    gt_contrib: optional [N,n] planted contributions (adds ``gt_rank_correlation``).

  Returns:
    ``{"performer": {...}, "prior_weights": {...}, <variant>: {"entropy", "accuracy",
    "threshold", "relative_deviation", "bias", ...}, "meta": {...}}``.
  """
  return _evaluate(explainers, features, labels=labels, names=names,
                   gt_contrib=gt_contrib).metrics


def write_report(directory: str, explainers: Mapping[str, Explainer],
                 features: Mapping[str, np.ndarray], *, labels, names: Sequence[str] | None = None,
                 images=None, target_name: str = "y", gt_contrib=None,
                 num_images: int = 6) -> str:
  """Evaluates and writes ``report.html``/``report.md`` (+ metrics, arrays) into ``directory``.

  Args:
    directory: created if missing; receives ``metrics.json``, ``eval/``, ``figures/`` and the
      report.
    explainers, features, labels, names, gt_contrib: as in ``evaluate``.
    images: optional [K,S,S,3] images of the first K rows of ``features``, shown with their
      reasons.
    target_name: the explained output's name.
    num_images: images shown.

  Returns:
    The path of ``report.html``.
  """
  from xplain_jax import report
  k = 0 if images is None else min(num_images, len(images))
  out = _evaluate(explainers, features, labels=labels, names=names, gt_contrib=gt_contrib,
                  images=None if images is None else np.asarray(images)[:k],
                  target_name=target_name)
  os.makedirs(directory, exist_ok=True)
  evaluators.write_outputs(directory, out)
  return report.write_report(directory, num_images=num_images)


def _evaluate(explainers, features, *, labels, names=None, gt_contrib=None, images=None,
              target_name: str = "y") -> evaluators.EvalOutput:
  feats = _check_features(features)
  if not explainers:
    raise ConfigError("no explainers given; pass {name: Explainer} from fit_explainer.")
  n = feats["y_i"].shape[1]
  names = [f"concept_{i}" for i in range(n)] if names is None else list(names)
  if len(names) != n:
    raise ConfigError(f"got {len(names)} names for n = {n} concepts; pass one name per concept.")
  labels = np.asarray(labels).reshape(-1)
  if len(labels) != len(feats["y"]):
    raise ConfigError(f"labels has {len(labels)} entries for {len(feats['y'])} images.")
  test = dict(feats)
  if gt_contrib is not None:
    test["gt_contrib"] = np.asarray(gt_contrib, np.float32)
  cases = {e.case for e in explainers.values()}
  alpha = {v: e.alpha(feats["feat"]) for v, e in explainers.items()}
  bias = {v: e.bias for v, e in explainers.items()}
  return evaluate_lib.evaluate_arrays(alpha, bias, test, labels=labels, names=names,
                                      images=images, case=cases.pop() if len(cases) == 1 else
                                      "shared_feature", target_name=target_name)


def _check_features(features) -> dict:
  if not isinstance(features, Mapping):
    raise ConfigError(f"features must be a dict with keys {list(FEATURE_KEYS)}, got "
                      f"{type(features).__name__}.")
  missing = [k for k in FEATURE_KEYS if k not in features]
  if missing:
    raise ConfigError(f"features lack {missing}; a featurizer gives {list(FEATURE_KEYS)} "
                      "(xplain_jax.featurizers, api.featurize_dataset).")
  f = dict(features)
  n = len(f["y"])
  shapes = {k: np.shape(f[k]) for k in FEATURE_KEYS}
  ok = (len(shapes["feat"]) == 4 and shapes["y"] == (n,) and len(shapes["y_i"]) == 2
        and shapes["y_i"][0] == n and shapes["w"] == shapes["y_i"] and shapes["feat"][0] == n)
  if not ok:
    raise ConfigError(f"feature shapes {shapes} are inconsistent; expected feat [N,H,W,C], "
                      "y [N], y_i [N,n], w [N,n] with one N.")
  for k in FEATURE_KEYS:
    if not np.all(np.isfinite(np.asarray(f[k], np.float32))):
      raise ConfigError(f"features[{k!r}] holds NaN or Inf; check the model and its inputs.")
  return f


def _check_settings(feats, *, prior_kind, positive, beta, batch_size, epochs, case) -> None:
  if prior_kind not in ("cross_entropy", "mse"):
    raise ConfigError(f"prior_kind={prior_kind!r}; use 'cross_entropy' or 'mse'.")
  if not np.isfinite(beta) or beta < 0:
    raise ConfigError(f"beta={beta}; use a finite β >= 0 (0 trains the baseline).")
  if batch_size < 1 or epochs < 1:
    raise ConfigError(f"batch_size={batch_size}, epochs={epochs}; both must be >= 1.")
  if prior_kind == "cross_entropy":
    if not positive:
      raise ConfigError("prior_kind='cross_entropy' needs positive α (softplus); pass "
                        "positive=True or use prior_kind='mse' for signed α.")
    if beta > 0 and np.min(feats["w"]) < 0:
      raise ConfigError(f"prior_kind='cross_entropy' needs w >= 0, but w has a minimum of "
                        f"{float(np.min(feats['w'])):.4g}; clip the prior "
                        "(filter_featurizer(..., clip_prior=True)) or use prior_kind='mse'.")
  if case == "shared_feature" and beta > 0 and not featurizers.prior_varies(feats["w"]):
    warnings.warn("the prior weights w are the same for every image: the shared feature h "
                  "is probably right below a linear output layer, so the prior carries no "
                  "per-image information; take h one layer lower.", stacklevel=3)
