"""The environment of a run or study a test starts as a subprocess."""

import os
import tempfile


def subprocess_env(extra: dict | None = None) -> dict:
  """This process's environment without inherited ``XLA_FLAGS`` (the emulated-device tests set
  them), with a JAX compilation cache shared by the session's subprocesses (the session's own
  when tests/conftest.py set one), updated by ``extra``."""
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env.setdefault("JAX_COMPILATION_CACHE_DIR",
                 os.path.join(tempfile.gettempdir(), "xplain_jax_test_compile_cache"))
  env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
  env.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
  env.update(extra or {})
  return env
