"""Models: performers (the CNNs explained), weight networks g, weight import.

    from xplain_jax import models
    perf = models.get_performer("vgg16", num_outputs=40)
    g = models.get_weight_net(152, num_outputs=512, positive=True)
    variables = models.from_torchvision("vgg16", state_dict)

The interpretable mask layer lives in `models.interpretable` (imported only
when a performer is built with `interpretable=True`).
"""

from xplain_jax.models.alexnet import AlexNet, TinyAlexNet
from xplain_jax.models.performers import (
    MASK_ORDERS, ConvPerformer, ConvSpec, adaptive_avg_pool, local_response_norm,
    max_pool_2d)
from xplain_jax.models.resnet import (
    STEMS, WEIGHT_NET_DEPTHS, WeightNet, get_weight_net)
from xplain_jax.models.torch_import import (
    from_torchvision, load_conv_only, load_state_dict_file)
from xplain_jax.models.vgg import VGG, VGG16, VGGM, VGGS, TinyVGG

# Performer constructors by name; each takes num_outputs=... and the fields of
# its class (dropout_rate, interpretable, added_layer, mask_order, dtype, widths,
# top_channels, ...).
PERFORMERS = {
    "alexnet": AlexNet,
    "vgg_m": VGGM,
    "vgg_s": VGGS,
    "vgg16": VGG16,
    "tiny_vgg": TinyVGG,
    "tiny_alexnet": TinyAlexNet,
}


def _performer_cls(name):
  if name not in PERFORMERS:
    raise ValueError(f"unknown performer {name!r}; choose one of "
                     f"{', '.join(sorted(PERFORMERS))}")
  return PERFORMERS[name]


def get_performer(name, *, num_outputs, **kwargs):
  """Builds a performer by name.

  Args:
    name: one of PERFORMERS ("alexnet", "vgg_m", "vgg_s", "vgg16", "tiny_vgg",
      "tiny_alexnet").
    num_outputs: number of logits.
    **kwargs: module fields, e.g. dropout_rate, interpretable, dtype,
      top_channels, fc_features.

  Returns:
    an unbound linen module; `module.apply(variables, images)` gives
    (outputs [B,num_outputs], inter).

  Raises:
    ValueError: unknown name.
  """
  return _performer_cls(name)(num_outputs=num_outputs, **kwargs)


def min_image_size(name, **kwargs):
  """Smallest square image side (pixels) the named performer accepts.

  Args:
    name: one of PERFORMERS.
    **kwargs: module fields that change the layers (e.g. widths).

  Returns:
    int, e.g. 63 for "alexnet", 32 for "vgg16".
  """
  return get_performer(name, num_outputs=1, **kwargs).min_image_size()
