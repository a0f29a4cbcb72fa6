"""Dependencies point one way: the package's import graph (read with ``ast``, nothing executed)
has no cycle, counting imports at the top of a module and inside its functions alike; and the
config check, the stage registry and the workdir checks import no training module."""

from __future__ import annotations

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "xplain_jax"


def _modules() -> dict[str, str]:
  """Module name -> file path of every module of the package."""
  out = {}
  for folder, _, files in os.walk(os.path.join(ROOT, PACKAGE)):
    for f in files:
      if f.endswith(".py"):
        path = os.path.join(folder, f)
        parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
        if parts[-1] == "__init__":
          parts = parts[:-1]
        out[".".join(parts)] = path
  return out


def _resolve(name: str, modules) -> str | None:
  """The package module ``name`` stands for (a name inside a module maps to the module)."""
  while name and name not in modules:
    name = name.rpartition(".")[0]
  return name or None


def import_graph() -> dict[str, set[str]]:
  """Module -> the package modules it imports (``import a.b``, ``from a import b``, relative
  imports, at any depth of the file)."""
  modules = _modules()
  graph = {}
  for name, path in modules.items():
    with open(path, encoding="utf-8") as f:
      tree = ast.parse(f.read(), path)
    is_pkg = path.endswith("__init__.py")
    targets = set()
    for node in ast.walk(tree):
      if isinstance(node, ast.Import):
        targets.update(a.name for a in node.names)
      elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
          here = name.split(".") if is_pkg else name.split(".")[:-1]
          here = here[:len(here) - (node.level - 1)]
          base = ".".join(here + ([base] if base else []))
        targets.add(base)
        targets.update(f"{base}.{a.name}" for a in node.names)
    graph[name] = {m for t in targets if t.split(".")[0] == PACKAGE
                   for m in [_resolve(t, modules)] if m and m != name}
  return graph


def _without_parent_packages(graph):
  """A module importing a submodule of its package runs the package's ``__init__`` first; an
  ``__init__`` importing its own submodules is not a cycle with them. Keep edges between
  modules that are not each other's package."""
  return {m: {t for t in ts if not m.startswith(t + ".") and not t.startswith(m + ".")}
          for m, ts in graph.items()}


def find_cycle(graph) -> list[str] | None:
  """One cycle of ``graph`` as a list of modules (first repeated at the end), or None."""
  state, stack = {}, []

  def visit(m):
    state[m] = 1
    stack.append(m)
    for t in sorted(graph.get(m, ())):
      if state.get(t) == 1:
        return stack[stack.index(t):] + [t]
      if t not in state:
        found = visit(t)
        if found:
          return found
    stack.pop()
    state[m] = 2
    return None

  for m in sorted(graph):
    if m not in state:
      found = visit(m)
      if found:
        return found
  return None


def test_the_graph_reader_sees_every_kind_of_import():
  graph = import_graph()
  # top level, function level (validate imports optim inside check_values), from-imports of
  # modules and of names inside modules
  assert "xplain_jax.stages" in graph["xplain_jax.workdir"]
  assert "xplain_jax.optim" in graph["xplain_jax.validate"]
  assert "xplain_jax.data.feature_cache" in graph["xplain_jax.train.features"]
  assert "xplain_jax.errors" in graph["xplain_jax.stages"]
  # a cycle is found when there is one
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
  assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle_in_the_package():
  cycle = find_cycle(_without_parent_packages(import_graph()))
  assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_checks_and_registry_import_no_training_code():
  """The pipeline (train/) calls the config check, the registry and the workdir checks, so they
  sit below it: none of them may import train/, directly or through another module."""
  graph = import_graph()
  for low in ("xplain_jax.validate", "xplain_jax.validate_workdir", "xplain_jax.stages",
              "xplain_jax.workdir", "xplain_jax.checkpoint", "xplain_jax.optim"):
    seen, todo = set(), [low]
    while todo:
      m = todo.pop()
      for t in graph.get(m, ()):
        if t not in seen:
          seen.add(t)
          todo.append(t)
    upward = sorted(t for t in seen if t.startswith("xplain_jax.train"))
    assert not upward, f"{low} imports training code: {upward}"


# DESIGN's direction: the maths and the models import no training, data, evaluation, report,
# study or API code; the report reads results and trains nothing.
_BELOW = {"xplain_jax.concepts", "xplain_jax.priors", "xplain_jax.losses", "xplain_jax.metrics",
          "xplain_jax.explain", "xplain_jax.shapes", "xplain_jax.errors", "xplain_jax.fidelity",
          "xplain_jax.models"}
_ABOVE = ("xplain_jax.train", "xplain_jax.data", "xplain_jax.evaluators", "xplain_jax.report",
          "xplain_jax.study", "xplain_jax.api", "xplain_jax.launch")


def _reach(graph, start: str) -> set[str]:
  seen, todo = set(), [start]
  while todo:
    for t in graph.get(todo.pop(), ()):
      if t not in seen:
        seen.add(t)
        todo.append(t)
  return seen


def test_maths_and_models_import_nothing_above_them():
  graph = import_graph()
  for m in graph:
    if any(m == low or m.startswith(low + ".") for low in _BELOW):
      upward = sorted(t for t in _reach(graph, m) if t.startswith(_ABOVE))
      assert not upward, f"{m} imports {upward}, which sit above it"


def test_the_report_trains_nothing():
  graph = import_graph()
  for m in (m for m in graph if m.startswith("xplain_jax.report")):
    upward = sorted(t for t in _reach(graph, m) if t.startswith(("xplain_jax.train",
                                                                   "xplain_jax.study")))
    assert not upward, f"{m} imports {upward}: the report reads results, it trains nothing"
