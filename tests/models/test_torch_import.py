"""Tests for torchvision weight import (xplain_jax.models.torch_import).

torchvision is not a dependency, so VGG-16 and AlexNet are written here in plain
torch with torchvision's module indices (hence its state-dict key names) and
full layer widths; small inputs keep them fast (the adaptive pool makes the
classifier input independent of the image size).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xplain_jax import models

torch = pytest.importorskip("torch")
nn = torch.nn


class _TorchVisionNet(nn.Module):
  """torchvision's VGG/AlexNet skeleton: features, avgpool, classifier."""

  def __init__(self, features, pooled, classifier):
    super().__init__()
    self.features = features
    self.avgpool = nn.AdaptiveAvgPool2d((pooled, pooled))
    self.classifier = classifier

  def forward(self, x):
    x = self.avgpool(self.features(x))
    return self.classifier(torch.flatten(x, 1))

  def fc6(self, x):
    """Output of the first Linear + ReLU."""
    x = torch.flatten(self.avgpool(self.features(x)), 1)
    first = next(i for i, m in enumerate(self.classifier)
                 if isinstance(m, nn.Linear))
    return self.classifier[:first + 2](x)


def _torch_vgg16(num_classes=1000):
  layers, cin = [], 3
  for v in [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512,
            "M", 512, 512, 512, "M"]:
    if v == "M":
      layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    else:
      layers += [nn.Conv2d(cin, v, kernel_size=3, padding=1),
                 nn.ReLU(inplace=True)]
      cin = v
  classifier = nn.Sequential(
      nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(),
      nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(),
      nn.Linear(4096, num_classes))
  return _TorchVisionNet(nn.Sequential(*layers), 7, classifier)


def _torch_alexnet(num_classes=1000):
  features = nn.Sequential(
      nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(True),
      nn.MaxPool2d(kernel_size=3, stride=2),
      nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(True),
      nn.MaxPool2d(kernel_size=3, stride=2),
      nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(True),
      nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(True),
      nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(True),
      nn.MaxPool2d(kernel_size=3, stride=2))
  classifier = nn.Sequential(
      nn.Dropout(), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(True),
      nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(True),
      nn.Linear(4096, num_classes))
  return _TorchVisionNet(features, 6, classifier)


# Non-square inputs whose last max-pooled map is 2x3, so the adaptive pool and
# the C,H,W -> H,W,C reordering of fc6 are exercised in both directions.
_BUILDERS = {"vgg16": (_torch_vgg16, (64, 96)),
             "alexnet": (_torch_alexnet, (99, 127))}


@functools.lru_cache(maxsize=None)
def _torch_net(name):
  """Random net in eval mode; He-normal weights keep the logits O(1), so an
  absolute tolerance of 1e-4 is a strict test."""
  torch.manual_seed(0)
  builder, _ = _BUILDERS[name]
  net = builder().eval()
  with torch.no_grad():
    for m in net.modules():
      if isinstance(m, (nn.Conv2d, nn.Linear)):
        nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        nn.init.normal_(m.bias, std=0.1)
  return net


def _logits(name, net, images, num_outputs=None, rng=None):
  """Torch and converted-Flax outputs on the same NHWC images."""
  with torch.no_grad():
    x = torch.from_numpy(images).permute(0, 3, 1, 2)
    want, want_fc6 = net(x).numpy(), net.fc6(x).numpy()
  variables = models.from_torchvision(name, net.state_dict(),
                                      num_outputs=num_outputs, rng=rng)
  model = models.get_performer(name, num_outputs=want.shape[1]
                               if num_outputs is None else num_outputs)
  got, inter = jax.jit(model.apply)(variables, jnp.asarray(images))
  return want, want_fc6, np.asarray(got), np.asarray(inter["fc6"]), variables


# VGG-16 (138 M parameters, 12-17 s) is slow; AlexNet keeps the check in the fast subset.
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "vgg16" else n
                                  for n in sorted(_BUILDERS)])
def test_converted_logits_match_torch(name):
  _, (height, width) = _BUILDERS[name]
  images = np.random.default_rng(0).normal(
      scale=0.2, size=(2, height, width, 3)).astype(np.float32)
  want, want_fc6, got, fc6, _ = _logits(name, _torch_net(name), images)
  assert got.shape == want.shape == (2, 1000)
  assert np.abs(want).max() > 0.5  # the comparison is not between zeros
  print(f"{name}: max |logit diff| {np.abs(got - want).max():.2e}, "
        f"max |logit| {np.abs(want).max():.2e}")
  assert np.abs(fc6 - want_fc6).max() <= 1e-4
  assert np.abs(got - want).max() <= 1e-4


