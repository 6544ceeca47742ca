"""``client.instruments``: instruments, pairing their devices, and device status."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from labric._core.converter import unstructure
from labric._core.pagination import AsyncPager
from labric._core.types import NOT_GIVEN, NotGiven
from labric._core.urls import path_segment
from labric.models.instruments import (
    DeviceStatusHistory,
    DeviceStatusReport,
    DeviceStatusType,
    Instrument,
    InstrumentPairing,
    PairedDevice,
)
from labric.resources._base import AsyncResource

__all__ = ["AsyncInstruments"]


def _path(instrument_id: str, suffix: str = "") -> str:
    return f"/v1/instruments/{path_segment(instrument_id, 'instrument_id')}{suffix}"


def _time(value: datetime | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    text: str = unstructure(value)
    return text


class AsyncInstruments(AsyncResource):
    """Instruments: the lab devices whose files and status reach the platform.

    Creating an instrument returns a one-time pairing code; the device exchanges it for its own
    key (:meth:`pair`), then uploads files (attached to the instrument) and reports its status
    (:meth:`report_status`) with that key.
    """

    def list(
        self, *, limit: int | None = None, page_size: int | None = None
    ) -> AsyncPager[Instrument]:
        """List the organisation's instruments, newest first.

        Args:
            limit: The most instruments to yield in total.
            page_size: Instruments fetched per request (100 when unset; the server may cap it).

        Returns:
            A pager: ``await`` it for the first page, ``async for`` over it for every instrument.
        """
        return self._pager("/v1/instruments", Instrument, limit=limit, page_size=page_size)

    async def get(self, instrument_id: str) -> Instrument:
        """Get one instrument, with its device's current status.

        Raises:
            NotFoundError: no such instrument in the key's organisation.
        """
        response = await self._transport.request("GET", _path(instrument_id))
        return self._parse(response, Instrument)

    async def create(
        self,
        *,
        name: str,
        description: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> InstrumentPairing:
        """Create an instrument and a one-time pairing code for its device.

        Args:
            name: The instrument's name.
            description: Free text.
            metadata: Any JSON object (serial number, location, ...).

        Returns:
            The instrument and its pairing code (shown only here; it expires).

        Example::

            made = await client.instruments.create(name="Plate reader 2")
            print("Enter this code on the device:", made.pairing_code)
        """
        body: dict[str, Any] = {"name": name}
        if description is not None:
            body["description"] = description
        if metadata is not None:
            body["metadata"] = dict(metadata)
        response = await self._transport.request("POST", "/v1/instruments", json=body)
        return self._parse(response, InstrumentPairing)

    async def update(
        self,
        instrument_id: str,
        *,
        name: str | NotGiven = NOT_GIVEN,
        description: str | NotGiven = NOT_GIVEN,
        metadata: Mapping[str, Any] | NotGiven = NOT_GIVEN,
    ) -> Instrument:
        """Change an instrument; only the arguments given are sent, and only those fields change.

        Args:
            instrument_id: The instrument.
            name: A new name.
            description: A new description; ``""`` clears it.
            metadata: A new metadata object (replaces the old one whole).

        Raises:
            NotFoundError: no such instrument in the key's organisation.
        """
        body: dict[str, Any] = {}
        if not isinstance(name, NotGiven):
            body["name"] = name
        if not isinstance(description, NotGiven):
            body["description"] = description
        if not isinstance(metadata, NotGiven):
            body["metadata"] = dict(metadata)
        response = await self._transport.request("PATCH", _path(instrument_id), json=body)
        return self._parse(response, Instrument)

    async def delete(self, instrument_id: str, *, force: bool = False) -> None:
        """Delete an instrument, its pairing codes and its device's key.

        Args:
            instrument_id: The instrument.
            force: Delete it even though files are attached (they are kept, attached to no
                instrument). Without it, an instrument with files is not deleted.

        Safe to retry: if an earlier attempt's outcome was unknown (a 5xx, a timeout, a lost
        connection) and a retry finds the instrument gone, that attempt deleted it and the call
        succeeds.

        Raises:
            ConflictError: files are attached and ``force`` is false, or dataset rows require
                the instrument.
            NotFoundError: no such instrument in the key's organisation (found missing by the first
                attempt).
        """
        params = {"force": True} if force else None
        await self._transport.request("DELETE", _path(instrument_id), params=params)

    async def pairing_code(self, instrument_id: str) -> InstrumentPairing:
        """Issue a new one-time pairing code, to pair a new device (earlier unused codes stop
        working; the device paired next replaces the current one).

        Raises:
            NotFoundError: no such instrument in the key's organisation.
        """
        response = await self._transport.request("POST", _path(instrument_id, "/pairing-code"))
        return self._parse(response, InstrumentPairing)

    async def pair(self, pairing_code: str) -> PairedDevice:
        """Exchange a pairing code for the device's own key (the code works once).

        The route takes no API key, so any client of the server can make this call for a
        device; the answer's key is the device's, not this client's.

        Raises:
            BadRequestError: the code is unknown, expired or already used.

        Example::

            device = await client.instruments.pair("K7QM-2X9D-P4TW")
            async with AsyncLabric(device.api_key, base_url=client.base_url) as as_device:
                await as_device.instruments.report_status(device.instrument.id, status="online")
        """
        response = await self._transport.request(
            "POST", "/v1/instruments/pair", json={"pairing_code": pairing_code}
        )
        return self._parse(response, PairedDevice)

    async def report_status(
        self,
        instrument_id: str,
        *,
        status: DeviceStatusType | str,
        app_version: str | None = None,
        is_watching: bool | None = None,
    ) -> DeviceStatusReport:
        """Report a device's status (as the device; a running device reports at least every
        ``heartbeat_interval_seconds`` of the answer, or it counts as offline).

        Args:
            instrument_id: The device's instrument.
            status: ``online``, ``offline`` (shutting down) or ``error``.
            app_version: The device software's version.
            is_watching: Whether it is watching a folder for new files.

        Raises:
            PermissionDeniedError: a device's key reporting for another instrument.
            NotFoundError: no such instrument in the key's organisation.
        """
        body: dict[str, Any] = {"status": getattr(status, "value", status)}
        if app_version is not None:
            body["app_version"] = app_version
        if is_watching is not None:
            body["is_watching"] = is_watching
        response = await self._transport.request(
            "POST", _path(instrument_id, "/device-status"), json=body
        )
        return self._parse(response, DeviceStatusReport)

    async def device_status(
        self,
        instrument_id: str,
        *,
        start_time: datetime | str | None = None,
        end_time: datetime | str | None = None,
    ) -> DeviceStatusHistory:
        """Get a device's status history: periods oldest first, at most 200 (the most recent).

        Args:
            instrument_id: The instrument.
            start_time: The window's start (default: ``end_time`` minus 7 days). Naive
                datetimes are taken as UTC.
            end_time: The window's end (default and at most: now).

        Returns:
            The periods, the current status (``None`` if the device never reported) and notes
            on anything the server adjusted.

        Raises:
            NotFoundError: no such instrument in the key's organisation.
        """
        params = {"start_time": _time(start_time), "end_time": _time(end_time)}
        response = await self._transport.request(
            "GET", _path(instrument_id, "/device-status"), params=params
        )
        return self._parse(response, DeviceStatusHistory)
