"""Multipart uploads written in place: order, concurrency, re-sends, restarts, no copy."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from labric.server import LocalServer
from labric.server.core import uploads
from labric.server.core.blobs import BlobStore, PartSuperseded, UploadSealed
from labric.server.files import storage

from ._support import KiB, Wire, crc_b64

DATA = os.urandom(8 * KiB + 300)  # nine parts of 1 KiB on the small server, the last 300 bytes


def _piece(part: dict[str, Any], data: bytes = DATA) -> bytes:
    chunk: bytes = data[part["offset"] : part["offset"] + part["size"]]
    return chunk


async def _put(wire: Wire, part: dict[str, Any], body: bytes, crc: str | None = None) -> int:
    headers = {"x-goog-hash": f"crc32c={crc or crc_b64(body)}"}
    return (await wire.put(part["url"], data=body, headers=headers)).status


def _manifest(ticket: dict[str, Any], data: bytes = DATA) -> list[dict[str, Any]]:
    return [{"number": p["number"], "crc32c": crc_b64(_piece(p, data))} for p in ticket["parts"]]


async def _status(wire: Wire, file_id: str) -> dict[str, Any]:
    status: dict[str, Any] = (await wire.get(f"/v1/files/{file_id}/upload-status")).json()
    return status


async def _confirm(wire: Wire, ticket: dict[str, Any], manifest: list[dict[str, Any]]) -> Any:
    return await wire.post(
        f"/v1/files/{ticket['file_id']}/confirm-upload", json={"parts": manifest}
    )


async def _download(wire: Wire, file_id: str) -> bytes:
    url = (await wire.get(f"/v1/files/{file_id}/content")).json()["download_url"]
    body: bytes = (await wire.get(url)).body
    return body


def _upload_files(server: LocalServer) -> list[Path]:
    return sorted((server.data_dir.root / "uploads").iterdir())


async def test_parts_out_of_order_and_concurrently(
    swire: Wire, sinstrument: str, small: LocalServer
) -> None:
    ticket = await swire.ticket(
        "big.bin", instrument_id=sinstrument, size_bytes=len(DATA), crc32c=crc_b64(DATA)
    )
    parts = list(ticket["parts"])
    assert len(parts) == 9
    random.Random(7).shuffle(parts)
    statuses = await asyncio.gather(*(_put(swire, p, _piece(p)) for p in parts))
    assert statuses == [200] * len(parts)
    # One upload file, of the planned size, holds every part at its offset.
    [upload] = _upload_files(small)
    assert upload.read_bytes() == DATA
    status = await _status(swire, ticket["file_id"])
    assert [p["number"] for p in status["parts"]] == list(range(1, 10))
    assert status["missing_parts"] == []
    reply = await _confirm(swire, ticket, _manifest(ticket))
    assert reply.status == 200, reply.body
    assert reply.json()["crc32c_hash"] == crc_b64(DATA)
    assert await _download(swire, ticket["file_id"]) == DATA


async def test_confirm_renames_the_upload_file_without_copying(
    swire: Wire, sinstrument: str, small: LocalServer
) -> None:
    ticket = await swire.ticket("big.bin", instrument_id=sinstrument, size_bytes=len(DATA))
    manifest = await swire.put_parts(ticket, DATA)
    [upload] = _upload_files(small)
    inode = upload.stat().st_ino
    reply = await _confirm(swire, ticket, manifest)
    assert reply.status == 200, reply.body
    [obj] = (small.data_dir.root / "objects" / ticket["file_id"][:2]).iterdir()
    assert obj.stat().st_ino == inode  # the very file the parts were written into
    assert _upload_files(small) == []
    assert list((small.data_dir.root / "tmp").iterdir()) == []
    assert await _download(swire, ticket["file_id"]) == DATA


async def test_whole_crc_is_joined_from_the_parts(
    swire: Wire, sinstrument: str, small: LocalServer
) -> None:
    wrong = await swire.ticket(
        "a.bin", instrument_id=sinstrument, size_bytes=len(DATA), crc32c=crc_b64(DATA[::-1])
    )
    manifest = await swire.put_parts(wrong, DATA)
    reply = await _confirm(swire, wrong, manifest)
    assert reply.status == 400
    assert f"crc32c is {crc_b64(DATA)}" in reply.detail
    # The failed confirm released the upload: parts can still be sent, and nothing moved.
    assert await _put(swire, wrong["parts"][0], _piece(wrong["parts"][0])) == 200
    assert len(_upload_files(small)) == 1
    right = await swire.ticket(
        "b.bin", instrument_id=sinstrument, size_bytes=len(DATA), crc32c=crc_b64(DATA)
    )
    reply = await _confirm(swire, right, await swire.put_parts(right, DATA))
    assert reply.status == 200, reply.body
    assert reply.json()["crc32c_hash"] == crc_b64(DATA)


async def test_resent_parts(swire: Wire, sinstrument: str, small: LocalServer) -> None:
    ticket = await swire.ticket("big.bin", instrument_id=sinstrument, size_bytes=len(DATA))
    first = ticket["parts"][0]
    other = bytes(KiB)
    assert await _put(swire, first, other) == 200
    # The same bytes again change nothing; different bytes replace the stored copy.
    assert await _put(swire, first, other) == 200
    assert (await _status(swire, ticket["file_id"]))["parts"][0]["crc32c"] == crc_b64(other)
    assert await _put(swire, first, _piece(first)) == 200
    status = await _status(swire, ticket["file_id"])
    assert status["parts"] == [{"number": 1, "size": KiB, "crc32c": crc_b64(_piece(first))}]
    for part in ticket["parts"][1:]:
        assert await _put(swire, part, _piece(part)) == 200
    assert list((small.data_dir.root / "tmp").iterdir()) == []
    assert (await _confirm(swire, ticket, _manifest(ticket))).status == 200
    assert await _download(swire, ticket["file_id"]) == DATA


async def test_a_bad_part_is_not_recorded_and_spares_the_good_copy(
    swire: Wire, sinstrument: str
) -> None:
    ticket = await swire.ticket("big.bin", instrument_id=sinstrument, size_bytes=len(DATA))
    first, second = ticket["parts"][:2]
    # Not stored yet: a bad copy is not recorded.
    bad = await swire.put(
        second["url"], data=_piece(second), headers={"x-goog-hash": f"crc32c={crc_b64(b'x')}"}
    )
    assert bad.status == 400
    assert "not stored" in bad.detail
    assert (await _status(swire, ticket["file_id"]))["parts"] == []
    # Stored: a bad re-send (corrupted on the way) leaves the recorded copy intact.
    assert await _put(swire, first, _piece(first)) == 200
    garbled = bytes(KiB)
    reply = await swire.put(
        first["url"], data=garbled, headers={"x-goog-hash": f"crc32c={crc_b64(_piece(first))}"}
    )
    assert reply.status == 400
    assert "the copy stored before is kept" in reply.detail
    status = await _status(swire, ticket["file_id"])
    assert status["parts"] == [{"number": 1, "size": KiB, "crc32c": crc_b64(_piece(first))}]
    # So is a re-send of the wrong size.
    short = await swire.put(first["url"], data=garbled[:-1])
    assert short.status == 400
    for part in ticket["parts"][1:]:
        assert await _put(swire, part, _piece(part)) == 200
    assert (await _confirm(swire, ticket, _manifest(ticket))).status == 200
    assert await _download(swire, ticket["file_id"]) == DATA


async def test_a_newer_put_of_a_part_takes_over(
    swire: Wire, sinstrument: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage, "WRITE_BATCH", 256)  # so the older PUT writes before it stalls
    ticket = await swire.ticket("big.bin", instrument_id=sinstrument, size_bytes=len(DATA))
    file_id = ticket["file_id"]
    first = ticket["parts"][0]
    release = asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        yield b"\xff" * 512
        await release.wait()
        yield b"\xff" * 512

    async def older() -> int:
        headers = {"Content-Length": str(KiB)}
        try:
            async with swire.session.put(first["url"], data=stalled(), headers=headers) as resp:
                return resp.status
        except aiohttp.ClientError:
            return 0  # the server may close the connection on us

    # The older PUT's first bytes must be in the upload file before the newer PUT starts: the
    # disk write (on a blob thread) says when.
    loop = asyncio.get_running_loop()
    landed = asyncio.Event()
    write_all = uploads.write_all

    def noted(fd: int, buffers: Sequence[bytes], position: int | None) -> None:
        write_all(fd, buffers, position)
        loop.call_soon_threadsafe(landed.set)

    monkeypatch.setattr(uploads, "write_all", noted)
    older_put = asyncio.create_task(older())
    async with asyncio.timeout(30):  # bounds a hang only
        await landed.wait()
    monkeypatch.setattr(uploads, "write_all", write_all)
    assert await _put(swire, first, _piece(first)) == 200
    release.set()
    assert await older_put in (409, 0)
    for part in ticket["parts"][1:]:
        assert await _put(swire, part, _piece(part)) == 200
    status = await _status(swire, file_id)
    assert status["parts"][0]["crc32c"] == crc_b64(_piece(first))
    assert (await _confirm(swire, ticket, _manifest(ticket))).status == 200
    assert await _download(swire, file_id) == DATA


async def test_concurrent_sends_of_the_same_part(swire: Wire, sinstrument: str) -> None:
    ticket = await swire.ticket("big.bin", instrument_id=sinstrument, size_bytes=len(DATA))
    first = ticket["parts"][0]
    junk = os.urandom(KiB)
    statuses = await asyncio.gather(
        *(_put(swire, first, junk if i % 2 else _piece(first)) for i in range(8))
    )
    assert set(statuses) <= {200, 409}
    # Whatever won, the record matches the bytes: re-send the right copy and check the whole.
    assert await _put(swire, first, _piece(first)) == 200
    for part in ticket["parts"][1:]:
        assert await _put(swire, part, _piece(part)) == 200
    assert (await _confirm(swire, ticket, _manifest(ticket))).status == 200
    assert await _download(swire, ticket["file_id"]) == DATA


async def test_restart_mid_upload_then_resume(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    data_dir = tmp_path / "data"
    async with LocalServer(data_dir, part_size=KiB) as first:
        wire = Wire(session, first)
        instrument = first.create_instrument("reader")
        ticket = await wire.ticket("big.bin", instrument_id=instrument, size_bytes=len(DATA))
        lost = await wire.ticket("lost.bin", instrument_id=instrument, size_bytes=len(DATA))
        for part in ticket["parts"][:5]:
            assert await _put(wire, part, _piece(part)) == 200
        assert await _put(wire, lost["parts"][0], _piece(lost["parts"][0])) == 200
        uploads = {p.name.partition(".")[0]: p for p in _upload_files(first)}
    # While it is down: one upload file vanishes, and an orphan appears.
    uploads[lost["file_id"]].unlink()
    orphan = data_dir / "uploads" / "orphan.123"
    orphan.write_bytes(b"x")
    async with LocalServer(data_dir, part_size=KiB) as second:
        wire = Wire(session, second)
        assert not orphan.exists()
        assert _upload_files(second) == [uploads[ticket["file_id"]]]
        status = await _status(wire, ticket["file_id"])
        assert status["parts"] == [
            {"number": p["number"], "size": p["size"], "crc32c": crc_b64(_piece(p))}
            for p in ticket["parts"][:5]
        ]
        assert [p["number"] for p in status["missing_parts"]] == [6, 7, 8, 9]
        for part in status["missing_parts"]:
            assert await _put(wire, part, _piece(part)) == 200
        reply = await _confirm(wire, ticket, _manifest(ticket))
        assert reply.status == 200, reply.body
        assert await _download(wire, ticket["file_id"]) == DATA
        # The upload whose file was lost lists no parts: all of them are sent again.
        status = await _status(wire, lost["file_id"])
        assert status["parts"] == []
        assert len(status["missing_parts"]) == 9
        for part in status["missing_parts"]:
            assert await _put(wire, part, _piece(part)) == 200
        assert (await _confirm(wire, lost, _manifest(lost))).status == 200


async def test_deleting_or_replanning_removes_the_upload_file(
    swire: Wire, sinstrument: str, small: LocalServer
) -> None:
    ticket = await swire.ticket("big.bin", instrument_id=sinstrument, size_bytes=len(DATA))
    await swire.put_parts({**ticket, "parts": ticket["parts"][:2]}, DATA)
    [before] = _upload_files(small)
    resized = await swire.ticket("big.bin", instrument_id=sinstrument, size_bytes=3 * KiB)
    assert resized["file_id"] == ticket["file_id"]
    assert _upload_files(small) == []
    # An old part URL of the dropped plan no longer lands anywhere.
    assert await _put(swire, ticket["parts"][0], _piece(ticket["parts"][0])) == 200
    [after] = _upload_files(small)
    assert after != before
    assert after.stat().st_size == 3 * KiB
    assert (await swire.delete(f"/v1/files/{ticket['file_id']}")).status == 204
    assert _upload_files(small) == []


async def test_a_single_put_confirm_drops_the_parts(
    swire: Wire, sinstrument: str, small: LocalServer
) -> None:
    ticket = await swire.ticket("big.bin", instrument_id=sinstrument, size_bytes=len(DATA))
    await swire.put_parts({**ticket, "parts": ticket["parts"][:2]}, DATA)
    put = await swire.put(ticket["upload_url"], data=DATA, headers=ticket["headers"])
    assert put.status == 200, put.body
    assert (await swire.post(f"/v1/files/{ticket['file_id']}/confirm-upload")).status == 200
    assert _upload_files(small) == []
    status = await _status(swire, ticket["file_id"])
    assert (status["status"], status["parts"]) == ("confirmed", [])


# -- the upload file's rules, without HTTP ----------------------------------------------------


async def test_sealing_and_claims(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    store.prepare_sync()
    try:
        generation = await store.create_upload("f", 4 * KiB)
        async with store.open_upload("f", generation) as upload:
            older = await upload.claim(1)
            writer = upload.writer(older, 0)
            await writer.write([b"a" * 512])
            newer = await upload.claim(1)  # waits for the older claim's write to finish
            with pytest.raises(PartSuperseded):
                await writer.write([b"a" * 512])
            second = upload.writer(newer, 0)
            await second.write([b"b" * KiB])
            await second.finish()
            newer.release()
            other = await upload.claim(2)
            await upload.seal()
            with pytest.raises(UploadSealed):
                await upload.writer(other, KiB).write([b"c"])
            upload.unseal()
            third = upload.writer(other, KiB)
            await third.write([b"c" * KiB])
            await third.finish()
            await third.sync()
        assert store.upload_path("f", generation).read_bytes()[: 2 * KiB] == b"b" * KiB + b"c" * KiB
        store.discard_upload("f", generation)
        store.upload_path("f", generation).unlink()
        with pytest.raises(UploadSealed):
            async with store.open_upload("f", generation):
                pass
        assert store._uploads == {}
    finally:
        store.close()
