"""Reading the async source with :mod:`ast`: modules, imports and ``Async*`` classes."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from labric._blocking.codegen.layout import (
    CLIENT_CLASS,
    OUTPUT_PACKAGE,
    RESOURCE_BASE,
    GenerationError,
    Layout,
)


@dataclass
class Import:
    """How a module binds a name: ``from module import name as alias`` or ``import module``."""

    module: str
    name: str | None  # None for ``import module``
    type_checking: bool


@dataclass
class Module:
    """One parsed async module."""

    path: str  # relative to the root, for messages and banners
    dotted: str
    source: str
    tree: ast.Module
    imports: dict[str, Import] = field(default_factory=dict)
    defined: set[str] = field(default_factory=set)

    def segment(self, node: ast.AST) -> str:
        text = ast.get_source_segment(self.source, node)
        if text is None:  # pragma: no cover - only for synthesized nodes
            text = ast.unparse(node)
        return text


@dataclass
class AsyncClass:
    """An async class to mirror, and where it lives."""

    module: Module
    node: ast.ClassDef
    sync_name: str
    sync_module: str
    bases: list[str]

    @property
    def name(self) -> str:
        return self.node.name


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve_relative(module: Module, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    parts = module.dotted.split(".")[: -node.level]
    return ".".join([*parts, node.module] if node.module else parts)


def parse_module(layout: Layout, path: Path) -> Module:
    """Parse a module and record the names it imports and defines."""
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(path))
    module = Module(layout.rel(path), layout.dotted(path), source, tree)

    def visit(body: Iterable[ast.stmt], type_checking: bool) -> None:
        for stmt in body:
            if isinstance(stmt, ast.If) and _is_type_checking(stmt.test):
                visit(stmt.body, True)
            elif isinstance(stmt, ast.ImportFrom):
                origin = _resolve_relative(module, stmt)
                for alias in stmt.names:
                    module.imports[alias.asname or alias.name] = Import(
                        origin, alias.name, type_checking
                    )
            elif isinstance(stmt, ast.Import):
                for alias in stmt.names:
                    bound = alias.asname or alias.name.split(".")[0]
                    target = alias.name if alias.asname else bound
                    module.imports[bound] = Import(target, None, type_checking)
            elif isinstance(stmt, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                module.defined.add(stmt.name)
            elif isinstance(stmt, ast.Assign):
                for assigned in stmt.targets:
                    if isinstance(assigned, ast.Name):
                        module.defined.add(assigned.id)
            elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                module.defined.add(stmt.target.id)
            elif isinstance(getattr(stmt, "name", None), ast.Name):  # ``type X = ...`` (3.12+)
                module.defined.add(stmt.name.id)  # type: ignore[attr-defined]

    visit(module.tree.body, False)
    return module


def _base_names(node: ast.ClassDef) -> list[str]:
    names = []
    for base in node.bases:
        if isinstance(base, ast.Name):
            names.append(base.id)
        elif isinstance(base, ast.Attribute):
            names.append(base.attr)
        elif isinstance(base, ast.Subscript) and isinstance(base.value, ast.Name):
            names.append(base.value.id)
    return names


def discover(layout: Layout) -> tuple[AsyncClass, list[AsyncClass]]:
    """Find ``AsyncLabric`` and every async resource class, in source order."""
    client_module = parse_module(layout, layout.client_module)
    client_node = next(
        (
            n
            for n in client_module.tree.body
            if isinstance(n, ast.ClassDef) and n.name == CLIENT_CLASS
        ),
        None,
    )
    if client_node is None:
        raise GenerationError(f"{client_module.path}: no class {CLIENT_CLASS}")
    client = AsyncClass(
        client_module, client_node, "Labric", f"{OUTPUT_PACKAGE}._client", _base_names(client_node)
    )

    candidates: list[AsyncClass] = []
    for path in sorted(layout.resources_dir.glob("*.py")):
        if path.name.startswith("_"):
            continue
        module = parse_module(layout, path)
        for node in module.tree.body:
            if isinstance(node, ast.ClassDef) and re.fullmatch(r"Async[A-Z]\w*", node.name):
                candidates.append(
                    AsyncClass(
                        module,
                        node,
                        node.name.removeprefix("Async"),
                        f"{OUTPUT_PACKAGE}.{path.stem}",
                        _base_names(node),
                    )
                )
    # A resource class derives from AsyncResource, directly or through another resource class.
    known = {RESOURCE_BASE}
    changed = True
    while changed:
        changed = False
        for cls in candidates:
            if cls.name not in known and any(b in known for b in cls.bases):
                known.add(cls.name)
                changed = True
    resources = [c for c in candidates if c.name in known]
    names = [c.sync_name for c in resources]
    if len(set(names)) != len(names) or "Labric" in names:
        raise GenerationError(f"Sync class names collide: {sorted(names)}")
    return client, resources
