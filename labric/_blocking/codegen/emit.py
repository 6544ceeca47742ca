"""Emitting the facade's modules: one per resource module, the client, the package."""

from __future__ import annotations

import ast
import builtins
import subprocess
import sys
import textwrap
from collections.abc import Iterable, Iterator
from pathlib import Path

from labric._blocking.codegen.layout import (
    _ASYNC_CM_RETURNS,
    _ASYNC_ITER_RETURNS,
    _CM_DECORATORS,
    BANNER,
    CLIENT_CLASS,
    CLIENT_MODULE_DOC,
    CLIENT_NOTE,
    FACADE_IMPORTS,
    ROOT,
    GenerationError,
    Layout,
)
from labric._blocking.codegen.rewrite import (
    Renamer,
    _decorator_names,
    _format_docstring,
    _is_generator,
    _lambda_param,
    _returns_root,
    _signature,
    _unquote,
)
from labric._blocking.codegen.source import AsyncClass, Module


class Emitter:
    """Builds one generated module: its imports and its classes."""

    def __init__(self, renamer: Renamer, sync_modules: dict[str, str]) -> None:
        self.renamer = renamer
        self.sync_modules = sync_modules  # sync class name -> its generated module
        self.runtime: dict[str, set[tuple[str, str | None]]] = {}
        self.type_only: dict[str, set[tuple[str, str | None]]] = {}

    def need(self, module_name: str, name: str | None, *, type_only: bool = False) -> None:
        table = self.type_only if type_only else self.runtime
        table.setdefault(module_name, set()).add((name or "", None))

    def need_names(self, names: Iterable[str], source: Module, own: str) -> None:
        """Import what the copied annotations and defaults refer to."""
        for name in sorted(names):
            if name == "self":
                continue
            sync_home = self.sync_modules.get(name)
            if sync_home is not None:
                if sync_home != own:
                    # Only annotations name other sync classes: import them for type checkers
                    # alone, which also keeps the generated modules free of import cycles.
                    self.need(sync_home, name, type_only=True)
                continue
            imported = source.imports.get(name)
            if imported is not None:
                if imported.name is None:
                    self.need_module(imported.module, name, imported.type_checking)
                else:
                    self.need_from(imported.module, imported.name, name, imported.type_checking)
                continue
            if name in source.defined:
                self.need(source.dotted, name)
                continue
            if name in FACADE_IMPORTS:
                self.need(FACADE_IMPORTS[name], name)
                continue
            if hasattr(builtins, name):
                continue
            raise GenerationError(f"{source.path}: cannot tell where the name {name!r} comes from")

    def need_from(self, module_name: str, name: str, alias: str, type_only: bool) -> None:
        table = self.type_only if type_only else self.runtime
        table.setdefault(module_name, set()).add((name, alias if alias != name else None))

    def need_module(self, module_name: str, alias: str, type_only: bool) -> None:
        table = self.type_only if type_only else self.runtime
        table.setdefault("", set()).add((module_name, alias if alias != module_name else None))

    def import_block(self) -> list[str]:
        lines = ["from __future__ import annotations", ""]

        def render(table: dict[str, set[tuple[str, str | None]]], indent: str) -> list[str]:
            out = []
            for module_name in sorted(table):
                entries = sorted(table[module_name], key=lambda e: (e[0], e[1] or ""))
                if module_name == "":
                    for mod, alias in entries:
                        out.append(f"{indent}import {mod}" + (f" as {alias}" if alias else ""))
                    continue
                names = ", ".join(n + (f" as {a}" if a else "") for n, a in entries)
                out.append(f"{indent}from {module_name} import {names}")
            return out

        type_only = {
            m: {e for e in entries if e not in self.runtime.get(m, set())}
            for m, entries in self.type_only.items()
        }
        type_only = {m: e for m, e in type_only.items() if e}
        if type_only:
            self.need("typing", "TYPE_CHECKING")
        lines += render(self.runtime, "")
        if type_only:
            lines += ["", "if TYPE_CHECKING:"]
            lines += render(type_only, "    ")
        return lines


