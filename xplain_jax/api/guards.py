"""The own-model API's guards: its inputs checked before any work, and its workdir's run identity.

Every check raises a one-line ``ConfigError`` naming the argument and what to do. A fit into a
workdir records its run identity (a hash of the training arrays and every setting that changes
the result) in ``<workdir>/<name>/identity.json`` before training and the trained explainer in
``<workdir>/<name>/explainer.msgpack`` after it. A later fit with the same identity loads that
file (no initialisation, no compilation); one with another identity is refused: a workdir holds
one fit per name, and nothing the user trained is ever deleted by the API.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import numbers
import os
from typing import Mapping

import numpy as np

from xplain_jax.infra import checkpoint
from xplain_jax.train import featurizers
from xplain_jax import models, utils
from xplain_jax.spec import stages
from xplain_jax.errors import ConfigError

IDENTITY_FILE, EXPLAINER_FILE = "identity.json", "explainer.msgpack"


def check_features(features) -> dict:
  """``features`` as float32 numpy arrays (lists accepted), consistent and finite."""
  if not isinstance(features, Mapping):
    raise ConfigError(f"features must be a dict with keys {list(featurizers.FEATURE_KEYS)}, "
                      f"got {type(features).__name__}.")
  missing = [k for k in featurizers.FEATURE_KEYS if k not in features]
  if missing:
    raise ConfigError(f"features lack {missing}; a featurizer gives "
                      f"{list(featurizers.FEATURE_KEYS)} (xplain_jax.train.featurizers, "
                      "api.featurize_dataset).")
  f = dict(features)
  for k in featurizers.FEATURE_KEYS + (("x",) if "x" in f else ()):
    try:
      f[k] = np.asarray(f[k], np.float32)
    except (TypeError, ValueError) as e:
      raise ConfigError(f"features[{k!r}] is not a numeric array ({type(e).__name__}: "
                        f"{' '.join(str(e).split())[:80]}); pass numpy arrays.") from None
  n = f["y"].shape[0] if f["y"].ndim else -1
  if n == 0:
    raise ConfigError("features hold no images (N = 0); featurize at least one image.")
  shapes = {k: f[k].shape for k in featurizers.FEATURE_KEYS}
  ok = (len(shapes["feat"]) == 4 and shapes["y"] == (n,) and len(shapes["y_i"]) == 2
        and shapes["y_i"][0] == n and shapes["w"] == shapes["y_i"] and shapes["feat"][0] == n
        and shapes["y_i"][1] > 0)
  if not ok:
    raise ConfigError(f"feature shapes {shapes} are inconsistent; expected feat [N,H,W,C], "
                      "y [N], y_i [N,n], w [N,n] with one N > 0 and n > 0.")
  for k in featurizers.FEATURE_KEYS:
    if not np.all(np.isfinite(f[k])):
      raise ConfigError(f"features[{k!r}] holds NaN or Inf (first in image "
                        f"{first_bad_row(f[k])}); check the model and its input images.")
  out = type(features)(f) if isinstance(features, dict) else f
  if hasattr(features, "featurizer"):
    out.featurizer = features.featurizer
  return out


def first_bad_row(a: np.ndarray) -> int:
  """Index of the first row of ``a`` with a NaN or Inf (-1 when none)."""
  bad = ~np.isfinite(np.asarray(a, np.float32).reshape(len(a), -1)).all(axis=1)
  return int(np.argmax(bad)) if bad.any() else -1


def check_report_images(images, what: str, *, max_rows: int | None = None) -> np.ndarray:
  """The images ``write_report`` shows: [K,S,S,C] (C = 1 or 3; [K,S,S] gets C = 1), at most
  ``max_rows`` of them, non-empty and finite, as float32. (The pipeline's batches are checked by
  ``data.input_pipeline.check_images``.)"""
  try:
    a = np.asarray(images, np.float32)
  except (TypeError, ValueError):
    raise ConfigError(f"{what} is not a numeric array; pass images [K,S,S,3].") from None
  if a.ndim == 3:
    a = a[..., None]
  if a.ndim != 4 or a.shape[-1] not in (1, 3) or a.shape[0] == 0:
    raise ConfigError(f"{what} has shape {a.shape}; pass images [K,S,S,3] (or [K,S,S] / "
                      "[K,S,S,1] grayscale) with K > 0.")
  if max_rows is not None and a.shape[0] > max_rows:
    raise ConfigError(f"{what} holds {a.shape[0]} images for {max_rows} rows of features; pass "
                      "the images of the first rows of features, in the same order.")
  bad = first_bad_row(a)
  if bad >= 0:
    raise ConfigError(f"{what} holds NaN or Inf pixels (first in image {bad}); fix or drop "
                      "that image before featurizing.")
  return a


def check_input_batch(batch, start: int) -> None:
  """Raises when a batch of input images (rows from ``start``) holds NaN or Inf."""
  bad = first_bad_row(np.asarray(batch, np.float32))
  if bad >= 0:
    raise ConfigError(f"images holds NaN or Inf pixels (first in image {start + bad}); fix or "
                      "drop that image before featurizing.")


def check_labels(labels, n: int) -> np.ndarray:
  """Labels [n] as bool: boolean, or numbers that are all 0 or 1."""
  a = np.asarray(labels).reshape(-1)
  if a.shape[0] != n:
    raise ConfigError(f"labels has {a.shape[0]} entries for {n} images; pass one label per "
                      "row of features.")
  if a.dtype == bool:
    return a
  if not np.issubdtype(a.dtype, np.number):
    raise ConfigError(f"labels have dtype {a.dtype}; pass booleans (True: the explained "
                      "output's class), e.g. digits == 3.")
  values = np.unique(a)
  if not set(values.tolist()) <= {0, 1}:  # NaN is neither
    shown = ", ".join(f"{v:g}" for v in values[:6]) + (", ..." if len(values) > 6 else "")
    raise ConfigError(f"labels hold values {{{shown}}}; pass booleans or 0/1 (1: the explained "
                      "output's class), e.g. labels == 3 for a class index.")
  return a.astype(bool)


def check_contrib(gt_contrib, shape: tuple) -> np.ndarray:
  a = np.asarray(gt_contrib, np.float32)
  if a.shape != tuple(shape):
    raise ConfigError(f"gt_contrib has shape {a.shape}; pass the planted contributions "
                      f"[N,n] = {tuple(shape)}, one row per row of features.")
  if not np.all(np.isfinite(a)):
    raise ConfigError("gt_contrib holds NaN or Inf; pass finite planted contributions.")
  return a


def check_alpha_scale(alpha_scale):
  if isinstance(alpha_scale, str) and alpha_scale == "auto":
    return alpha_scale
  try:
    value = float(alpha_scale)
  except (TypeError, ValueError):
    value = float("nan")
  if not (np.isfinite(value) and value > 0):
    raise ConfigError(f"alpha_scale={alpha_scale!r}; use 'auto' or a finite number > 0 "
                      "(1.0: the paper's α = g(feat)).")
  return value


def _integer(name: str, value, least: int) -> None:
  if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
    raise ConfigError(f"{name}={value!r} ({type(value).__name__}); pass an integer >= {least}.")


def _number(name: str, value, *, positive: bool) -> None:
  ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
  ok = ok and np.isfinite(value) and (value > 0 if positive else value >= 0)
  if not ok:
    raise ConfigError(f"{name}={value!r} ({type(value).__name__}); pass a finite number "
                      f"{'> 0' if positive else '>= 0'}.")


def check_training(*, batch_size, epochs, learning_rate=1e-3, grad_clip=0.0, weight_decay=0.0,
                   seed=0, log_every=1, optimizer="adam", schedule="constant") -> None:
  """The training settings of ``api.fit_explainer`` have their types and ranges.

  Raises:
    ConfigError: e.g. ``epochs="1"``, ``learning_rate="fast"``, ``batch_size=16.5``.
  """
  from xplain_jax.spec import config_base  # pylint: disable=import-outside-toplevel
  from xplain_jax.train import optim
  _integer("batch_size", batch_size, 1)
  _integer("epochs", epochs, 1)
  _integer("log_every", log_every, 1)
  _integer("seed", seed, 0)
  _number("learning_rate", learning_rate, positive=True)
  _number("grad_clip", grad_clip, positive=False)
  _number("weight_decay", weight_decay, positive=False)
  for name, value, allowed in (("optimizer", optimizer, list(optim.OPTIMIZERS)),
                               ("schedule", schedule, list(config_base.SCHEDULES))):
    if value not in allowed:
      raise ConfigError(f"{name}={value!r}; use one of {allowed}.")


def check_settings(feats, *, prior_kind, positive, beta, batch_size, epochs, case,
                   **training) -> None:
  """The settings of ``api.fit_explainer``: the prior's form and the training settings
  (``check_training``, which also takes ``training``'s keywords)."""
  check_training(batch_size=batch_size, epochs=epochs, **training)
  if isinstance(beta, bool) or not isinstance(beta, numbers.Real):
    raise ConfigError(f"beta={beta!r} ({type(beta).__name__}); use a finite β >= 0 (0 trains "
                      "the baseline).")
  if prior_kind not in ("cross_entropy", "mse"):
    raise ConfigError(f"prior_kind={prior_kind!r}; use 'cross_entropy' or 'mse'.")
  if not np.isfinite(beta) or beta < 0:
    raise ConfigError(f"beta={beta}; use a finite β >= 0 (0 trains the baseline).")
  if prior_kind == "cross_entropy":
    if not positive:
      raise ConfigError("prior_kind='cross_entropy' needs positive α (softplus); pass "
                        "positive=True or use prior_kind='mse' for signed α.")
    if beta > 0 and np.min(feats["w"]) < 0:
      raise ConfigError(f"prior_kind='cross_entropy' needs w >= 0, but w has a minimum of "
                        f"{float(np.min(feats['w'])):.4g}; clip the prior "
                        "(filter_featurizer(..., clip_prior=True)) or use prior_kind='mse'.")
  if case == "shared_feature" and beta > 0 and not featurizers.prior_varies(feats["w"]):
    import warnings  # pylint: disable=import-outside-toplevel
    warnings.warn("the prior weights w are the same for every image: the shared feature h "
                  "is probably right below a linear output layer, so the prior carries no "
                  "per-image information; take h one layer lower.", stacklevel=4)


# --- run identity -----------------------------------------------------------------------------


def data_hash(feats: Mapping[str, np.ndarray]) -> str:
  """SHA-256 of the training arrays (keys, shapes and bytes of feat, y, y_i, w and, when
  present, the consistency targets t and y(∅), y0, where the target start puts b)."""
  h = hashlib.sha256()
  for k in featurizers.FEATURE_KEYS + tuple(k for k in ("t", "y0") if k in feats):
    a = np.ascontiguousarray(feats[k], np.float32)
    h.update(f"{k}{a.shape}".encode())
    h.update(a.tobytes())
  return h.hexdigest()


def identity(feats, settings: dict) -> str:
  """The fit's run identity: canonical JSON of the data hash and the settings."""
  return json.dumps(dict(settings, data=data_hash(feats)), sort_keys=True,
                    separators=(",", ":"))


def check_fit_workdir(workdir: str, name: str, ident: str):
  """The finished ``Explainer`` of this identity in ``workdir/name``, or None to train.

  Raises:
    ConfigError: the folder holds a fit of another identity (or checkpoints of unknown one).
  """
  folder = os.path.join(workdir, name)
  path = os.path.join(folder, IDENTITY_FILE)
  if not os.path.exists(path):
    if os.path.isdir(folder) and os.listdir(folder):
      raise ConfigError(f"{folder} holds files of a fit without a recorded run identity; pass "
                        "another workdir or name, or delete that folder to start afresh.")
    return None
  recorded = checkpoint.read_json(path)
  if not isinstance(recorded, dict) or recorded.get("identity") != ident:
    why = stages.difference(recorded.get("identity") if isinstance(recorded, dict) else None,
                            ident)
    raise ConfigError(f"{folder} holds another fit (other data or settings; {why}), refused "
                      "so that it is not resumed under new settings; pass another workdir or "
                      "name, or delete that folder to start afresh.")
  if os.path.exists(os.path.join(folder, EXPLAINER_FILE)):
    return load_explainer(folder, recorded)
  return None


@contextlib.contextmanager
def _folder_lock(folder: str):
  """Holds an exclusive lock on the folder itself (no file is added to it) while the block
  runs; other processes taking it wait. Not POSIX: no lock."""
  try:
    import fcntl  # pylint: disable=import-outside-toplevel
  except ImportError:
    yield
    return
  fd = os.open(folder, os.O_RDONLY)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX)
    yield
  finally:
    os.close(fd)   # releases the lock


