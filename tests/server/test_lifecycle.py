"""Starting, stopping and restarting servers; the threaded server; the SDK against the server."""

from __future__ import annotations

import json
import stat
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from labric import AsyncLabric, TransferConfig
from labric.server import LocalServer, ThreadedServer

from ._support import KiB, Wire, crc_b64

DATA = bytes(range(251)) * 40  # 10,040 bytes: 10 parts of 1 KiB on a 1 KiB-part server


async def test_restart_keeps_everything(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    data_dir = tmp_path / "data"
    async with LocalServer(data_dir, part_size=KiB) as first:
        wire = Wire(session, first)
        admin = first.admin_key
        lab_key = first.create_key("read,write", org="lab")
        instrument = first.create_instrument("reader", org="lab")
        lab = Wire(session, first)
        lab.key = lab_key
        single = await lab.upload(b"single", "one.csv", instrument_id=instrument)
        ticket = await lab.ticket("many.bin", instrument_id=instrument, size_bytes=len(DATA))
        await lab.put_parts({**ticket, "parts": ticket["parts"][:4]}, DATA)
        execution = (await wire.post("/v1/job-executions")).json()["job_execution_id"]

    async with LocalServer(data_dir, part_size=KiB) as second:
        assert second.admin_key == admin
        wire = Wire(session, second)
        lab = Wire(session, second)
        lab.key = lab_key
        assert (await wire.get("/v1/files")).json() == []  # the default org has no files
        listed = (await lab.get("/v1/files")).json()
        assert [f["file_id"] for f in listed] == [single["file_id"]]
        content = (await lab.get(f"/v1/files/{single['file_id']}/content")).json()
        assert (await lab.get(content["download_url"])).body == b"single"
        # The interrupted multipart upload resumes where it stopped.
        status = (await lab.get(f"/v1/files/{ticket['file_id']}/upload-status")).json()
        assert [p["number"] for p in status["parts"]] == [1, 2, 3, 4]
        manifest = await lab.put_parts({"parts": status["missing_parts"]}, DATA)
        manifest += [{"number": p["number"], "crc32c": p["crc32c"]} for p in status["parts"]]
        done = await lab.post(
            f"/v1/files/{ticket['file_id']}/confirm-upload", json={"parts": manifest}
        )
        assert done.status == 200
        assert done.json()["crc32c_hash"] == crc_b64(DATA)
        closed = await wire.patch(f"/v1/job-executions/{execution}", json={"status": "failed"})
        assert closed.json()["status"] == "failed"


async def test_data_dir_secrets_are_private(server: LocalServer) -> None:
    root = server.data_dir.root
    for name in ("signing.key", "admin.key"):
        mode = stat.S_IMODE((root / name).stat().st_mode)
        assert mode == 0o600, name
    assert (root / "admin.key").read_text() == server.admin_key
    assert stat.S_IMODE(root.stat().st_mode) == 0o700


async def test_a_lost_admin_key_file_is_replaced(tmp_path: Path) -> None:
    async with LocalServer(tmp_path / "d") as first:
        old = first.admin_key
    (tmp_path / "d" / "admin.key").unlink()
    async with LocalServer(tmp_path / "d") as second:
        assert second.admin_key != old
        assert second.default_org_id == first.default_org_id


async def test_leftovers_are_swept_on_start(tmp_path: Path) -> None:
    async with LocalServer(tmp_path / "d") as srv:
        root = srv.data_dir.root
    (root / "tmp" / "half-written.tmp").write_bytes(b"x" * 100)
    orphan = root / "objects" / "ab" / "abandoned.123"
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"x")
    async with LocalServer(tmp_path / "d"):
        assert list((root / "tmp").iterdir()) == []
        assert not orphan.exists()


async def test_a_busy_port_fails_cleanly(server: LocalServer, tmp_path: Path) -> None:
    with pytest.raises(OSError):
        async with LocalServer(tmp_path / "other", port=server.port):
            pass
    # The failed start released its data directory: it starts fine elsewhere.
    async with LocalServer(tmp_path / "other") as ok:
        assert ok.port != server.port
    with pytest.raises(RuntimeError, match="not been started"):
        _ = LocalServer(tmp_path / "x").base_url


async def test_start_twice_and_stop_twice(tmp_path: Path) -> None:
    srv = LocalServer(tmp_path / "d")
    await srv.start()
    try:
        with pytest.raises(RuntimeError, match="already running"):
            await srv.start()
        assert repr(srv).startswith("<LocalServer ")
    finally:
        await srv.stop()
    await srv.stop()


def _get_json(url: str, key: str) -> object:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_threaded_server(tmp_path: Path) -> None:
    with LocalServer.run_in_thread(tmp_path / "d", part_size=2 * KiB) as srv:
        assert isinstance(srv, ThreadedServer)
        assert srv.base_url == f"http://127.0.0.1:{srv.port}/api"
        assert srv.origin == f"http://127.0.0.1:{srv.port}"
        key = srv.create_key("read", org="elsewhere")
        assert _get_json(f"{srv.base_url}/v1/files", key) == []
        srv.create_instrument("x")
        stats = srv.stats
        assert stats["requests"]["by_route"] == {"GET /api/v1/files": 1}
        srv.reset_stats()
        assert srv.stats["requests"]["total"] == 0
        admin = srv.admin_key
    with ThreadedServer(tmp_path / "d") as again:
        assert again.admin_key == admin
        assert _get_json(f"{again.base_url}/v1/files", key) == []


def test_threaded_server_start_failure(tmp_path: Path) -> None:
    with ThreadedServer(tmp_path / "a") as first:
        busy = ThreadedServer(tmp_path / "b", port=first.port)
        with pytest.raises(OSError):
            busy.start()
        busy.stop()


# -- the SDK against the server -------------------------------------------------------------


async def test_sdk_round_trip(client: AsyncLabric, server: LocalServer, tmp_path: Path) -> None:
    instrument = server.create_instrument("reader")
    uploaded = await client.files.upload(
        b"a,b\n1,2\n", name="runs/plate.csv", instrument_id=instrument
    )
    assert uploaded.size_bytes == 8
    assert uploaded.crc32c_hash == crc_b64(b"a,b\n1,2\n")
    info = await client.files.get(uploaded.file_id)
    assert info.file_name == "plate.csv"
    listed = [f.file_id async for f in client.files.list(extensions=["csv"])]
    assert listed == [uploaded.file_id]
    content = await client.files.content(uploaded.file_id)
    assert content.text_preview == "a,b\n1,2\n"
    assert await client.files.read_bytes(uploaded.file_id) == b"a,b\n1,2\n"
    path = await client.files.download(uploaded.file_id, tmp_path)
    assert path.read_bytes() == b"a,b\n1,2\n"
    await client.files.delete(uploaded.file_id)
    assert [f async for f in client.files.list()] == []


async def test_sdk_multipart_upload(tmp_path: Path) -> None:
    async with (
        LocalServer(tmp_path / "d", part_size=KiB) as srv,
        AsyncLabric(
            srv.admin_key,
            base_url=srv.base_url,
            transfer=TransferConfig(multipart_threshold=KiB, state_dir=str(tmp_path / "s")),
        ) as sdk,
    ):
        uploaded = await sdk.files.upload(
            DATA, name="big.bin", instrument_id=srv.create_instrument("r")
        )
        assert uploaded.crc32c_hash == crc_b64(DATA)
        assert srv.stats["storage"]["part_puts"] == 10
        assert await sdk.files.read_bytes(uploaded.file_id) == DATA
