"""Loads a script of launch/, launch/bench/ or examples/ as a module, for the tests of the
benchmarks and measurements."""

import importlib.util
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDERS = ("launch", os.path.join("launch", "bench"), "examples")


def load(name: str):
  """The module of ``<folder>/<name>.py`` (the first of ``FOLDERS`` holding it), executed once
  per call."""
  for folder in FOLDERS:
    path = os.path.join(ROOT, folder, f"{name}.py")
    if os.path.exists(path):
      spec = importlib.util.spec_from_file_location(name, path)
      module = importlib.util.module_from_spec(spec)
      sys.modules[name] = module  # dataclasses (Flax modules) look their module up by name
      spec.loader.exec_module(module)
      return module
  raise FileNotFoundError(f"no {name}.py in {', '.join(FOLDERS)}")
