"""Loads a script of launch/ as a module, for the tests of the benchmarks and measurements."""

import importlib.util
import os

LAUNCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "launch")


def load(name: str):
  """The module of ``launch/<name>.py``, executed once per call."""
  spec = importlib.util.spec_from_file_location(name, os.path.join(LAUNCH, f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module
