"""The instruments routes and ``client.instruments``: CRUD, pairing, scopes, isolation."""

from __future__ import annotations

import pytest
from _clocked import FakeClock, Wire, at, stamp

from labric import AsyncLabric
from labric.errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    UnprocessableEntityError,
)
from labric.models import DeviceStatusType, Instrument, InstrumentPairing, PairedDevice
from labric.server import LocalServer


async def test_create_returns_the_instrument_and_a_pairing_code(
    client: AsyncLabric, clock: FakeClock
) -> None:
    made = await client.instruments.create(
        name="  Plate reader 2 ", description="Bench 4", metadata={"serial": "PR-0042"}
    )
    assert isinstance(made, InstrumentPairing)
    assert made.instrument.name == "Plate reader 2"
    assert made.instrument.description == "Bench 4"
    assert made.instrument.metadata == {"serial": "PR-0042"}
    assert made.instrument.created_at == at(clock.now)
    assert made.instrument.status is None  # the device never reported
    assert made.instrument.paired_at is None
    assert made.expires_at == at(clock.now + 3600)
    # Three groups of four from an alphabet without look-alike letters.
    groups = made.pairing_code.split("-")
    assert [len(g) for g in groups] == [4, 4, 4]
    assert not set("".join(groups)) & set("ILOU")
    assert made.pairing_code not in repr(made)
    assert await client.instruments.get(made.instrument.id) == made.instrument


async def test_list_is_newest_first_and_paginated(client: AsyncLabric, clock: FakeClock) -> None:
    ids = []
    for n in range(5):
        ids.append((await client.instruments.create(name=f"i{n}")).instrument.id)
        clock.advance(1)
    first = await client.instruments.list(page_size=2)
    assert [i.id for i in first] == ids[::-1][:2]
    assert first.has_next
    assert [i.id async for i in client.instruments.list()] == ids[::-1]
    assert [i.id async for i in client.instruments.list(limit=3)] == ids[::-1][:3]
    assert [i.id async for i in client.instruments.list(page_size=4)] == ids[::-1]


async def test_list_rejects_a_bad_cursor_and_limit(wire: Wire) -> None:
    assert (await wire.call("GET", "/v1/instruments?cursor=nonsense")).status == 400
    bad = await wire.call("GET", "/v1/instruments?limit=0")
    assert bad.status == 422
    assert bad.detail[0]["loc"] == ["query", "limit"]


async def test_update_changes_only_the_fields_given(client: AsyncLabric, clock: FakeClock) -> None:
    made = await client.instruments.create(name="Reader", description="old", metadata={"a": 1})
    clock.advance(5)
    renamed = await client.instruments.update(made.instrument.id, name="Reader 2")
    assert (renamed.name, renamed.description, renamed.metadata) == ("Reader 2", "old", {"a": 1})
    assert renamed.updated_at == at(clock.now)
    cleared = await client.instruments.update(made.instrument.id, description="", metadata={})
    assert (cleared.name, cleared.description, cleared.metadata) == ("Reader 2", None, {})
    same = await client.instruments.update(made.instrument.id)
    assert same == cleared
    with pytest.raises(UnprocessableEntityError) as err:
        await client.instruments.update(made.instrument.id, name=" ")
    assert err.value.detail[0]["loc"] == ["body", "name"]


async def test_bad_input_is_refused_with_every_problem(wire: Wire) -> None:
    reply = await wire.call(
        "POST", "/v1/instruments", json={"description": 5, "metadata": [1], "name": None}
    )
    assert reply.status == 422
    assert sorted(p["loc"][-1] for p in reply.detail) == ["description", "metadata", "name"]
    huge = await wire.call(
        "POST", "/v1/instruments", json={"name": "x", "metadata": {"blob": "x" * 70_000}}
    )
    assert huge.status == 422
    assert "at most 65536 bytes" in huge.detail[0]["msg"]


async def test_unknown_ids_answer_404(client: AsyncLabric) -> None:
    with pytest.raises(NotFoundError, match="Instrument nope not found"):
        await client.instruments.get("nope")
    with pytest.raises(NotFoundError):
        await client.instruments.update("nope", name="x")
    with pytest.raises(NotFoundError):
        await client.instruments.delete("nope")
    with pytest.raises(NotFoundError):
        await client.instruments.device_status("nope")
    with pytest.raises(NotFoundError):
        await client.instruments.report_status("nope", status="online")
    with pytest.raises(NotFoundError):
        await client.instruments.pairing_code("nope")