def test_new_last_layer_keeps_the_rest():
  net = _torch_net("alexnet")
  images = np.random.default_rng(1).normal(
      size=(2, 63, 63, 3)).astype(np.float32)
  with pytest.raises(ValueError, match="pass rng"):
    models.from_torchvision("alexnet", net.state_dict(), num_outputs=5)
  _, want_fc6, got, fc6, variables = _logits(
      "alexnet", net, images, num_outputs=5, rng=jax.random.key(0))
  assert got.shape == (2, 5)
  assert variables["params"]["fc8"]["kernel"].shape == (4096, 5)
  np.testing.assert_array_equal(variables["params"]["fc8"]["bias"], 0.0)
  assert np.abs(fc6 - want_fc6).max() <= 1e-4


def _alexnet_state():
  return dict(_torch_net("alexnet").state_dict())


def test_missing_key_names_key_and_shape():
  state = _alexnet_state()
  del state["features.3.weight"]
  with pytest.raises(ValueError, match=r"'features.3.weight'.*\(192, 64, 5, 5\)"):
    models.from_torchvision("alexnet", state)


def test_shape_mismatch_names_key_and_shape():
  state = _alexnet_state()
  state["classifier.4.weight"] = torch.zeros(4096, 4095)
  with pytest.raises(ValueError,
                     match=r"'classifier.4.weight'.*\(4096, 4095\).*\(4096, 4096\)"):
    models.from_torchvision("alexnet", state)


def test_unexpected_key_is_reported():
  state = _alexnet_state()
  state["features.1.weight"] = torch.zeros(3)
  with pytest.raises(ValueError, match="unexpected keys.*features.1.weight"):
    models.from_torchvision("alexnet", state)


def test_vgg_state_dict_is_not_an_alexnet():
  state = dict(_torch_net("vgg16").state_dict())
  with pytest.raises(ValueError, match=r"'features.0.weight' has shape "
                     r"\(64, 3, 3, 3\); expected \(64, 3, 11, 11\)"):
    models.from_torchvision("alexnet", state)


def test_unknown_name_raises():
  with pytest.raises(ValueError, match="alexnet, vgg16"):
    models.from_torchvision("vgg_m", {})


def test_load_state_dict_file_roundtrip(tmp_path):
  net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Linear(2, 3))
  path = tmp_path / "weights.pth"
  torch.save(net.state_dict(), path)
  state = models.load_state_dict_file(path)
  assert sorted(state) == sorted(net.state_dict())
  for key, value in net.state_dict().items():
    assert isinstance(state[key], np.ndarray)
    np.testing.assert_array_equal(state[key], value.numpy())
  torch.save([1, 2], tmp_path / "list.pth")
  with pytest.raises(ValueError, match="not a state dict"):
    models.load_state_dict_file(tmp_path / "list.pth")


@pytest.mark.slow
def test_conv_only_import_loads_convs_not_fc_layers():
  # Experiment 1 (Zhang et al. 2018b): ImageNet convs; the added 3x3 conv and fc6-fc8 anew.
  state = _alexnet_state()
  rng = jax.random.key(3)
  variables = models.load_conv_only("alexnet", state, num_outputs=1, rng=rng, added_layer=True)
  params = variables["params"]
  full = models.from_torchvision("alexnet", state)["params"]
  for i in range(5):
    np.testing.assert_array_equal(params[f"convs_{i}"]["kernel"], full[f"convs_{i}"]["kernel"])
    np.testing.assert_array_equal(params[f"convs_{i}"]["bias"], full[f"convs_{i}"]["bias"])
  # The new layers are the performer's own initialisation from rng, not the state dict's.
  model = models.get_performer("alexnet", num_outputs=1, added_layer=True)
  fresh = jax.jit(model.init)(rng, jnp.zeros((1, 63, 63, 3)))["params"]
  for layer in ("added_conv", "fc6", "fc7", "fc8"):
    np.testing.assert_array_equal(params[layer]["kernel"], fresh[layer]["kernel"])
  assert params["added_conv"]["kernel"].shape == (3, 3, 256, 256)
  assert not np.allclose(params["fc7"]["kernel"], full["fc7"]["kernel"])
  # Only the conv tensors are read: a broken classifier does not matter, a broken conv does.
  state["classifier.4.weight"] = torch.zeros(3)
  models.load_conv_only("alexnet", state, num_outputs=1, rng=rng)
  del state["features.3.weight"]
  with pytest.raises(ValueError, match=r"'features.3.weight'.*\(192, 64, 5, 5\)"):
    models.load_conv_only("alexnet", state, num_outputs=1, rng=rng)
