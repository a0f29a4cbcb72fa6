"""launch/bench_conv_grad.py: the kernel gradient by patches equals XLA's, and every row prints."""

import importlib.util
import os

_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "launch",
                     "bench_conv_grad.py")


def test_patches_kernel_gradient_equals_xlas_and_prints_every_row(capsys):
  spec = importlib.util.spec_from_file_location("bench_conv_grad", _PATH)
  bench = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(bench)
  out = bench.main(["--batch=2", "--size=6", "--channels=3,4", "--repeats=1"])
  assert len(out) == 4 and all(ms > 0 for ms in out.values())
  assert "kernel gradient (patches · dy)" in capsys.readouterr().out
