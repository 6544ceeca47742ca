"""Datasets: tables and their columns, rows a page at a time, and a read-only SQL box.

Rows are read as ``tools/read`` reads them (:func:`labric.server.datasets.reads.read_page`) and
the SQL box runs through the boundary ``tools/query`` uses (:meth:`OrgDatabase.query`): one
organisation's file, read-only, with the same time and size limits.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aiohttp import web

from labric.server.console.html import el
from labric.server.console.layout import PREFIX, cell, error_page, link, page, pager, table, url
from labric.server.console.session import SESSION, require_session
from labric.server.core.routing import Pages
from labric.server.datasets import DATASETS, QueryError
from labric.server.datasets.reads import ReadError, read_page

__all__ = ["PAGES"]

PAGES = Pages()

#: Rows per page of a table.
PAGE_SIZE = 50
#: The most rows the SQL box shows (the boundary's own limits still apply).
MAX_QUERY_ROWS = 1000
#: The longest query text accepted.
MAX_SQL = 100_000


def _sql_form(sql: str) -> Any:
    return el(
        "form",
        el("label", "Read-only SQL", el("textarea", sql, name="sql", rows="4", cols="80")),
        el("button", "Run", type="submit"),
        method="get",
        action=PREFIX + "/sql",
        class_="sql",
    )


@PAGES.page("GET", PREFIX + "/datasets")
@require_session
async def list_tables(request: web.Request) -> web.StreamResponse:
    """Every table with its columns (the organisation's, then the platform's)."""
    org = await request.app[DATASETS].org(request[SESSION].org_id)
    sections = [
        el(
            "section",
            el("h2", link(t.name, f"{PREFIX}/datasets/{quote(t.name)}")),
            el("p", t.description, class_="description") if t.description else None,
            el("p", "platform table" if t.platform else (t.semantic_category or ""), class_="tag"),
            table(
                ("Column", "Type", "Key", "Nullable", "References"),
                [
                    [
                        c.name,
                        c.data_type,
                        "primary" if c.primary_key else ("unique" if c.unique else ""),
                        "yes" if c.nullable else "no",
                        c.foreign_key or "",
                    ]
                    for c in t.columns
                ],
            ),
            class_="table-def",
        )
        for t in org.catalog.ordered()
    ]
    return page(
        request,
        "Datasets",
        _sql_form(""),
        sections or el("p", "No tables yet.", class_="empty"),
        active="datasets",
    )


@PAGES.page("GET", PREFIX + "/sql")
@require_session
async def run_query(request: web.Request) -> web.StreamResponse:
    """The SQL box's answer: one read-only statement under the ``tools/query`` boundary."""
    org = await request.app[DATASETS].org(request[SESSION].org_id)
    sql = request.query.get("sql", "")
    if len(sql) > MAX_SQL:
        return error_page(request, 400, f"The query is longer than {MAX_SQL} characters.")
    result: Any = None
    if sql.strip():
        try:
            outcome = await org.query(sql, [])
        except QueryError as exc:
            result = el("p", exc.detail, class_="error")
        else:
            shown = outcome.data[:MAX_QUERY_ROWS]
            result = [
                el(
                    "p",
                    f"{len(outcome.data)} rows"
                    + (
                        f", the first {MAX_QUERY_ROWS} shown"
                        if len(outcome.data) > len(shown)
                        else ""
                    ),
                    class_="count",
                ),
                table(outcome.columns, [[cell(v) for v in row] for row in shown], empty="No rows."),
            ]
    return page(request, "SQL", _sql_form(sql), result, active="datasets")


@PAGES.page("GET", PREFIX + "/datasets/{name}")
@require_session
async def table_rows(request: web.Request) -> web.StreamResponse:
    """One table's rows, a page at a time, in insertion order."""
    org = await request.app[DATASETS].org(request[SESSION].org_id)
    name = request.match_info["name"]
    found = org.catalog.resolve(name)
    if found is None:
        return error_page(request, 404, f"No table named {name}.")
    after_text = request.query.get("after", "")
    after = int(after_text) if after_text.isdigit() and len(after_text) < 19 else None
    catalog = org.catalog
    try:
        rows = await org.read(
            lambda conn: read_page(conn, catalog, found, {}, after=after, limit=PAGE_SIZE + 1)
        )
    except ReadError as exc:
        return error_page(request, 400, str(exc))
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    names = [c.name for c in found.columns]
    base = f"{PREFIX}/datasets/{quote(found.name)}"
    return page(
        request,
        found.name,
        el("p", found.description) if found.description else None,
        table(
            names, [[cell(values.get(n)) for n in names] for _, values in rows], empty="No rows."
        ),
        pager(base if after is not None else None, url(base, after=rows[-1][0]) if more else None),
        active="datasets",
    )
