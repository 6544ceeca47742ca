"""The fault injector wired into the server: resets never leave partial objects behind."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from labric.server import FaultConfig, LocalServer

from ._support import Wire, crc_b64

BODY = bytes(range(256)) * 1024  # 256 KiB
CONNECTION_ERRORS = (
    aiohttp.ClientPayloadError,
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientOSError,
)


async def test_reset_mid_put_stores_nothing(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    async with LocalServer(tmp_path / "d") as srv:
        wire = Wire(session, srv)
        ticket = await wire.ticket(instrument_id=srv.create_instrument("i"))
        srv.faults.update(FaultConfig(reset=1.0, seed=4))
        with pytest.raises(CONNECTION_ERRORS):
            await wire.put(ticket["upload_url"], data=BODY, headers=ticket["headers"])
        srv.faults.update(FaultConfig())
        assert srv.faults.counters["resets"] >= 1  # aiohttp retries an idempotent PUT once
        # Nothing was stored: the create-only URL still works, with the whole body.
        put = await wire.put(ticket["upload_url"], data=BODY, headers=ticket["headers"])
        assert put.status == 200
        assert put.json()["crc32c"] == crc_b64(BODY)
        root = srv.data_dir.root
    assert list((root / "tmp").iterdir()) == []


async def test_reset_mid_part_keeps_the_earlier_copy(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    async with LocalServer(tmp_path / "d", part_size=len(BODY) // 2) as srv:
        wire = Wire(session, srv)
        ticket = await wire.ticket(instrument_id=srv.create_instrument("i"), size_bytes=len(BODY))
        first = ticket["parts"][0]
        half = BODY[: first["size"]]
        assert (await wire.put(first["url"], data=half)).status == 200
        srv.faults.update(FaultConfig(reset=1.0, seed=2))
        with pytest.raises(CONNECTION_ERRORS):
            await wire.put(first["url"], data=b"\0" * first["size"])
        srv.faults.update(FaultConfig())
        status = (await wire.get(f"/v1/files/{ticket['file_id']}/upload-status")).json()
        assert status["parts"] == [{"number": 1, "size": first["size"], "crc32c": crc_b64(half)}]


async def test_reset_mid_download(wire: Wire, server: LocalServer, instrument: str) -> None:
    uploaded = await wire.upload(BODY, instrument_id=instrument)
    url = (await wire.get(f"/v1/files/{uploaded['file_id']}/content")).json()["download_url"]
    server.faults.update(FaultConfig(reset=1.0, seed=9))
    with pytest.raises(CONNECTION_ERRORS):
        await wire.get(url)
    server.faults.update(FaultConfig())
    assert (await wire.get(url)).body == BODY


async def test_paced_downloads_and_uploads_are_intact(
    wire: Wire, server: LocalServer, instrument: str
) -> None:
    server.faults.update(FaultConfig(bandwidth=500_000_000))
    uploaded = await wire.upload(BODY, instrument_id=instrument)
    url = (await wire.get(f"/v1/files/{uploaded['file_id']}/content")).json()["download_url"]
    served = await wire.get(url, headers={"Range": "bytes=1000-"})
    assert served.status == 206
    assert served.body == BODY[1000:]
    assert server.faults.counters["bytes_paced"] >= 2 * len(BODY) - 1000


async def test_injected_errors_reach_every_route(
    wire: Wire, server: LocalServer, instrument: str
) -> None:
    uploaded = await wire.upload(b"x", instrument_id=instrument)
    url = (await wire.get(f"/v1/files/{uploaded['file_id']}/content")).json()["download_url"]
    server.faults.update(FaultConfig(error=1.0, seed=1))
    for reply in (await wire.get("/v1/files"), await wire.get(url)):
        assert reply.status in (500, 503)
        assert "injected" in reply.detail
        assert reply.headers["X-Labric-Fault"] == "error"
        assert reply.headers["X-Request-ID"]
    # The admin routes stay reachable, so the test can switch faults off again.
    assert (await wire.put("/v1/admin/faults", json={})).status == 200
    assert (await wire.get("/v1/files")).status == 200


async def test_reset_mid_multipart_post_stores_nothing(
    wire: Wire, server: LocalServer, instrument: str
) -> None:
    form = aiohttp.FormData()
    form.add_field("instrument_id", instrument)
    form.add_field("file", BODY, filename="a.bin")
    server.faults.update(FaultConfig(reset=1.0, seed=5))
    with pytest.raises(CONNECTION_ERRORS):
        await wire.post("/v1/files", data=form)
    server.faults.update(FaultConfig())
    assert (await wire.get("/v1/files")).json() == []
