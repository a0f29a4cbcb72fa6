"""The test session's setup: one JAX compilation cache for every process it starts.

The suite runs the pipeline in many subprocesses (launch/run.py, launch/study.py, resumed runs)
that compile the same tiny programs. Unless ``XPLAIN_JAX_COMPILATION_CACHE`` is set already
(a folder to keep across sessions, or ``off``), the session makes a fresh cache folder, exports
it to its subprocesses (also as ``JAX_COMPILATION_CACHE_DIR``, for the tests that pass an
environment of their own without ``XPLAIN_*`` variables) and deletes it at the end.
"""

import os
import shutil
import tempfile

from xplain_jax.infra import compile_cache

_MADE = "_xplain_jax_session_cache"


def pytest_configure(config):
  if compile_cache.ENV_VAR not in os.environ:  # pytest-xdist workers inherit the controller's
    made = tempfile.mkdtemp(prefix="xplain_jax_test_compile_cache_")
    os.environ[compile_cache.ENV_VAR] = made
    setattr(config, _MADE, made)
  path = compile_cache.enable()
  if path is not None:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = path
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = str(
        compile_cache.MIN_COMPILE_SECONDS)
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = str(compile_cache.MIN_ENTRY_BYTES)


def pytest_unconfigure(config):
  made = getattr(config, _MADE, None)
  if made is not None:
    shutil.rmtree(made, ignore_errors=True)
