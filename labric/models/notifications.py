"""Models of the notifications resource: the hosted send's answer, and the local inbox.

``SentNotification`` is the hosted ``SentNotificationSchema``; ``Notification`` (an inbox row) is
the local server's addition (design.md 3.7).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs

from labric.models._base import OpenEnum, bounded_repr

__all__ = ["Notification", "SentNotification", "SentNotificationStatus"]


class SentNotificationStatus(OpenEnum):
    """What became of a send."""

    DELIVERED = "delivered"
    DEDUPLICATED = "deduplicated"
    MUTED = "muted"


@attrs.frozen(kw_only=True)
class SentNotification:
    """The answer to a send.

    Attributes:
        id: The inbox row's id; ``None`` when the send was deduplicated or muted (nothing was
            stored).
        status: ``delivered``, ``deduplicated`` (the ``dedupe_key`` was used before) or
            ``muted`` (the organisation has muted notifications).
    """

    status: SentNotificationStatus | str
    id: str | None = None

    @property
    def delivered(self) -> bool:
        """Whether the notification reached the inbox with this send."""
        return self.status == SentNotificationStatus.DELIVERED


@attrs.frozen(kw_only=True)
class Notification:
    """A notification in the organisation's inbox (local server).

    Attributes:
        dedupe_key: The key it was sent with; a repeat of it is never delivered again.
        api_key_id: The id of the API key that sent it (also under the ``data`` key of that
            name, which the hosted platform reserves for attribution).
        data: The object sent, with the attribution key added.
    """

    __repr__ = bounded_repr

    id: str
    title: str
    dedupe_key: str
    created_at: datetime
    body: str | None = None
    action_url: str | None = None
    data: dict[str, Any] = attrs.field(factory=dict)
    api_key_id: str | None = None
