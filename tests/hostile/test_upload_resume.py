"""A resumed multipart upload trusts nothing the server says it holds until it read it again.

The first run stores every part and dies at confirm; the file is then rewritten with its old
size and mtime; the server's ``upload-status`` truthfully lists the old parts. The rerun must
read each of them again, see they differ, and confirm a fresh upload of the new bytes, never the
stored mix.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from labric import RetryPolicy, TransferConfig
from labric._transfer.checksum import crc32c, crc32c_combine, crc32c_from_b64, crc32c_to_b64
from labric.errors import BadRequestError

from ._server import HostileServer

KiB = 1024
PART = 256 * KiB
SIZE = 3 * PART + 5


class _MultipartServer:
    """Honest multipart routes, except that the first confirm fails (the client 'crashes')."""

    def __init__(self, hostile: HostileServer) -> None:
        self.hostile = hostile
        self.parts: dict[str, dict[int, bytes]] = {}
        self.confirmed: dict[str, bytes] = {}
        self.refuse_confirm = True
        #: ``upload-status`` answers this part size instead of the real one.
        self.status_part_size: object = PART

    def plan(self, file_id: str) -> list[dict[str, Any]]:
        return [
            {
                "number": n,
                "offset": off,
                "size": min(PART, SIZE - off),
                "url": self.hostile.url(f"/part/{file_id}/{n}"),
                "headers": {},
            }
            for n, off in enumerate(range(0, SIZE, PART), start=1)
        ]

    def install(self) -> _MultipartServer:
        hostile = self.hostile

        @hostile.route("POST", "/api/v1/files/upload-url")
        async def upload_url(request: web.Request) -> web.StreamResponse:
            file_id = f"f-{len(self.parts) + 1}"
            self.parts[file_id] = {}
            return web.json_response(
                {
                    "file_id": file_id,
                    "upload_url": hostile.url(f"/put/{file_id}"),
                    "expires_at": "2026-01-01T00:15:00Z",
                    "part_size": PART,
                    "parts": self.plan(file_id),
                }
            )

        @hostile.route("PUT", "/part/{file_id}/{number}")
        async def put_part(request: web.Request) -> web.StreamResponse:
            data = await request.read()
            self.parts[request.match_info["file_id"]][int(request.match_info["number"])] = data
            return web.json_response({})

        @hostile.route("GET", "/api/v1/files/{file_id}/upload-status")
        async def status(request: web.Request) -> web.StreamResponse:
            file_id = request.match_info["file_id"]
            held = self.parts[file_id]
            return web.json_response(
                {
                    "file_id": file_id,
                    "status": "pending",
                    "part_size": self.status_part_size,
                    "parts": [
                        {"number": n, "size": len(d), "crc32c": crc32c_to_b64(crc32c(d))}
                        for n, d in sorted(held.items())
                    ],
                    "missing_parts": [p for p in self.plan(file_id) if p["number"] not in held],
                }
            )

        @hostile.route("POST", "/api/v1/files/{file_id}/confirm-upload")
        async def confirm(request: web.Request) -> web.StreamResponse:
            file_id = request.match_info["file_id"]
            if self.refuse_confirm:
                return web.json_response({"detail": "not now"}, status=400)
            held = self.parts[file_id]
            listed = {p["number"]: p["crc32c"] for p in (await request.json())["parts"]}
            whole = 0
            for n, data in sorted(held.items()):
                if crc32c_to_b64(crc32c(data)) != listed[n]:
                    return web.json_response({"detail": f"part {n} differs"}, status=400)
                whole = crc32c_combine(whole, crc32c_from_b64(listed[n]), len(data))
            assembled = b"".join(d for _, d in sorted(held.items()))
            self.confirmed[file_id] = assembled
            return web.json_response(
                {
                    "file_id": file_id,
                    "file_name": "run.raw",
                    "size_bytes": len(assembled),
                    "crc32c_hash": crc32c_to_b64(whole),
                }
            )

        return self


async def test_parts_stored_before_a_same_mtime_rewrite_are_never_confirmed(
    hostile: HostileServer, tmp_path: Path
) -> None:
    server = _MultipartServer(hostile).install()
    source = tmp_path / "run.raw"
    source.write_bytes(os.urandom(SIZE))
    transfer = TransferConfig(multipart_threshold=2 * PART, state_dir=str(tmp_path / "state"))
    retry = RetryPolicy(max_retries=0)
    async with hostile.client(transfer=transfer, retry=retry) as client:
        try:
            await client.files.upload(source, job_execution_id="ex-1")
        except BadRequestError:
            pass
        else:
            raise AssertionError("the first confirm was refused")
    assert len(server.parts["f-1"]) == 4  # every part stored, none confirmed

    before = source.stat()
    new = bytearray(source.read_bytes())
    new[PART : PART + 10] = os.urandom(10)  # part 2 only
    source.write_bytes(bytes(new))
    os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))
    server.refuse_confirm = False
    hostile.requests.clear()

    async with hostile.client(transfer=transfer, retry=retry) as client:
        uploaded = await client.files.upload(source, job_execution_id="ex-1")

    assert uploaded.crc32c_hash == crc32c_to_b64(crc32c(bytes(new)))
    assert server.confirmed == {uploaded.file_id: bytes(new)}
    assert uploaded.file_id == "f-2"  # a fresh upload, not the stored mix of f-1
    assert hostile.seen("POST", "/api/v1/files/f-1/confirm-upload") == []


async def test_an_absurd_stored_plan_starts_a_fresh_upload_without_building_it(
    hostile: HostileServer, tmp_path: Path
) -> None:
    server = _MultipartServer(hostile).install()
    source = tmp_path / "run.raw"
    source.write_bytes(os.urandom(SIZE))
    transfer = TransferConfig(multipart_threshold=2 * PART, state_dir=str(tmp_path / "state"))
    retry = RetryPolicy(max_retries=0)
    async with hostile.client(transfer=transfer, retry=retry) as client:
        with pytest.raises(BadRequestError):
            await client.files.upload(source, job_execution_id="ex-1")
    # One-byte parts: a plan of SIZE ranges, over the 10,000-part limit.
    server.status_part_size = 1
    server.refuse_confirm = False
    async with hostile.client(transfer=transfer, retry=retry) as client:
        uploaded = await client.files.upload(source, job_execution_id="ex-1")
    assert uploaded.file_id == "f-2"
    assert server.confirmed == {"f-2": source.read_bytes()}
