"""The packages are layered: quantcore <- hwmodels <- dse <- policies, experiments, bench. Imports point
down only, with no exception, and no two modules import each other (directly or round a longer circle).

Every import statement counts, including those inside functions (a lazy import is still a dependency).
For the layers, so does a module named in a string for importlib (a registry entry): a lower layer names
no module of a higher one; plugins reach a lower layer through entry points (pyproject.toml). For
circles, a registry's string is not an edge: it is the inversion that lets a family module import the
spec types while the family registry names it.
"""
import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("quantcore", "hwmodels", "dse", "policies", "experiments", "bench")
#: package -> the project packages it may import (its own and those below it)
ALLOWED = {
    "quantcore": {"quantcore"},
    "hwmodels": {"quantcore", "hwmodels"},
    "dse": {"quantcore", "hwmodels", "dse"},
    "policies": {"quantcore", "hwmodels", "dse", "policies"},
    "experiments": {"quantcore", "hwmodels", "dse", "experiments"},
    "bench": {"quantcore", "hwmodels", "dse", "policies", "experiments", "bench"},
}
_DOTTED = re.compile(r"^(quantcore|hwmodels|dse|policies|experiments)(\.[A-Za-z_][A-Za-z0-9_]*)+(:[A-Za-z_]\w*)?$")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for package in LAYERS for p in (ROOT / package).rglob("*.py")}


def _imports(path: Path, modules: dict[str, Path], strings: bool = True) -> set[str]:
    """Project modules `path` imports: `import a.b`, `from a.b import c` (c itself where it is a module),
    relative imports, and dotted module names in string constants (importlib targets)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = _module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                names.add(sub if sub in modules else base)
        elif strings and isinstance(node, ast.Constant) and isinstance(node.value, str) and _DOTTED.match(node.value):
            name = node.value.split(":")[0]
            if name in modules:
                names.add(name)
    return {n for n in names if n.split(".")[0] in LAYERS}


@pytest.fixture(scope="module")
def graph():
    modules = _modules()
    return {name: _imports(path, modules) for name, path in modules.items()}


@pytest.mark.parametrize("package", LAYERS)
def test_imports_point_down(graph, package):
    bad = {name: sorted(n for n in deps if n.split(".")[0] not in ALLOWED[package])
           for name, deps in graph.items() if name.split(".")[0] == package}
    assert not {k: v for k, v in bad.items() if v}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    modules = _modules()
    statements = {name: _imports(path, modules, strings=False) for name, path in modules.items()}
    assert _cycles(statements) == []


def test_the_cycle_finder_finds_a_circle():
    # the oracle of the check above: a hand-made graph with one 3-circle and a tail
    found = _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})
    assert found == [["a", "b", "c"]]
