"""The package's import graph, read from the source: no circle, and every import goes down the layers."""

import ast
from pathlib import Path

import pytest

from conftest import REPO

# Bottom to top; a module may import its own layer's modules and those of the layers below. `roadmap` is the
# public API (roadmap/__init__.py); the machines' benchmark and GPU check use it as any user does.
LAYERS = [("roadmap.errors", "roadmap.files"), ("roadmap.network",), ("roadmap.config",), ("roadmap.records",),
          ("roadmap.training",), ("roadmap",), ("roadmap.machines",)]
PACKAGES = ("roadmap", "analysis", "experiments")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in (REPO / package).rglob("*.py")}


def imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project's modules that `path` imports anywhere in its text (functions and TYPE_CHECKING blocks too):
    `from a import b` counts as an import of module `a.b` where there is one, else of `a`."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                      for a in node.names}
    return {name for name in found if name in modules}


def layer_of(module: str) -> int:
    for rank, prefixes in enumerate(LAYERS):
        if any(module == p or (p != "roadmap" and module.startswith(p + ".")) for p in prefixes):
            return rank
    raise AssertionError(f"{module}: in no layer; add it to LAYERS")


def import_graph() -> dict[str, set[str]]:
    modules = package_modules()
    return {name: imports(path, modules) - {name} for name, path in modules.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The graph's strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_is_read_from_the_source():
    graph = import_graph()
    assert "roadmap.network.model" in graph["roadmap.config.schema"]
    assert "roadmap.records.checkpoint" in graph["roadmap.training.train"]
    assert "roadmap.config" in graph["roadmap.records.tracking"]  # `from roadmap.config import flatten`


def test_no_import_circle():
    assert circles(import_graph()) == []


def test_the_circle_finder_finds_one():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def upward(graph: dict[str, set[str]]) -> list[str]:
    """Imports in roadmap of a higher layer, or of analysis and experiments."""
    return sorted(f"{m} -> {n}" for m, targets in graph.items() if m.startswith("roadmap")
                  for n in targets if not n.startswith("roadmap") or layer_of(n) > layer_of(m))


def test_roadmap_imports_go_down_the_layers():
    assert upward(import_graph()) == []


def test_an_upward_import_is_found():
    graph = {"roadmap.network.model": {"roadmap.errors", "roadmap.training.train"}, "roadmap.config.schema":
             {"analysis.stats"}, "roadmap.training.train": {"roadmap.network.model"}}
    assert upward(graph) == ["roadmap.config.schema -> analysis.stats", "roadmap.network.model -> roadmap.training.train"]


@pytest.mark.parametrize("module", ["roadmap.network.model", "roadmap.network.fast", "roadmap.network.steps"])
def test_the_network_knows_nothing_of_hydra_or_training(module):
    text = (REPO / (module.replace(".", "/") + ".py")).read_text()
    assert not {"hydra", "omegaconf"} & {n.split(".")[0] for n in _imported_names(text)}


def _imported_names(text: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_every_folder_says_what_it_holds_and_may_import():
    for init in (REPO / "roadmap").glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and "import" in doc.lower(), init
