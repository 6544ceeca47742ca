"""Notifications: the organisation's inbox, newest first."""

from __future__ import annotations

import json

from aiohttp import web

from labric.server.console.html import el
from labric.server.console.layout import PREFIX, error_page, page, pager, table, url
from labric.server.console.session import SESSION, require_session
from labric.server.core.http import HTTPError
from labric.server.core.paging import decode_cursor, encode_cursor
from labric.server.core.routing import Pages
from labric.server.core.state import STATE
from labric.server.notifications import store

__all__ = ["PAGES"]

PAGES = Pages()

PAGE_SIZE = 50


@PAGES.page("GET", PREFIX + "/notifications")
@require_session
async def inbox(request: web.Request) -> web.StreamResponse:
    """The inbox: title, body, link, data and when, newest first."""
    state = request.app[STATE]
    org_id = request[SESSION].org_id
    cursor = request.query.get("cursor")
    try:
        after = decode_cursor(cursor) if cursor else None
    except HTTPError:
        return error_page(request, 400, "That page link is not valid any more.")
    rows = await state.db.run(
        lambda conn: store.list_notifications(conn, org_id, after=after, limit=PAGE_SIZE + 1)
    )
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    base = PREFIX + "/notifications"
    following = (
        url(base, cursor=encode_cursor(rows[-1].created_at, rows[-1].rowid)) if more else None
    )
    return page(
        request,
        "Notifications",
        table(
            ("Title", "Body", "Link", "Data", "Received"),
            [
                [
                    el("strong", row.title),
                    row.body or "",
                    # A platform path on the hosted platform: shown, not followed.
                    el("code", row.action_url) if row.action_url else "",
                    el("code", json.dumps(row.data, ensure_ascii=False)[:300]),
                    row.created_at,
                ]
                for row in rows
            ],
            empty="The inbox is empty.",
        ),
        pager(base if cursor else None, following),
        active="notifications",
    )
