"""Static checks: a name used but never defined fails here, in the fast subset.

An undefined name only raises when its line runs, so a rarely taken error path (a bad
command-line flag, say) can break unnoticed until a slow end-to-end test reaches it.
"""

import pathlib

from pyflakes import api as flakes_api
from pyflakes import messages as flakes_messages
from pyflakes import reporter as flakes_reporter

ROOT = pathlib.Path(__file__).resolve().parents[2]
SOURCES = sorted(p for d in ("xplain_jax", "launch", "examples", "configs", "tests")
                 for p in (ROOT / d).rglob("*.py"))
# Messages that are bugs whenever the line runs, as opposed to style.
FATAL = (flakes_messages.UndefinedName, flakes_messages.UndefinedLocal,
         flakes_messages.UndefinedExport, flakes_messages.ImportStarUsage)


class _Collect(flakes_reporter.Reporter):

  def __init__(self):
    super().__init__(None, None)
    self.found = []

  def flake(self, message):
    if isinstance(message, FATAL):
      self.found.append(str(message))

  def syntaxError(self, filename, msg, lineno, offset, text):  # noqa: N802 (pyflakes' name)
    self.found.append(f"{filename}:{lineno}: {msg}")

  def unexpectedError(self, filename, msg):  # noqa: N802
    self.found.append(f"{filename}: {msg}")


def test_sources_are_found():
  assert len(SOURCES) > 50 and ROOT / "launch" / "run.py" in SOURCES


def test_no_undefined_names():
  rep = _Collect()
  for path in SOURCES:
    flakes_api.checkPath(str(path), rep)
  assert not rep.found, "\n".join(rep.found)


def test_the_check_catches_an_undefined_name(tmp_path):
  bad = tmp_path / "bad.py"
  bad.write_text("def f(e):\n  return _chain(e)[-1]\n")
  rep = _Collect()
  flakes_api.checkPath(str(bad), rep)
  assert len(rep.found) == 1 and "_chain" in rep.found[0]
