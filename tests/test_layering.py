"""The import layering of core/ and app/, read from the source with `ast` (nothing imported).

Rules: no import cycle; core never imports the UI (streamlit, app); core.engine imports no
higher layer; the app and the notebook package (shiftlens) reach core only through core.api,
core.errors and core.figures; shiftlens never imports streamlit or the app; no sys.path or
PYTHONPATH tricks. Every import counts, at any depth (inside functions too).
`from core.x import y` is an import of module core.x.y when that module exists, else of
core.x; importing a module does not count as importing its parent packages.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "app", "shiftlens")

Graph = dict[str, dict[str, int]]  # module -> {imported module: first line}

ENGINE_MAY_NOT_IMPORT = ("core.store", "core.queries", "core.jobs", "core.experiments",
                         "core.precompute", "core.figures", "core.cli", "core.api")
APP_MAY_IMPORT = ("core.api", "core.errors", "core.figures")  # core.figures with submodules


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def module_files(root: Path, packages=PACKAGES) -> dict[str, Path]:
    """Module name -> file for every .py file under root/<package>; a package's
    __init__.py is the package module itself."""
    out = {}
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _imports(tree: ast.AST, name: str, is_package: bool, local: set[str]):
    """(imported module, line) for every Import / ImportFrom in the tree."""
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".") if package else []
                keep = len(parts) - (node.level - 1)
                if keep <= 0:
                    raise ValueError(f"{name}: relative import beyond the top package")
                base = ".".join(parts[:keep] + ([node.module] if node.module else []))
            else:
                base = node.module
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield (sub if sub in local else base), node.lineno


def build_graph(root: Path, packages=PACKAGES) -> Graph:
    """The import graph of every module under root/<package> (targets include third-party
    modules, by the name they are imported under)."""
    files = module_files(root, packages)
    local = set(files)
    graph: Graph = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges: dict[str, int] = {}
        for target, line in _imports(tree, name, path.name == "__init__.py", local):
            if target != name:
                edges.setdefault(target, line)
        graph[name] = edges
    return graph


def find_cycles(graph: Graph) -> list[list[str]]:
    """One concrete cycle (a -> ... -> a) per strongly connected component of the local
    modules (Tarjan), each as the list of modules with the first repeated at the end."""
    local = set(graph)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    sccs: list[list[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in local:
                continue
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return [_cycle_in(graph, comp) for comp in sccs]


def _cycle_in(graph: Graph, comp: list[str]) -> list[str]:
    """A shortest path from comp[0] back to itself inside the component (BFS)."""
    members, start = set(comp), comp[0]
    prev: dict[str, str] = {}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v]):
            if w not in members:
                continue
            if w == start:
                path = [v]
                while path[-1] != start:
                    path.append(prev[path[-1]])
                return [start, *reversed(path[:-1]), start] if v != start else [start, start]
            if w not in prev:
                prev[w] = v
                queue.append(w)
    return comp  # not reached for a real component


def _violations(graph: Graph, source: str, bad, why: str) -> list[str]:
    return [f"{m} imports {t} (line {line}): {why}"
            for m, edges in sorted(graph.items()) if _within(m, source)
            for t, line in sorted(edges.items()) if bad(t)]


def ui_in_core(graph: Graph) -> list[str]:
    return _violations(graph, "core", lambda t: _within(t, "streamlit") or _within(t, "app"),
                       "core must not import the UI")


def engine_upward(graph: Graph) -> list[str]:
    return _violations(graph, "core.engine",
                       lambda t: any(_within(t, p) for p in ENGINE_MAY_NOT_IMPORT),
                       "core.engine must not import a higher layer")


def app_around_api(graph: Graph, source: str = "app") -> list[str]:
    def bad(t: str) -> bool:
        return _within(t, "core") and not (t in ("core.api", "core.errors")
                                           or _within(t, "core.figures"))
    return _violations(graph, source, bad, f"{'the app' if source == 'app' else source} "
                       "imports core only through " + ", ".join(APP_MAY_IMPORT))


def ui_in_notebook(graph: Graph) -> list[str]:
    return _violations(graph, "shiftlens",
                       lambda t: _within(t, "streamlit") or _within(t, "app"),
                       "the notebook package must not import streamlit or the app")


def path_tricks(root: Path, packages=PACKAGES) -> list[str]:
    """sys.path changes (insert/append/extend, assignment) and PYTHONPATH set or passed."""
    out = []
    for name, path in module_files(root, packages).items():
        found = []
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            what = None
            if (isinstance(node, ast.Attribute) and _is_sys_path(node.value)
                    and node.attr in ("insert", "append", "extend", "__setitem__")):
                what = f"sys.path.{node.attr}"
            elif isinstance(node, (ast.Assign, ast.AugAssign)) and any(
                    _is_sys_path(t) or (isinstance(t, ast.Subscript) and _is_sys_path(t.value))
                    for t in (node.targets if isinstance(node, ast.Assign) else [node.target])):
                what = "assignment to sys.path"
            elif isinstance(node, ast.ImportFrom) and node.module == "sys" and any(
                    a.name == "path" for a in node.names):
                what = "from sys import path"
            elif isinstance(node, ast.Constant) and node.value == "PYTHONPATH":
                what = "'PYTHONPATH'"
            elif isinstance(node, ast.keyword) and node.arg == "PYTHONPATH":
                what = "PYTHONPATH=..."
            if what:
                found.append((getattr(node, "lineno", 0), what))
        out += [f"{name} (line {line}): {what}" for line, what in sorted(found)]
    return out


def _is_sys_path(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "path"
            and isinstance(node.value, ast.Name) and node.value.id == "sys")


# --- the rules on this repository ---

@pytest.fixture(scope="module")
def graph() -> Graph:
    return build_graph(ROOT)


def test_no_import_cycle(graph):
    cycles = find_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_core_never_imports_the_ui(graph):
    bad = ui_in_core(graph)
    assert not bad, "\n".join(bad)


def test_engine_imports_no_higher_layer(graph):
    bad = engine_upward(graph)
    assert not bad, "\n".join(bad)


def test_app_reaches_core_only_through_the_api(graph):
    bad = app_around_api(graph)
    assert not bad, "\n".join(bad)


def test_notebook_package_reaches_core_only_through_the_api(graph):
    assert "shiftlens" in graph and "shiftlens.run" in graph  # the package is checked
    bad = app_around_api(graph, "shiftlens") + ui_in_notebook(graph)
    assert not bad, "\n".join(bad)


def test_no_sys_path_or_pythonpath_tricks():
    bad = path_tricks(ROOT)
    assert not bad, "\n".join(bad)


# --- the checker itself can fail ---

def _tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_the_checker_reports_a_cycle_and_an_upward_import(tmp_path):
    _tree(tmp_path, {
        "core/__init__.py": "",
        "core/engine/__init__.py": "",
        "core/engine/pair.py": "def f():\n    from core.store import cache\n",
        "core/store/__init__.py": "",
        "core/store/cache.py": "from ..engine import pair\nimport streamlit as st\n",
        "core/api.py": "from core.engine.pair import f\n",
        "core/jobs.py": "import os, sys\nsys.path.insert(0, '.')\nos.environ['PYTHONPATH'] = ''\n",
        "app/__init__.py": "",
        "app/page.py": "from core import api\nfrom core.store.cache import x\nimport core\n",
        "shiftlens/__init__.py": "import streamlit\nfrom core.store import cache\n",
    })
    g = build_graph(tmp_path)
    assert g["core.engine.pair"] == {"core.store.cache": 2}  # a function-level import
    assert "core" not in g["core.api"]  # no implicit parent import
    assert find_cycles(g) == [["core.engine.pair", "core.store.cache", "core.engine.pair"]]
    assert engine_upward(g) == ["core.engine.pair imports core.store.cache (line 2): "
                                "core.engine must not import a higher layer"]
    assert [v.split(" (")[0] for v in ui_in_core(g)] == ["core.store.cache imports streamlit"]
    assert [v.split(" (")[0] for v in app_around_api(g)] == [
        "app.page imports core", "app.page imports core.store.cache"]
    assert [v.split(" (")[0] for v in app_around_api(g, "shiftlens") + ui_in_notebook(g)] == [
        "shiftlens imports core.store.cache", "shiftlens imports streamlit"]
    assert [v.split(": ", 1)[1] for v in path_tricks(tmp_path)] == [
        "sys.path.insert", "'PYTHONPATH'"]


def test_the_checker_passes_a_clean_tree(tmp_path):
    _tree(tmp_path, {
        "core/__init__.py": "",
        "core/engine/__init__.py": "",
        "core/engine/pair.py": "from . import scoring\n",
        "core/engine/scoring.py": "import torch\n",
        "core/api.py": "from core.engine.pair import scoring\n",
        "app/__init__.py": "",
        "app/page.py": "from core import api\nfrom core.figures.cross import x\n",
    })
    g = build_graph(tmp_path)
    assert g["core.engine.pair"] == {"core.engine.scoring": 1}
    assert g["core.api"] == {"core.engine.pair": 1}  # scoring is a name there, not a module
    assert not (find_cycles(g) or engine_upward(g) or ui_in_core(g) or app_around_api(g)
                or path_tricks(tmp_path))
