"""Defects schemathesis found, each pinned by the request that showed it."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from labric.server import LocalServer
from labric.server.routes.files import MAX_FILE_SIZE, MAX_PARTS


async def _upload_url(server: LocalServer, **body: object) -> tuple[int, dict[str, object]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{server.base_url}/v1/files/upload-url",
            json=body,
            headers={"Authorization": f"Bearer {server.admin_key}"},
        ) as resp,
    ):
        return resp.status, await resp.json()


async def test_a_size_beyond_any_file_is_refused_not_a_server_error(server: LocalServer) -> None:
    # Was a 500: the integer overflowed SQLite's 64 bits when the record was written.
    instrument = server.create_instrument("Plate reader")
    for size in (590481074600451139392503808, 2**63, MAX_FILE_SIZE + 1):
        status, body = await _upload_url(
            server, file_name="x.bin", instrument_id=instrument, size_bytes=size
        )
        assert status == 422, body
        assert body["detail"][0]["loc"] == ["body", "size_bytes"]


async def test_an_upload_is_planned_in_at_most_max_parts(tmp_path: Path) -> None:
    # Without a limit, a large size_bytes made the server sign (and send) a URL per part:
    # millions of them for a file a little over a terabyte at the default part size.
    async with LocalServer(tmp_path / "small-parts", part_size=1024) as server:
        instrument = server.create_instrument("Plate reader")
        status, body = await _upload_url(
            server, file_name="x.bin", instrument_id=instrument, size_bytes=MAX_PARTS * 1024 + 1
        )
        assert status == 422, body
        assert body["detail"][0]["loc"] == ["body", "size_bytes"]
        assert str(MAX_PARTS) in body["detail"][0]["msg"]
        status, body = await _upload_url(
            server, file_name="x.bin", instrument_id=instrument, size_bytes=MAX_PARTS * 1024
        )
        assert status == 200, body
        assert isinstance(body["parts"], list)
        assert len(body["parts"]) == MAX_PARTS
