"""host_memory.tune: large blocks come from the heap once tuned, from any thread, and the switch
turns it off.

Each case runs in a fresh interpreter (the thresholds are process-wide and ``tune`` is
idempotent): it mallocs a 16 MiB block and reads glibc's count of mmapped blocks
(``mallinfo2().hblks``) before and after. Untuned, glibc serves that block with its own mmap
(its default threshold is 128 KiB, at most 32 MiB when adjusted); tuned, from the heap.
"""

import ctypes
import ctypes.util
import os
import platform
import subprocess
import sys

import pytest

from tests.subprocesses import subprocess_env

_PROBE = r"""
import ctypes, ctypes.util, json, sys
from xplain_jax.infra import host_memory

class MallInfo2(ctypes.Structure):
  _fields_ = [(n, ctypes.c_size_t) for n in
              ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
               "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
tuned = host_memory.tune()
before = libc.mallinfo2().hblks
block = libc.malloc(16 << 20)
during = libc.mallinfo2().hblks
libc.free(block)
# A 100 MiB block from another thread: untuned, its own arena (heaps of at most 64 MiB) cannot
# hold it, so glibc mmaps it whatever the threshold; tuned, the one arena's heap serves it.
import threading
seen = {}
def other_thread():
  b = libc.malloc(100 << 20)
  seen["mmapped"] = libc.mallinfo2().hblks
  libc.free(b)
base = libc.mallinfo2().hblks
t = threading.Thread(target=other_thread)
t.start()
t.join()
print(json.dumps({"tuned": tuned, "again": host_memory.tune(), "mmapped": during - before,
                  "thread_mmapped": seen["mmapped"] - base}))
"""


def _glibc_with_mallinfo2() -> bool:
  if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
    return False
  libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
  return hasattr(libc, "mallinfo2")


pytestmark = pytest.mark.skipif(not _glibc_with_mallinfo2(),
                                reason="needs glibc 2.33+ (mallinfo2)")


def _probe(setting: str | None) -> dict:
  import json  # pylint: disable=import-outside-toplevel
  env = subprocess_env()
  env.pop("XPLAIN_JAX_MALLOC_TUNING", None)
  if setting is not None:
    env["XPLAIN_JAX_MALLOC_TUNING"] = setting
  out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True,
                       check=True, cwd=os.path.dirname(os.path.dirname(os.path.dirname(
                           os.path.abspath(__file__)))))
  return json.loads(out.stdout.strip().splitlines()[-1])


def test_tuned_a_16_mib_block_and_another_threads_100_mib_block_come_from_the_heap():
  got = _probe(None)
  assert got == {"tuned": True, "again": True, "mmapped": 0, "thread_mmapped": 0}


@pytest.mark.parametrize("setting", ["off", "OFF", " off "])
def test_switched_off_glibc_keeps_its_own_mmap_threshold(setting):
  got = _probe(setting)
  assert got == {"tuned": False, "again": False, "mmapped": 1, "thread_mmapped": 1}
