"""``read_bytes`` is bounded: a file too large, or a body that never ends, fails instead of
filling memory, and what it returns is exactly the stated size."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from labric import AsyncLabric, TransferConfig
from labric._transfer.download import DEFAULT_READ_LIMIT
from labric.errors import TransferError

from ._server import KEY, HostileServer, StoredFile, file_content, serve_file

KiB = 1024
MiB = 1024 * KiB


def _client(hostile: HostileServer, **transfer: Any) -> AsyncLabric:
    config = TransferConfig(state_dir=str(hostile.state_dir / "state"), **transfer)
    return hostile.client(transfer=config, max_retries=0)


def test_the_default_bound_is_256_mib() -> None:
    assert 256 * MiB == DEFAULT_READ_LIMIT


async def test_a_file_stated_over_the_bound_fails_before_any_byte_is_read(
    hostile: HostileServer,
) -> None:
    f = serve_file(hostile, StoredFile("f1", b"x" * 2000, name="x.bin"))
    async with _client(hostile) as client:
        with pytest.raises(TransferError, match="over the 1000 read_bytes holds"):
            await client.files.read_bytes(f.file_id, max_bytes=1000)
        assert await client.files.read_bytes(f.file_id, max_bytes=2000) == b"x" * 2000
    assert len(hostile.seen("GET", "/blob/")) == 1  # only the read that was allowed


@pytest.mark.parametrize("chunked", [True, False], ids=["no-length", "content-length"])
async def test_a_body_of_unknown_size_fails_once_it_passes_the_bound(
    hostile: HostileServer, chunked: bool
) -> None:
    f = serve_file(
        hostile, StoredFile("f1", os.urandom(4 * MiB), name="x.bin", size=None, chunked=chunked)
    )
    async with _client(hostile) as client:
        with pytest.raises(TransferError, match=r"1048576 .*read_bytes holds"):
            await client.files.read_bytes(f.file_id, max_bytes=1 * MiB)
        assert len(await client.files.read_bytes(f.file_id, max_bytes=4 * MiB)) == 4 * MiB


@pytest.mark.parametrize(
    ("served", "why"),
    [(b"0123456789" * 100, "longer than"), (b"01234", "ended at")],
    ids=["more", "less"],
)
async def test_no_more_and_no_less_than_the_stated_size(
    hostile: HostileServer, served: bytes, why: str
) -> None:
    f = serve_file(hostile, StoredFile("f1", b"0123456789", served=served, chunked=True))
    async with _client(hostile) as client:
        with pytest.raises(TransferError, match=why):
            await client.files.read_bytes(f.file_id)


async def test_an_endless_body_keeps_memory_bounded(hostile: HostileServer, tmp_path: Path) -> None:
    """1.5 GiB of unknown size offered; the client's peak RSS stays near its bound, not 1.5 GiB."""
    piece = os.urandom(MiB)
    offered = 1536  # MiB
    sent = [0]

    @hostile.route("GET", "/api/v1/files/huge/content")
    async def content(request: web.Request) -> web.StreamResponse:
        return web.json_response(file_content("huge", hostile.url("/blob/huge"), size=None))

    @hostile.route("GET", "/blob/huge")
    async def storage(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            for _ in range(offered):
                await response.write(piece)
                sent[0] += 1
            await response.write_eof()
        except ConnectionError:
            pass
        return response

    script = textwrap.dedent(
        """
        import asyncio, json, sys
        from labric import AsyncLabric, TransferConfig
        from labric.errors import TransferError

        def status(field):
            with open("/proc/self/status") as f:
                return next(int(l.split()[1]) for l in f if l.startswith(field + ":"))

        def rss():
            # Reset the high-water mark so the peak measured is the read's own.
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
            except OSError:
                pass  # the peak then includes start-up, which only makes the bound harder to meet
            return status("VmRSS")

        def peak():
            return status("VmHWM")

        async def main():
            transfer = TransferConfig(state_dir=sys.argv[3])
            async with AsyncLabric(sys.argv[1], base_url=sys.argv[2], transfer=transfer,
                                   max_retries=0) as client:
                base = rss()
                try:
                    await client.files.read_bytes("huge", max_bytes=int(sys.argv[4]))
                    error = None
                except TransferError as exc:
                    error = str(exc)
            print(json.dumps({"base_kib": base, "peak_kib": peak(), "error": error}))

        asyncio.run(main())
        """
    )
    bound = 32 * MiB
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        KEY,
        hostile.base_url,
        str(tmp_path / "child-state"),
        str(bound),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await child.communicate()
    assert child.returncode == 0
    result = json.loads(out)
    assert result["error"] is not None
    assert "read_bytes holds" in result["error"]
    grown = (result["peak_kib"] - result["base_kib"]) * KiB
    # The bound plus buffers and the bytearray's slack; reading it all would be 1.5 GiB.
    assert grown < 2 * bound, result
    assert sent[0] < offered
