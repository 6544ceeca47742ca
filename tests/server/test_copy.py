"""Copying files: ``POST /v1/files/{id}/copy`` on the wire, its shared bytes across deletes and
restarts, and ``client.files.copy`` against servers with and without the route."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from labric import AsyncLabric, TransferConfig
from labric.errors import NotFoundError
from labric.server import LocalServer

from ._support import Wire, crc_b64

DATA = b"well,od600\nA1,0.125\nA2,0.250\n"


def object_of(server: LocalServer, file_id: str) -> Path:
    """The one stored object of a file (its name carries the generation)."""
    (found,) = (server.data_dir.root / "objects" / file_id[:2]).glob(f"{file_id}.*")
    return found


async def download(wire: Wire, file_id: str) -> bytes:
    content = await wire.get(f"/v1/files/{file_id}/content")
    assert content.status == 200, content.body
    return (await wire.get(content.json()["download_url"])).body


async def execution(wire: Wire) -> str:
    reply = await wire.post("/v1/job-executions", json={})
    assert reply.status == 200, reply.body
    execution_id: str = reply.json()["job_execution_id"]
    return execution_id


# -- the route ----------------------------------------------------------------------------------


async def test_a_copy_is_a_new_file_sharing_the_stored_object(
    wire: Wire, server: LocalServer, instrument: str
) -> None:
    source = await wire.upload(DATA, "run1/plate1.csv", instrument_id=instrument)
    run = await execution(wire)
    reply = await wire.post(
        f"/v1/files/{source['file_id']}/copy",
        json={"original_path": "archive/run1/plate1.csv", "job_execution_id": run},
    )
    assert reply.status == 200, reply.body
    copy = reply.json()
    assert copy["file_id"] != source["file_id"]
    assert copy["original_path"] == "archive/run1/plate1.csv"
    assert copy["file_name"] == "plate1.csv"
    assert copy["size_bytes"] == len(DATA)
    assert copy["crc32c_hash"] == crc_b64(DATA)
    # Its own attribution: the execution given, not the source's instrument.
    assert copy["job_execution_id"] == run
    assert copy["source_instrument_id"] is None
    assert copy["source_type"] == "job"
    assert (await wire.get(f"/v1/files/{copy['file_id']}")).json() == copy
    assert await download(wire, copy["file_id"]) == DATA
    # No bytes copied: the copy's object is another name of the source's.
    mine, theirs = object_of(server, copy["file_id"]), object_of(server, source["file_id"])
    assert mine.stat().st_ino == theirs.stat().st_ino
    assert mine.stat().st_nlink == 2


async def test_deleting_either_file_leaves_the_others_bytes_across_a_restart(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    data_dir = tmp_path / "data"
    async with LocalServer(data_dir) as first:
        wire = Wire(session, first)
        run = await execution(wire)
        source = await wire.upload(DATA, "a.csv", job_execution_id=run)
        copies = [
            (
                await wire.post(
                    f"/v1/files/{source['file_id']}/copy",
                    json={"original_path": f"b{n}.csv", "job_execution_id": run},
                )
            ).json()
            for n in range(2)
        ]
        assert (await wire.delete(f"/v1/files/{source['file_id']}")).status == 204
        assert await download(wire, copies[0]["file_id"]) == DATA
        assert (await wire.delete(f"/v1/files/{copies[0]['file_id']}")).status == 204
    # The start-up sweep removes only names no file holds.
    async with LocalServer(data_dir) as second:
        wire = Wire(session, second)
        assert await download(wire, copies[1]["file_id"]) == DATA
        assert object_of(second, copies[1]["file_id"]).stat().st_nlink == 1
        listed = (await wire.get("/v1/files")).json()
        assert [f["file_id"] for f in listed] == [copies[1]["file_id"]]


async def test_copy_errors_have_the_hosted_shapes(wire: Wire, server: LocalServer) -> None:
    run = await execution(wire)
    source = await wire.upload(DATA, "a.csv", job_execution_id=run)
    copy = f"/v1/files/{source['file_id']}/copy"
    missing = await wire.post(
        "/v1/files/nope/copy", json={"original_path": "b.csv", "job_execution_id": run}
    )
    assert (missing.status, missing.json()) == (404, {"detail": "File nope not found"})
    other_org = Wire(wire.session, server)
    other_org.key = server.create_key("read,write", org="elsewhere")
    theirs = await other_org.post(copy, json={"original_path": "b.csv"})
    assert (theirs.status, theirs.json()["detail"]) == (404, f"File {source['file_id']} not found")
    no_path = await wire.post(copy, json={"job_execution_id": run})
    assert no_path.status == 422
    assert no_path.json()["detail"][0]["loc"] == ["body", "original_path"]
    bad_path = await wire.post(copy, json={"original_path": "dir/", "job_execution_id": run})
    assert bad_path.status == 422
    unknown_run = await wire.post(copy, json={"original_path": "b.csv", "job_execution_id": "x"})
    assert (unknown_run.status, unknown_run.json()) == (
        404,
        {"detail": "Job execution x not found"},
    )
    unattributed = await wire.post(copy, json={"original_path": "b.csv"})
    assert unattributed.status == 400
    assert "job_execution_id" in unattributed.json()["detail"]
    reader = Wire(wire.session, server)
    reader.key = server.create_key("read")
    assert (await reader.post(copy, json={"original_path": "b.csv"})).status == 403
    # None of the refusals left a file or an object behind.
    assert [f["file_id"] for f in (await wire.get("/v1/files")).json()] == [source["file_id"]]
    assert len(list((server.data_dir.root / "objects").rglob("*.*"))) == 1


# -- the client ---------------------------------------------------------------------------------


@pytest.fixture
async def without_copy(
    server: LocalServer, session: aiohttp.ClientSession, request: pytest.FixtureRequest
) -> AsyncIterator[str]:
    """A base URL to ``server`` through a proxy that has no copy route, answering as a server
    without it does (404 ``Not Found``, or 405 when parametrised so); the rest is forwarded."""
    status = getattr(request, "param", 404)

    async def forward(req: web.Request) -> web.StreamResponse:
        if req.method == "POST" and req.path.endswith("/copy"):
            detail = "Not Found" if status == 404 else "Method Not Allowed"
            return web.json_response({"detail": detail}, status=status)
        headers = {
            k: v
            for k, v in req.headers.items()
            if k.lower() not in ("host", "content-length", "transfer-encoding")
        }
        async with session.request(
            req.method,
            server.origin + req.path_qs,
            headers=headers,
            data=await req.read(),
            allow_redirects=False,
        ) as resp:
            body = await resp.read()
            passed = {
                k: v
                for k, v in resp.headers.items()
                if k.lower() not in ("content-length", "transfer-encoding", "connection")
            }
            return web.Response(status=resp.status, body=body, headers=passed)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/api"
    finally:
        await runner.cleanup()


async def test_client_copy_uses_the_route(client: AsyncLabric) -> None:
    source = await client.files.upload(DATA, name="a.csv")
    copy = await client.files.copy(source.file_id, original_path="copies/a.csv")
    assert copy.original_path == "copies/a.csv"
    assert copy.crc32c_hash == source.crc32c_hash
    assert copy.job_execution_id is not None  # an execution of its own, opened for the call
    assert await client.files.read_bytes(copy.file_id) == DATA
    with pytest.raises(NotFoundError):
        await client.files.copy("nope", original_path="b.csv")


@pytest.mark.parametrize("without_copy", [404, 405], indirect=True)
async def test_client_copy_falls_back_to_download_and_upload(
    without_copy: str, server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    transfer = TransferConfig(state_dir=str(tmp_path / "transfer-state"))
    async with AsyncLabric(server.admin_key, base_url=without_copy, transfer=transfer) as client:
        source = await client.files.upload(DATA, name="a.csv", content_type="text/csv")
        copy = await client.files.copy(source.file_id, original_path="copies/a.csv")
        assert copy.file_id != source.file_id
        assert (copy.original_path, copy.content_type) == ("copies/a.csv", "text/csv")
        assert copy.crc32c_hash == source.crc32c_hash
        assert await client.files.read_bytes(copy.file_id) == DATA
        # A missing file is still NotFoundError, not a fallback that fails later.
        with pytest.raises(NotFoundError):
            await client.files.copy("nope", original_path="b.csv")
    assert not list(scratch.iterdir())  # the downloaded bytes went with the copy
