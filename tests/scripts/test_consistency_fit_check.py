"""examples/consistency_fit_check.py at its quick size: the faithful variant's target start ends far
closer to the filters' effects than the earlier plain least-squares start, and the deletion
effects add up to y − y(∅)."""

import pytest

import launch_scripts

pytest.importorskip("sklearn")


@pytest.mark.slow
def test_target_start_beats_the_plain_least_squares_start():
  check = launch_scripts.load("consistency_fit_check")
  out = check.main(["--size=quick", "--weights=1", "--permutations=2"])
  rows = {r["start"]: r for r in out["rows"]}
  target, plain = rows["target"]["train"], rows["least_squares_plain"]["train"]
  assert target["residual"] < 1.0 < 100 * target["residual"] < plain["residual"]
  assert out["additivity"]["sum_pearson"] > 0.95
  starts = out["residual_at_start"]
  assert starts["target"] < starts["ridge"] <= starts["plain"]
  assert 0 <= out["additivity"]["shapley_gap"] < 0.5
