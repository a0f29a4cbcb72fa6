"""A deterministic, resumable, per-process-sharded batch loader over random-access sources.

Every dataset in xplain_jax is a *random-access source*: an object with ``__len__`` and
``get_batch(indices) -> dict[str, np.ndarray]`` (batch-first arrays). The loader turns a source
into global batches whose content is a pure function of ``(seed, step)``:

* epoch ``e = step // steps_per_epoch`` is a permutation of the records drawn from
  ``np.random.default_rng([seed, e])`` (or the identity when ``shuffle=False``);
* the global batch at ``step`` is the slice ``[k*B, (k+1)*B)`` of that permutation;
* process ``p`` of ``P`` loads only rows ``p*B/P .. (p+1)*B/P`` of each global batch, so a
  multi-host run reads every example exactly once per epoch with no communication.

Because a batch depends on the step alone, the iterator's whole state is one integer: a resumed
run that restores its step neither skips nor repeats an example. This replaces a grain/tf.data
pipeline and keeps TensorFlow off the default path (``tfds.data_source`` gives random access to
prepared TFDS datasets without TensorFlow).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator, Protocol

import numpy as np

from xplain_jax.errors import DataError

Batch = dict[str, np.ndarray]


class Source(Protocol):
  """A random-access dataset: ``len(source)`` records, ``get_batch(indices)`` batches them."""

  def __len__(self) -> int:
    ...

  def get_batch(self, indices: np.ndarray) -> Batch:
    ...


@dataclasses.dataclass(frozen=True)
class ArraySource:
  """A source over in-memory, batch-first numpy arrays of equal length.

  Attributes:
    arrays: name -> array ``[N, ...]``.
  """

  arrays: dict[str, np.ndarray]

  def __post_init__(self):
    lengths = {k: len(v) for k, v in self.arrays.items()}
    if len(set(lengths.values())) > 1:
      raise DataError(f"ArraySource arrays have different lengths {lengths}; "
                       "every array must have one row per record.")

  def __len__(self) -> int:
    return len(next(iter(self.arrays.values())))

  def get_batch(self, indices: np.ndarray) -> Batch:
    return {k: v[indices] for k, v in self.arrays.items()}


def check_images(images, *, where: str = "a batch", indices=None) -> None:
  """Raises ``ValueError`` unless ``images`` is ``[b,S,S,3]`` floating point and finite.

  Args:
    images: the ``"image"`` array of a batch.
    where: what the batch is, for the message (e.g. "batch 3 of the loader").
    indices: optional [b] record indices of the rows, to name the bad records.
  """
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] != 3 or images.shape[1] != images.shape[2]:
    raise DataError(f"{where}: image has shape {images.shape}; expected [b, S, S, 3] (square "
                     "RGB images, channels last); check the data source.")
  if not np.issubdtype(images.dtype, np.floating):
    raise DataError(f"{where}: image has dtype {images.dtype}; expected float32 (normalised "
                     "pixels); convert the source's images, e.g. x.astype(np.float32) / 255.")
  finite = np.isfinite(images).reshape(len(images), -1).all(axis=1)
  if not finite.all():
    rows = np.flatnonzero(~finite)
    which = (np.asarray(indices)[rows] if indices is not None else rows)[:8].tolist()
    raise DataError(f"{where}: the images of records {which} contain NaN or Inf; the data "
                     "source gives non-finite pixels: check those files and the preprocessing.")


@dataclasses.dataclass(frozen=True)
class Loader:
  """Deterministic global batches of a source, sharded over processes.

  Attributes:
    source: a random-access ``Source``.
    batch_size: global batch size ``B`` (all processes together).
    seed: shuffling seed.
    shuffle: draw a new permutation every epoch.
    drop_remainder: drop the last, partial batch of an epoch (training); when False the last
      batch is padded by repeating records and a ``"mask"`` array marks the real rows (eval).
    process_index: this process's index ``p``.
    process_count: number of processes ``P``; ``B`` must be divisible by ``P``.
    check: check every batch's ``"image"`` (when present) with ``check_images``: shape
      ``[b,S,S,3]``, floating dtype, no NaN/Inf.
  """

  source: Any
  batch_size: int
  seed: int = 0
  shuffle: bool = True
  drop_remainder: bool = True
  process_index: int = 0
  process_count: int = 1
  check: bool = True

  def __post_init__(self):
    n = len(self.source)
    if self.batch_size <= 0:
      raise DataError(f"batch_size must be positive, got {self.batch_size}.")
    if self.batch_size % self.process_count:
      raise DataError(f"batch_size {self.batch_size} is not divisible by the process count "
                       f"{self.process_count}; choose a multiple of {self.process_count}.")
    if n == 0:
      raise DataError("the dataset is empty: no records to load; check the data config.")
    if self.drop_remainder and n < self.batch_size:
      raise DataError(f"the dataset has {n} records, fewer than one batch of "
                       f"{self.batch_size}; lower the batch size or use more data.")
    object.__setattr__(self, "_epoch_order", None)  # (epoch, order) of the last epoch read

  @property
  def steps_per_epoch(self) -> int:
    n = len(self.source)
    if self.drop_remainder:
      return n // self.batch_size
    return -(-n // self.batch_size)

  def _order(self, epoch: int) -> np.ndarray:
    """Epoch ``epoch``'s record order [N] int64, drawn once per epoch and kept until the next
    (one tuple swapped whole, so a prefetching thread reads either the old or the new one)."""
    cached = self._epoch_order
    if cached is not None and cached[0] == epoch:
      return cached[1]
    n = len(self.source)
    if not self.shuffle:
      order = np.arange(n)
    else:
      order = np.random.default_rng([self.seed, epoch]).permutation(n)
    order.setflags(write=False)  # shared by every batch of the epoch
    object.__setattr__(self, "_epoch_order", (epoch, order))
    return order

  def indices(self, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Record indices and validity mask of this process's part of global batch ``step``."""
    epoch, k = divmod(step, self.steps_per_epoch)
    order = self._order(epoch)
    glob = order[k * self.batch_size:(k + 1) * self.batch_size]
    valid = np.ones(self.batch_size, bool)
    if len(glob) < self.batch_size:  # only when drop_remainder=False
      valid[len(glob):] = False
      glob = np.concatenate([glob, np.resize(order, self.batch_size - len(glob))])
    per = self.batch_size // self.process_count
    sl = slice(self.process_index * per, (self.process_index + 1) * per)
    return np.array(glob[sl]), valid[sl]  # a copy: the epoch's order stays intact

  def batch(self, step: int) -> Batch:
    """This process's part of global batch ``step``, plus ``"mask"`` [B/P] bool."""
    idx, valid = self.indices(step)
    out = dict(self.source.get_batch(idx))
    out["mask"] = valid
    if self.check and "image" in out:
      check_images(out["image"], where=f"batch {step} of the data", indices=idx)
    return out

  def iterate(self, start_step: int = 0, num_steps: int | None = None) -> Iterator[Batch]:
    """Yields batches ``start_step, start_step + 1, ...`` (``num_steps`` of them, or forever)."""
    step = start_step
    while num_steps is None or step < start_step + num_steps:
      yield self.batch(step)
      step += 1

  def epoch(self, epoch: int = 0) -> Iterator[Batch]:
    """Yields the batches of one epoch (eval: ``shuffle=False, drop_remainder=False``)."""
    spe = self.steps_per_epoch
    return self.iterate(epoch * spe, spe)
