"""HTML built from elements whose text and attribute values are always escaped.

Pages are built with :func:`el` (``el("td", file_name)``); a plain ``str`` child or attribute
value is text and is escaped, only a :class:`Markup` (what :func:`el` returns) is inserted as it
is. Nothing else in the console writes HTML, so a platform-provided string (a file name, a log
line, a cell, a widget title) cannot become markup whatever it holds.

Data for the page's scripts goes in ``<script type="application/json">`` (:func:`json_data`),
with ``<``, ``>`` and ``&`` written as JSON escapes so the text can never close the element.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable
from typing import Any

__all__ = ["Markup", "Node", "el", "fragment", "json_data", "text"]

_VOID = frozenset({"br", "hr", "img", "input", "link", "meta"})


class Markup(str):
    """A string of HTML that is already safe (made by :func:`el`)."""

    __slots__ = ()


#: What an element may hold: text (escaped), markup, nothing, or several of those.
Node = str | Markup | None | Iterable["Node"]


def text(value: Any) -> Markup:
    """``value`` as escaped text."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape("" if value is None else str(value), quote=True))


def fragment(*children: Node) -> Markup:
    """Children side by side, each escaped unless it is markup."""
    parts: list[str] = []

    def add(node: Node) -> None:
        if node is None:
            return
        if isinstance(node, str):
            parts.append(text(node))
            return
        for child in node:
            add(child)

    for child in children:
        add(child)
    return Markup("".join(parts))


def _attribute(name: str, value: Any) -> str:
    name = name.rstrip("_").replace("_", "-")
    if value is True:
        return f" {name}"
    return f' {name}="{text(value)}"'


def el(tag: str, *children: Node, **attrs: Any) -> Markup:
    """An element: ``el("a", "Files", href="/console/files", class_="nav")``.

    Attribute names lose a trailing ``_`` and turn ``_`` into ``-`` (``data_url`` is
    ``data-url``); ``None`` and ``False`` leave an attribute out, ``True`` writes it bare.
    """
    rendered = "".join(
        _attribute(name, value)
        for name, value in attrs.items()
        if value is not None and value is not False
    )
    if tag in _VOID:
        return Markup(f"<{tag}{rendered}>")
    return Markup(f"<{tag}{rendered}>{fragment(*children)}</{tag}>")


def _finite(value: Any) -> Any:
    """``value`` with infinite and NaN floats as ``None`` (JSON has no such numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def json_data(value: Any, **attrs: Any) -> Markup:
    """``value`` as JSON inside ``<script type="application/json">``, for a page's script
    (an infinite or NaN number becomes ``null``)."""
    raw = json.dumps(_finite(value), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    safe = raw.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
    safe = safe.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    rendered = "".join(
        _attribute(name, value)
        for name, value in attrs.items()
        if value is not None and value is not False
    )
    return Markup(f'<script type="application/json"{rendered}>{safe}</script>')
