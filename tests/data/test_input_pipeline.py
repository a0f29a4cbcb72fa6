"""The loader draws each epoch's permutation once and gives the same batches as before."""

import numpy as np

from xplain_jax.data import input_pipeline


def _reference_indices(n, batch_size, seed, step, process_index=0, process_count=1):
  """The loader's indices as they were when the permutation was drawn for every batch."""
  steps_per_epoch = n // batch_size
  epoch, k = divmod(step, steps_per_epoch)
  order = np.random.default_rng([seed, epoch]).permutation(n)
  glob = order[k * batch_size:(k + 1) * batch_size]
  per = batch_size // process_count
  return glob[process_index * per:(process_index + 1) * per]


def _loader(n=103, batch_size=8, seed=3, **kwargs):
  source = input_pipeline.ArraySource({"x": np.arange(n)})
  return input_pipeline.Loader(source, batch_size, seed=seed, check=False, **kwargs)


def test_batches_equal_a_permutation_drawn_for_every_batch():
  loader = _loader()
  steps = list(range(3 * loader.steps_per_epoch)) + [5, 40, 0, 13]  # epochs out of order too
  for step in steps:
    idx, valid = loader.indices(step)
    np.testing.assert_array_equal(idx, _reference_indices(103, 8, 3, step))
    assert valid.all()
    np.testing.assert_array_equal(loader.batch(step)["x"], idx)


def test_processes_share_the_epoch_order():
  parts = [_loader(process_index=p, process_count=2) for p in range(2)]
  for step in (0, 12, 13, 30):
    for p, loader in enumerate(parts):
      np.testing.assert_array_equal(loader.indices(step)[0],
                                    _reference_indices(103, 8, 3, step, p, 2))


def test_permutation_is_drawn_once_per_epoch(monkeypatch):
  drawn = []
  real = np.random.default_rng

  def counting_rng(seed):
    drawn.append(tuple(seed))
    return real(seed)

  monkeypatch.setattr(input_pipeline.np.random, "default_rng", counting_rng)
  loader = _loader()
  for step in range(2 * loader.steps_per_epoch):
    loader.indices(step)
  assert drawn == [(3, 0), (3, 1)]


def test_a_caller_changing_its_indices_leaves_the_epoch_intact():
  loader = _loader()
  first, _ = loader.indices(0)
  expected = first.copy()
  first[:] = -1
  np.testing.assert_array_equal(loader.indices(0)[0], expected)


def test_eval_loader_pads_its_last_batch_as_before():
  loader = _loader(n=10, batch_size=4, shuffle=False, drop_remainder=False)
  idx, valid = loader.indices(2)
  np.testing.assert_array_equal(idx, [8, 9, 0, 1])
  np.testing.assert_array_equal(valid, [True, True, False, False])
