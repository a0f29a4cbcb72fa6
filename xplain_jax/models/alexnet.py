"""AlexNet performers in torchvision's layout, and a tiny variant for tests."""

import functools
from typing import Sequence

from xplain_jax.models import performers


class AlexNet(performers.ConvPerformer):
  """AlexNet as in torchvision (Krizhevsky 2014 "one weird trick" variant).

  conv 64 11x11/4 pad 2, max-pool 3/2, conv 192 5x5 pad 2, max-pool 3/2, conv 384,
  256, 256 3x3 pad 1, max-pool 3/2 (floor rounding, no LRN), adaptive average
  pool to 6x6, fc 4096, 4096, num_outputs. At 224x224 the top conv (conv5) map is
  13x13x256; with 1000 outputs there are 61,100,840 parameters. The smallest
  accepted image is 63x63.

  Attributes:
    widths: filters of conv1..conv5 (shrink them for small variants).
  """
  widths: Sequence[int] = (64, 192, 384, 256, 256)

  def conv_specs(self):
    w1, w2, w3, w4, w5 = self.widths
    pool = dict(pool_window=3, pool_stride=2)
    return (
        performers.ConvSpec(w1, 11, stride=4, padding=2, **pool),
        performers.ConvSpec(w2, 5, padding=2, **pool),
        performers.ConvSpec(w3, 3, padding=1),
        performers.ConvSpec(w4, 3, padding=1),
        performers.ConvSpec(w5, 3, padding=1, **pool),
    )


# Same layer geometry with narrow layers: for tests and CPU runs at >= 63 px.
TinyAlexNet = functools.partial(
    AlexNet, widths=(16, 32, 32, 32, 32), fc_features=64)
