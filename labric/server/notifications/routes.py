"""The notifications API: the hosted send, and the local inbox and mute setting (design.md 3.7).

Routes::

    POST /v1/notifications                 write   send (hosted); answers SentNotification
    GET  /v1/notifications                 read    the inbox, newest first; limit/cursor + Link
    GET  /v1/admin/notifications           admin   {"muted": bool} of the key's organisation
    PUT  /v1/admin/notifications           admin   {"muted": bool}: mute or unmute its sends

A send takes ``title`` and ``dedupe_key`` (both required, non-empty), ``body``, ``action_url`` (a
platform path: it starts with one ``/``; a URL naming a host is refused, so a notification
never links away from the platform) and ``data`` (a JSON object; its keys ``sender`` and
``api_key_id`` are reserved for attribution and refused). It answers, in this order:

* ``{"id": null, "status": "deduplicated"}`` when the organisation already has a notification
  with this ``dedupe_key`` (nothing is stored; the key stays taken for good);
* ``{"id": null, "status": "muted"}`` while the organisation is muted (nothing is stored, so the
  key is still free once unmuted);
* 429 with ``Retry-After`` (seconds until the oldest send in the full window leaves it) and the
  hosted body ``{"detail": "..."}`` when the organisation's deliveries in the last hour or the
  last 24 hours reached their cap (``--notifications-per-hour`` and ``--notifications-per-day``
  of ``labric serve``);
* ``{"id": ..., "status": "delivered"}``: stored in the inbox, attributed to the sending key
  (``api_key_id``, also under that reserved key of ``data``, which the hosted platform reserves
  for attribution).

Repeats and muted sends cost no slot of the caps. The hosted platform also emails users who
enabled the "Message" category; the local server has no email.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from labric.server.core import records
from labric.server.core.auth import principal
from labric.server.core.declare import PAGE, Body, Operation, Response, array, ref
from labric.server.core.fields import json_object
from labric.server.core.http import Fields, HTTPError, json_response, read_json_object
from labric.server.core.paging import listing, respond
from labric.server.core.routing import Router, Routes
from labric.server.core.state import STATE
from labric.server.notifications import store, wire

__all__ = ["notification_json", "register"]

ROUTES = Routes(wire.NOTIFICATIONS)


def notification_json(row: store.NotificationRecord) -> dict[str, Any]:
    """An inbox row as ``GET /v1/notifications`` answers it."""
    return {
        "id": row.id,
        "title": row.title,
        "body": row.body,
        "action_url": row.action_url,
        "data": row.data,
        "dedupe_key": row.dedupe_key,
        "api_key_id": row.api_key_id,
        "created_at": row.created_at,
    }


def _action_url(f: Fields, request: web.Request) -> str | None:
    """A platform path; an absolute URL only when it names this server, kept as its path."""
    value = f.string("action_url", max_length=wire.MAX_ACTION_URL)
    if not value:
        return None
    if any(ord(c) < 0x20 or c in "\\\x7f" for c in value):
        f.add(["action_url"], "A platform path may not hold control characters or '\\'")
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        if parts.scheme in ("http", "https") and parts.netloc.lower() == request.host.lower():
            return parts._replace(scheme="", netloc="").geturl() or "/"
        f.add(
            ["action_url"],
            "Must be a platform path such as /jobs/<id>, not a URL to another host",
            "url_scheme",
        )
        return None
    if not value.startswith("/") or value.startswith("//"):
        f.add(["action_url"], "Must be a platform path starting with '/' (such as /jobs/<id>)")
        return None
    return value


def _read_send(body: dict[str, Any], request: web.Request) -> dict[str, Any]:
    f = Fields(body)
    fields: dict[str, Any] = {
        # Required strings: Fields refuses missing, non-string and blank ones alike.
        "title": f.string("title", required=True, max_length=wire.MAX_TITLE),
        "dedupe_key": f.string("dedupe_key", required=True, max_length=wire.MAX_DEDUPE_KEY),
        "body": f.string("body", max_length=wire.MAX_BODY),
        "action_url": _action_url(f, request),
    }
    data = json_object(f, body, "data")
    if data is not None:
        for key in wire.RESERVED_DATA_KEYS:
            if key in data:
                f.add(
                    ["data", key],
                    f"'{key}' is reserved: the platform sets it to attribute the notification",
                    "reserved_key",
                )
        fields["data"] = data
    f.check()
    return {k: v for k, v in fields.items() if v is not None}


@ROUTES.route(
    Operation(
        method="POST",
        path="/v1/notifications",
        scope="write",
        summary="Send a notification to the organisation's inbox (deduplicated by dedupe_key)",
        description="A repeated dedupe_key answers deduplicated and a muted organisation muted, "
        "both with a null id and nothing stored. Deliveries are capped per hour and per day "
        "for each organisation: past a cap the answer is 429 with Retry-After.",
        body=Body(schema=ref("SendNotificationRequest")),
        responses=(Response(schema=ref("SentNotification")),),
        errors={429: "The organisation's hourly or daily notification cap is reached"},
        hosted=True,
    )
)
async def send_notification(request: web.Request) -> web.StreamResponse:
    """``POST /v1/notifications``: deliver, deduplicate, answer muted, or 429 past a cap."""
    state = request.app[STATE]
    caller = principal(request)
    fields = _read_send(await read_json_object(request), request)
    settings = state.settings
    outcome = await state.db.run(
        lambda conn: store.send(
            conn,
            caller.org_id,
            records.new_id(),
            fields,
            api_key_id=caller.key_id,
            now=state.clock(),
            per_hour=settings.notifications_per_hour,
            per_day=settings.notifications_per_day,
        )
    )
    if isinstance(outcome, store.Capped):
        raise HTTPError(
            429,
            f"Notification limit reached: at most {outcome.limit} per {outcome.cap} for this "
            f"organisation; retry after {outcome.retry_after} seconds",
            headers={"Retry-After": str(outcome.retry_after)},
        )
    status, notification_id = outcome
    return json_response({"id": notification_id, "status": status})


@ROUTES.route(
    Operation(
        method="GET",
        path="/v1/notifications",
        scope="read",
        summary="The organisation's inbox, newest first",
        params=PAGE,
        responses=(Response(schema=array(ref("Notification"))),),
        errors={400: "Invalid cursor"},
        paginated=True,
    )
)
async def list_notifications(request: web.Request) -> web.StreamResponse:
    """``GET /v1/notifications``: delivered notifications, newest first (paged on request)."""
    state = request.app[STATE]
    org_id = principal(request).org_id
    wanted = listing(state, Fields(request.query, "query"))

    async def fetch(after: tuple[str, int] | None, n: int) -> list[tuple[tuple[str, int], Any]]:
        rows = await state.db.run(
            lambda conn: store.list_notifications(conn, org_id, after=after, limit=n)
        )
        return [((row.created_at, row.rowid), notification_json(row)) for row in rows]

    return await respond(request, wanted, fetch)


@ROUTES.route(
    Operation(
        method="GET",
        path="/v1/admin/notifications",
        scope="admin",
        summary="Whether the key's organisation's notifications are muted",
        responses=(Response(schema=ref("NotificationSettings")),),
    )
)
async def get_settings(request: web.Request) -> web.StreamResponse:
    """``GET /v1/admin/notifications``."""
    state = request.app[STATE]
    value = await state.db.run(store.muted, principal(request).org_id)
    return json_response({"muted": value})


@ROUTES.route(
    Operation(
        method="PUT",
        path="/v1/admin/notifications",
        scope="admin",
        summary="Mute or unmute the key's organisation's notifications",
        body=Body(schema=ref("NotificationSettingsRequest")),
        responses=(Response(schema=ref("NotificationSettings")),),
    )
)
async def put_settings(request: web.Request) -> web.StreamResponse:
    """``PUT /v1/admin/notifications``: ``{"muted": true}`` makes sends answer ``muted``."""
    state = request.app[STATE]
    body = await read_json_object(request)
    value = body.get("muted")
    if not isinstance(value, bool):
        f = Fields(body)
        f.add(["muted"], "Input should be a valid boolean", "bool_type")
        f.check()
    org_id = principal(request).org_id
    await state.db.run(store.set_muted, org_id, bool(value))
    return json_response({"muted": bool(value)})


def register(router: Router) -> None:
    """Add the notifications routes."""
    router.add(ROUTES)
