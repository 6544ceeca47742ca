"""Device status: reports folded into periods, and the hosted history's window semantics.

The clock is driven by hand: a heartbeat is ``clock.advance(60)`` and a report, never a wait.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from _clocked import FakeClock, Wire, at, stamp

from labric import AsyncLabric
from labric.errors import UnprocessableEntityError
from labric.models import DeviceStatus, DeviceStatusHistory, DeviceStatusType

DAY = 24 * 3600


@pytest.fixture
async def instrument(client: AsyncLabric) -> str:
    return (await client.instruments.create(name="Reader")).instrument.id


def spans(history: DeviceStatusHistory) -> list[tuple[str, datetime, datetime]]:
    return [(str(p.status), p.first_seen, p.last_seen) for p in history.statuses]


async def test_no_reports(client: AsyncLabric, instrument: str, clock: FakeClock) -> None:
    history = await client.instruments.device_status(instrument)
    assert history.instrument.id == instrument
    assert history.instrument.name == "Reader"
    assert history.statuses == []
    assert history.current_status is None
    assert history.notes == []
    assert history.end_time == at(clock.now)
    assert history.start_time == at(clock.now - 7 * DAY)


async def test_heartbeats_extend_one_period(
    client: AsyncLabric, instrument: str, clock: FakeClock
) -> None:
    t0 = clock.now
    for _ in range(4):
        await client.instruments.report_status(instrument, status="online", app_version="1.0")
        clock.advance(60)
    clock.advance(-60)  # now = the last heartbeat
    history = await client.instruments.device_status(instrument)
    assert spans(history) == [("online", at(t0), at(t0 + 180))]
    assert history.statuses[0].app_version == "1.0"
    assert history.current_status is not None
    assert (history.current_status.value, history.current_status.since) == ("online", at(t0))


async def test_a_gap_between_reports_counts_as_offline(
    client: AsyncLabric, instrument: str, clock: FakeClock
) -> None:
    t0 = clock.now
    await client.instruments.report_status(instrument, status="online")
    clock.advance(180)  # exactly the threshold: still online
    await client.instruments.report_status(instrument, status="online")
    clock.advance(181)  # one second more than the threshold: a gap
    await client.instruments.report_status(instrument, status="online")
    history = await client.instruments.device_status(instrument)
    assert spans(history) == [
        ("online", at(t0), at(t0 + 180)),
        ("offline", at(t0 + 180), at(t0 + 361)),
        ("online", at(t0 + 361), at(t0 + 361)),
    ]
    assert history.current_status is not None
    assert history.current_status.since == at(t0 + 361)


async def test_silence_until_now_is_offline(
    client: AsyncLabric, instrument: str, clock: FakeClock
) -> None:
    t0 = clock.now
    await client.instruments.report_status(instrument, status="error")
    clock.advance(100)
    history = await client.instruments.device_status(instrument)
    assert spans(history) == [("error", at(t0), at(t0))]
    assert history.current_status is not None
    assert history.current_status.value == "error"
    clock.advance(900)
    history = await client.instruments.device_status(instrument)
    assert spans(history) == [("error", at(t0), at(t0)), ("offline", at(t0), at(clock.now))]
    assert history.current_status is not None
    assert (history.current_status.value, history.current_status.since) == ("offline", at(t0))
    assert (await client.instruments.get(instrument)).status == "offline"


async def test_a_reported_offline_lasts_until_the_next_report(
    client: AsyncLabric, instrument: str, clock: FakeClock
) -> None:
    t0 = clock.now
    await client.instruments.report_status(instrument, status="online", app_version="1.0")
    clock.advance(30)
    await client.instruments.report_status(instrument, status="offline", app_version="1.0")
    clock.advance(3600)
    # Still offline an hour later (a reported offline is not a gap), and since when it said so.
    history = await client.instruments.device_status(instrument)
    assert spans(history)[-1] == ("offline", at(t0 + 30), at(clock.now))
    assert history.current_status is not None
    assert history.current_status.since == at(t0 + 30)
    await client.instruments.report_status(instrument, status="online", app_version="1.1")
    history = await client.instruments.device_status(instrument)
    assert spans(history) == [
        ("online", at(t0), at(t0)),
        ("offline", at(t0 + 30), at(t0 + 3630)),
        ("online", at(t0 + 3630), at(t0 + 3630)),
    ]
    assert [p.app_version for p in history.statuses] == ["1.0", "1.0", "1.1"]


async def test_status_version_and_watching_changes_start_periods(
    client: AsyncLabric, instrument: str, clock: FakeClock
) -> None:
    t0 = clock.now
    reports: list[dict[str, Any]] = [
        {"status": "online", "app_version": "1.0", "is_watching": True},
        {"status": "online", "app_version": "1.0", "is_watching": True},
        {"status": "online", "app_version": "1.0", "is_watching": False},
        {"status": "error", "app_version": "1.0", "is_watching": False},
        {"status": "online", "app_version": "1.1", "is_watching": False},
        {"status": "online", "app_version": "1.2", "is_watching": False},
    ]
    for body in reports:
        await client.instruments.report_status(instrument, **body)
        clock.advance(10)
    clock.advance(-10)
    history = await client.instruments.device_status(instrument)
    assert [(p.status, p.app_version, p.is_watching) for p in history.statuses] == [
        ("online", "1.0", True),
        ("online", "1.0", False),
        ("error", "1.0", False),
        ("online", "1.1", False),
        ("online", "1.2", False),
    ]
    assert history.statuses[0].last_seen == at(t0 + 10)
    # Online since the error ended, across the version upgrade.
    assert history.current_status is not None
    assert history.current_status.since == at(t0 + 40)
    assert (await client.instruments.get(instrument)).app_version == "1.2"


async def test_at_most_200_periods_the_most_recent_kept(
    client: AsyncLabric, instrument: str, clock: FakeClock
) -> None:
    t0 = clock.now
    for n in range(250):  # alternating statuses: every report starts a period
        await client.instruments.report_status(instrument, status=("online", "error")[n % 2])
        clock.advance(10)
    clock.advance(-10)
    history = await client.instruments.device_status(instrument)
    assert len(history.statuses) == 200
    assert history.statuses[0].first_seen == at(t0 + 500)  # periods 0..49 were left out
    assert history.statuses[-1].first_seen == at(clock.now)
    assert [p.first_seen for p in history.statuses] == sorted(
        p.first_seen for p in history.statuses
    )
    assert len(history.notes) == 1
    assert "50 older period(s)" in history.notes[0]
    assert "at most 200" in history.notes[0]
    # A window holding fewer is not cut.
    recent = await client.instruments.device_status(instrument, start_time=at(t0 + 2000))
    assert len(recent.statuses) == 50
    assert recent.notes == []


async def test_a_window_is_clipped_and_sees_the_state_before_it(
    client: AsyncLabric, instrument: str, clock: FakeClock
) -> None:
    t0 = clock.now
    for _ in range(11):  # online for ten minutes
        await client.instruments.report_status(instrument, status="online")
        clock.advance(60)
    clock.advance(-60)
    history = await client.instruments.device_status(
        instrument, start_time=at(t0 + 120), end_time=at(t0 + 300)
    )
    assert spans(history) == [("online", at(t0 + 120), at(t0 + 300))]
    assert (history.start_time, history.end_time) == (at(t0 + 120), at(t0 + 300))
    assert history.notes == []
    # A window before any report: nothing in it, but the current status is still given.
    before = await client.instruments.device_status(
        instrument, start_time=at(t0 - 600), end_time=at(t0 - 1)
    )
    assert before.statuses == []
    assert before.current_status is not None
    assert before.current_status.value == "online"
    # Naive datetimes are UTC; strings pass through.
    naive = await client.instruments.device_status(
        instrument, start_time=at(t0 + 120).replace(tzinfo=None), end_time=stamp(t0 + 300)
    )
    assert spans(naive) == spans(history)


async def test_a_window_in_the_future(
    client: AsyncLabric, instrument: str, clock: FakeClock
) -> None:
    await client.instruments.report_status(instrument, status="online")
    clock.advance(30)
    now = clock.now
    capped = await client.instruments.device_status(instrument, end_time=at(now + 3600))
    assert capped.end_time == at(now)
    assert capped.start_time == at(now - 7 * DAY)
    assert len(capped.statuses) == 1
    assert len(capped.notes) == 1
    assert "capped at now" in capped.notes[0]
    future = await client.instruments.device_status(
        instrument, start_time=at(now + 60), end_time=at(now + 3600)
    )
    assert future.start_time == future.end_time == at(now)
    assert future.statuses == []
    assert len(future.notes) == 2
    assert "moved to now" in future.notes[1]
    assert future.current_status is not None  # the present is still reported
    only_start = await client.instruments.device_status(instrument, start_time=at(now + 60))
    assert only_start.start_time == only_start.end_time == at(now)
    assert len(only_start.notes) == 1


async def test_bad_windows_and_reports_are_refused(
    client: AsyncLabric, instrument: str, clock: FakeClock, wire: Wire
) -> None:
    with pytest.raises(UnprocessableEntityError) as err:
        await client.instruments.device_status(
            instrument, start_time=at(clock.now - 10), end_time=at(clock.now - 20)
        )
    assert err.value.detail[0]["loc"] == ["query", "start_time"]
    path = f"/v1/instruments/{instrument}/device-status"
    bad_time = await wire.call("GET", path, params={"end_time": "yesterday"})
    assert bad_time.status == 422
    assert bad_time.detail[0]["loc"] == ["query", "end_time"]
    bad = await wire.call(
        "POST", path, json={"status": "sleeping", "is_watching": "yes", "app_version": 2}
    )
    assert bad.status == 422
    assert sorted(p["loc"][-1] for p in bad.detail) == ["app_version", "is_watching", "status"]
    assert (await wire.call("POST", path, json={})).status == 422


async def test_a_clock_set_back_does_not_reorder_periods(
    client: AsyncLabric, instrument: str, clock: FakeClock
) -> None:
    t0 = clock.now
    await client.instruments.report_status(instrument, status="online")
    clock.advance(-30)
    report = await client.instruments.report_status(instrument, status="error")
    assert report.period == DeviceStatus(
        status=DeviceStatusType.ERROR, first_seen=at(t0), last_seen=at(t0)
    )
    clock.advance(30)
    history = await client.instruments.device_status(instrument)
    assert spans(history) == [("online", at(t0), at(t0)), ("error", at(t0), at(t0))]


async def test_the_wire_shape_is_the_hosted_one(wire: Wire, instrument: str) -> None:
    path = f"/v1/instruments/{instrument}/device-status"
    await wire.ok("POST", path, json={"status": "online", "app_version": "1.0"})
    body = await wire.ok("GET", path)
    assert set(body) == {
        "instrument",
        "start_time",
        "end_time",
        "current_status",
        "statuses",
        "notes",
    }
    assert set(body["instrument"]) == {"id", "name"}
    assert set(body["current_status"]) == {"value", "since"}
    assert set(body["statuses"][0]) == {
        "status",
        "first_seen",
        "last_seen",
        "app_version",
        "is_watching",
    }
