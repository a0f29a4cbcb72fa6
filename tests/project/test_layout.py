"""The package's layout reads one way: no two modules named alike, one atomic file writer.

Read from the files with ``ast`` and ``os.walk``; nothing is imported or executed.

Names: two modules (or a module and a package) are confusable when their names are the same
word up to inflection: "pipeline" twice, "evaluate" beside "evaluators", "featurize" beside
"featurizers", "fidelity_eval" beside "fidelity_evaluator". A module in a subpackage is also
known by its package and its name together (``fidelity/evaluate.py`` reads as
"fidelity evaluate", the twin of ``evaluators/fidelity.py``). The only repeats allowed are a
subject named again in the packages that do something with it (``train/`` trains it,
``evaluators/`` evaluates it, as big_vision names its evaluators), listed in ``ALLOWED``.
"""

from __future__ import annotations

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGE = "xplain_jax"
ABBREVIATIONS = {"eval": "evaluate"}

# Root of a name -> the modules that may share it, and why.
ALLOWED = {
    frozenset({"explain"}): (
        {"xplain_jax/core/explain.py", "xplain_jax/train/explainer.py",
         "xplain_jax/evaluators/explainer.py"},
        "the explainer's functions; train/ trains it; evaluators/ evaluates it"),
    frozenset({"perform"}): (
        {"xplain_jax/models/performers.py", "xplain_jax/train/performer.py"},
        "models/ defines the performers; train/ trains one"),
    frozenset({"parts"}): (
        {"xplain_jax/core/parts.py", "xplain_jax/evaluators/parts.py"},
        "the part analysis; evaluators/ runs it on a workdir"),
    frozenset({"fidelity"}): (
        {"xplain_jax/fidelity", "xplain_jax/evaluators/fidelity.py"},
        "the fidelity package; evaluators/ runs it on a workdir and on the API's arrays"),
    frozenset({"patches"}): (
        {"xplain_jax/evaluators/patches.py", "xplain_jax/report/patches.py"},
        "evaluators/ finds the top-activating patches; report/ draws them"),
    frozenset({"sanity"}): (
        {"xplain_jax/fidelity/sanity.py", "xplain_jax/run/sanity.py",
         "xplain_jax/evaluators/sanity.py"},
        "the sanity check's functions; run/ runs its stage; evaluators/ scores it"),
    frozenset({"rend"}): (
        {"xplain_jax/report/render.py", "xplain_jax/study/render.py"},
        "the report and the study each render their own results"),
}

# The collisions the project once had; each must stay caught by the rule and gone.
NAMED = [
    ("xplain_jax/data/pipeline.py", "xplain_jax/run/pipeline.py"),
    ("xplain_jax/train/evaluate.py", "xplain_jax/train/evaluators.py"),
    ("xplain_jax/train/featurize.py", "xplain_jax/train/featurizers.py"),
    ("xplain_jax/fidelity_eval.py", "xplain_jax/train/fidelity_evaluator.py"),
    ("xplain_jax/fidelity/evaluate.py", "xplain_jax/evaluators/fidelity.py"),
]

# The one module that renames a written file into place, and the one folder rename.
WRITERS = {("xplain_jax/utils.py", "write_atomic"),
           ("xplain_jax/study/runner.py", "seed_run")}  # publishes a seeded run folder


def _root(word: str) -> str:
  """A word without its inflection: "evaluators" and "evaluate" -> "evaluat"."""
  word = ABBREVIATIONS.get(word.lower(), word.lower())
  if word.endswith(("ers", "ors")):
    word = word[:-1]
  for suffix in ("or", "er", "e"):
    if word.endswith(suffix) and len(word) - len(suffix) >= 4:
      return word[:-len(suffix)]
  return word


def _keys(path: str) -> set[frozenset]:
  """The names a reader knows ``path`` by: its own, and with its subpackage's in front."""
  parts = path[:-3].split("/") if path.endswith(".py") else path.split("/")
  own = frozenset(_root(w) for w in parts[-1].split("_") if w)
  keys = {own}
  if len(parts) > 2:  # in a subpackage of the package
    keys.add(own | {_root(w) for w in parts[-2].split("_") if w})
  return keys


def _modules() -> list[str]:
  """Every module and subpackage of the package, as paths relative to the repository."""
  out = []
  for folder, dirs, files in os.walk(os.path.join(ROOT, PACKAGE)):
    dirs[:] = sorted(d for d in dirs if not d.startswith(("_", ".")))
    rel = os.path.relpath(folder, ROOT).replace(os.sep, "/")
    if rel != PACKAGE:
      out.append(rel)
    out.extend(f"{rel}/{f}" for f in sorted(files) if f.endswith(".py") and f != "__init__.py")
  return out


def _collisions(paths) -> dict[frozenset, set[str]]:
  by_key: dict[frozenset, set[str]] = {}
  for p in paths:
    for key in _keys(p):
      by_key.setdefault(key, set()).add(p)
  return {k: ps for k, ps in by_key.items() if len(ps) > 1}


def test_no_two_modules_are_named_alike():
  bad = {tuple(sorted(k)): sorted(ps) for k, ps in _collisions(_modules()).items()
         if not (k in ALLOWED and ps <= ALLOWED[k][0])}
  assert not bad, (f"modules named alike: {bad}; rename one so that each name says what it "
                   "holds (or, for one subject in the packages that use it, add it to ALLOWED "
                   "with the reason)")


