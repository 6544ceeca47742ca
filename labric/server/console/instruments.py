"""Instruments: each one's current status, and its status history drawn as a timeline.

The timeline is SVG made on the server (rectangles placed by attributes, coloured by class), so
it needs no script and no inline style.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aiohttp import web

from labric.server.console.html import Markup, el, fragment
from labric.server.console.layout import (
    PREFIX,
    definition_list,
    error_page,
    link,
    page,
    table,
    url,
)
from labric.server.console.session import SESSION, require_session
from labric.server.core.db import from_iso, iso
from labric.server.core.routing import Pages
from labric.server.core.state import STATE
from labric.server.instruments import store

__all__ = ["PAGES"]

PAGES = Pages()

#: The timeline's windows: query value -> (label, seconds); the first is the default.
WINDOWS = {
    "week": ("last 7 days", 7 * 24 * 3600.0),
    "day": ("last 24 hours", 24 * 3600.0),
    "hour": ("last hour", 3600.0),
}
#: The narrowest band drawn (in the timeline's 1000 units), so an instant stays visible.
_MIN_BAND = 3.0
_WIDTH = 1000
_HEIGHT = 36


def _status(value: str | None) -> Any:
    shown = value or "never reported"
    return el("span", shown, class_=f"status status-{value or 'unknown'}")


@PAGES.page("GET", PREFIX + "/instruments")
@require_session
async def list_instruments(request: web.Request) -> web.StreamResponse:
    """Instruments, newest first, with their device's current status."""
    state = request.app[STATE]
    org_id = request[SESSION].org_id
    now = state.clock()
    rows = await state.db.run(
        lambda conn: store.list_instruments(conn, org_id, after=None, limit=1000, now=now)
    )
    return page(
        request,
        "Instruments",
        table(
            ("Instrument", "Status", "Last seen", "App version", "Paired", "Created"),
            [
                [
                    link(row.name, f"{PREFIX}/instruments/{quote(row.id)}"),
                    _status(row.status),
                    row.last_seen_at or "",
                    row.app_version or "",
                    row.paired_at or "no",
                    row.created_at,
                ]
                for row in rows
            ],
            empty="No instruments yet.",
        ),
        active="instruments",
    )


def timeline(periods: list[store.Period], start: float, end: float) -> Markup:
    """The periods as coloured bands across ``[start, end]`` (an instant: a thin mark)."""
    span = max(end - start, 1.0)

    def x(moment: str) -> float:
        return round((from_iso(moment) - start) / span * _WIDTH, 2)

    bands = []
    for period in periods:
        left = min(max(0.0, x(period.first_seen)), _WIDTH - _MIN_BAND)
        width = max(_MIN_BAND, min(float(_WIDTH), x(period.last_seen)) - left)
        bands.append(
            el(
                "rect",
                el("title", f"{period.status}: {period.first_seen} to {period.last_seen}"),
                x=str(left),
                y="4",
                width=str(width),
                height=str(_HEIGHT - 8),
                class_=f"band status-{period.status}",
            )
        )
    return el(
        "figure",
        el(
            "svg",
            el("rect", x="0", y="0", width=str(_WIDTH), height=str(_HEIGHT), class_="track"),
            bands,
            viewBox=f"0 0 {_WIDTH} {_HEIGHT}",
            preserveAspectRatio="none",
            role="img",
            aria_label="Status timeline",
            class_="timeline",
        ),
        el("figcaption", f"{iso(start)} to {iso(end)}"),
    )


@PAGES.page("GET", PREFIX + "/instruments/{instrument_id}")
@require_session
async def instrument_page(request: web.Request) -> web.StreamResponse:
    """One instrument: current status and its history over a window, as a timeline."""
    state = request.app[STATE]
    org_id = request[SESSION].org_id
    instrument_id = request.match_info["instrument_id"]
    now = state.clock()
    window = request.query.get("window", "week")
    label, seconds = WINDOWS.get(window, WINDOWS["week"])
    start = now - seconds

    def read(conn: Any) -> tuple[store.InstrumentRecord, store.History] | None:
        row = store.get_instrument(conn, org_id, instrument_id, now)
        if row is None:
            return None
        return row, store.history(conn, instrument_id, start=start, end=now, now=now)

    found = await state.db.run(read)
    if found is None:
        return error_page(request, 404, "No such instrument.")
    row, hist = found
    current = hist.current
    return page(
        request,
        row.name,
        el("p", row.description) if row.description else None,
        definition_list(
            {
                "Instrument id": el("code", row.id),
                "Status now": _status(current.value if current else None),
                "Since": current.since if current else "",
                "App version": row.app_version or "",
                "Paired": row.paired_at or "no",
                "Files": link(
                    "this instrument's files", f"{PREFIX}/files?instrument={quote(row.id)}"
                ),
            }
        ),
        el("h2", f"Status, {label}"),
        el(
            "p",
            [
                fragment(link(text, url(request.path, window=key)), " ")
                for key, (text, _) in WINDOWS.items()
            ],
            class_="windows",
        ),
        timeline(hist.periods, start, now),
        el("p", f"{hist.omitted} older periods left out.", class_="note") if hist.omitted else None,
        table(
            ("Status", "From", "To", "App version", "Watching"),
            [
                [
                    _status(p.status),
                    p.first_seen,
                    p.last_seen,
                    p.app_version or "",
                    "" if p.is_watching is None else ("yes" if p.is_watching else "no"),
                ]
                for p in reversed(hist.periods)
            ],
            empty="The device has not reported in this window.",
        ),
        active="instruments",
    )
