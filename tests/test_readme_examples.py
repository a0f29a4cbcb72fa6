"""The README's "Explain your own model" examples run as written and reach the promised fit."""

import os
import re

import numpy as np
import pytest

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def _examples() -> list[str]:
  text = open(README, encoding="utf-8").read()
  section = text.split("## Explain your own model", 1)[1].split("\n## ", 1)[0]
  return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_readme_has_one_example_per_case():
  blocks = _examples()
  assert len(blocks) == 2
  assert "filter_featurizer" in blocks[0] and "shared_feature_featurizer" in blocks[1]


@pytest.mark.parametrize("index", [0, 1], ids=["case1_filters", "case2_shared_feature"])
def test_readme_example_runs_and_fits(index, capsys):
  namespace: dict = {}
  exec(compile(_examples()[index], f"README example {index + 1}", "exec"), namespace)
  metrics, test = namespace["metrics"], namespace["test"]
  assert metrics["prior"]["relative_deviation"] <= 0.1, metrics["prior"]
  if index == 0:  # Case 1: filter sums in the hundreds, and the defaults still fit
    assert np.median(np.abs(test["y_i"])) > 100
  out = capsys.readouterr().out
  assert "relative_deviation" in out and "top" in out
