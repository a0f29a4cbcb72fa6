"""Import torchvision ImageNet weights (VGG-16, AlexNet) into the performers.

torchvision keeps convs as OIHW, linear weights as (out, in) and flattens the
pooled map in C,H,W order; the performers use HWIO kernels, (in, out) Dense
kernels and flatten H,W,C. `from_torchvision` converts a state dict
("features.0.weight", ..., "classifier.6.bias") into Flax `variables`:

    sd = models.load_state_dict_file("vgg16-397923af.pth")
    variables = models.from_torchvision("vgg16", sd, num_outputs=40,
                                        rng=jax.random.key(0))
    logits, inter = models.get_performer("vgg16", num_outputs=40).apply(
        variables, images)

Experiment 1 as Zhang et al. (2018b) ran it takes ImageNet weights for the
conv layers only; the added interpretable conv and fc6-fc8 start afresh:

    variables = models.load_conv_only("vgg16", sd, num_outputs=1,
                                      rng=jax.random.key(0), added_layer=True)

torch is needed only to read .pth files (`pip install xplain_jax[torch]`).
"""

from typing import Any, Mapping, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from xplain_jax.models import alexnet
from xplain_jax.models import vgg
from xplain_jax.errors import DataError, MissingDependencyError

# Per architecture: the performer class and the torchvision `classifier` indices
# of fc6, fc7, fc8 (VGG: Linear, ReLU, Dropout, ...; AlexNet: Dropout, Linear, ...).
_LAYOUTS = {
    "vgg16": (vgg.VGG16, (0, 3, 6)),
    "alexnet": (alexnet.AlexNet, (1, 4, 6)),
}


def _torchvision_feature_indices(specs):
  """Index in torchvision's `features` Sequential of each conv of `specs`."""
  indices, i = [], 0
  for spec in specs:
    indices.append(i)
    i += 2 + (1 if spec.pool_window else 0)  # conv, ReLU[, MaxPool]
  return indices


def _to_numpy(value):
  if hasattr(value, "detach"):  # a torch tensor
    value = value.detach().cpu().float().numpy()
  return np.asarray(value, np.float32)


def _take(state_dict, key, expected_shape):
  """The array under `key`, checked against the torch-layout shape."""
  if key not in state_dict:
    raise DataError(f"state dict lacks {key!r}; expected a tensor of shape "
                     f"{tuple(expected_shape)}")
  value = _to_numpy(state_dict[key])
  if value.shape != tuple(expected_shape):
    raise DataError(f"state dict {key!r} has shape {value.shape}; expected "
                     f"{tuple(expected_shape)}")
  return value


def _conv_params(specs, shapes, take) -> dict:
  """``{"convs_i": {"kernel": HWIO, "bias"}}`` of every original conv, read with ``take``."""
  params = {}
  for i, index in enumerate(_torchvision_feature_indices(specs)):
    kh, kw, cin, cout = shapes[f"convs_{i}"]["kernel"].shape
    w = take(f"features.{index}.weight", (cout, cin, kh, kw))
    b = take(f"features.{index}.bias", (cout,))
    params[f"convs_{i}"] = {"kernel": w.transpose(2, 3, 1, 0), "bias": b}
  return params


def load_conv_only(name: str, state_dict: Mapping[str, Any], *, num_outputs: int,
                   rng: jax.Array, **module_kwargs):
  """ImageNet weights for the original conv layers only; everything else initialised anew.

  The setting of Zhang et al. (2018b) that Chen et al. follow in Experiment 1: the conv layers
  come from the ImageNet model, the added interpretable conv layer (``added_layer=True``) and
  the fully connected layers fc6-fc8 are initialised as the performer's ``init`` would (from
  ``rng``). The state dict's ``classifier.*`` tensors are not read.

  Args:
    name: "vgg16" or "alexnet".
    state_dict: torchvision's keys ("features.0.weight", ...), torch tensors or numpy arrays.
    num_outputs: outputs of the performer.
    rng: PRNG key for the new layers.
    **module_kwargs: fields of the performer (added_layer, fc_features, ...); they must leave
      the original conv layers as torchvision has them.

  Returns:
    {"params": ...} float32 for ``get_performer(name, num_outputs=..., **module_kwargs)``.

  Raises:
    ValueError: unknown name, a missing conv tensor, a shape mismatch, or a key that is
      neither a conv of ``features`` nor of ``classifier``.
  """
  if name not in _LAYOUTS:
    raise DataError(f"no torchvision import for {name!r}; choose one of "
                     f"{', '.join(sorted(_LAYOUTS))}")
  module = _LAYOUTS[name][0](num_outputs=num_outputs, **module_kwargs)
  size = module.min_image_size()
  fresh = jax.jit(module.init)(rng, jnp.zeros((1, size, size, 3)))["params"]
  shapes = jax.tree.map(lambda a: a, fresh)
  used = set()

  def take(key, shape):
    used.add(key)
    return _take(state_dict, key, shape)

  params = dict(fresh)
  params.update(_conv_params(module.layers(), shapes, take))
  unexpected = sorted(k for k in set(state_dict) - used if not k.startswith("classifier."))
  if unexpected:
    raise DataError(f"unexpected keys in the {name} state dict: {unexpected[:5]}; expected "
                     f"torchvision's {name} layout")
  return {"params": jax.tree.map(jnp.asarray, params)}


