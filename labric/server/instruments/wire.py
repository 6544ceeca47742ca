"""The instruments family's wire shapes: instruments, pairing, heartbeats, status history.

Component schemas are named after the SDK's models where they answer one (``tests/openapi``
compares their fields); each operation is declared with its handler.
"""

from __future__ import annotations

from labric.server.core.declare import (
    BOOLEAN,
    DATETIME,
    INTEGER,
    OBJECT,
    STRING,
    Family,
    array,
    nullable,
    obj,
    path_param,
    record,
    ref,
    request,
    string,
)

STATUSES = ["online", "offline", "error"]

INSTRUMENT_ID = path_param("instrument_id", "The instrument")

NAME = string(minLength=1, maxLength=255)

DESCRIPTION = string(maxLength=10_000)

METADATA = obj({}, description="Any JSON object (at most 64 KiB as JSON)")

INSTRUMENT_NAME = record({"id": STRING, "name": STRING})

SCHEMAS = {
    "Instrument": record(
        {
            "id": STRING,
            "name": STRING,
            "description": nullable(STRING),
            "metadata": nullable(OBJECT),
            "created_at": nullable(DATETIME),
            "updated_at": nullable(DATETIME),
            "paired_at": nullable(DATETIME),
            "status": nullable(string(enum=STATUSES)),
            "last_seen_at": nullable(DATETIME),
            "app_version": nullable(STRING),
        }
    ),
    "InstrumentPairing": record(
        {"instrument": ref("Instrument"), "pairing_code": STRING, "expires_at": DATETIME},
        description="A one-time code a device exchanges for its key",
    ),
    "PairedDevice": record(
        {
            "api_key": STRING,
            "scopes": array(STRING),
            "organization_id": STRING,
            "instrument": ref("Instrument"),
        },
        description="A device's key (shown only here)",
    ),
    "InstrumentName": INSTRUMENT_NAME,
    "CurrentDeviceStatus": record({"value": string(enum=STATUSES), "since": DATETIME}),
    "DeviceStatus": record(
        {
            "status": string(enum=STATUSES),
            "first_seen": DATETIME,
            "last_seen": DATETIME,
            "app_version": nullable(STRING),
            "is_watching": nullable(BOOLEAN),
        },
        description="One period of a device's status (hosted DeviceStatusSchema)",
    ),
    "DeviceStatusHistory": record(
        {
            "instrument": ref("InstrumentName"),
            "start_time": DATETIME,
            "end_time": DATETIME,
            "current_status": nullable(ref("CurrentDeviceStatus")),
            "statuses": array(ref("DeviceStatus")),
            "notes": array(STRING),
        },
        description="Hosted DeviceStatusHistorySchema: periods oldest first",
    ),
    "DeviceStatusReport": record(
        {
            "instrument": ref("InstrumentName"),
            "current_status": nullable(ref("CurrentDeviceStatus")),
            "period": ref("DeviceStatus"),
            "heartbeat_interval_seconds": INTEGER,
            "offline_after_seconds": INTEGER,
        }
    ),
    "CreateInstrumentRequest": request(
        {"name": NAME, "description": DESCRIPTION, "metadata": METADATA},
        required=["name"],
    ),
    "UpdateInstrumentRequest": request(
        {"name": NAME, "description": DESCRIPTION, "metadata": METADATA},
        description="Only the fields sent change; metadata is replaced whole",
    ),
    "PairRequest": request({"pairing_code": string(maxLength=64)}, required=["pairing_code"]),
    "DeviceStatusRequest": request(
        {
            "status": string(enum=STATUSES),
            "app_version": string(maxLength=128),
            "is_watching": BOOLEAN,
        },
        required=["status"],
    ),
}

MISSING = {404: "No such instrument"}

INSTRUMENTS = Family(
    tag="instruments",
    description="Instruments: pairing devices, device status reports and history",
    schemas=SCHEMAS,
)
