"""Every Python block of the README and of docs/api.md runs as written; the two own-model
examples ("Explain your own model") reach the promised fit."""

import os
import re

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAGES = ("README.md", os.path.join("docs", "api.md"))


def _blocks() -> list[tuple[str, str]]:
  """(name, code) of every ```python block of PAGES, in page order."""
  found = []
  for page in PAGES:
    text = open(os.path.join(ROOT, page), encoding="utf-8").read()
    for i, code in enumerate(re.findall(r"```python\n(.*?)```", text, flags=re.S)):
      found.append((f"{page} block {i + 1}", code))
  return found


def _own_model_examples() -> list[str]:
  return [code for _, code in _blocks() if "featurizers." in code]


def test_api_page_has_one_example_per_case():
  blocks = _own_model_examples()
  assert len(blocks) == 2
  assert "filter_featurizer" in blocks[0] and "shared_feature_featurizer" in blocks[1]


def test_api_page_shows_the_functional_api():
  code = "\n".join(code for _, code in _blocks())
  for name in ("concepts.filter_concepts", "priors.filter_prior", "priors.shared_feature_prior",
               "losses.prior_loss", "metrics.contribution_entropy", "models.get_performer"):
    assert name in code, name


@pytest.mark.parametrize("name", [n for n, c in _blocks() if "featurizers." not in c])
def test_code_block_runs(name):
  code = dict(_blocks())[name]
  namespace: dict = {}
  exec(compile(code, name, "exec"), namespace)
  for value in namespace.values():  # whatever the block computes is finite
    if isinstance(value, (np.ndarray, np.generic)) or type(value).__module__.startswith("jax"):
      if hasattr(value, "dtype") and np.issubdtype(np.asarray(value).dtype, np.floating):
        assert np.all(np.isfinite(np.asarray(value))), name


@pytest.mark.slow
@pytest.mark.parametrize("index", [0, 1], ids=["case1_filters", "case2_shared_feature"])
def test_own_model_example_runs_and_fits(index, capsys, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # the Case-1 example writes its report into the current folder
  namespace: dict = {}
  exec(compile(_own_model_examples()[index], f"own-model example {index + 1}", "exec"), namespace)
  metrics, test = namespace["metrics"], namespace["test"]
  assert metrics["prior"]["relative_deviation"] <= 0.1, metrics["prior"]
  if index == 0:  # Case 1: filter sums in the hundreds, and the defaults still fit
    assert np.median(np.abs(test["y_i"])) > 100
  out = capsys.readouterr().out
  assert "deviation" in out and "top" in out
