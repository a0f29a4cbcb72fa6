"""The environment of a run or study a test starts as a subprocess."""

import os
import tempfile

# XLA's CPU backend without LLVM's optimisation passes: the tiny programs of the tests compile
# several times faster and compute the same operations (tests/conftest.py sets it for the session).
FAST_COMPILE_FLAG = "--xla_backend_optimization_level=0"


def with_fast_compile(flags: str) -> str:
  """``flags`` (an ``XLA_FLAGS`` value) with ``FAST_COMPILE_FLAG`` unless it sets the level."""
  if "xla_backend_optimization_level" in flags:
    return flags
  return (flags + " " + FAST_COMPILE_FLAG).strip()


def subprocess_env(extra: dict | None = None) -> dict:
  """This process's environment without inherited ``XLA_FLAGS`` (the emulated-device tests set
  them) but with ``FAST_COMPILE_FLAG``, with a JAX compilation cache shared by the session's
  subprocesses (the session's own when tests/conftest.py set one), updated by ``extra``."""
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env.setdefault("JAX_COMPILATION_CACHE_DIR",
                 os.path.join(tempfile.gettempdir(), "xplain_jax_test_compile_cache"))
  env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
  env.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
  env.update(extra or {})
  env["XLA_FLAGS"] = with_fast_compile(env.get("XLA_FLAGS", ""))
  return env
