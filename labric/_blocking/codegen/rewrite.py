"""Rewriting async signatures, annotations and docstrings into their sync twins."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from labric._blocking.codegen.layout import BASE_RENAMES, DOC_RULES, GenerationError
from labric._blocking.codegen.source import AsyncClass, Module


class Renamer:
    """Rewrites async names to their sync twins, in code and in prose."""

    def __init__(self, resources: list[AsyncClass]) -> None:
        self.names = dict(BASE_RENAMES)
        for cls in resources:
            self.names[cls.name] = cls.sync_name
        alternatives = "|".join(sorted(map(re.escape, self.names), key=len, reverse=True))
        self._pattern = re.compile(rf"\b({alternatives})\b")

    def code(self, text: str) -> str:
        return self._pattern.sub(lambda m: self.names[m.group(1)], text)

    def doc(self, text: str) -> str:
        for pattern, repl in DOC_RULES:
            # A space in a rule matches any run of whitespace: docstrings wrap anywhere.
            text = re.sub(pattern.replace(" ", r"\s+"), repl, text, flags=re.DOTALL)
        return self.code(text)


def _names_in(text: str, *, annotation: bool = True) -> set[str]:
    """The free names an expression (annotation or default) refers to.

    In an annotation a string constant is a quoted forward reference and is looked into; in a
    default value (``mode="insert"``) it is just a string.
    """
    found: set[str] = set()
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        return found
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            found.add(node.id)
        elif annotation and isinstance(node, ast.Constant) and isinstance(node.value, str):
            found |= _names_in(node.value)  # a quoted forward reference
    return found


def _format_docstring(doc: str | None, indent: str) -> list[str]:
    if not doc:
        return []
    doc = doc.strip()
    prefix = 'r"""' if "\\" in doc else '"""'
    if '"""' in doc:
        raise GenerationError(f"Docstring contains triple quotes: {doc[:60]!r}")
    lines = doc.splitlines()
    if len(lines) == 1:
        return [f'{indent}{prefix}{lines[0]}"""']
    out = [f"{indent}{prefix}{lines[0]}"]
    out += [f"{indent}{line}" if line.strip() else "" for line in lines[1:]]
    out.append(f'{indent}"""')
    return out


def _decorator_names(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    names = []
    for dec in node.decorator_list:
        target = dec.func if isinstance(dec, ast.Call) else dec
        names.append(ast.unparse(target))
    return names


def _unquote(ann: ast.expr) -> ast.expr:
    """The expression inside a quoted annotation (``"AsyncPager[T]"``), else ``ann`` itself."""
    if isinstance(ann, ast.Constant) and isinstance(ann.value, str):
        tree = ast.parse(ann.value, mode="eval")
        assert isinstance(tree, ast.Expression)
        return tree.body
    return ann


def _returns_root(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str | None:
    """The return annotation without its subscript: ``AsyncPager`` for ``AsyncPager[T]``."""
    if node.returns is None:
        return None
    ann = _unquote(node.returns)
    if isinstance(ann, ast.Subscript):
        ann = ann.value
    return ast.unparse(ann)


def _is_generator(node: ast.AsyncFunctionDef) -> bool:
    for child in ast.walk(node):
        if child is not node and isinstance(
            child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda
        ):
            continue
        if isinstance(child, ast.Yield | ast.YieldFrom):
            return True
    return False


@dataclass
class Signature:
    """A method's parameters and return annotation, rewritten, plus how to forward them."""

    params: str
    returns: str | None
    forward: str
    names: set[str]  # free names the annotations and defaults use
    param_names: set[str]


def _signature(
    module: Module,
    node: ast.FunctionDef | ast.AsyncFunctionDef,
    renamer: Renamer,
    returns: str | None = None,
) -> Signature:
    args = node.args
    parts: list[str] = []
    forward: list[str] = []
    names: set[str] = set()
    param_names: set[str] = set()

    def one(arg: ast.arg, default: ast.expr | None, kind: str) -> str:
        text = arg.arg
        param_names.add(arg.arg)
        if arg.annotation is not None:
            ann = renamer.code(module.segment(arg.annotation))
            names.update(_names_in(ann))
            text += f": {ann}"
        if default is not None:
            value = renamer.code(module.segment(default))
            names.update(_names_in(value, annotation=False))
            text += f" = {value}" if arg.annotation is not None else f"={value}"
        if kind == "positional":
            forward.append(arg.arg)
        elif kind == "keyword":
            forward.append(f"{arg.arg}={arg.arg}")
        return text

    positional = [*args.posonlyargs, *args.args]
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults))
    defaults += list(args.defaults)
    for index, (arg, default) in enumerate(zip(positional, defaults, strict=True)):
        if index == 0:
            parts.append(arg.arg)  # self
            continue
        parts.append(one(arg, default, "positional"))
        if args.posonlyargs and index == len(args.posonlyargs) - 1:
            parts.append("/")
    if args.vararg is not None:
        parts.append("*" + one(args.vararg, None, "var"))
        forward.append(f"*{args.vararg.arg}")
    elif args.kwonlyargs:
        parts.append("*")
    for arg, kw_default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        parts.append(one(arg, kw_default, "keyword"))
    if args.kwarg is not None:
        parts.append("**" + one(args.kwarg, None, "var"))
        forward.append(f"**{args.kwarg.arg}")
    if returns is None and node.returns is not None:
        returns = renamer.code(module.segment(node.returns))
    if returns is not None:
        names.update(_names_in(returns))
    return Signature(", ".join(parts), returns, ", ".join(forward), names, param_names)


def _lambda_param(sig: Signature) -> str:
    for candidate in ("c", "client_", "async_client_"):
        if candidate not in sig.param_names:
            return candidate
    raise GenerationError("No free name for the lambda parameter")  # pragma: no cover
