"""examples/same_metrics.py: wall-clock values are only counted; any other change is named."""

import launch_scripts

same = launch_scripts.load("same_metrics")


def test_wall_clock_values_are_counted_and_others_named():
  a = {"prior": {"entropy": 1.0, "cost": {"seconds_per_image": 0.1}}, "list": [1, 2]}
  b = {"prior": {"entropy": 1.0, "cost": {"seconds_per_image": 0.3}}, "list": [1, 2]}
  assert same.compare(a, b) == ([], ["prior.cost.seconds_per_image: 0.1 != 0.3"])
  b["list"][1] = 3
  b["extra"] = 0
  real, _ = same.compare(a, b)
  assert real == ["extra: <missing> != 0", "list[1]: 2 != 3"]