def from_torchvision(name: str, state_dict: Mapping[str, Any], *,
                     num_outputs: Optional[int] = None,
                     rng: Optional[jax.Array] = None):
  """Converts a torchvision VGG-16 or AlexNet state dict into Flax variables.

  Args:
    name: "vgg16" or "alexnet".
    state_dict: name -> torch tensor or numpy array, torchvision's key names.
    num_outputs: outputs of the performer; None keeps the state dict's (1000
      for ImageNet). If it differs, every layer but the last is imported and
      the last (fc8) is initialised as the performer's Dense would be (LeCun
      normal kernel from `rng`, zero bias).
    rng: PRNG key for the new last layer; required when num_outputs differs.

  Returns:
    {"params": ...} float32 for `get_performer(name, num_outputs=...)`.

  Raises:
    ValueError: unknown name, missing or unexpected keys, shape mismatches, or
      a new last layer without rng.
  """
  if name not in _LAYOUTS:
    raise DataError(f"no torchvision import for {name!r}; choose one of "
                     f"{', '.join(sorted(_LAYOUTS))}")
  cls, fc_indices = _LAYOUTS[name]
  fc8_key = f"classifier.{fc_indices[2]}"
  if f"{fc8_key}.weight" not in state_dict:
    raise DataError(f"state dict lacks {fc8_key + '.weight'!r}; is it a "
                     f"torchvision {name} state dict?")
  sd_outputs = _to_numpy(state_dict[f"{fc8_key}.weight"]).shape[0]
  num_outputs = sd_outputs if num_outputs is None else num_outputs
  if num_outputs != sd_outputs and rng is None:
    raise DataError(f"num_outputs={num_outputs} differs from the state dict's "
                     f"{sd_outputs}: pass rng=jax.random.key(...) to initialise "
                     f"the last layer")

  module = cls(num_outputs=num_outputs)
  size = module.min_image_size()
  shapes = jax.eval_shape(module.init, jax.random.key(0),
                          jnp.zeros((1, size, size, 3)))["params"]
  params, used = {}, set()

  def take(key, shape):
    used.add(key)
    return _take(state_dict, key, shape)

  specs = module.layers()
  params.update(_conv_params(specs, shapes, take))

  side, channels = module.pooled, specs[-1].features
  for layer, index in zip(("fc6", "fc7", "fc8"), fc_indices):
    key = f"classifier.{index}"
    fin, fout = shapes[layer]["kernel"].shape
    if layer == "fc8" and num_outputs != sd_outputs:
      used.update({f"{key}.weight", f"{key}.bias"})
      kernel = nn.initializers.lecun_normal()(rng, (fin, fout), jnp.float32)
      params[layer] = {"kernel": kernel, "bias": jnp.zeros((fout,))}
      continue
    w = take(f"{key}.weight", (fout, fin))
    if layer == "fc6":  # rows of torch's C,H,W flatten -> Flax's H,W,C
      w = w.reshape(fout, channels, side, side).transpose(2, 3, 1, 0)
    params[layer] = {"kernel": w.reshape(fin, fout) if layer == "fc6"
                     else w.T, "bias": take(f"{key}.bias", (fout,))}

  unexpected = sorted(set(state_dict) - used)
  if unexpected:
    raise DataError(f"unexpected keys in the {name} state dict: "
                     f"{unexpected[:5]}; expected torchvision's {name} layout")
  return {"params": jax.tree.map(jnp.asarray, params)}


def load_state_dict_file(path):
  """Reads a torch `.pth` state dict into numpy arrays.

  Args:
    path: file written by `torch.save(model.state_dict(), path)`.

  Returns:
    dict name -> float32 numpy array, ready for `from_torchvision`.

  Raises:
    ImportError: torch is not installed.
    ValueError: the file does not hold a state dict.
  """
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise MissingDependencyError("reading .pth files needs torch: "
                      "pip install xplain_jax[torch]") from e
  state = torch.load(path, map_location="cpu", weights_only=True)
  if not isinstance(state, Mapping):
    raise DataError(f"{path} holds a {type(state).__name__}, not a state dict "
                     f"(save model.state_dict())")
  return {k: _to_numpy(v) for k, v in state.items()}
