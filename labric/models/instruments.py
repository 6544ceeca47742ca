"""Models of the instruments resource.

Hosted shapes: :class:`DeviceStatusHistory` (``DeviceStatusHistorySchema``) with
:class:`InstrumentName`, :class:`CurrentDeviceStatus` and :class:`DeviceStatus`, and
:class:`DeviceStatusType`. :class:`Instrument`, :class:`InstrumentPairing`, :class:`PairedDevice`
and :class:`DeviceStatusReport` are the local server's (design.md 3.6).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs

from labric.models._base import OpenEnum, bounded_repr

__all__ = [
    "CurrentDeviceStatus",
    "DeviceStatus",
    "DeviceStatusHistory",
    "DeviceStatusReport",
    "DeviceStatusType",
    "Instrument",
    "InstrumentName",
    "InstrumentPairing",
    "PairedDevice",
]


class DeviceStatusType(OpenEnum):
    """What a device reports about itself."""

    ONLINE = "online"
    OFFLINE = "offline"
    ERROR = "error"


@attrs.frozen(kw_only=True)
class Instrument:
    """An instrument of the organisation, with a summary of its device's reports.

    Attributes:
        status: The device's status now (``offline`` once it stopped reporting); ``None`` if it
            never reported.
        paired_at: When a device last exchanged a pairing code for its key.
        last_seen_at: When the device last reported.
        app_version: The app version of its latest report that named one.
    """

    __repr__ = bounded_repr

    id: str
    name: str
    description: str | None = None
    metadata: dict[str, Any] | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    paired_at: datetime | None = None
    status: DeviceStatusType | str | None = None
    last_seen_at: datetime | None = None
    app_version: str | None = None


@attrs.frozen(kw_only=True)
class InstrumentPairing:
    """A new instrument (or an existing one) with a one-time pairing code for its device.

    The code is shown only here. A device exchanges it once, before ``expires_at``, for its own
    key (:meth:`labric.AsyncLabric.instruments.pair`, ``POST /v1/instruments/pair``).
    """

    instrument: Instrument
    pairing_code: str = attrs.field(repr=False)
    expires_at: datetime


@attrs.frozen(kw_only=True)
class PairedDevice:
    """What a device gets for its pairing code: its own key (shown only here).

    The key has the ``read`` and ``write`` scopes in the instrument's organisation; uploads made
    with it are attached to the instrument unless they name another, and it reports that
    instrument's status. Pairing again revokes it; deleting the instrument deletes it.
    """

    __repr__ = bounded_repr

    api_key: str = attrs.field(repr=False)
    scopes: list[str]
    organization_id: str
    instrument: Instrument


@attrs.frozen(kw_only=True)
class InstrumentName:
    """An instrument's id and name (hosted ``InstrumentNameSchema``)."""

    id: str
    name: str


@attrs.frozen(kw_only=True)
class CurrentDeviceStatus:
    """A device's status now, and since when (hosted ``CurrentDeviceStatusSchema``)."""

    value: DeviceStatusType | str
    since: datetime


@attrs.frozen(kw_only=True)
class DeviceStatus:
    """One period of one status (hosted ``DeviceStatusSchema``).

    Attributes:
        is_watching: Whether the device was watching a folder (``None``: not reported).
    """

    status: DeviceStatusType | str
    first_seen: datetime
    last_seen: datetime
    app_version: str | None = None
    is_watching: bool | None = None


@attrs.frozen(kw_only=True)
class DeviceStatusHistory:
    """A device's status over a window (hosted ``DeviceStatusHistorySchema``).

    Periods are oldest first; time between reports longer than the server's offline threshold
    counts as ``offline``; at most 200 periods are returned (the most recent). ``notes`` explain
    any adjustment the server made (a window capped at now, periods left out).
    """

    __repr__ = bounded_repr

    instrument: InstrumentName
    start_time: datetime
    end_time: datetime
    statuses: list[DeviceStatus]
    notes: list[str]
    current_status: CurrentDeviceStatus | None = None


@attrs.frozen(kw_only=True)
class DeviceStatusReport:
    """The server's answer to a device's status report.

    Attributes:
        period: The period the report extended or started.
        heartbeat_interval_seconds: How often a running device should report.
        offline_after_seconds: Silence after which the device counts as offline.
    """

    instrument: InstrumentName
    current_status: CurrentDeviceStatus | None
    period: DeviceStatus
    heartbeat_interval_seconds: int | None = None
    offline_after_seconds: int | None = None