async def test_pairing_end_to_end(
    server: LocalServer, client: AsyncLabric, clock: FakeClock
) -> None:
    made = await client.instruments.create(name="Reader")
    instrument_id = made.instrument.id
    clock.advance(10)
    # Codes are read back by people: case and separators do not matter.
    device = await client.instruments.pair(made.pairing_code.lower().replace("-", " "))
    assert isinstance(device, PairedDevice)
    assert device.instrument.id == instrument_id
    assert device.instrument.paired_at == at(clock.now)
    assert device.organization_id == server.default_org_id
    assert device.scopes == ["read", "write"]
    assert device.api_key not in repr(device)
    with pytest.raises(BadRequestError, match="already been used"):
        await client.instruments.pair(made.pairing_code)

    async with AsyncLabric(device.api_key, base_url=server.base_url, max_retries=0) as as_device:
        report = await as_device.instruments.report_status(
            instrument_id, status="online", app_version="2.1.0", is_watching=True
        )
        assert report.current_status is not None
        assert report.current_status.value == DeviceStatusType.ONLINE
        assert report.heartbeat_interval_seconds == 60
        assert report.offline_after_seconds == 180
        # No instrument_id given: the device's key attaches the upload to its instrument.
        uploaded = await as_device.files.upload(b"A1,0.42\n", name="plates/p1.csv")
        listed = [f.file_id async for f in as_device.files.list(instrument_id=instrument_id)]
        assert listed == [uploaded.file_id]
        info = await client.files.get(uploaded.file_id)
        assert info.source_instrument_id == instrument_id
        assert info.source_type == "instrument"
        # A device speaks for its own instrument only; it may still read.
        other = await client.instruments.create(name="Other")
        with pytest.raises(PermissionDeniedError, match="reports for instrument"):
            await as_device.instruments.report_status(other.instrument.id, status="online")
        assert (await as_device.instruments.get(instrument_id)).status == "online"
        # Nor may it manage instruments (a new code would let it replace another device).
        refused = (
            lambda: as_device.instruments.create(name="Mine"),
            lambda: as_device.instruments.update(instrument_id, name="Renamed"),
            lambda: as_device.instruments.pairing_code(other.instrument.id),
            lambda: as_device.instruments.delete(other.instrument.id),
        )
        for call in refused:
            with pytest.raises(PermissionDeniedError, match="cannot manage instruments"):
                await call()

    seen = await client.instruments.get(instrument_id)
    assert (seen.status, seen.app_version, seen.last_seen_at) == ("online", "2.1.0", at(clock.now))


async def test_a_code_expires_and_a_new_one_replaces_the_device(
    server: LocalServer, client: AsyncLabric, clock: FakeClock
) -> None:
    made = await client.instruments.create(name="Reader")
    clock.advance(3601)
    with pytest.raises(BadRequestError, match="expired"):
        await client.instruments.pair(made.pairing_code)
    fresh = await client.instruments.pairing_code(made.instrument.id)
    assert fresh.pairing_code != made.pairing_code
    first = await client.instruments.pair(fresh.pairing_code)
    again = await client.instruments.pairing_code(made.instrument.id)
    unused = await client.instruments.pairing_code(made.instrument.id)
    with pytest.raises(BadRequestError, match="Unknown pairing code"):
        await client.instruments.pair(again.pairing_code)  # replaced by the next code
    second = await client.instruments.pair(unused.pairing_code)
    async with AsyncLabric(first.api_key, base_url=server.base_url, max_retries=0) as old:
        with pytest.raises(AuthenticationError, match="revoked"):
            await old.instruments.get(made.instrument.id)
    async with AsyncLabric(second.api_key, base_url=server.base_url, max_retries=0) as new:
        assert (await new.instruments.get(made.instrument.id)).id == made.instrument.id
    with pytest.raises(BadRequestError, match="Unknown pairing code"):
        await client.instruments.pair("0000-0000-0000")


