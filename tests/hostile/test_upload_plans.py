"""Impossible upload plans are refused with a clear error, without building them.

A server's part plan is checked part by part against the file (numbered 1..n, tiling it in
``part_size`` steps, at most 10,000 parts), and a source over 5 TiB is refused before anything is
asked; a plan of 2**62 bytes fails fast and small (checked in a subprocess by its peak RSS).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from labric import TransferConfig
from labric.errors import APIResponseValidationError, TransferError

from ._server import HostileServer

KiB = 1024
PART = 256 * KiB
SIZE = 3 * PART + 5  # four parts, the last short


def _plan(size: int = SIZE, part_size: int = PART) -> list[dict[str, Any]]:
    return [
        {"number": n, "offset": off, "size": min(part_size, size - off), "url": "", "headers": {}}
        for n, off in enumerate(range(0, size, part_size), start=1)
    ]


def _with_urls(hostile: HostileServer, parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**p, "url": hostile.url(f"/part/{p['number']}")} for p in parts]


def _bad(parts: list[dict[str, Any]], index: int, **change: Any) -> list[dict[str, Any]]:
    out = [dict(p) for p in parts]
    out[index].update(change)
    return out


PLANS: dict[str, tuple[object, list[dict[str, Any]], str]] = {
    "part size zero": (0, _plan(), "not a positive number"),
    "negative part size": (-PART, _plan(), "not a positive number"),
    "one-byte parts": (1, [_plan()[0]], "at most 10,000"),
    "absurd part size": (2**62, [{**_plan()[0], "size": 2**62}], "does not tile"),
    "a part missing": (PART, _plan()[:-1], "does not cover"),
    "a gap": (PART, _bad(_plan(), 1, offset=PART + 1), "does not tile"),
    "an overlap": (PART, _bad(_plan(), 2, offset=PART), "does not tile"),
    "a wrong size": (PART, _bad(_plan(), 0, size=PART - 1), "does not tile"),
    "a repeated number": (PART, _bad(_plan(), 1, number=1), "does not tile"),
    "numbers from zero": (
        PART,
        [{**p, "number": p["number"] - 1} for p in _plan()],
        "does not tile",
    ),
    "a part past the end": (
        PART,
        [*_plan(), {"number": 5, "offset": SIZE, "size": 1, "url": "", "headers": {}}],
        "does not tile",
    ),
}


@pytest.mark.parametrize("case", sorted(PLANS))
async def test_an_impossible_part_plan_fails_before_any_part_is_sent(
    hostile: HostileServer, tmp_path: Path, case: str
) -> None:
    part_size, parts, message = PLANS[case]

    @hostile.route("POST", "/api/v1/files/upload-url")
    async def upload_url(request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {
                "file_id": "f-1",
                "upload_url": hostile.url("/put/f-1"),
                "expires_at": "2026-01-01T00:15:00Z",
                "part_size": part_size,
                "parts": _with_urls(hostile, parts),
            }
        )

    source = tmp_path / "run.raw"
    source.write_bytes(b"r" * SIZE)
    transfer = TransferConfig(multipart_threshold=2 * PART, state_dir=str(tmp_path / "state"))
    async with hostile.client(transfer=transfer, max_retries=0) as client:
        with pytest.raises(TransferError, match=message):
            await client.files.upload(source, job_execution_id="ex-1")
    assert hostile.seen("PUT") == []
    assert hostile.seen("POST", "/api/v1/files/f-1/confirm-upload") == []


async def test_a_part_size_that_is_not_a_number_is_a_validation_error(
    hostile: HostileServer, tmp_path: Path
) -> None:
    @hostile.route("POST", "/api/v1/files/upload-url")
    async def upload_url(request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {
                "file_id": "f-1",
                "upload_url": hostile.url("/put/f-1"),
                "expires_at": "2026-01-01T00:15:00Z",
                "part_size": "huge",
                "parts": _with_urls(hostile, _plan()),
            }
        )

    source = tmp_path / "run.raw"
    source.write_bytes(b"r" * SIZE)
    transfer = TransferConfig(multipart_threshold=2 * PART, state_dir=str(tmp_path / "state"))
    async with hostile.client(transfer=transfer, max_retries=0) as client:
        with pytest.raises(APIResponseValidationError):
            await client.files.upload(source, job_execution_id="ex-1")
    assert hostile.seen("PUT") == []


class _Huge:
    """A seekable binary file object that says it holds 2**62 bytes."""

    name = "huge.raw"

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return 0

    def seek(self, offset: int, whence: int = 0) -> int:
        return 2**62 if whence == 2 else offset

    def read(self, n: int = -1) -> bytes:
        return b"\0" * max(0, min(n, 1024))


async def test_a_source_over_five_tib_is_refused_before_anything_is_asked(
    hostile: HostileServer,
) -> None:
    async with hostile.client(max_retries=0) as client:
        with pytest.raises(TransferError, match=r"over the .* \(5 TiB\) limit"):
            await client.files.upload(_Huge(), job_execution_id="ex-1")  # type: ignore[arg-type]
    assert hostile.requests == []


CHILD = textwrap.dedent(
    """
    import asyncio, json, resource, sys
    from labric import AsyncLabric, TransferConfig
    from labric._transfer.scheduling import check_part_plan, iter_parts
    from labric.errors import TransferError

    class Huge:
        name = "huge.raw"
        def seekable(self): return True
        def tell(self): return 0
        def seek(self, offset, whence=0): return 2**62 if whence == 2 else offset
        def read(self, n=-1): return b"\\0" * max(0, min(n, 1024))

    def rss_kib():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    async def main():
        errors = []
        before = rss_kib()
        async with AsyncLabric(
            "lbk_hostile_" + "s" * 32,
            base_url="http://127.0.0.1:9/api",
            transfer=TransferConfig(state_dir=sys.argv[1]),
        ) as client:
            try:
                await client.files.upload(Huge(), job_execution_id="ex-1")
            except TransferError as exc:
                errors.append(str(exc))
        for part_size in (1, 1024, 2**20):
            try:
                check_part_plan(2**62, part_size, [])
            except TransferError as exc:
                errors.append(str(exc))
        # Lazily planned: the first of 2**42 ranges costs nothing.
        first = next(iter_parts(2**62, 2**20))
        print(json.dumps({"errors": errors, "grew_kib": rss_kib() - before, "first": first}))

    asyncio.run(main())
    """
)


def test_a_plan_of_two_to_the_62_bytes_fails_fast_and_small(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "state")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(done.stdout)
    assert len(result["errors"]) == 4, result
    assert "5 TiB" in result["errors"][0]
    assert all("at most 10,000" in e for e in result["errors"][1:])
    assert result["first"] == [0, 2**20]
    # A plan materialised for 2**62 bytes would need gigabytes; nothing near that was used.
    assert result["grew_kib"] < 64 * 1024
