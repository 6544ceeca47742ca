"""The console's page shell, navigation and the small pieces pages share.

The navigation is :data:`NAV`, one entry per section; a new section (a resource added to the
server) adds its entry here and a pages module registered in :mod:`labric.server.console`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

import attrs
from aiohttp import web

from labric.server.console.html import Markup, Node, el, fragment
from labric.server.console.session import SESSION

__all__ = [
    "NAV",
    "PREFIX",
    "NavEntry",
    "cell",
    "definition_list",
    "duration",
    "error_page",
    "human_size",
    "link",
    "page",
    "pager",
    "table",
    "url",
]

#: Where the console's pages live.
PREFIX = "/console"
#: Where the scripts, the style sheet and the chart library are served.
STATIC = PREFIX + "/static"


@attrs.frozen
class NavEntry:
    """A navigation entry: its key (pages name it as ``active``), label and path."""

    key: str
    label: str
    path: str


NAV: tuple[NavEntry, ...] = (
    NavEntry("files", "Files", PREFIX + "/files"),
    NavEntry("datasets", "Datasets", PREFIX + "/datasets"),
    NavEntry("jobs", "Jobs", PREFIX + "/jobs"),
    NavEntry("instruments", "Instruments", PREFIX + "/instruments"),
    NavEntry("experiments", "Experiments", PREFIX + "/experiments"),
    NavEntry("dashboards", "Dashboards", PREFIX + "/dashboards"),
    NavEntry("notifications", "Notifications", PREFIX + "/notifications"),
)


def url(path: str, **query: Any) -> str:
    """``path`` with the query parameters that are not ``None`` or empty."""
    kept = {k: str(v) for k, v in query.items() if v not in (None, "")}
    return f"{path}?{urlencode(kept)}" if kept else path


def link(label: Node, href: str, **attrs: Any) -> Markup:
    """An ``<a>``."""
    return el("a", label, href=href, **attrs)


def page(
    request: web.Request,
    title: str,
    *body: Node,
    active: str | None = None,
    status: int = 200,
    charts: bool = False,
) -> web.Response:
    """A full console page (``charts``: it draws charts, so it loads the chart library)."""
    signed_in = request.get(SESSION) is not None
    nav = (
        el(
            "nav",
            el("a", "labric", href=PREFIX + "/", class_="brand"),
            el(
                "ul",
                [
                    el(
                        "li",
                        el(
                            "a",
                            entry.label,
                            href=entry.path,
                            aria_current="page" if entry.key == active else None,
                        ),
                    )
                    for entry in NAV
                ],
            ),
            el("span", "local server", class_="where"),
        )
        if signed_in
        else el("nav", el("span", "labric", class_="brand"))
    )
    document = fragment(
        Markup("<!doctype html>"),
        el(
            "html",
            el(
                "head",
                el("meta", charset="utf-8"),
                el("meta", name="viewport", content="width=device-width, initial-scale=1"),
                el("title", f"{title} · labric console"),
                el("link", rel="stylesheet", href=STATIC + "/console.css"),
                el("script", src=STATIC + "/vendor/chart.umd.min.js", defer=True)
                if charts
                else None,
                el("script", src=STATIC + "/console.js", defer=True),
            ),
            el("body", nav, el("main", el("h1", title), *body)),
            lang="en",
        ),
    )
    return web.Response(text=document, content_type="text/html", charset="utf-8", status=status)


def error_page(request: web.Request, status: int, message: str) -> web.Response:
    """A page saying what went wrong."""
    title = {404: "Not found", 400: "Cannot show this"}.get(status, "Error")
    return page(request, title, el("p", message, class_="error"), status=status)


def human_size(size: int | None) -> str:
    """``1.5 MB``."""
    if size is None:
        return ""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"


def duration(seconds: float | None) -> str:
    """``1 min 5 s``."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def cell(value: Any) -> Node:
    """A value as a table cell shows it (``null`` greyed)."""
    if value is None:
        return el("span", "null", class_="null")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        import json

        return el("code", json.dumps(value, ensure_ascii=False)[:500])
    return str(value)


def table(
    headers: Sequence[Node], rows: Iterable[Sequence[Node]], *, empty: str = "Nothing here yet."
) -> Markup:
    """A table, or ``empty`` when there are no rows."""
    body = [el("tr", [el("td", c) for c in row]) for row in rows]
    if not body:
        return el("p", empty, class_="empty")
    return el(
        "div",
        el("table", el("thead", el("tr", [el("th", h) for h in headers])), el("tbody", body)),
        class_="scroll",
    )


def definition_list(items: Mapping[str, Node]) -> Markup:
    """A ``<dl>`` of labelled values."""
    return el("dl", [fragment(el("dt", k), el("dd", v)) for k, v in items.items()])


def pager(previous: str | None, following: str | None) -> Markup:
    """Links to the previous and next pages (whichever exist)."""
    return el(
        "p",
        link("← Newer", previous, rel="prev") if previous else None,
        " " if previous and following else None,
        link("Older →", following, rel="next") if following else None,
        class_="pager",
    )