async def test_a_retried_exchange_answers_again_but_a_second_party_cannot(
    wire: Wire, client: AsyncLabric
) -> None:
    made = await client.instruments.create(name="Reader")
    body = {"pairing_code": made.pairing_code}
    retry = {"Idempotency-Key": "exchange-1"}
    first = await wire.call("POST", "/v1/instruments/pair", key=None, json=body, headers=retry)
    assert first.status == 200
    # The answer was lost; the device repeats the same request: a fresh key, the first revoked.
    again = await wire.call("POST", "/v1/instruments/pair", key=None, json=body, headers=retry)
    assert again.status == 200
    assert again.json()["api_key"] != first.json()["api_key"]
    old = await wire.call("GET", "/v1/instruments", key=first.json()["api_key"])
    assert old.status == 401
    assert (await wire.call("GET", "/v1/instruments", key=again.json()["api_key"])).status == 200
    other = {"Idempotency-Key": "someone-else"}
    stolen = await wire.call("POST", "/v1/instruments/pair", key=None, json=body, headers=other)
    assert stolen.status == 400
    assert "already been used" in stolen.detail
    # Once another device has paired, the old exchange cannot be repeated to take over again.
    code = await wire.ok("POST", f"/v1/instruments/{made.instrument.id}/pairing-code")
    newer = await wire.ok("POST", "/v1/instruments/pair", key=None, json=code)
    late = await wire.call("POST", "/v1/instruments/pair", key=None, json=body, headers=retry)
    assert late.status == 400
    assert (await wire.call("GET", "/v1/instruments", key=newer["api_key"])).status == 200
    missing = await wire.call("POST", "/v1/instruments/pair", key=None, json={})
    assert missing.status == 422
    assert missing.detail[0]["loc"] == ["body", "pairing_code"]


async def test_delete_is_refused_while_files_are_attached_unless_forced(
    server: LocalServer, client: AsyncLabric
) -> None:
    made = await client.instruments.create(name="Reader")
    instrument_id = made.instrument.id
    device = await client.instruments.pair(made.pairing_code)
    uploaded = await client.files.upload(b"data", name="run/a.txt", instrument_id=instrument_id)
    with pytest.raises(ConflictError, match="1 file") as err:
        await client.instruments.delete(instrument_id)
    assert "force=true" in str(err.value.detail)
    assert (await client.instruments.get(instrument_id)).id == instrument_id
    rows = [r async for r in client.datasets.rows("instrument")]
    assert [r["id"] for r in rows] == [instrument_id]

    await client.instruments.delete(instrument_id, force=True)
    with pytest.raises(NotFoundError):
        await client.instruments.get(instrument_id)
    # The file stays, attached to no instrument; the device's key went with the instrument.
    kept = await client.files.get(uploaded.file_id)
    assert kept.source_instrument_id is None
    assert [r async for r in client.datasets.rows("instrument")] == []
    async with AsyncLabric(device.api_key, base_url=server.base_url, max_retries=0) as gone:
        with pytest.raises(AuthenticationError):
            await gone.files.get(uploaded.file_id)


async def test_an_instrument_without_files_is_deleted_with_its_history(
    client: AsyncLabric, wire: Wire
) -> None:
    made = await client.instruments.create(name="Reader")
    await client.instruments.report_status(made.instrument.id, status="online")
    await client.instruments.delete(made.instrument.id)
    assert (
        await wire.call("GET", f"/v1/instruments/{made.instrument.id}/device-status")
    ).status == 404
    assert [i async for i in client.instruments.list()] == []


async def test_dataset_rows_that_require_an_instrument_block_its_delete(
    client: AsyncLabric,
) -> None:
    made = await client.instruments.create(name="Reader")
    await client.datasets.create(
        "runs", columns=[{"name": "instrument", "foreign_key": "instrument", "nullable": False}]
    )
    await client.datasets.write("runs", [{"instrument": made.instrument.id}])
    with pytest.raises(ConflictError, match=r"runs\.instrument"):
        await client.instruments.delete(made.instrument.id, force=True)
    assert (await client.instruments.get(made.instrument.id)).name == "Reader"


