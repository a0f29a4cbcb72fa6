"""Checkpoint saving: the final step is always saved, and a full disk inside orbax is one line."""

import errno

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from xplain_jax.infra import checkpoint, parallel
from xplain_jax import data, errors
from xplain_jax.train import loop


def _quadratic_run(workdir, *, steps_per_epoch, epochs, checkpoint_every):
  """Fits w to minimise mean (x·w − 1)² on 4-row batches; returns the final state."""
  rng = np.random.default_rng(0)
  src = data.ArraySource({"x": rng.normal(size=(4 * steps_per_epoch, 3)).astype(np.float32)})
  loader = data.Loader(src, 4, seed=0, shuffle=False, drop_remainder=True)

  def loss_fn(params, batch_stats, batch, rng, step):
    del rng, step
    loss = jnp.mean((batch["x"] @ params["w"] - 1.0) ** 2)
    return loss, (batch_stats, {"loss": loss})

  opt = ml_collections.ConfigDict(dict(name="sgd", learning_rate=0.1, schedule="constant",
                                       warmup_steps=0, grad_clip=0.0, weight_decay=0.0,
                                       momentum=0.0))
  return loop.train_stage(stage="toy", workdir=str(workdir), mesh=parallel.make_mesh(1),
                          loss_fn=loss_fn, params={"w": jnp.zeros(3)}, batch_stats={},
                          optimizer_config=opt, loader=loader, num_epochs=epochs,
                          rng=jax.random.PRNGKey(0), checkpoint_every=checkpoint_every,
                          log_every=checkpoint_every)


def test_the_final_step_is_saved_whatever_the_interval(tmp_path):
  """3 steps with a checkpoint every 2: checkpoints 2 and 3; a rerun restores step 3 and
  trains nothing more (its state equals the first run's final state)."""
  state = _quadratic_run(tmp_path, steps_per_epoch=3, epochs=1, checkpoint_every=2)
  ckpt = checkpoint.Checkpointer(str(tmp_path / "toy" / "ckpt"))
  assert ckpt.steps() == [2, 3]
  again = _quadratic_run(tmp_path, steps_per_epoch=3, epochs=1, checkpoint_every=2)
  assert int(again["step"]) == 3
  np.testing.assert_array_equal(again["params"]["w"], state["params"]["w"])


def _state():
  return {"w": jnp.arange(6, dtype=jnp.float32).reshape(2, 3), "step": jnp.zeros((), jnp.int32)}


def test_orbax_resource_exhausted_is_the_disk_full_line(tmp_path, monkeypatch):
  """Orbax (TensorStore) reports a full disk as ValueError('RESOURCE_EXHAUSTED ...'), not as an
  OSError: it is the same one line as any other full disk, and the next save after space was
  freed writes the checkpoint as if nothing had happened."""
  ckpt = checkpoint.Checkpointer(str(tmp_path / "ckpt"))
  ckpt.save(1, _state())
  real = ckpt._manager.save  # pylint: disable=protected-access

  def full(*args, **kwargs):
    raise ValueError("RESOURCE_EXHAUSTED: Error writing local file \"/x/ocdbt.process_0/d/1\": "
                     "No space left on device [tensorstore_spec[0]...]")
  monkeypatch.setattr(ckpt._manager, "save", full)  # pylint: disable=protected-access
  with pytest.raises(errors.StorageError) as info:
    ckpt.save(2, _state())
  msg = str(info.value)
  assert "checkpoint 2" in msg and "the disk is full" in msg and "rerun the same command" in msg
  assert "\n" not in msg and ckpt.steps() == [1]
  monkeypatch.setattr(ckpt._manager, "save", real)  # pylint: disable=protected-access
  ckpt.save(2, _state())
  restored, _, step = ckpt.restore(_state())
  assert step == 2 and ckpt.steps() == [1, 2]
  np.testing.assert_array_equal(restored["w"], _state()["w"])


def test_full_disk_is_recognised_in_any_exception_chain():
  def chained(inner):
    try:
      raise inner
    except Exception as e:  # pylint: disable=broad-except
      try:
        raise RuntimeError("while saving") from e
      except RuntimeError as outer:
        return outer
  err = errors.storage_error(chained(OSError(errno.ENOSPC, "No space left", "/w/fig.png")))
  assert isinstance(err, errors.StorageError) and "cannot write /w/fig.png" in str(err)
  assert "the disk is full" in str(err)
  assert errors.storage_error(chained(OSError(errno.EDQUOT, "Disk quota exceeded"))) is not None
  assert errors.storage_error(chained(OSError(errno.EACCES, "Permission denied"))) is None
  assert errors.storage_error(ValueError("a bug")) is None
