"""launch/bench/bench_conv_grad.py: every form of the kernel gradient (and torch eager's) equals
XLA's, the tiled max-pool's gradient equals XLA's bit for bit (checked inside), and every row
prints."""

import pytest

import launch_scripts


def test_patches_kernel_gradient_equals_xlas_and_prints_every_row(capsys):
  bench = launch_scripts.load("bench_conv_grad")
  out = bench.main(["--batch=2", "--size=6", "--channels=3,4", "--repeats=1"])
  pytest.importorskip("torch")
  assert len(out) == 15 and all(ms > 0 for ms in out.values())
  printed = capsys.readouterr().out
  assert "kernel gradient (patches · dy)" in printed and "kernel gradient (taps" in printed
  assert "max-pool gradient (tiles" in printed
  assert "kernel gradient (shifted copies concatenated · dy)" in printed
  assert "kernel gradient (patches gathered · dy)" in printed
  assert "torch eager: kernel gradient (channels-last)" in printed
