"""Hostile input to the client: a stand-in server (aiohttp.web on a real socket) that answers with
truncated bodies, lying ``Content-Length`` headers, invalid or hostile JSON, ``Link`` headers to
other hosts, platform file names that climb out of the destination, and bytes that do not match
their CRC32C.

Each case must end in the documented class from :mod:`labric.errors` (never a bare aiohttp, OS or
decoder error), the key must never reach another host, and nothing may be written outside the
destination directory or under a final name unless it was verified.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import google_crc32c
import pytest
from aiohttp import web

from labric import AsyncLabric, RetryPolicy, TransferConfig
from labric.errors import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    IntegrityError,
    InternalServerError,
    LabricError,
    NotFoundError,
    TransferError,
)

from ._support import KiB, StandIn, key_secret

KEY = "lbk_standin1_" + "S3cr3tS3cr3tS3cr3tS3cr3tS3cr3tS3cr3t0000"
FAST = RetryPolicy(max_retries=1, initial_delay=0.001, max_delay=0.005, max_server_delay=0.01)
PART = 64 * KiB


def _crc(data: bytes) -> str:
    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode()


def _raw(data: bytes) -> Callable[[web.Request], Any]:
    """A handler that writes ``data`` to the socket as the whole response and hangs up: the
    framing (status line, headers, length) is exactly what the test wrote."""

    async def handler(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.write(data)
        request.transport.close()
        return web.Response(status=204)  # never sent: the connection is gone

    return handler


def _http(status: str, body: bytes, *headers: str, length: int | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status}", "Content-Type: application/json", *headers]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _client(standin: StandIn, tmp_path: Path, **transfer: Any) -> AsyncLabric:
    # A transfer retries transient failures until its deadline (120 s by default); these stand-ins
    # fail the same way every time, so a short deadline ends them sooner with the same error.
    transfer.setdefault("retry_deadline", 5.0)
    config = TransferConfig(state_dir=str(tmp_path / "state"), **transfer)
    return AsyncLabric(KEY, base_url=standin.base_url, retry=FAST, transfer=config)


def _no_secret(exc: BaseException) -> None:
    text = f"{exc} {exc!r} {getattr(exc, 'detail', '')} {getattr(exc, 'body', '')}"
    assert key_secret(KEY) not in text


@pytest.fixture
async def standin() -> AsyncIterator[StandIn]:
    async with StandIn() as s:
        yield s


# -- API bodies ---------------------------------------------------------------------------------

DEEP = b"[" * 100_000 + b"]" * 100_000
#: name -> (raw response, the error class, whether the client retries it)
BODIES: dict[str, tuple[bytes, type[LabricError], bool]] = {
    "body shorter than its Content-Length": (
        _http("200 OK", b'[{"file_id": "a"', length=500),
        APIConnectionError,
        True,
    ),
    "chunked body cut off": (
        _http("200 OK", b"10\r\n[{}", "Transfer-Encoding: chunked"),
        APIConnectionError,
        True,
    ),
    "bytes past the Content-Length": (
        _http("200 OK", b"[1, 2, 3, 4, 5]", length=5),
        APIConnectionError,
        True,
    ),
    "Content-Length not a number": (
        _http("200 OK", b"[]", "Content-Length: two"),
        APIConnectionError,
        True,
    ),
    "two Content-Lengths": (
        _http("200 OK", b"[] ", "Content-Length: 2", "Content-Length: 3"),
        APIConnectionError,
        True,
    ),
    "a gzip body that is not gzip": (
        _http("200 OK", b"[]", "Content-Encoding: gzip", length=2),
        APIConnectionError,
        True,
    ),
    "no status line": (b"HELLO\r\n\r\n", APIConnectionError, True),
    "hung up without a word": (b"", APIConnectionError, True),
    "not JSON": (_http("200 OK", b"{not json", length=9), APIResponseValidationError, False),
    "not UTF-8": (_http("200 OK", b'["\xff\xfe"]', length=6), APIResponseValidationError, False),
    "JSON nested 100k deep": (
        _http("200 OK", DEEP, length=len(DEEP)),
        APIResponseValidationError,
        False,
    ),
    "an object for a list": (_http("200 OK", b"{}", length=2), APIResponseValidationError, False),
    "a string for a size": (
        _http("200 OK", b'[{"file_id": "a", "size_bytes": "12"}]', length=38),
        APIResponseValidationError,
        False,
    ),
    "a boolean for a size": (
        _http("200 OK", b'[{"file_id": "a", "size_bytes": true}]', length=38),
        APIResponseValidationError,
        False,
    ),
    "an object for an id": (
        _http("200 OK", b'[{"file_id": {"x": 1}}]', length=23),
        APIResponseValidationError,
        False,
    ),
    "an error nested 100k deep": (
        _http("500 Oops", b'{"detail":' + DEEP + b"}", length=len(DEEP) + 11),
        InternalServerError,
        True,
    ),
    "an error as an HTML page": (
        _http("404 Not Found", b"<html>" + b"x" * 10_000 + b"</html>", length=10_013),
        NotFoundError,
        False,
    ),
}


@pytest.mark.parametrize("case", list(BODIES))
async def test_broken_api_responses_are_labric_errors(
    standin: StandIn, tmp_path: Path, case: str
) -> None:
    raw, expected, retried = BODIES[case]
    standin.on("GET", "/api/v1/files", _raw(raw))
    async with _client(standin, tmp_path) as client:
        with pytest.raises(LabricError) as caught:
            await client.files.list()
    assert type(caught.value) is expected, (case, type(caught.value), caught.value)
    error = caught.value
    assert getattr(error, "method", None) == "GET"
    assert getattr(error, "path", None) == "/api/v1/files"
    assert len(str(error)) < 1000, "a hostile body was copied into the message"
    _no_secret(error)
    # Retried ones went out once per attempt at least (aiohttp itself may resend a GET once on
    # a connection the server dropped); the others only once.
    if retried:
        assert len(standin.requests) >= 1 + FAST.max_retries, case
    else:
        assert len(standin.requests) == 1, case
    if isinstance(error, APIStatusError):
        assert "<html>" not in str(error)


async def test_a_write_that_gets_a_truncated_answer_is_retried_with_its_idempotency_key(
    standin: StandIn, tmp_path: Path
) -> None:
    """The answer to a POST was lost mid-body: the retry carries the same Idempotency-Key, so a
    server that applied the first attempt replays it instead of applying it twice."""
    standin.on("POST", "/api/v1/experiments", _raw(_http("200 OK", b"{", length=100)))
    async with _client(standin, tmp_path) as client:
        with pytest.raises(APIConnectionError):
            await client.experiments.create(name="Plate 42")
    keys = {seen.headers.get("Idempotency-Key") for seen in standin.requests}
    assert len(standin.requests) == 2
    assert len(keys) == 1
    assert None not in keys


# -- Link headers ---------------------------------------------------------------------------------


def _page(items: list[dict[str, Any]], link: str | None) -> web.Response:
    headers = {"Link": f'<{link}>; rel="next"'} if link else {}
    return web.json_response(items, headers=headers)


async def _collect(client: AsyncLabric, into: list[str]) -> None:
    """Every file id of the listing, into ``into`` as they come (kept when it fails)."""
    async for item in client.files.list():
        into.append(item.file_id)


def _file(file_id: str, name: str = "a.csv") -> dict[str, Any]:
    return {
        "file_id": file_id,
        "file_name": name,
        "original_path": name,
        "content_type": "text/csv",
        "job_execution_id": None,
        "size_bytes": 1,
        "crc32c_hash": None,
    }


@pytest.mark.parametrize(
    "link",
    [
        "{other}/api/v1/files?cursor=2",
        "//127.0.0.1:{other_port}/api/v1/files?cursor=2",
        "http://127.0.0.1:{api_port}@127.0.0.1:{other_port}/api/v1/files?cursor=2",
        "http://localhost:{api_port}/api/v1/files?cursor=2",
        "https://127.0.0.1:{api_port}/api/v1/files?cursor=2",
    ],
)
async def test_the_pager_refuses_a_next_link_to_another_origin(
    standin: StandIn, tmp_path: Path, link: str
) -> None:
    """Decision: a ``next`` link off the API's origin is refused, not followed without the key
    (a page from another host is not the API's page). The key never leaves the origin."""
    async with StandIn() as other:
        target = link.format(other=other.origin, other_port=other.port, api_port=standin.port)
        standin.on("GET", "/api/v1/files", _page([_file(str(uuid.uuid4()))], target))
        other.on("GET", "/api/v1/files", _page([_file("from-elsewhere")], None))
        async with _client(standin, tmp_path) as client:
            first = await client.files.list()
            assert len(first) == 1
            seen: list[str] = []
            with pytest.raises(APIResponseValidationError, match="another origin"):
                await _collect(client, seen)
        assert "from-elsewhere" not in seen
        assert other.requests == [], "the pager sent a request to another origin"
    assert all(r.headers.get("Authorization") == f"Bearer {KEY}" for r in standin.requests)


async def test_a_next_link_on_the_api_origin_is_followed_with_the_key(
    standin: StandIn, tmp_path: Path
) -> None:
    standin.on("GET", "/api/v1/files", _page([_file("one")], "/api/v1/files/page-2"))
    standin.on("GET", "/api/v1/files/page-2", _page([_file("two")], None))
    async with _client(standin, tmp_path) as client:
        assert [f.file_id async for f in client.files.list()] == ["one", "two"]
    assert [r.path for r in standin.requests] == ["/api/v1/files", "/api/v1/files/page-2"]
    assert all(r.headers["Authorization"] == f"Bearer {KEY}" for r in standin.requests)


async def test_a_next_link_that_loops_ends_the_listing(standin: StandIn, tmp_path: Path) -> None:
    standin.on("GET", "/api/v1/files", _page([_file("one")], "/api/v1/files/again"))
    standin.on("GET", "/api/v1/files/again", _page([_file("two")], "/api/v1/files/again"))
    async with _client(standin, tmp_path) as client:
        seen: list[str] = []
        with pytest.raises(APIResponseValidationError, match="repeats"):
            await _collect(client, seen)
    assert seen == ["one", "two"]


# -- downloads ------------------------------------------------------------------------------------


class Platform:
    """Files served by a stand-in: metadata, content tickets and storage, each as told."""

    def __init__(self, standin: StandIn) -> None:
        self.standin = standin

    def add(
        self,
        data: bytes,
        *,
        path: str | None = None,
        name: str = "f.bin",
        crc: str | None = "ok",
        served: bytes | None = None,
        goog_hash: str | None = None,
        size: int | None = None,
        storage: Callable[[web.Request], Any] | None = None,
    ) -> str:
        """Serve one file; return its id. ``served`` replaces the bytes storage sends, ``crc``
        the checksum the API states (``"ok"``: the right one), ``storage`` the whole handler."""
        file_id = str(uuid.uuid4())
        meta = {**_file(file_id, name), "original_path": path, "size_bytes": len(data)}
        self.standin.on("GET", f"/api/v1/files/{file_id}", web.json_response(meta))
        self.standin.on(
            "GET",
            f"/api/v1/files/{file_id}/content",
            web.json_response(
                {
                    "file_id": file_id,
                    "download_url": f"{self.standin.origin}/storage/{file_id}?X-Sig=abc",
                    "preview_truncated": False,
                    "file_name": name,
                    "size_bytes": len(data) if size is None else size,
                    "crc32c_hash": _crc(data) if crc == "ok" else crc,
                }
            ),
        )
        body = data if served is None else served

        async def serve(request: web.Request) -> web.StreamResponse:
            headers = {"ETag": '"v1"'}
            if goog_hash is not None:
                headers["x-goog-hash"] = goog_hash
            if request.headers.get("Range"):
                first, _, last = request.headers["Range"].removeprefix("bytes=").partition("-")
                piece = body[int(first) : int(last) + 1]
                headers["Content-Range"] = f"bytes {first}-{last}/{len(body)}"
                return web.Response(status=206, body=piece, headers=headers)
            return web.Response(body=body, headers=headers)

        self.standin.on("GET", f"/storage/{file_id}", storage or serve)
        return file_id


def _outside(tmp_path: Path, dest: Path, mark: str) -> list[Path]:
    """Files with ``mark`` in their name under ``tmp_path`` (or in /tmp) but not in ``dest``."""
    found = [p for p in tmp_path.rglob(f"*{mark}*") if p.is_file()]
    found += [p for p in Path("/tmp").glob(f"*{mark}*")]
    return [p for p in found if not p.resolve().is_relative_to(dest.resolve())]


async def test_download_many_keeps_hostile_platform_paths_inside_the_destination(
    standin: StandIn, tmp_path: Path
) -> None:
    mark = uuid.uuid4().hex[:10]
    platform = Platform(standin)
    inside = {  # platform path -> where it lands, relative to the destination
        f"/abs/{mark}-1.csv": f"abs/{mark}-1.csv",
        f"C:\\Windows\\{mark}-2.ini": f"Windows/{mark}-2.ini",
        f"\\\\server\\share\\{mark}-3.txt": f"server/share/{mark}-3.txt",
        f"./runs/./{mark}-4.csv": f"runs/{mark}-4.csv",
        f"runs//7///{mark}-5.csv": f"runs/7/{mark}-5.csv",
    }
    refused = [
        f"../{mark}-up.csv",
        f"runs/../../{mark}-up2.csv",
        f"..\\..\\{mark}-up3.csv",
        f"/tmp/../../{mark}-up4.csv",
        f"C:..\\..\\{mark}-up5.csv",
        f"a\x00{mark}.csv",
        "/",
        "..",
        f"{mark}-" + "é" * 200 + ".csv",  # 400 bytes: no file system takes it as one name
    ]
    ids = {platform.add(f"{p!r}".encode(), path=p): p for p in [*inside, *refused]}
    # Two files that map to one path: the second is refused, the first is not overwritten.
    twin_a = platform.add(b"first", path=f"twins/{mark}.csv")
    twin_b = platform.add(b"second", path=f"/twins/{mark}.csv")
    dest = tmp_path / "dest"
    async with _client(standin, tmp_path) as client:
        outcomes = await client.files.download_many([*ids, twin_a, twin_b], dest, concurrency=4)
    by_id = {o.file_id: o for o in outcomes}
    for file_id, path in ids.items():
        outcome = by_id[file_id]
        if path in inside:
            assert outcome.ok, (path, outcome.error)
            assert outcome.path == dest / inside[path]
            assert outcome.path.read_bytes() == f"{path!r}".encode()
        else:
            assert isinstance(outcome.error, TransferError), (path, outcome.error)
            _no_secret(outcome.error)
    twins = sorted([by_id[twin_a], by_id[twin_b]], key=lambda o: o.ok)
    assert isinstance(twins[0].error, TransferError)
    assert "also maps to" in str(twins[0].error)
    assert twins[1].path is not None
    assert twins[1].path.read_bytes() in (b"first", b"second")
    assert _outside(tmp_path, dest, mark) == []
    assert list(dest.rglob("*.labric-part")) == []


@pytest.mark.parametrize(
    ("name", "lands"),
    [("../../up.csv", None), ("/etc/passwd", "passwd"), ("C:\\x\\y.ini", "y.ini")],
)
async def test_download_into_a_directory_uses_only_the_last_name(
    standin: StandIn, tmp_path: Path, name: str, lands: str | None
) -> None:
    file_id = Platform(standin).add(b"data", name=name, path=name)
    dest = tmp_path / "one"
    dest.mkdir()
    async with _client(standin, tmp_path) as client:
        if lands is None:
            with pytest.raises(TransferError, match="leaves its directory"):
                await client.files.download(file_id, dest)
        else:
            assert await client.files.download(file_id, dest) == dest / lands
    assert [p.name for p in tmp_path.rglob("*") if p.is_file() and "state" not in p.parts] == (
        [lands] if lands else []
    )


# -- checksums ----------------------------------------------------------------------------------


def _final_and_partial(dest: Path) -> list[Path]:
    return [p for p in dest.rglob("*") if p.is_file()]


@pytest.mark.parametrize(
    "case",
    [
        "the API states another CRC32C",
        "storage sends other bytes",
        "storage states another x-goog-hash",
    ],
)
@pytest.mark.parametrize("ranged", [False, True], ids=["one stream", "ranges"])
async def test_a_crc32c_mismatch_is_an_integrity_error_and_leaves_no_file(
    standin: StandIn, tmp_path: Path, case: str, ranged: bool
) -> None:
    data = bytes(range(256)) * (4 * PART // 256 if ranged else 8)
    other = data[:-1] + bytes([data[-1] ^ 1])
    options: dict[str, Any] = {}
    if case == "the API states another CRC32C":
        options["crc"] = _crc(other)
    elif case == "storage sends other bytes":
        options["served"] = other
    else:
        options["goog_hash"] = f"crc32c={_crc(other)}"
    file_id = Platform(standin).add(data, path="checked.bin", **options)
    dest = tmp_path / "dest"
    transfer = {"part_size": PART, "multipart_threshold": 2 * PART} if ranged else {}
    async with _client(standin, tmp_path, **transfer) as client:
        # x-goog-hash is the whole object's, also on a 206: ranges are checked against it too.
        with pytest.raises(IntegrityError) as caught:
            await client.files.download(file_id, dest / "checked.bin")
        outcomes = await client.files.download_many([file_id], dest)
        with pytest.raises(IntegrityError):
            await client.files.read_bytes(file_id)
    assert isinstance(outcomes[0].error, IntegrityError)
    assert "CRC32C" in str(caught.value) or "checksum" in str(caught.value)
    _no_secret(caught.value)
    assert _final_and_partial(dest) == [], "a file that failed its check was left on disk"


async def test_a_short_or_long_object_is_a_transfer_error(standin: StandIn, tmp_path: Path) -> None:
    platform = Platform(standin)
    short = platform.add(b"0123456789", path="short.bin", crc=None, size=20)
    long = platform.add(b"0123456789", path="long.bin", crc=None, size=5)
    dest = tmp_path / "dest"
    async with _client(standin, tmp_path) as client:
        outcomes = await client.files.download_many([short, long], dest)
    for outcome in outcomes:
        assert isinstance(outcome.error, TransferError), outcome
    assert _final_and_partial(dest) == []


async def test_storage_that_ignores_ranges_or_cuts_the_body_short(
    standin: StandIn, tmp_path: Path
) -> None:
    data = bytes(range(256)) * (4 * PART // 256)
    platform = Platform(standin)

    async def whole(request: web.Request) -> web.StreamResponse:
        return web.Response(body=data)  # 200 with everything, whatever the Range said

    ignores = platform.add(data, path="ignores.bin", storage=whole)
    cut = platform.add(
        data, path="cut.bin", storage=_raw(_http("200 OK", data[:100], length=len(data)))
    )
    dest = tmp_path / "dest"
    async with _client(standin, tmp_path, part_size=PART, multipart_threshold=2 * PART) as client:
        ranged = await client.files.download_many([ignores], dest)
    async with _client(standin, tmp_path) as client:
        streamed = await client.files.download_many([cut], dest)
    assert isinstance(ranged[0].error, TransferError), ranged[0]
    assert "Range" in str(ranged[0].error)
    assert isinstance(streamed[0].error, APIConnectionError), streamed[0]
    assert _final_and_partial(dest) == []  # nothing resumable: no temporary file kept


async def test_a_content_ticket_of_the_wrong_types_is_refused_before_any_download(
    standin: StandIn, tmp_path: Path
) -> None:
    """``"false"`` is not false, and an object is not a URL: nothing is fetched or written."""
    file_id = str(uuid.uuid4())
    standin.on(
        "GET",
        f"/api/v1/files/{file_id}/content",
        web.json_response(
            {
                "file_id": file_id,
                "download_url": {"href": f"{standin.origin}/storage/x"},
                "preview_truncated": "false",
            }
        ),
    )
    async with _client(standin, tmp_path) as client:
        with pytest.raises(APIResponseValidationError) as caught:
            await client.files.download(file_id, tmp_path / "x.bin")
    assert "download_url" in str(caught.value)
    assert "preview_truncated" in str(caught.value)
    assert [r.path for r in standin.requests] == [f"/api/v1/files/{file_id}/content"]
    assert not (tmp_path / "x.bin").exists()


@pytest.mark.parametrize(
    ("served", "why"),
    [(b"0123456789" * 1000, "longer than"), (b"01234", "ended at")],
    ids=["more than stated", "less than stated"],
)
async def test_read_bytes_takes_no_more_and_no_less_than_the_stated_size(
    standin: StandIn, tmp_path: Path, served: bytes, why: str
) -> None:
    """Without a CRC32C to check, the stated size still bounds what is read into memory."""
    file_id = Platform(standin).add(b"0123456789", path="sized.bin", crc=None, served=served)
    async with _client(standin, tmp_path) as client:
        with pytest.raises(TransferError, match=why):
            await client.files.read_bytes(file_id)