@pytest.mark.parametrize("a, b", NAMED)
def test_a_named_collision_is_caught_and_gone(a, b):
  assert _collisions([a, b]), f"the rule no longer sees {a} and {b} as named alike"
  present = [p for p in (a, b) if os.path.exists(os.path.join(ROOT, p))]
  assert len(present) < 2, f"{a} and {b} are both back"


def _replacing_functions(source: str, path: str = "<string>") -> set[str]:
  """Names of the functions (``<module>`` for top-level code) that call ``os.replace`` or
  ``os.rename``, however ``os`` or the function was imported."""
  tree = ast.parse(source, path)
  os_names, direct = {"os"}, set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      os_names.update(a.asname or a.name for a in node.names if a.name == "os")
    elif isinstance(node, ast.ImportFrom) and node.module == "os":
      direct.update(a.asname or a.name for a in node.names if a.name in ("replace", "rename"))

  def renames(call: ast.Call) -> bool:
    f = call.func
    if isinstance(f, ast.Attribute) and f.attr in ("replace", "rename"):
      return isinstance(f.value, ast.Name) and f.value.id in os_names
    return isinstance(f, ast.Name) and f.id in direct

  found = set()

  def visit(node, owner):
    for child in ast.iter_child_nodes(node):
      if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
        visit(child, child.name)
      else:
        if isinstance(child, ast.Call) and renames(child):
          found.add(owner)
        visit(child, owner)

  visit(tree, "<module>")
  return found


def test_the_writer_reader_finds_private_writers():
  source = ("import os as o\nfrom os import rename as mv\n"
            "def save(p, t):\n  with open(p + '.tmp', 'w') as f:\n    f.write(t)\n"
            "  o.replace(p + '.tmp', p)\n"
            "def move(a, b):\n  mv(a, b)\n"
            "def text(s):\n  return s.replace('a', 'b')\n")
  assert _replacing_functions(source) == {"save", "move"}


def test_one_atomic_writer():
  found = set()
  for top in (PACKAGE, "launch", "configs"):
    for folder, _, files in os.walk(os.path.join(ROOT, top)):
      for f in files:
        if f.endswith(".py"):
          path = os.path.join(folder, f)
          rel = os.path.relpath(path, ROOT).replace(os.sep, "/")
          with open(path, encoding="utf-8") as fh:
            found.update((rel, fn) for fn in _replacing_functions(fh.read(), path))
  assert found <= WRITERS, (f"{sorted(found - WRITERS)} rename files into place themselves; "
                            "write through xplain_jax.utils.write_atomic instead")
  assert ("xplain_jax/utils.py", "write_atomic") in found


# Test folders that are not a package folder: whole runs and faults, the scripts of launch/bench/
# and examples/, and the project's own checks.
TEST_SUITES = {"end_to_end", "scripts", "project"}


def _test_file_home(rel: str, package_modules: dict) -> str | None:
  """Why ``rel`` (a path below tests/) is not where a contributor looks for it, or None.

  A unit test of ``xplain_jax/<folder>/<module>.py`` is ``tests/<folder>/test_<module>.py`` or
  ``test_<module>_<aspect>.py`` (``test_<folder>.py`` for the folder's public names); a root
  module's is ``tests/test_<module>.py``."""
  folder, _, name = rel.rpartition("/")
  subject = name[len("test_"):-len(".py")]
  if folder in TEST_SUITES:
    return None
  if folder not in package_modules:
    return (f"tests/{rel}: tests/{folder}/ is no package folder of xplain_jax nor one of "
            f"{sorted(TEST_SUITES)}")
  names = package_modules[folder] | ({folder} if folder else set())
  if any(subject == m or subject.startswith(m + "_") for m in names):
    return None
  return f"tests/{rel} names no module of xplain_jax/{folder}"


def test_tests_mirror_the_package():
  package_modules = {}
  for folder, _, files in os.walk(os.path.join(ROOT, PACKAGE)):
    rel = os.path.relpath(folder, os.path.join(ROOT, PACKAGE))
    if "__pycache__" in rel:
      continue
    package_modules[("" if rel == "." else rel)] = {f[:-3] for f in files if f.endswith(".py")}
  found = []
  for folder, _, files in os.walk(os.path.join(ROOT, "tests")):
    for f in files:
      if f.startswith("test_") and f.endswith(".py"):
        rel = os.path.relpath(os.path.join(folder, f), os.path.join(ROOT, "tests"))
        found.append(rel.replace(os.sep, "/"))
  assert len(found) > 50
  bad = [why for rel in sorted(found) for why in [_test_file_home(rel, package_modules)] if why]
  assert not bad, bad


def test_the_test_home_rule_refuses_a_stray_name():
  modules = {"core": {"priors", "losses"}, "": {"utils"}}
  assert _test_file_home("core/test_priors_jacobian.py", modules) is None
  assert _test_file_home("test_utils.py", modules) is None
  assert "names no module" in _test_file_home("core/test_widgets.py", modules)
  assert "no package folder" in _test_file_home("misc/test_priors.py", modules)
