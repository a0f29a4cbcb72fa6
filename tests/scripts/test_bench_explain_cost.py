"""launch/bench/bench_explain_cost.py prints a cost per image for each explanation, at its quick
size."""

import pytest

import launch_scripts

pytest.importorskip("sklearn")


@pytest.mark.slow
def test_prints_every_explanations_cost(capsys):
  bench = launch_scripts.load("bench_explain_cost")
  out = bench.main(["--quick", "--batch=8", "--repeats=1", "--permutations=2"])
  assert len(out) == 4 and all(ms > 0 for ms in out.values())
  printed = capsys.readouterr().out
  assert "ms/image" in printed and "sampled Shapley, M = 2" in printed
