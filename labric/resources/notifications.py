"""``client.notifications``: send a notification (hosted), and read the inbox (local server)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from labric._core.pagination import AsyncPager
from labric.models.notifications import Notification, SentNotification
from labric.resources._base import AsyncResource

__all__ = ["AsyncNotifications"]


class AsyncNotifications(AsyncResource):
    """Notifications to the caller's organisation: a job or script tells people something
    happened, with a link to where it happened.

    Sends are deduplicated by a caller-chosen ``dedupe_key``, so a retried or re-run script never
    notifies twice, and rate-capped per organisation (per hour and per day).
    """

    async def send(
        self,
        title: str,
        *,
        dedupe_key: str,
        body: str | None = None,
        action_url: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> SentNotification:
        """Send a notification to the organisation's inbox.

        Args:
            title: What happened, in a line.
            dedupe_key: Identifies this notification: a later send with the same key in the
                organisation is dropped (answered ``deduplicated``), so a retried or re-run
                script can send without checking first.
            body: More detail.
            action_url: A platform path to open, such as ``/jobs/<id>`` (links to other hosts
                are refused).
            data: Any JSON object to carry along; the keys ``sender`` and ``api_key_id`` are
                reserved (the platform attributes the notification to the sending key).

        Returns:
            The inbox row's id and ``status``: ``delivered``, ``deduplicated`` or ``muted``
            (the id is ``None`` for the last two: nothing was stored).

        Raises:
            UnprocessableEntityError: a field is invalid (an empty title, a reserved ``data``
                key, a link to another host).
            RateLimitError: the organisation's hourly or daily cap is reached, still after the
                retries (its ``Retry-After`` says when a slot frees).
            PermissionDeniedError: the key lacks the ``write`` scope.

        Example::

            sent = await client.notifications.send(
                "Plate 42 is done", dedupe_key="plate-42-done", action_url="/experiments/42"
            )
        """
        payload: dict[str, Any] = {"title": title, "dedupe_key": dedupe_key}
        if body is not None:
            payload["body"] = body
        if action_url is not None:
            payload["action_url"] = action_url
        if data is not None:
            payload["data"] = dict(data)
        response = await self._transport.request("POST", "/v1/notifications", json=payload)
        return self._parse(response, SentNotification)

    def list(
        self, *, limit: int | None = None, page_size: int | None = None
    ) -> AsyncPager[Notification]:
        """List the organisation's inbox, newest first (a local server route).

        Args:
            limit: The most notifications to yield in total.
            page_size: Notifications fetched per request (the server's default when unset).

        Returns:
            A pager: ``await`` it for the first page, ``async for`` over it for every
            notification.
        """
        return self._pager("/v1/notifications", Notification, limit=limit, page_size=page_size)