def _method_kind(cls: AsyncClass, node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    decorators = _decorator_names(node)
    where = f"{cls.module.path}: {cls.name}.{node.name}"
    root = _returns_root(node)
    if "overload" in decorators or "typing.overload" in decorators:
        return "overload"
    if isinstance(node, ast.AsyncFunctionDef):
        if set(decorators) & _CM_DECORATORS:
            if root not in _ASYNC_ITER_RETURNS:
                raise GenerationError(f"{where}: annotate an @asynccontextmanager AsyncIterator[T]")
            return "context-generator"
        if decorators:
            raise GenerationError(f"{where}: unsupported decorators {decorators}")
        if _is_generator(node):
            raise GenerationError(
                f"{where}: async generator methods would cross the portal per item; "
                "return an AsyncPager instead"
            )
        return "await"
    if decorators == ["property"]:
        return "property"
    if decorators:
        raise GenerationError(f"{where}: unsupported decorators {decorators}")
    if root in {"AsyncPager", "labric.AsyncPager"}:
        return "pager"
    if root in {"AsyncEventStream", "labric.AsyncEventStream"}:
        return "event-stream"
    if root in _ASYNC_CM_RETURNS:
        return "context"
    return "sync"


def _method_lines(
    cls: AsyncClass,
    node: ast.FunctionDef | ast.AsyncFunctionDef,
    kind: str,
    target: str,
    emitter: Emitter,
    own_module: str,
) -> list[str]:
    """One sync method. ``target`` is the expression for the async twin, given a lambda param."""
    renamer = emitter.renamer
    module = cls.module
    returns = None
    if kind == "context-generator":
        assert node.returns is not None
        ann = _unquote(node.returns)
        if not isinstance(ann, ast.Subscript):
            raise GenerationError(f"{cls.name}.{node.name}: AsyncIterator needs its item type")
        item = ann.slice.elts[0] if isinstance(ann.slice, ast.Tuple) else ann.slice
        returns = f"AbstractContextManager[{renamer.code(ast.unparse(item))}]"
    sig = _signature(module, node, renamer, returns)
    emitter.need_names(sig.names, module, own_module)
    lines: list[str] = []
    if kind == "property":
        lines.append("    @property")
    if kind == "overload":
        emitter.need("typing", "overload")
        lines.append("    @overload")
    arrow = f" -> {sig.returns}" if sig.returns else ""
    lines.append(f"    def {node.name}({sig.params}){arrow}:")
    lines += _format_docstring(renamer.doc(ast.get_docstring(node) or ""), "        ")
    if kind == "overload":
        lines.append("        ...")
        return lines
    p = _lambda_param(sig)
    twin = f"{target.format(p)}.{node.name}"
    call = f"{twin}({sig.forward})"
    if kind == "property":
        body = f"return {target.format('self._portal.client')}.{node.name}"
    elif kind == "await":
        body = f"self._portal.call(lambda {p}: {call})"
        body = body if sig.returns == "None" else f"return {body}"
    elif kind == "pager":
        emitter.need("labric._blocking.pager", "SyncPager")
        body = f"return SyncPager(self._portal, lambda {p}: {call})"
    elif kind == "event-stream":
        emitter.need("labric._blocking.stream", "SyncEventStream")
        body = f"return SyncEventStream(self._portal, lambda {p}: {call})"
    elif kind in ("context", "context-generator"):
        emitter.need("contextlib", "AbstractContextManager")
        body = f"return self._portal.wrap_context(lambda {p}: {call})"
    else:
        body = f"return self._portal.call_sync(lambda {p}: {call})"
    lines.append(f"        {body}")
    return lines


def _chain(cls: AsyncClass, by_name: dict[str, AsyncClass]) -> list[AsyncClass]:
    """The class, then the resource classes it derives from (breadth first)."""
    chain = [cls]
    index = 0
    while index < len(chain):
        for base in chain[index].bases:
            if base in by_name and by_name[base] not in chain:
                chain.append(by_name[base])
        index += 1
    return chain


def _nested_resources(cls: AsyncClass, by_name: dict[str, AsyncClass]) -> list[tuple[str, str]]:
    """``self.attr = AsyncY(...)`` assignments in ``__init__`` (inherited too): (attr, AsyncY)."""
    found: dict[str, str] = {}
    for owner in reversed(_chain(cls, by_name)):
        for attr, async_name in _own_nested_resources(owner, set(by_name)):
            found[attr] = async_name
    return list(found.items())


def _own_nested_resources(cls: AsyncClass, resource_names: set[str]) -> list[tuple[str, str]]:
    found = []
    for stmt in cls.node.body:
        if not (isinstance(stmt, ast.FunctionDef) and stmt.name == "__init__"):
            continue
        for node in ast.walk(stmt):
            value: ast.expr | None = None
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                value, targets = node.value, node.targets
            elif isinstance(node, ast.AnnAssign):
                value, targets = node.value, [node.target]
            if not (isinstance(value, ast.Call) and isinstance(value.func, ast.Name)):
                continue
            if value.func.id not in resource_names:
                continue
            for target in targets:
                if (
                    isinstance(target, ast.Attribute)
                    and isinstance(target.value, ast.Name)
                    and target.value.id == "self"
                    and not target.attr.startswith("_")
                ):
                    found.append((target.attr, value.func.id))
    return found


def _public_methods(
    cls: AsyncClass, by_name: dict[str, AsyncClass]
) -> Iterator[tuple[AsyncClass, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Public methods, own first, then those inherited from other resource classes."""
    seen: set[str] = set()
    for owner in _chain(cls, by_name):
        overloaded: set[str] = set()
        for stmt in owner.node.body:
            if not isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if stmt.name.startswith("_") or stmt.name in seen - overloaded:
                continue
            if "overload" in _decorator_names(stmt) or "typing.overload" in _decorator_names(stmt):
                overloaded.add(stmt.name)
            yield owner, stmt
            seen.add(stmt.name)


def _class_docstring(doc: str | None, renamer: Renamer, note: str | None = None) -> list[str]:
    """The class docstring, rewritten; ``note`` becomes its second paragraph."""
    text = renamer.doc(doc or "")
    if note:
        note = textwrap.fill(note, width=95)
        head, sep, rest = text.partition("\n\n")
        text = f"{head}\n\n{note}{sep}{rest}" if text else note
    return _format_docstring(text, "    ")


def _resource_module(
    module: Module,
    classes: list[AsyncClass],
    renamer: Renamer,
    sync_modules: dict[str, str],
    by_name: dict[str, AsyncClass],
) -> str:
    own = classes[0].sync_module
    emitter = Emitter(renamer, sync_modules)
    emitter.need("collections.abc", "Callable")
    emitter.need("labric._blocking.portal", "Portal")
    emitter.need("labric._blocking.portal", "SyncResource")
    emitter.need("labric._client", "AsyncLabric")
    body: list[str] = []
    for cls in classes:
        emitter.need(cls.module.dotted, cls.name)
        body += ["", ""]
        body.append(f"class {cls.sync_name}(SyncResource[AsyncLabric, {cls.name}]):")
        body += _class_docstring(ast.get_docstring(cls.node), renamer)
        nested = _nested_resources(cls, by_name)
        if nested:
            body += [
                "",
                "    def __init__(",
                "        self, portal: Portal[AsyncLabric], "
                f"get: Callable[[AsyncLabric], {cls.name}]",
                "    ) -> None:",
                "        super().__init__(portal, get)",
            ]
            for attr, async_name in nested:
                sync_name = renamer.names[async_name]
                home = sync_modules[sync_name]
                if home != own:
                    emitter.need(home, sync_name)
                body.append(f"        self.{attr} = {sync_name}(portal, lambda c: get(c).{attr})")
        for owner, node in _public_methods(cls, by_name):
            kind = _method_kind(owner, node)
            body.append("")
            body += _method_lines(owner, node, kind, "self._get({})", emitter, own)
    names = ", ".join(f'"{c.sync_name}"' for c in classes)
    header = _module_header(module, renamer.doc(ast.get_docstring(module.tree) or ""))
    return "\n".join([*header, *emitter.import_block(), "", f"__all__ = [{names}]", *body, ""])


def _module_header(module: Module, doc: str) -> list[str]:
    lines = BANNER.format(source=module.path).splitlines()
    return [*lines, *_format_docstring(doc, ""), ""]


def _client_module(
    client: AsyncClass,
    renamer: Renamer,
    sync_modules: dict[str, str],
    by_name: dict[str, AsyncClass],
) -> str:
    own = client.sync_module
    module = client.module
    emitter = Emitter(renamer, sync_modules)
    emitter.need("labric._blocking.portal", "Portal")
    emitter.need("labric._client", "AsyncLabric")
    body = ["", "", "class Labric:"]
    body += _class_docstring(ast.get_docstring(client.node), renamer, CLIENT_NOTE)
    methods = [
        n
        for n in client.node.body
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
        and (not n.name.startswith("_") or n.name.startswith("__"))
    ]
    seen = {n.name for n in methods}
    for required in ("__init__", "aclose", "__aenter__", "__aexit__"):
        if required not in seen:
            raise GenerationError(f"{CLIENT_CLASS} has no {required}")
    for node in methods:
        body.append("")
        if node.name == "__init__":
            sig = _signature(module, node, renamer)
            emitter.need_names(sig.names, module, own)
            body.append(f"    def __init__({sig.params}) -> None:")
            body.append("        self._portal: Portal[AsyncLabric] = Portal(")
            body.append(f"            lambda: AsyncLabric({sig.forward}), name='labric-portal'")
            body.append("        )")
            for attr, async_name in _own_nested_resources(client, set(by_name)):
                sync_name = renamer.names[async_name]
                emitter.need(sync_modules[sync_name], sync_name)
                body.append(f"        self.{attr} = {sync_name}(self._portal, lambda c: c.{attr})")
        elif node.name == "__repr__":
            body += [
                "    def __repr__(self) -> str:",
                f"        return self._portal.describe({client.sync_name!r})",
            ]
        elif node.name == "__reduce__":
            emitter.need("typing", "Any")
            emitter.need("labric._client", "_rebuild")
            body.append("    def __reduce__(self) -> tuple[Any, ...]:")
            body += _format_docstring(renamer.doc(ast.get_docstring(node) or ""), "        ")
            body.append("        return _rebuild, (type(self), self._portal.client.config)")
        elif node.name == "aclose":
            sig = _signature(module, node, renamer)
            if sig.forward:
                raise GenerationError(f"{CLIENT_CLASS}.aclose takes no arguments")
            body.append("    def close(self) -> None:")
            body += _format_docstring(renamer.doc(ast.get_docstring(node) or ""), "        ")
            body.append("        self._portal.close()")
        elif node.name == "__aenter__":
            emitter.need("labric.errors", "ClientClosedError")
            body += [
                f"    def __enter__(self) -> {client.sync_name}:",
                "        if self._portal.closed:",
                "            raise ClientClosedError("
                "'This client has been closed; create a new one.')",
                "        return self",
            ]
        elif node.name == "__aexit__":
            sig = _signature(module, node, renamer)
            emitter.need_names(sig.names, module, own)
            body += [
                f"    def __exit__({sig.params}) -> None:",
                "        self.close()",
            ]
        elif node.name.startswith("__"):
            raise GenerationError(f"{CLIENT_CLASS}.{node.name}: no sync form for this method")
        else:
            kind = _method_kind(client, node)
            body += _method_lines(client, node, kind, "{}", emitter, own)
    header = _module_header(module, CLIENT_MODULE_DOC)
    return "\n".join([*header, *emitter.import_block(), "", '__all__ = ["Labric"]', *body, ""])


def _package_init(client: AsyncClass, resources: list[AsyncClass]) -> str:
    lines = BANNER.format(source="labric/_client.py, labric/resources/").splitlines()
    lines += [
        '"""The sync facade: ``Labric`` and its resources, generated from the async client.',
        "",
        "Each class has the methods, signatures and docstrings of its ``Async`` twin; each call",
        "crosses into the client's event-loop thread once (see :mod:`labric._blocking.portal`).",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        f"from {client.sync_module} import Labric",
    ]
    for cls in resources:
        lines.append(f"from {cls.sync_module} import {cls.sync_name}")
    exported = sorted(["Labric", *(c.sync_name for c in resources)])
    lines += ["", "__all__ = [" + ", ".join(f'"{n}"' for n in exported) + "]", ""]
    return "\n".join(lines)


def _tidy(layout: Layout, path: Path, text: str) -> str:
    """Sort imports and format with ruff, under the project's configuration."""
    stdin_name = layout.rel(path)
    # Ruff decides whether ``labric._sync.x`` is first-party by looking on disk; say it, so the
    # output does not depend on whether labric/_sync/ exists yet.
    first_party = "lint.isort.known-first-party = ['labric']"
    steps = [["check", "--fix-only", "--exit-zero", "--config", first_party], ["format"]]
    for step in steps:
        proc = subprocess.run(
            [sys.executable, "-m", "ruff", *step, "--stdin-filename", stdin_name, "-"],
            input=text,
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=False,
        )
        if proc.returncode != 0:
            raise GenerationError(f"ruff {step[0]} failed on {stdin_name}:\n{proc.stderr}")
        text = proc.stdout
    return text
