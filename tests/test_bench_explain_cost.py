"""launch/bench_explain_cost.py prints a cost per image for each explanation, at its quick size."""

import importlib.util
import os

import pytest

pytest.importorskip("sklearn")

_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "launch",
                     "bench_explain_cost.py")


@pytest.mark.slow
def test_prints_every_explanations_cost(capsys):
  spec = importlib.util.spec_from_file_location("bench_explain_cost", _PATH)
  bench = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(bench)
  out = bench.main(["--quick", "--batch=8", "--repeats=1", "--permutations=2"])
  assert len(out) == 4 and all(ms > 0 for ms in out.values())
  printed = capsys.readouterr().out
  assert "ms/image" in printed and "sampled Shapley, M = 2" in printed
