"""The torch eager side of ``bench_cpu_vs_torch.py``: this project's performer, weight network,
prior loss and training step written again in plain torch (NCHW), layer for layer and shape for
shape, so the benchmark times the same maths in both frameworks."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from xplain_jax.models import resnet


class TorchPerformer(torch.nn.Module):
  """The performer of ``module.layers()`` (conv/ReLU/max-pool stack, fc6-fc8) in NCHW."""

  def __init__(self, module, num_outputs: int, image_size: int):
    super().__init__()
    self.specs, self.flax = module.layers(), module
    if any(s.lrn for s in self.specs) or module.interpretable or module.added_layer:
      raise ValueError("the torch performer has no LRN, mask or added layer; pick a plain VGG.")
    chans = [3] + [s.features for s in self.specs]
    self.convs = torch.nn.ModuleList(
        torch.nn.Conv2d(chans[i], s.features, s.kernel, s.stride, s.padding)
        for i, s in enumerate(self.specs))
    with torch.no_grad():
      flat = self.trunk(torch.zeros(1, 3, image_size, image_size)).shape[1]
    self.fc6 = torch.nn.Linear(flat, module.fc_features)
    self.fc7 = torch.nn.Linear(module.fc_features, module.fc_features)
    self.fc8 = torch.nn.Linear(module.fc_features, num_outputs)

  def trunk(self, x):
    for s, conv in zip(self.specs, self.convs):
      x = F.relu(conv(x))
      if s.pool_window:
        x = F.max_pool2d(x, s.pool_window, s.pool_stride, ceil_mode=s.pool_ceil)
    if self.flax.global_max_pool:
      x = torch.amax(x, dim=(2, 3), keepdim=True)
    elif self.flax.pooled:
      x = F.adaptive_avg_pool2d(x, self.flax.pooled)
    return x.flatten(1)

  def forward(self, x):
    drop = lambda h: F.dropout(F.relu(h), self.flax.dropout_rate, self.training)
    return self.fc8(drop(self.fc7(drop(self.fc6(self.trunk(x))))))


class TorchBlock(torch.nn.Module):
  """``resnet.ResNetBlock``: two 3x3 convs (no bias) + BN, projected shortcut on a change."""

  def __init__(self, cin: int, cout: int, stride: int, momentum: float, eps: float):
    super().__init__()
    bn = lambda c: torch.nn.BatchNorm2d(c, eps=eps, momentum=1 - momentum)
    self.conv1 = torch.nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
    self.bn1, self.bn2 = bn(cout), bn(cout)
    self.conv2 = torch.nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
    torch.nn.init.zeros_(self.bn2.weight)
    self.proj = None
    if stride != 1 or cin != cout:
      self.proj = torch.nn.Sequential(torch.nn.Conv2d(cin, cout, 1, stride, bias=False), bn(cout))

  def forward(self, x):
    y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
    return F.relu((x if self.proj is None else self.proj(x)) + y)


class TorchWeightNet(torch.nn.Module):
  """``resnet.WeightNet`` with basic blocks (depths 10, 18, 34) in NCHW; padding k // 2 gives
  SAME's output sizes (and FLOPs) at every stride."""

  def __init__(self, g, map_shape: tuple):
    super().__init__()
    if g.block_cls is not resnet.ResNetBlock or g.coords or g.head_channels is not None:
      raise ValueError("the torch weight net has basic blocks only, no coords or head conv.")
    self.positive = g.positive
    kernel, stride = resnet.STEMS[g.stem]
    bn_args = dict(eps=g.bn_epsilon, momentum=1 - g.bn_momentum)
    self.stem = torch.nn.Sequential(
        torch.nn.Conv2d(map_shape[-1], g.width, kernel, stride, kernel // 2, bias=False),
        torch.nn.BatchNorm2d(g.width, **bn_args), torch.nn.ReLU())
    blocks, cin = [], g.width
    for i, size in enumerate(g.stage_sizes):
      for j in range(size):
        cout = g.width * 2 ** i
        blocks.append(TorchBlock(cin, cout, 2 if i > 0 and j == 0 else 1, g.bn_momentum,
                                 g.bn_epsilon))
        cin = cout
    self.blocks = torch.nn.Sequential(*blocks)
    with torch.no_grad():
      flat = self.blocks(self.stem(torch.zeros(2, map_shape[-1], *map_shape[:2]))).flatten(1)
    self.head = torch.nn.Linear(flat.shape[1], g.num_outputs)

  def forward(self, x):
    y = self.head(self.blocks(self.stem(x)).flatten(1))
    return F.softplus(y) if self.positive else y


def torch_prior_loss(alpha, w, kind: str, eps: float = 1e-12):
  """``losses.prior_loss`` (every row valid): CE of L1-normalised or MSE of L2-normalised rows."""
  order = 1 if kind == "cross_entropy" else 2
  unit = lambda v: v / torch.linalg.vector_norm(v, order, dim=-1, keepdim=True).clamp_min(1e-30)
  if kind == "cross_entropy":
    return -(unit(w) * torch.log(unit(alpha).clamp_min(eps))).sum(-1).mean()
  return (unit(alpha) - unit(w)).square().sum(-1).mean()


def torch_step_fn(net, loss_fn, schedule, extra_params=()):
  """An eager training step: ``loss_fn()`` (over ``net``), backward, Adam at ``schedule(step)``."""
  params = list(net.parameters()) + list(extra_params)
  opt = torch.optim.Adam(params, lr=float(schedule(0)))
  counter = {"step": 0}

  def step():
    for group in opt.param_groups:
      group["lr"] = float(schedule(counter["step"]))
    opt.zero_grad(set_to_none=True)
    loss = loss_fn()
    loss.backward()
    opt.step()
    counter["step"] += 1
    return loss.detach()
  return step


def nchw(x: np.ndarray) -> torch.Tensor:
  return torch.from_numpy(np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2))))
