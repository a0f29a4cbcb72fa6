"""Dependencies point one way: the package's import graph (read with ``ast``, nothing executed),
counting imports at the top of a module and inside its functions alike, has no cycle and never
runs up the layers of ``LAYERS``; the package root holds no loose module and launch/ only the
entry points."""

from __future__ import annotations

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
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
  assert "xplain_jax.spec.stages" in graph["xplain_jax.run.workdir"]
  assert "xplain_jax.train.optim" in graph["xplain_jax.run.validate"]
  assert "xplain_jax.data.feature_cache" in graph["xplain_jax.train.features"]
  assert "xplain_jax.errors" in graph["xplain_jax.spec.stages"]
  # a cycle is found when there is one
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
  assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle_in_the_package():
  cycle = find_cycle(_without_parent_packages(import_graph()))
  assert cycle is None, "import circle: " + " -> ".join(cycle)


# The layers, lowest first (docs/contributing.md draws them). A module may import its own layer
# and those below it, never one above. ``spec`` (the config's fields and the stage and variant
# registry) is data every layer reads, so it sits just above the leaves; checkpoints, devices and
# the compilation cache (``infra``) know nothing of the method.
LAYERS = (
    ("xplain_jax", "xplain_jax.errors", "xplain_jax.utils"),
    ("xplain_jax.spec",),
    ("xplain_jax.infra",),
    ("xplain_jax.core",),
    ("xplain_jax.models", "xplain_jax.data", "xplain_jax.fidelity"),
    ("xplain_jax.train",),
    ("xplain_jax.evaluators",),
    ("xplain_jax.report",),
    ("xplain_jax.run",),
    ("xplain_jax.study", "xplain_jax.api"),
)
# What the package root may hold besides its folders.
ROOT_MODULES = {"__init__.py", "errors.py", "utils.py"}
# launch/ holds the entry points only (benchmarks in launch/bench/, research scripts in
# examples/).
ENTRY_POINTS = {"run.py", "study.py", "slurm.sbatch", "tpu_pod.sh", "gpu_host.sh", "bench"}


def layer(module: str) -> int:
  """The index in ``LAYERS`` of the layer holding ``module`` (its longest matching prefix)."""
  best, found = -1, None
  for i, names in enumerate(LAYERS):
    for p in names:
      if (module == p or module.startswith(p + ".")) and len(p) > best:
        best, found = len(p), i
  assert found is not None, f"{module} is in no layer of tests/project/test_imports.py's LAYERS"
  return found


def upward_imports(graph) -> list[str]:
  """Every ``a -> b`` of ``graph`` where b's layer is above a's."""
  return sorted(f"{m} -> {t}" for m, ts in graph.items() for t in ts if layer(t) > layer(m))


def test_every_import_points_down_the_layers():
  assert not upward_imports(import_graph())


def test_the_layer_check_fails_on_an_upward_import():
  assert upward_imports({"xplain_jax.core.priors": {"xplain_jax.train.loop"}}) == [
      "xplain_jax.core.priors -> xplain_jax.train.loop"]
  assert upward_imports({"xplain_jax.infra.checkpoint": {"xplain_jax.run.workdir"}})
  assert not upward_imports({"xplain_jax.run.pipeline": {"xplain_jax.train.loop"}})


def test_the_report_reads_results_and_computes_nothing():
  """The report draws what the evaluators wrote: it imports no trainer, evaluator or spine."""
  graph = import_graph()
  for m in (m for m in graph if m.startswith("xplain_jax.report")):
    above = sorted(t for t in graph[m]
                   if layer(t) >= layer("xplain_jax.train")
                   and not t.startswith("xplain_jax.report"))
    assert not above, f"{m} imports {above}: the report reads results, it computes nothing"


def test_the_package_root_holds_no_loose_module():
  found = {f for f in os.listdir(os.path.join(ROOT, PACKAGE)) if f.endswith(".py")}
  assert found <= ROOT_MODULES, (
      f"modules at the package root: {sorted(found - ROOT_MODULES)}; give each a layer's folder")


def test_launch_holds_only_entry_points():
  found = {f for f in os.listdir(os.path.join(ROOT, "launch")) if not f.startswith((".", "_"))}
  assert found <= ENTRY_POINTS, (
      f"launch/ holds {sorted(found - ENTRY_POINTS)}: benchmarks go in launch/bench/, research "
      "scripts in examples/")


def test_every_package_module_has_a_layer():
  for m in import_graph():
    layer(m)
