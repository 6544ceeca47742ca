"""Experiments: the list with its filters, and one experiment's linked files and rows."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from aiohttp import web

from labric.server.console.files import FILE_HEADERS, file_rows
from labric.server.console.html import el
from labric.server.console.layout import (
    PREFIX,
    definition_list,
    error_page,
    link,
    page,
    pager,
    table,
    url,
)
from labric.server.console.session import SESSION, require_session
from labric.server.core.http import HTTPError
from labric.server.core.paging import decode_cursor, encode_cursor
from labric.server.core.routing import Pages
from labric.server.core.state import STATE
from labric.server.datasets import DATASETS
from labric.server.experiments import store
from labric.server.experiments.store import STATUSES

__all__ = ["PAGES"]

PAGES = Pages()

PAGE_SIZE = 50
#: Linked files shown on an experiment's page.
MAX_FILES = 200


@PAGES.page("GET", PREFIX + "/experiments")
@require_session
async def list_experiments(request: web.Request) -> web.StreamResponse:
    """Experiments, newest first, by status, tag and search terms."""
    state = request.app[STATE]
    org_id = request[SESSION].org_id
    status = request.query.get("status") or None
    tag = request.query.get("tag") or None
    query = request.query.get("q", "")[:2048]
    cursor = request.query.get("cursor")
    try:
        after = decode_cursor(cursor) if cursor else None
    except HTTPError:
        return error_page(request, 400, "That page link is not valid any more.")
    terms = [t.casefold() for t in query.split()]
    rows = await state.db.run(
        lambda conn: store.list_experiments(
            conn, org_id, status=status, tag=tag, terms=terms, after=after, limit=PAGE_SIZE + 1
        )
    )
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    filters = {"status": status, "tag": tag, "q": query}
    base = PREFIX + "/experiments"
    following = (
        url(base, **filters, cursor=encode_cursor(rows[-1].created_at, rows[-1].rowid))
        if more
        else None
    )
    form = el(
        "form",
        el("label", "Search ", el("input", type="search", name="q", value=query)),
        el(
            "label",
            "Status ",
            el(
                "select",
                el("option", "any", value=""),
                [el("option", s, value=s, selected=s == status) for s in STATUSES],
                name="status",
            ),
        ),
        el("label", "Tag ", el("input", type="text", name="tag", value=tag or "")),
        el("button", "Filter", type="submit"),
        method="get",
        class_="filters",
    )
    return page(
        request,
        "Experiments",
        form,
        table(
            ("Experiment", "Status", "Tags", "Started", "Ended", "Created"),
            [
                [
                    link(row.name, f"{base}/{quote(row.id)}"),
                    el("span", row.status, class_=f"status status-{row.status}"),
                    ", ".join(row.tags),
                    row.started_at or "",
                    row.ended_at or "",
                    row.created_at,
                ]
                for row in rows
            ],
            empty="No experiments match.",
        ),
        pager(url(base, **filters) if cursor else None, following),
        active="experiments",
    )


@PAGES.page("GET", PREFIX + "/experiments/{experiment_id}")
@require_session
async def experiment_page(request: web.Request) -> web.StreamResponse:
    """One experiment: its fields, linked files and linked dataset rows."""
    state = request.app[STATE]
    org_id = request[SESSION].org_id
    experiment_id = request.match_info["experiment_id"]

    def read(conn: Any) -> tuple[store.ExperimentRecord | None, list[Any]]:
        found = store.get_experiment(conn, org_id, experiment_id)
        if found is None:
            return None, []
        return found, store.experiment_files(conn, experiment_id, after=None, limit=MAX_FILES)

    row, files = await state.db.run(read)
    if row is None:
        return error_page(request, 404, "No such experiment.")
    links = await request.app[DATASETS].experiment_rows(org_id, row.id)
    return page(
        request,
        row.name,
        el("p", row.description) if row.description else None,
        definition_list(
            {
                "Experiment id": el("code", row.id),
                "Status": row.status,
                "Tags": ", ".join(row.tags) or "none",
                "Started": row.started_at or "",
                "Ended": row.ended_at or "",
                "Metadata": el("code", json.dumps(row.metadata, ensure_ascii=False)),
            }
        ),
        el("h2", "Linked files"),
        table(FILE_HEADERS, file_rows(files), empty="No linked files."),
        el("h2", "Linked rows"),
        table(
            ("Table", "Row id"),
            [[link(t, f"{PREFIX}/datasets/{quote(t)}"), el("code", r)] for t, r in links],
            empty="No linked rows.",
        ),
        active="experiments",
    )
