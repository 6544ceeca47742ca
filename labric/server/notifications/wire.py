"""The notifications family's wire shapes: a send's answer, the inbox, the mute setting.

Component schemas are named after the SDK's models where they answer one (``tests/openapi``
compares their fields); each operation is declared with its handler.
"""

from __future__ import annotations

from labric.server.core.declare import (
    BOOLEAN,
    DATETIME,
    OBJECT,
    STRING,
    Family,
    nullable,
    obj,
    record,
    request,
    string,
)

#: The hosted ``SentNotificationSchemaStatus``.
STATUSES = ["delivered", "deduplicated", "muted"]
#: Keys of ``data`` the platform fills in itself to attribute a notification.
RESERVED_DATA_KEYS = ("sender", "api_key_id")

MAX_TITLE = 255
MAX_BODY = 10_000
MAX_DEDUPE_KEY = 255
MAX_ACTION_URL = 2048

SCHEMAS = {
    "SentNotification": record(
        {
            "id": nullable(STRING),
            "status": string(enum=STATUSES),
        },
        description="The inbox row's id, or null when the send was deduplicated or muted",
    ),
    "Notification": record(
        {
            "id": STRING,
            "title": STRING,
            "body": nullable(STRING),
            "action_url": nullable(STRING),
            "data": OBJECT,
            "dedupe_key": STRING,
            "api_key_id": nullable(STRING),
            "created_at": DATETIME,
        }
    ),
    "SendNotificationRequest": request(
        {
            "title": string(minLength=1, maxLength=MAX_TITLE),
            "dedupe_key": string(minLength=1, maxLength=MAX_DEDUPE_KEY),
            "body": string(maxLength=MAX_BODY),
            "action_url": string(
                maxLength=MAX_ACTION_URL,
                description="A platform path such as /jobs/<id> (no other host)",
            ),
            "data": obj(
                {},
                description="Any JSON object (at most 64 KiB as JSON) without the reserved keys "
                + " and ".join(RESERVED_DATA_KEYS),
            ),
        },
        required=["title", "dedupe_key"],
    ),
    "NotificationSettings": record({"muted": BOOLEAN}),
    "NotificationSettingsRequest": obj(
        {"muted": BOOLEAN}, required=["muted"], additionalProperties=False
    ),
}

NOTIFICATIONS = Family(
    tag="notifications",
    description="Notifications: the hosted send (deduplicated, rate-capped) and the local inbox",
    schemas=SCHEMAS,
)
