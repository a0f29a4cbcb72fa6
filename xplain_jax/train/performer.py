"""Stage 1: train the performer (multi-label or binary logistic loss, optional filter loss).

The stage supplies its loss (``performer_loss``) and initial variables to the one trainer
(``loop.train_stage``); the ordinary comparison layer of the parts case is the same stage on a
config without mask and filter loss (``ordinary_config``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from xplain_jax.core import losses
from xplain_jax import models
from xplain_jax.models import conv as conv_lib
from xplain_jax.train import optim
from xplain_jax.spec import stages
from xplain_jax.train import loop
from xplain_jax.train import state as state_lib

STAGE = "performer"


def build_performer(config, spec):
  """The performer module of ``config.performer`` with one output per ``spec.output_names``."""
  p = config.performer
  return models.get_performer(
      p.arch, num_outputs=len(spec.output_names), interpretable=p.interpretable,
      dtype=optim.compute_dtype(config.dtype), conv=conv_lib.conv_for(p.kernel_gradient),
      **p.model)


def init_variables(module, image_size: int, rng: jax.Array) -> dict:
  """Initial performer variables for ``image_size`` x ``image_size`` RGB inputs."""
  dummy = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
  init = jax.jit(lambda r: module.init({"params": r, "dropout": r}, dummy, train=False))
  return init(rng)


def imagenet_init(arch: str, path: str, num_outputs: int, rng: jax.Array, *,
                  convs_only: bool = False, model_kwargs=None) -> dict:
  """Performer variables from a torchvision state-dict file (ImageNet weights).

  ``convs_only`` (Experiment 1 as Zhang et al. ran it): the original conv layers are imported,
  the added conv and fc6-fc8 are initialised afresh (``models.load_conv_only``). Otherwise every
  layer but the last is imported and the last one is initialised afresh from ``rng``.
  """
  state_dict = models.load_state_dict_file(path)
  if convs_only:
    return models.load_conv_only(arch, state_dict, num_outputs=num_outputs, rng=rng,
                                 **dict(model_kwargs or {}))
  return models.from_torchvision(arch, state_dict, num_outputs=num_outputs, rng=rng)


def performer_loss(params, batch_stats, batch, rng, step, *, module, filter_loss_weight: float,
                   steps_per_epoch: int = 1, filter_schedule: str = "constant"):
  """Mean logistic loss over valid rows and outputs, plus the interpretable-filter loss.

  Args:
    batch: ``"image"`` [B,S,S,3], ``"labels"`` [B,A] in {0,1}, ``"mask"`` [B] bool.
    rng: the step's dropout key; step: the state's step (the filter-loss weight's epoch is
      ``step // steps_per_epoch + 1``).

  Returns:
    ``(loss, (new_batch_stats, metrics))``.
  """
  variables = state_lib.merge_variables(params, batch_stats)
  if batch_stats:
    (logits, inter), updates = module.apply(variables, batch["image"], train=True,
                                            rngs={"dropout": rng}, mutable=["batch_stats"])
  else:
    (logits, inter), updates = module.apply(variables, batch["image"], train=True,
                                            rngs={"dropout": rng}), {}
  logits = logits.astype(jnp.float32)
  bce = optax.sigmoid_binary_cross_entropy(logits, batch["labels"]).mean(-1)
  task = losses.masked_mean(bce, batch["mask"])
  loss, metrics = task, {"task_loss": task}
  if filter_loss_weight:
    from xplain_jax.models import interpretable
    # Zhang et al. put the filter loss on the filter's post-ReLU map, before the mask.
    relu = inter["top_conv_relu"].astype(jnp.float32)
    floss = interpretable.filter_loss(relu)
    scale = 1.0
    if filter_schedule == "epoch_activation":
      positive = (batch["labels"].max(-1) > 0.5) & batch["mask"]
      scale = interpretable.mean_max_activation(relu, positive)
    lam = interpretable.filter_loss_weight(
        step // steps_per_epoch + 1, scale, base=filter_loss_weight,
        schedule="constant" if filter_schedule == "constant" else "epoch")
    loss = loss + lam * floss
    metrics.update(filter_loss=floss, filter_loss_weight=lam)
  acc = ((logits > 0) == (batch["labels"] > 0.5)).mean(-1)
  metrics.update(loss=loss, accuracy=losses.masked_mean(acc, batch["mask"]))
  return loss, (updates.get("batch_stats", batch_stats), metrics)


def make_train_step(module, optimizer, *, filter_loss_weight: float, steps_per_epoch: int = 1,
                    filter_schedule: str = "constant"):
  """``step(state, batch, rng) -> (state, metrics)`` of ``performer_loss``
  (``loop.make_train_step``)."""
  return loop.make_train_step(functools.partial(
      performer_loss, module=module, filter_loss_weight=filter_loss_weight,
      steps_per_epoch=steps_per_epoch, filter_schedule=filter_schedule), optimizer)


def ordinary_config(config):
  """A copy of ``config`` whose performer has no mask and no filter loss (the ordinary layer)."""
  c = config.copy_and_resolve_references()
  c.unlock()
  c.performer.interpretable = False
  c.performer.filter_loss_weight = 0.0
  return c


def train_performer(config, spec, *, workdir: str, mesh, train_loader, rng,
                    stage: str = STAGE, fingerprint: str | None = None) -> tuple:
  """Trains (or resumes, or just restores) the performer; returns ``(module, variables)``.

  ``stage`` names the checkpoint folder and log (``workdir/<stage>``); another name trains a
  second performer beside the first (e.g. "performer_ordinary", with ``ordinary_config``).
  ``fingerprint`` is the run identity its checkpoints carry (default: ``config``'s for
  ``stage``); the ordinary performer carries the run's own config's, as its stage marker does.
  """
  p = config.performer
  module = build_performer(config, spec)
  variables = init_variables(module, config.dataset.image_size, jax.random.fold_in(rng, 0))
  if p.init_from:
    variables = imagenet_init(p.arch, p.init_from, len(spec.output_names),
                              jax.random.fold_in(rng, 2), convs_only=p.init_convs_only,
                              model_kwargs=p.model)
  params, batch_stats = state_lib.split_variables(variables)
  loss_fn = functools.partial(performer_loss, module=module,
                              filter_loss_weight=p.filter_loss_weight,
                              steps_per_epoch=train_loader.steps_per_epoch,
                              filter_schedule=p.filter_loss_schedule)
  state = loop.train_stage(
      stage=stage, workdir=workdir, mesh=mesh, loss_fn=loss_fn, params=params,
      batch_stats=batch_stats, optimizer_config=p.optimizer, loader=train_loader,
      num_epochs=p.num_epochs, rng=jax.random.fold_in(rng, 1),
      checkpoint_every=config.checkpoint_every_steps, log_every=config.log_every_steps,
      meta={"arch": p.arch},
      fingerprint=fingerprint or stages.stage_fingerprint(config, stage))
  return module, state_lib.merge_variables(state["params"], state["batch_stats"])
