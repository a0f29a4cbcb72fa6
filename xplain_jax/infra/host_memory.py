"""Host memory: keep glibc's malloc from handing large buffers back to the kernel every step.

On CPU each training step allocates and frees buffers of several MiB (activations, gradients,
the convolutions' patches). glibc serves blocks above its mmap threshold with a fresh ``mmap``
and returns them with ``munmap`` on free, and trims the heap's top when it grows past its trim
threshold, so every step pays the kernel to zero new pages again: the main job's run on the
2-core CPU spent a third of its CPU time in the kernel (224 of 684 s), with 68 million minor
page faults. ``tune()`` raises both thresholds and keeps every thread on the main arena
(``mallopt``), so freed blocks stay in the heap and the next step reuses them; memory the
process has used stays mapped until it ends.

``launch/run.py`` calls it at start (so every run of a study does too); the API does not (it runs
inside a caller's process, whose allocator is the caller's choice). ``XPLAIN_JAX_MALLOC_TUNING=off``
switches it off; elsewhere than glibc (macOS, musl) it does nothing. The measured effect is in
docs/scaling.md (``launch/bench/bench_cpu_vs_torch.py`` times both settings).

Example:
  >>> from xplain_jax.infra import host_memory
  >>> host_memory.tune()  # True where glibc took the settings
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

ENV_VAR = "XPLAIN_JAX_MALLOC_TUNING"
OFF = "off"
# mallopt's parameter numbers (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
# Blocks below this come from the heap (and are reused), not from a fresh mmap.
MMAP_THRESHOLD_BYTES = 1 << 30
# The heap's free top is given back to the kernel only beyond this.
TRIM_THRESHOLD_BYTES = (1 << 31) - 1
# One arena for every thread: XLA:CPU's worker threads otherwise allocate from per-thread
# arenas, whose heaps hold at most 64 MiB, so a larger buffer (the main job's [64,64,64,64]
# float32 activations are 64 MiB) is mmapped afresh every step whatever the threshold.
ARENA_MAX = 1

_state = {"tuned": None}


def requested() -> bool:
  """Whether the environment leaves the tuning on (``XPLAIN_JAX_MALLOC_TUNING`` is not off)."""
  return os.environ.get(ENV_VAR, "").strip().lower() != OFF


def tune() -> bool:
  """Raises glibc's mmap and trim thresholds and keeps one arena for this process (idempotent).

  Returns:
    True when glibc accepted both settings; False when switched off, or when the C library is
    not glibc (then nothing changed).
  """
  if _state["tuned"] is not None:
    return _state["tuned"]
  ok = False
  if requested():
    try:
      libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
      mallopt = libc.mallopt
    except (OSError, AttributeError):
      mallopt = None  # not glibc: no mallopt to call
    if mallopt is not None:
      mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
      settings = ((_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
                  (_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES), (_M_ARENA_MAX, ARENA_MAX))
      ok = all([bool(mallopt(param, value)) for param, value in settings])
  _state["tuned"] = ok
  return ok
