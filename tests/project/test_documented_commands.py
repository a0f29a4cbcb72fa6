"""Every `python launch/...` and `python examples/...` command of README.md and docs/ still works
in the form a reader copies: the script exists, its --help lists every flag the command passes,
and the config file (with its argument) it names builds."""

from __future__ import annotations

import functools
import importlib
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCS = ["README.md"] + sorted(os.path.join("docs", f)
                              for f in os.listdir(os.path.join(ROOT, "docs"))
                              if f.endswith(".md"))
COMMAND = re.compile(r"python ((?:launch|examples)/[\w/]+\.py)((?:[ \t]+(?:\\\n[ \t]*)?[^\s`|]+)*)")
PLACEHOLDER = re.compile(r"[A-Z]{2,}|\$|\[")  # FILE, DIR, $W, [--flag]: not a literal value


def documented_commands() -> list[tuple[str, str, list[str]]]:
  """``(doc, script, args)`` of every command found (line continuations joined)."""
  out = []
  for doc in DOCS:
    with open(os.path.join(ROOT, doc), encoding="utf-8") as f:
      text = f.read()
    for m in COMMAND.finditer(text):
      args = m.group(2).replace("\\\n", " ").split()
      out.append((doc, m.group(1), args))
  return out


def _flag(arg: str) -> str | None:
  """The flag name of ``--name[=value]`` (None for positionals and config-field overrides)."""
  if not arg.startswith("--"):
    return None
  name = arg[2:].split("=", 1)[0]
  return None if name.startswith("config.") or not name else name


@functools.lru_cache(maxsize=None)
def _help(script: str) -> str:
  proc = subprocess.run([sys.executable, os.path.join(ROOT, script), "--help"], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode in (0, 1), f"{script} --help: {proc.stderr[-2000:]}"
  return proc.stdout + proc.stderr


def test_the_reader_finds_the_commands():
  found = documented_commands()
  scripts = {s for _, s, _ in found}
  assert len(found) > 40 and {"launch/run.py", "launch/study.py"} <= scripts
  assert ("README.md", "launch/run.py",
          ["--config=configs/synthetic.py", "--workdir=runs/synthetic"]) in found


@pytest.mark.parametrize("script", sorted({s for _, s, _ in documented_commands()}))
def test_every_documented_script_exists(script):
  assert os.path.isfile(os.path.join(ROOT, script)), f"{script} is named in the docs but gone"


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted({s for _, s, _ in documented_commands()}))
def test_every_documented_flag_is_one_the_script_takes(script):
  text = _help(script)
  for doc, s, args in documented_commands():
    if s != script:
      continue
    for arg in args:
      name = _flag(arg)
      if name and not PLACEHOLDER.search(name):
        assert f"--{name}" in text or f"-{name}" in text, (
            f"{doc}: {script} {' '.join(args)}: --{name} is not among its flags")


def _configs() -> list[tuple[str, str, str]]:
  out = set()
  for doc, _, args in documented_commands():
    for arg in args:
      if arg.startswith("--config=configs/"):
        value = arg.split("=", 1)[1]
        if not PLACEHOLDER.search(value):
          path, _, config_arg = value.partition(":")
          out.add((doc, path, config_arg))
  return sorted(out)


@pytest.mark.parametrize("doc,path,config_arg", _configs())
def test_every_documented_config_builds(doc, path, config_arg):
  assert os.path.isfile(os.path.join(ROOT, path)), f"{doc} names {path}, which is gone"
  module = importlib.import_module(path[:-3].replace("/", "."))
  assert module.get_config(config_arg) is not None
