"""The test session's setup: one JAX compilation cache for every process it starts.

The suite runs the pipeline in many subprocesses (launch/run.py, launch/study.py, resumed runs)
that compile the same tiny programs. Unless ``XPLAIN_JAX_COMPILATION_CACHE`` is set already
(a folder to keep across sessions, or ``off``), the session makes a fresh cache folder, exports
it to its subprocesses (also as ``JAX_COMPILATION_CACHE_DIR``, for the tests that pass an
environment of their own without ``XPLAIN_*`` variables) and deletes it at the end.

It also compiles with ``--xla_backend_optimization_level=0`` (``FAST_COMPILE_FLAG`` of
tests/subprocesses.py), in this process and in every subprocess a test starts through
``subprocesses.subprocess_env``: XLA's CPU backend then skips LLVM's optimisation passes, which
take most of the compile time of the tiny programs the tests build (an explainer fit of
tests/api/test_api.py: 124 s -> 33 s), while the programs compute the same operations. A
session that names the level in ``XLA_FLAGS`` itself keeps its own.
"""

import os
import shutil
import tempfile

from subprocesses import with_fast_compile
from xplain_jax.infra import compile_cache

_MADE = "_xplain_jax_session_cache"


def pytest_configure(config):
  # Before any test builds the CPU backend, which reads XLA_FLAGS once.
  os.environ["XLA_FLAGS"] = with_fast_compile(os.environ.get("XLA_FLAGS", ""))
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
