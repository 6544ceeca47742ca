"""API response bodies are bounded: a decompression bomb or a huge JSON answer never reaches memory.

The memory tests run the client in a child Python process and read its peak RSS there, so the
numbers are the client's alone. On Linux that is ``VmHWM`` from ``/proc/self/status``: the child's
``ru_maxrss`` also keeps the high-water mark of the process image it was exec'd from (the forked
test runner, hundreds of MB late in a full run), so it is read only where ``/proc`` is missing.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import sys
import textwrap
import zlib
from typing import Any

import pytest
from aiohttp import web

from labric.errors import (
    APIResponseValidationError,
    NotFoundError,
    ResponseTooLargeError,
)

from ._server import KEY, HostileServer, file_info, gzip_of_zeros, stream_chunks

MiB = 1024 * 1024
#: Peak RSS of the child allowed in these tests; unbounded reads took 0.8 to 2.2 GB.
RSS_CEILING_MB = 200

CHILD = textwrap.dedent(
    """
    import asyncio, json, resource, sys
    from labric import AsyncLabric
    from labric.errors import LabricError

    async def main() -> dict:
        options = json.loads(sys.argv[3])
        async with AsyncLabric(sys.argv[1], base_url=sys.argv[2], max_retries=0, **options) as c:
            try:
                await c.files.get("f1")
            except LabricError as exc:
                return {"error": type(exc).__name__, "message": str(exc)}
            return {"error": None}

    out = asyncio.run(main())
    out["ru_maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["peak_rss_mb"] = out["ru_maxrss_mb"]
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    out["peak_rss_mb"] = int(line.split()[1]) / 1024
    except OSError:
        pass
    print(json.dumps(out))
    """
)


async def _child_get(hostile: HostileServer, **options: Any) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        KEY,
        hostile.base_url,
        json.dumps(options),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out)
    return result


async def test_a_gzip_bomb_is_refused_with_little_memory(hostile: HostileServer) -> None:
    bomb = gzip_of_zeros(512 * MiB)  # about 0.5 MB on the wire
    assert len(bomb) < 1 * MiB

    @hostile.route("GET", "/api/v1/files/{file_id}")
    async def get(request: web.Request) -> web.StreamResponse:
        return await stream_chunks(
            request,
            (bomb[i : i + 65536] for i in range(0, len(bomb), 65536)),
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )

    result = await _child_get(hostile)
    assert result["error"] == "ResponseTooLargeError"
    assert "decompresses to more than" in result["message"]
    assert "max_response_bytes" in result["message"]
    print(f"peak RSS {result['peak_rss_mb']:.0f} MB")
    assert result["peak_rss_mb"] < RSS_CEILING_MB, result


@pytest.mark.parametrize("limit", [None, 8 * MiB], ids=["default limit", "8 MiB limit"])
async def test_a_huge_json_body_is_refused_with_little_memory(
    hostile: HostileServer, limit: int | None
) -> None:
    # 100 MB of JSON, sent chunked (no Content-Length), so only counting while reading stops it.
    row = json.dumps(file_info("f", "x" * 900)).encode() + b","
    rows = (100 * MiB) // len(row)

    def body() -> Any:
        yield b"["
        for _ in range(rows // 64):
            yield row * 64
        yield b"{}]"

    @hostile.route("GET", "/api/v1/files/{file_id}")
    async def get(request: web.Request) -> web.StreamResponse:
        return await stream_chunks(request, body(), headers={"Content-Type": "application/json"})

    options = {} if limit is None else {"max_response_bytes": limit}
    result = await _child_get(hostile, **options)
    assert result["error"] == "ResponseTooLargeError"
    shown = f"{limit or 64 * MiB:,} bytes"
    assert shown in result["message"]
    print(f"peak RSS {result['peak_rss_mb']:.0f} MB")
    assert result["peak_rss_mb"] < RSS_CEILING_MB, result


async def test_a_content_length_over_the_limit_is_refused_before_reading(
    hostile: HostileServer,
) -> None:
    released = asyncio.Event()

    @hostile.route("GET", "/api/v1/files/{file_id}")
    async def get(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(10**12)})
        await response.prepare(request)
        await response.write(b"[")
        # The body never comes: a client that tried to read it would hang here.
        await released.wait()
        return response

    async with hostile.client(max_retries=3, max_response_bytes=MiB) as client:
        with pytest.raises(ResponseTooLargeError) as caught:
            await client.files.get("f1")
    released.set()
    err = caught.value
    assert isinstance(err, APIResponseValidationError)
    assert err.limit == MiB
    assert "Content-Length" in str(err)
    assert "1,048,576 bytes" in str(err)
    assert (err.method, err.path) == ("GET", "/api/v1/files/f1")
    # Not retried: a too-large answer is not a transient fault.
    assert len(hostile.seen("GET")) == 1


async def test_a_body_exactly_at_the_limit_passes_and_one_byte_more_does_not(
    hostile: HostileServer,
) -> None:
    answer = json.dumps(file_info("f1", "run/a.csv", size=3)).encode()
    padded = answer[:-1] + b" " * 100 + b"}"

    @hostile.route("GET", "/api/v1/files/{file_id}")
    async def get(request: web.Request) -> web.StreamResponse:
        return await stream_chunks(request, [padded[:10], padded[10:]])

    async with hostile.client(max_retries=0, max_response_bytes=len(padded)) as client:
        assert (await client.files.get("f1")).file_id == "f1"
    async with hostile.client(max_retries=0, max_response_bytes=len(padded) - 1) as client:
        with pytest.raises(ResponseTooLargeError, match="as received is over"):
            await client.files.get("f1")


async def test_gzip_and_deflate_answers_within_the_limit_are_decoded(
    hostile: HostileServer,
) -> None:
    answer = json.dumps(file_info("f1", "run/a.csv", size=3)).encode()
    bodies = {
        "gzip": gzip.compress(answer),
        "deflate": zlib.compress(answer),
    }

    @hostile.route("GET", "/api/v1/files/{encoding}")
    async def get(request: web.Request) -> web.StreamResponse:
        encoding = request.match_info["encoding"]
        return web.Response(
            body=bodies[encoding],
            headers={"Content-Type": "application/json", "Content-Encoding": encoding},
        )

    async with hostile.client(max_retries=0) as client:
        for encoding in bodies:
            assert (await client.files.get(encoding)).file_id == "f1"
    sent = hostile.requests[0].headers
    assert {k.lower(): v for k, v in sent.items()}["accept-encoding"] == "gzip, deflate"


async def test_an_encoding_the_client_never_asked_for_is_refused(hostile: HostileServer) -> None:
    @hostile.route("GET", "/api/v1/files/{file_id}")
    async def get(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"\x28\xb5\x2f\xfd", headers={"Content-Encoding": "zstd"})

    async with hostile.client(max_retries=0) as client:
        with pytest.raises(APIResponseValidationError, match="'zstd'"):
            await client.files.get("f1")


async def test_a_huge_error_body_is_cut_and_the_status_error_still_raised(
    hostile: HostileServer,
) -> None:
    @hostile.route("GET", "/api/v1/files/{file_id}")
    async def get(request: web.Request) -> web.StreamResponse:
        return await stream_chunks(
            request, (b"x" * MiB for _ in range(100)), status=404, headers={"X-Request-ID": "r-1"}
        )

    async with hostile.client(max_retries=0) as client:
        with pytest.raises(NotFoundError) as caught:
            await client.files.get("f1")
    assert caught.value.request_id == "r-1"
    assert isinstance(caught.value.body, str)
    assert len(caught.value.body) <= MiB