async def test_the_instrument_platform_table_follows_the_records(
    client: AsyncLabric, clock: FakeClock
) -> None:
    made = await client.instruments.create(name="Reader", metadata={"room": "B2"})
    clock.advance(30)
    await client.instruments.update(made.instrument.id, name="Reader B2", description="north")
    rows = [r async for r in client.datasets.rows("instrument")]
    assert len(rows) == 1
    row = rows[0]
    assert (row["id"], row["name"], row["description"]) == (
        made.instrument.id,
        "Reader B2",
        "north",
    )
    assert row["metadata"] == {"room": "B2"}
    result = await client.datasets.query(
        "SELECT name, created_at, updated_at FROM core_instrument WHERE id = %s",
        [made.instrument.id],
    )
    assert result.data == [["Reader B2", stamp(clock.now - 30), stamp(clock.now)]]


async def test_scopes(server: LocalServer, wire: Wire) -> None:
    read_key = server.create_key("read")
    made = await wire.ok("POST", "/v1/instruments", json={"name": "Reader"})
    instrument_id = made["instrument"]["id"]
    path = f"/v1/instruments/{instrument_id}"
    assert (await wire.call("GET", "/v1/instruments", key=read_key)).status == 200
    assert (await wire.call("GET", path, key=read_key)).status == 200
    assert (await wire.call("GET", f"{path}/device-status", key=read_key)).status == 200
    refused = [
        await wire.call("POST", "/v1/instruments", key=read_key, json={"name": "x"}),
        await wire.call("PATCH", path, key=read_key, json={"name": "x"}),
        await wire.call("DELETE", path, key=read_key),
        await wire.call("POST", f"{path}/pairing-code", key=read_key),
        await wire.call("POST", f"{path}/device-status", key=read_key, json={"status": "online"}),
    ]
    assert [r.status for r in refused] == [403] * 5
    assert "lacks the 'write' scope" in refused[0].detail
    assert (await wire.call("GET", "/v1/instruments", key=None)).status == 401
    # Pairing takes no key at all.
    paired = await wire.call(
        "POST", "/v1/instruments/pair", key=None, json={"pairing_code": made["pairing_code"]}
    )
    assert paired.status == 200


async def test_another_organisation_sees_nothing(server: LocalServer, wire: Wire) -> None:
    other = server.create_key("read,write", org="elsewhere")
    made = await wire.ok("POST", "/v1/instruments", json={"name": "Ours"})
    path = f"/v1/instruments/{made['instrument']['id']}"
    answers = [
        await wire.call("GET", path, key=other),
        await wire.call("PATCH", path, key=other, json={"name": "theirs"}),
        await wire.call("DELETE", path, key=other, params={"force": "true"}),
        await wire.call("POST", f"{path}/pairing-code", key=other),
        await wire.call("GET", f"{path}/device-status", key=other),
        await wire.call("POST", f"{path}/device-status", key=other, json={"status": "online"}),
    ]
    assert [a.status for a in answers] == [404] * 6
    assert await wire.ok("GET", "/v1/instruments", key=other) == []
    theirs = await wire.ok("POST", "/v1/instruments", key=other, json={"name": "Theirs"})
    listed = await wire.ok("GET", "/v1/instruments")
    assert [i["id"] for i in listed] == [made["instrument"]["id"]]
    # Their device's key belongs to their organisation.
    device = await wire.ok(
        "POST", "/v1/instruments/pair", key=None, json={"pairing_code": theirs["pairing_code"]}
    )
    assert device["organization_id"] != server.default_org_id
    assert (await wire.call("GET", path, key=device["api_key"])).status == 404
    uploaded = await wire.call(
        "POST", "/v1/files/upload-url", key=device["api_key"], json={"file_name": "x.csv"}
    )
    assert uploaded.status == 200  # attached to their own instrument by default
    foreign = await wire.call(
        "POST",
        "/v1/files/upload-url",
        key=device["api_key"],
        json={"file_name": "y.csv", "instrument_id": made["instrument"]["id"]},
    )
    assert foreign.status == 404


async def test_models_fit_the_answers_strictly(client: AsyncLabric) -> None:
    # The suite's converter rejects unknown fields, so these calls prove the models are complete.
    made = await client.instruments.create(name="Reader")
    assert isinstance((await client.instruments.list())[0], Instrument)
    assert isinstance(await client.instruments.update(made.instrument.id, name="R"), Instrument)
