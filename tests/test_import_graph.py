"""The ``labric`` package's import graph: no cycles, and the client never reaches the server.

The graph is read from the source with :mod:`ast`, not by importing anything. Every import
statement counts, wherever it is: at module level, inside a function, and under
``if TYPE_CHECKING:`` (a type-only cycle still ties two modules together, and the next runtime
import along it would make it a real one). ``from package import name`` counts as an edge to
the submodule ``package.name`` when there is one, else to ``package``. Importing a submodule
also runs its parent packages' ``__init__``, but that is not counted as an edge (every module
would then sit in a cycle with its package); the packages' ``__init__`` imports are counted as
their own edges instead.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import labric

ROOT = Path(labric.__file__).parent
#: Modules that may import the server, and only inside functions (commands that start one).
_SERVER_LAUNCHERS = ("labric.cli", "labric.demo")


def _modules() -> dict[str, Path]:
    modules = {}
    for path in ROOT.rglob("*.py"):
        parts = ["labric", *path.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


MODULES = _modules()


def _target(name: str) -> str | None:
    """The module ``name`` names, or the closest package above it that exists."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str) -> Iterator[tuple[str, bool]]:
    """The ``labric`` modules ``module`` imports, each with whether it is at module level."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    top_level = set(map(id, tree.body))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            names = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                for alias in node.names
            ]
        else:
            continue
        for name in names:
            target = _target(name)
            if target is not None and target != module:
                yield target, id(node) in top_level


def _graph() -> dict[str, set[str]]:
    return {module: {target for target, _ in _imports(module)} for module in MODULES}


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iteratively (the graph is a few hundred modules deep at most)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(sorted(component))
    return components


def test_the_finder_sees_the_package() -> None:
    graph = _graph()
    assert len(graph) > 50
    assert "labric.server.core.state" in graph["labric.server.jobs.runner"]
    # A function-level import is an edge too.
    assert "labric.server" in graph["labric.cli"]


def test_the_finder_reports_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert [c for c in _strongly_connected(graph) if len(c) > 1] == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    cycles = [c for c in _strongly_connected(_graph()) if len(c) > 1]
    assert not cycles, f"Modules that import each other (directly or around a loop): {cycles}"


def _is_server(module: str) -> bool:
    return module == "labric.server" or module.startswith("labric.server.")


def _launcher(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in _SERVER_LAUNCHERS)


def test_the_client_never_imports_the_server() -> None:
    offenders = []
    for module in MODULES:
        if _is_server(module):
            continue
        for target, top_level in _imports(module):
            if _is_server(target) and (top_level or not _launcher(module)):
                offenders.append(f"{module} -> {target}")
    assert not offenders, f"Client modules importing labric.server: {offenders}"
