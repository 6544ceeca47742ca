"""Dashboards: every widget on its grid place, evaluated as ``widget_data`` evaluates it.

Charts are drawn in the browser by Chart.js from the widget's data, which the page carries in a
``<script type="application/json">`` beside the canvas; tables, metrics and text are HTML. A
widget whose source cannot be evaluated shows why, and the others still draw.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aiohttp import web

from labric.server.console.html import Markup, el, json_data
from labric.server.console.layout import PREFIX, cell, error_page, link, page, table
from labric.server.console.session import SESSION, require_session
from labric.server.core.http import HTTPError
from labric.server.core.routing import Pages
from labric.server.core.state import STATE
from labric.server.dashboards import store
from labric.server.datasets import DATASETS

__all__ = ["PAGES"]

PAGES = Pages()

#: Rows of a table widget shown (and points a chart draws).
MAX_ROWS = 1000


@PAGES.page("GET", PREFIX + "/dashboards")
@require_session
async def list_dashboards(request: web.Request) -> web.StreamResponse:
    """Dashboards, newest first."""
    state = request.app[STATE]
    org_id = request[SESSION].org_id
    rows = await state.db.run(
        lambda conn: store.dashboard_list(conn, org_id, after=None, limit=500)
    )
    return page(
        request,
        "Dashboards",
        table(
            ("Dashboard", "Widgets", "Description", "Updated"),
            [
                [
                    link(row.name, f"{PREFIX}/dashboards/{quote(row.id)}"),
                    str(len(row.widgets)),
                    row.description or "",
                    row.updated_at,
                ]
                for row in rows
            ],
            empty="No dashboards yet.",
        ),
        active="dashboards",
    )


def _body(widget: dict[str, Any], data: dict[str, Any]) -> Markup:
    kind = widget["type"]
    if kind == "text":
        return el("div", data.get("markdown") or "", class_="markdown")
    if kind == "metric":
        value = data.get("value")
        return el(
            "p",
            el("span", "—" if value is None else str(value), class_="value"),
            el("span", " " + data["unit"], class_="unit") if data.get("unit") else None,
            el("span", data["label"], class_="label") if data.get("label") else None,
            class_="metric",
        )
    rows = data["rows"][:MAX_ROWS]
    if kind == "table":
        return table(data["columns"], [[cell(v) for v in row] for row in rows], empty="No rows.")
    chart = {
        "kind": data["kind"],
        "columns": data["columns"],
        "rows": rows,
        "x": data.get("x"),
        "y": data.get("y", []),
    }
    return el(
        "div",
        el("canvas", role="img", aria_label=widget.get("title") or f"{data['kind']} chart"),
        json_data(chart, class_="chart-data"),
        class_="chart",
    )


@PAGES.page("GET", PREFIX + "/dashboards/{dashboard_id}")
@require_session
async def dashboard_page(request: web.Request) -> web.StreamResponse:
    """One dashboard: its widgets on the 12-column grid."""
    state = request.app[STATE]
    org_id = request[SESSION].org_id
    dashboard_id = request.match_info["dashboard_id"]
    row = await state.db.run(lambda conn: store.dashboard_get(conn, org_id, dashboard_id))
    if row is None:
        return error_page(request, 404, "No such dashboard.")
    datasets = request.app[DATASETS]
    cards = []
    for widget in row.widgets:
        try:
            body = _body(widget, await store.evaluate(datasets, org_id, widget))
        except HTTPError as exc:
            body = el("p", str(exc.detail), class_="error")
        layout = widget.get("layout") or {}
        cards.append(
            el(
                "section",
                el("h2", widget.get("title") or "") if widget.get("title") else None,
                body,
                class_=f"widget widget-{widget['type']}",
                data_x=layout.get("x"),
                data_y=layout.get("y"),
                data_w=layout.get("w"),
                data_h=layout.get("h"),
            )
        )
    return page(
        request,
        row.name,
        el("p", row.description) if row.description else None,
        el("div", cards, class_="grid")
        if cards
        else el("p", "This dashboard has no widgets.", class_="empty"),
        active="dashboards",
        charts=True,
    )