def record_identity(workdir: str, name: str, ident: str, net: dict) -> None:
  """Records the fit's run identity in ``workdir/name`` before training.

  The check and the record are one step under a lock on the folder: of two fits started at
  the same instant with different identities (``check_fit_workdir`` found the folder free for
  both), the second to record is refused instead of training into the first one's checkpoints.

  Raises:
    ConfigError: another fit recorded a different identity there since ``check_fit_workdir``.
  """
  folder = os.path.join(workdir, name)
  os.makedirs(folder, exist_ok=True)
  path = os.path.join(folder, IDENTITY_FILE)
  with _folder_lock(folder):
    if os.path.exists(path):
      recorded = checkpoint.read_json(path)
      current = recorded.get("identity") if isinstance(recorded, dict) else None
      if current != ident:
        why = stages.difference(current, ident)
        raise ConfigError(f"{folder} was taken by another fit started at the same time (other "
                          f"data or settings; {why}); one workdir/name holds one fit: pass "
                          "another workdir or name to run both.")
    checkpoint.write_json_atomic(path, {"identity": ident, "net": net})


def save_explainer(workdir: str, name: str, explainer) -> None:
  """Writes the trained variables (``explainer.msgpack``) and the start next to the identity."""
  import flax.serialization  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  folder = os.path.join(workdir, name)
  data = flax.serialization.msgpack_serialize(jax.device_get(explainer.variables))
  utils.write_atomic(os.path.join(folder, EXPLAINER_FILE), lambda f: f.write(data))
  recorded = checkpoint.read_json(os.path.join(folder, IDENTITY_FILE))
  recorded.update(alpha_scale=float(explainer.alpha_scale), case=explainer.case)
  checkpoint.write_json_atomic(os.path.join(folder, IDENTITY_FILE), recorded)


def load_explainer(folder: str, recorded: dict):
  """The ``Explainer`` saved in ``folder`` (no initialisation, no compilation)."""
  import flax.serialization  # pylint: disable=import-outside-toplevel
  from xplain_jax.train import explainer as explainer_lib  # pylint: disable=import-outside-toplevel
  with open(os.path.join(folder, EXPLAINER_FILE), "rb") as f:
    variables = flax.serialization.msgpack_restore(f.read())
  net = recorded["net"]
  g = models.get_weight_net(net["depth"], num_outputs=net["num_outputs"],
                            positive=net["positive"], width=net["width"], stem=net["stem"],
                            coords=bool(net.get("coords", False)))
  return explainer_lib.Explainer(g, variables, alpha_scale=float(recorded["alpha_scale"]),
                                 case=recorded["case"])
