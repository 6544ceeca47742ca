"""Hostile input to the server: every registered API route gets oversized, malformed and
wrongly-typed bodies and queries, and the files routes get hostile names. Nothing may answer 500,
and no name may reach the disk as a path.

Routes come from the server's own registry (``ROUTE_SCOPES``), so routes added later are covered
without touching this file. Requests go over raw sockets where the framing itself is the point.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from yarl import URL as yarl_url

from labric import AsyncLabric, TransferConfig
from labric.errors import TransferError
from labric.server import LocalServer

from ._support import (
    KiB,
    MiB,
    RawReply,
    Route,
    api_routes,
    closed_by_peer,
    exchange,
    read_reply,
    request_head,
)

WITH_BODY = ("POST", "PUT", "PATCH")
DECLARED = 64 * MiB


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def _auth(server: LocalServer, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.admin_key}", **extra}


def _api_path(route: Route, value: str | None = None) -> str:
    return "/api" + route.path(value)


def _assert_handled(reply: RawReply, what: str) -> None:
    """A 4xx or a success, never a 5xx, and errors carry the API's JSON error shape."""
    assert reply.status < 500, f"{what}: {reply.status} {reply.body[:300]!r}"
    if reply.status >= 400:
        body = reply.json()
        assert "detail" in body or "errors" in body, f"{what}: {body}"


def _limit_named(detail: str) -> int:
    """The byte limit a 413's ``detail`` names (the smallest byte count in it)."""
    numbers = [int(n.replace(",", "")) for n in re.findall(r"(\d[\d,]*)\s*bytes", detail)]
    assert numbers, f"the 413 detail names no limit: {detail!r}"
    return min(numbers)


# -- bodies ---------------------------------------------------------------------------------


async def test_every_route_refuses_an_oversized_body_with_a_413_naming_its_limit(
    server: LocalServer,
) -> None:
    """A declared ``Content-Length`` far over any limit: every API route answers 413 at once,
    without reading a byte, naming a limit. Then chunked bodies (no length to trust) over it:
    a route that reads bodies refuses one at its own limit, without waiting for the rest, and
    one byte over that limit is refused the same way; a route that takes no body answers
    without waiting for it."""
    for route in api_routes(server):
        head = request_head(
            route.method,
            _api_path(route),
            _auth(server, **{"Content-Type": "application/json", "Content-Length": str(DECLARED)}),
        )
        reply = await exchange(server.port, head)
        assert reply.status == 413, f"{route}: {reply.status} {reply.body[:200]!r}"
        ceiling = _limit_named(reply.json()["detail"])
        if route.method not in WITH_BODY:
            continue
        # The last chunk and the closing boundary are never sent: the server must not wait.
        over = await _chunked(server, route, ceiling + 1)
        _assert_handled(over, f"{route} with a chunked body over {ceiling} bytes")
        if over.status != 413:
            continue  # it takes no body, and answered without reading this one
        limit = _limit_named(over.json()["detail"])
        assert limit <= ceiling, route
        just_over = await _chunked(server, route, limit + 1)
        assert just_over.status == 413, f"{route}: {just_over.status} {just_over.body[:200]!r}"
        assert _limit_named(just_over.json()["detail"]) == limit
    # The routes known to read bodies were among those that refused at their own limit.
    for known, limit in [
        ("POST /api/v1/files", server.settings.max_multipart_body),
        ("POST /api/v1/files/upload-url", 1024 * 1024),
        ("POST /api/v1/data/write", 4_500_000),
        ("POST /api/v1/tools/write", 2_500_000),
        ("POST /api/v1/tools/batch-write", 4_500_000),
    ]:
        (route,) = [r for r in api_routes(server) if str(r) == known]
        reply = await _chunked(server, route, limit + 1)
        assert reply.status == 413, known
        assert _limit_named(reply.json()["detail"]) == limit


async def test_a_huge_declared_body_does_not_run_a_route_that_takes_none(
    server: LocalServer, session: aiohttp.ClientSession
) -> None:
    """DELETE of a file and POST of a pairing code (routes that read no body) with 64 MiB
    declared: 413 before the handler runs, so the file is still there."""
    instrument = server.create_instrument("Plate reader")
    status, uploaded = await _upload_by_url(session, server, instrument, "kept.csv")
    assert status == 200, uploaded
    for method, path in [
        ("DELETE", f"/api/v1/files/{uploaded['file_id']}"),
        ("POST", f"/api/v1/instruments/{instrument}/pairing-code"),
    ]:
        head = request_head(method, path, _auth(server, **{"Content-Length": str(DECLARED)}))
        reply = await exchange(server.port, head)
        assert reply.status == 413, (method, path, reply.body[:200])
    async with session.get(
        f"{server.base_url}/v1/files/{uploaded['file_id']}", headers=_auth(server)
    ) as resp:
        assert resp.status == 200


async def _chunked(server: LocalServer, route: Route, size: int) -> RawReply:
    """``route`` with a chunked multipart body whose file part alone is ``size`` bytes, sent
    without its last chunk (JSON routes count raw bytes, the multipart upload the part's)."""
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode() + b"x" * size
    head = request_head(
        route.method,
        _api_path(route),
        _auth(
            server,
            **{
                "Content-Type": f"multipart/form-data; boundary={boundary}",
                "Transfer-Encoding": "chunked",
            },
        ),
    )
    return await exchange(server.port, head + f"{len(body):x}\r\n".encode() + body + b"\r\n")


MALFORMED = {
    "not JSON": b"{not json",
    "truncated": b'{"file_name": "a.csv"',
    "nested 100k deep": b"[" * 100_000 + b"]" * 100_000,
    "objects nested 100k deep": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    "invalid UTF-8": b'{"file_name": "\xff\xfe.csv"}',
    "UTF-16": '{"file_name": "a.csv"}'.encode("utf-16"),
    "lone surrogate escape": b'{"file_name": "\\ud800.csv", "name": "\\udfff", "query": "\\ud800"}',
    "lone surrogate as a key": b'{"\\udc00": 1}',
    "raw surrogate bytes": b'{"file_name": "\xed\xa0\x80.csv"}',
    "NaN and Infinity": b'{"size_bytes": NaN, "limit": Infinity, "timeout_seconds": -Infinity}',
    "huge exponent": b'{"size_bytes": 1e999, "timeout_seconds": 1e999, "limit": 1e999}',
    "huge integer": b'{"size_bytes": ' + b"9" * 4000 + b"}",
    "array": b"[1, 2, 3]",
    "string": b'"a string"',
    "null": b"null",
    "number": b"42",
    "BOM": b'\xef\xbb\xbf{"file_name": "a.csv"}',
    "duplicate keys": b'{"file_name": "a.csv", "file_name": 5}',
    "empty": b"",
    "whitespace": b" \r\n\t ",
}


@pytest.mark.parametrize("name", list(MALFORMED))
async def test_malformed_json_is_never_a_500(
    server: LocalServer, session: aiohttp.ClientSession, name: str
) -> None:
    for route in api_routes(server):
        async with session.request(
            route.method,
            server.origin + _api_path(route),
            data=MALFORMED[name],
            headers=_auth(server, **{"Content-Type": "application/json"}),
        ) as resp:
            reply = RawReply(resp.status, resp.headers.copy(), await resp.read())
        _assert_handled(reply, f"{route} with {name}")


#: Every field name the routes are known to read, set to the wrong kind of value (and a few
#: extremes), so validation is exercised whichever fields a route reads.
WRONG_TYPES: list[dict[str, object]] = [
    {
        name: value
        for name in [
            "file_name",
            "file_id",
            "size_bytes",
            "crc32c",
            "content_type",
            "instrument_id",
            "job_execution_id",
            "job_id",
            "job_name",
            "status",
            "timeout_minutes",
            "timeout_seconds",
            "name",
            "code",
            "description",
            "parameters",
            "parameter_definitions",
            "file_ids",
            "trigger_enabled",
            "trigger_category",
            "trigger_conditions",
            "trigger_instrument_id",
            "edits",
            "archived",
            "publish_status",
            "parts",
            "number",
            "limit",
            "cursor",
            "query",
            "params",
            "target_name",
            "target_type",
            "filters",
            "tables",
            "series",
            "columns",
            "rows",
            "mode",
            "key",
            "on_match",
            "semantic_category",
            "error",
            "throttle",
            "reset",
            "latency_ms",
            "bandwidth",
            "seed",
            "retry_after",
            "scope",
            "max_rows",
            "max_bytes",
            "wait",
        ]
    }
    for value in (
        "not-a-number",
        12345,
        -1,
        2**70,
        1.5,
        True,
        [],
        ["x", 1, None],
        {},
        {"nested": {"deeper": [1, {"x": "y"}]}},
        "x" * 10_000,  # every field at once stays under the JSON limit: validation answers
        "\u202e\U0001f600\x00",
    )
]


@pytest.mark.parametrize("index", range(len(WRONG_TYPES)))
async def test_wrong_types_are_validation_errors(
    server: LocalServer, session: aiohttp.ClientSession, index: int
) -> None:
    body = WRONG_TYPES[index]
    for route in api_routes(server):
        if route.method not in WITH_BODY:
            continue
        async with session.request(
            route.method, server.origin + _api_path(route), json=body, headers=_auth(server)
        ) as resp:
            reply = RawReply(resp.status, resp.headers.copy(), await resp.read())
        _assert_handled(reply, f"{route} with every field = {str(body['name'])[:30]!r}")


QUERIES = [
    "limit=abc&cursor=!!!&wait=-5",
    "limit=0&cursor=&status=nonsense&job_id=&archived=maybe",
    "limit=-1&cursor=eyJ4Ijp7fX0&wait=1e9",
    "limit=99999999999999999999999&cursor=" + "A" * 2000,
    "limit=1.5&extensions=%00,%FF,..&query=%ED%A0%80&instrument_id=%2e%2e%2f",
    "cursor=WzEsMl0&cursor=W10&limit=1&limit=2",
    "cursor=" + "%FF" * 300 + "&name=" + "%00" * 10,
]


@pytest.mark.parametrize("query", QUERIES)
async def test_hostile_query_strings_are_never_a_500(server: LocalServer, query: str) -> None:
    for route in api_routes(server):
        head = request_head(
            route.method,
            f"{_api_path(route)}?{query}",
            _auth(server, **{"Content-Type": "application/json", "Content-Length": "2"}),
        )
        reply = await exchange(server.port, head + b"{}")
        _assert_handled(reply, f"{route}?{query[:40]}")


@pytest.mark.parametrize(
    "value", ["%ED%A0%80", "%FF%FE", "..%2F..%2Fetc%2Fpasswd", "%00", "a" * 3000, "%25", "'--"]
)
async def test_hostile_path_ids_are_never_a_500(server: LocalServer, value: str) -> None:
    for route in api_routes(server):
        if not route.takes_id:
            continue
        head = request_head(
            route.method,
            _api_path(route, value),
            _auth(server, **{"Content-Type": "application/json", "Content-Length": "2"}),
        )
        reply = await exchange(server.port, head + b"{}")
        _assert_handled(reply, f"{route} with id {value[:20]}")


# -- file names -----------------------------------------------------------------------------

MARK = uuid.uuid4().hex[:12]
#: Names a client might send; each holds MARK so any file the server wrote under it is found.
NAMES = {
    "parent": f"../{MARK}.csv",
    "deep parent": f"../../../../../../../../tmp/{MARK}-escaped.csv",
    "absolute": f"/etc/{MARK}-passwd",
    "absolute tmp": f"/tmp/{MARK}-absolute.csv",
    "windows drive": f"C:\\Windows\\{MARK}.ini",
    "windows parent": f"..\\..\\{MARK}.txt",
    "unc": f"\\\\server\\share\\{MARK}.txt",
    "home": f"~/{MARK}.csv",
    "dot slash": f"./{MARK}.csv",
    "percent encoded": f"%2e%2e%2f{MARK}",
    "rtl override": f"\u202e{MARK}gpj.exe",
    "emoji folders": f"\U0001f600/\U0001f4c1/{MARK}.csv",
    "combining": f"{MARK}e\u0301\u0301\u0301.csv",
    "ntfs stream": f"{MARK}:stream.txt",
    "long unicode": MARK + "\u00e9" * 2000,
    "quotes": f"{MARK}\"'`.csv",
    "spaces": f"   {MARK} spaced .csv   ",
}
#: Names that must be refused (422): not a file name, or not text.
REFUSED = {
    "nul": f"a\x00{MARK}.csv",
    "newline": f"a\r\nX-{MARK}: 1",
    "tab": f"{MARK}\t.csv",
    "escape": f"{MARK}\x1b[31m.csv",
    "too long": MARK + "x" * 5000,
    "dot dot": f"{MARK}/..",
    "dot": f"{MARK}/.",
    "folder": f"{MARK}/",
    "just dots": "..",
    "lone surrogate": f"{MARK}\ud800.csv",
}


def _last_component(name: str) -> str:
    return re.split(r"[\\/]", name.strip())[-1]


def _files_named(root: Path, mark: str) -> list[Path]:
    return [p for p in root.rglob("*") if mark in p.name]


def _multipart(instrument: str, filename: bytes, data: bytes = b"hello") -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="instrument_id"\r\n\r\n'
        f"{instrument}\r\n--{boundary}\r\n"
        'Content-Disposition: form-data; name="file"; filename="'.encode()
        + filename
        + b'"\r\nContent-Type: text/csv\r\n\r\n'
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


async def _upload_by_url(
    session: aiohttp.ClientSession, server: LocalServer, instrument: str, name: str
) -> tuple[int, dict[str, object]]:
    async with session.post(
        server.base_url + "/v1/files/upload-url",
        data=json.dumps({"file_name": name, "instrument_id": instrument}),
        headers=_auth(server, **{"Content-Type": "application/json"}),
    ) as resp:
        ticket = await resp.json()
        if resp.status != 200:
            return resp.status, ticket
    async with session.put(ticket["upload_url"], data=b"hello", headers=ticket["headers"]) as put:
        assert put.status == 200, await put.text()
    async with session.post(
        f"{server.base_url}/v1/files/{ticket['file_id']}/confirm-upload", headers=_auth(server)
    ) as confirm:
        return confirm.status, await confirm.json()


async def test_hostile_file_names_are_names_only(
    server: LocalServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    instrument = server.create_instrument("Plate reader")
    stored: dict[str, str] = {}
    paths: dict[str, str] = {}
    for label, name in NAMES.items():
        # A multipart filename is a quoted header value: clients percent-encode quotes there.
        ways = ("upload-url",) if '"' in name else ("upload-url", "multipart")
        for way in ways:
            if way == "upload-url":
                status, body = await _upload_by_url(session, server, instrument, name)
            else:
                # A quoted-string escapes backslashes (RFC 9110, section 5.6.4).
                data, ctype = _multipart(instrument, name.replace("\\", "\\\\").encode())
                async with session.post(
                    server.base_url + "/v1/files",
                    data=data,
                    headers=_auth(server, **{"Content-Type": ctype}),
                ) as resp:
                    status, body = resp.status, await resp.json()
            assert status == 200, (label, way, body)
            assert body["file_name"] == _last_component(name), (label, way)
            stored[str(body["file_id"])] = name
            # aiohttp's multipart parser drops leading slashes from a quoted filename.
            paths[str(body["file_id"])] = (
                name.strip().lstrip("\\/") if way == "multipart" else name.strip()
            )
    for label, name in REFUSED.items():
        status, body = await _upload_by_url(session, server, instrument, name)
        # 400 for the surrogate: the body is not text, before it is a bad name.
        assert status == (400 if label == "lone surrogate" else 422), (label, body)
    # Multipart names go in a header: NUL and CR/LF cannot even be framed there (400), and
    # bytes that are not UTF-8 are not a name (422).
    for raw, expected in [
        (b"a\x00b.csv", 400),
        (b"a\r\nb.csv", 400),
        (b"\xff\xfe" + MARK.encode() + b".csv", 422),
        (b"\xed\xa0\x80.csv", 422),
        (MARK.encode() + b"/..", 422),
        (MARK.encode() * 400, 422),
    ]:
        data, ctype = _multipart(instrument, raw)
        async with session.post(
            server.base_url + "/v1/files",
            data=data,
            headers=_auth(server, **{"Content-Type": ctype}),
        ) as resp:
            assert resp.status == expected, (raw[:20], await resp.text())

    # Stored as given: the platform path is the name, the file name its last component.
    async with session.get(
        server.base_url + "/v1/files", params={"limit": "1000"}, headers=_auth(server)
    ) as resp:
        listed = {f["file_id"]: f for f in await resp.json()}
    for file_id, path in paths.items():
        assert listed[file_id]["original_path"] == path
    # Downloads name the file safely (percent-encoded, one header line).
    some = next(iter(stored))
    async with session.get(
        f"{server.base_url}/v1/files/{some}/content", headers=_auth(server)
    ) as resp:
        url = (await resp.json())["download_url"]
    async with session.get(url) as resp:
        disposition = resp.headers["Content-Disposition"]
        assert "\r" not in disposition
        assert "\n" not in disposition
        assert "/" not in disposition.split("''", 1)[1]

    # No name reached the disk: blobs are named by file id.
    assert _files_named(tmp_path, MARK) == []
    assert not [p for p in Path("/tmp").glob(f"*{MARK}*")]
    assert not [p for p in Path("/etc").glob(f"*{MARK}*")]

    # And a client downloading them all stays inside its directory: every name lands under
    # it (roots and drives dropped) or fails on its own; nothing is written elsewhere.
    dest = tmp_path / "downloads"
    transfer = TransferConfig(state_dir=str(tmp_path / "state"))
    async with AsyncLabric(server.admin_key, base_url=server.base_url, transfer=transfer) as c:
        outcomes = await c.files.download_many(list(stored), dest)
    for outcome in outcomes:
        name = stored[outcome.file_id]
        if outcome.ok:
            assert outcome.path is not None
            assert outcome.path.resolve().is_relative_to(dest.resolve()), name
            assert outcome.path.read_bytes() == b"hello"
        else:
            # Only names that climb out of the directory, that two files share, that no file
            # system takes, or that disguise themselves (control and bidi characters) may fail,
            # and each says so.
            assert isinstance(outcome.error, TransferError), (name, outcome)
            climbs = ".." in re.split(r"[\\/]", name)
            too_long = max(len(p.encode()) for p in re.split(r"[\\/]", name)) > 250
            disguised = re.search(
                "[\\x00-\\x1f\\x7f-\\x9f\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069]", name
            )
            reason = str(outcome.error)
            assert (
                (climbs and "leaves its directory" in reason)
                or (too_long and "bytes" in reason)
                or (disguised and ("control character" in reason or "disguises" in reason))
                or "also maps to" in reason
            ), (name, reason)
    written = [p for p in tmp_path.rglob("*") if MARK in p.name and p.is_file()]
    assert all(p.resolve().is_relative_to(dest.resolve()) for p in written)
    assert not [p for p in dest.rglob("*.labric-part")]
    assert not [p for p in Path("/tmp").glob(f"*{MARK}*")]


# -- headers and framing --------------------------------------------------------------------

FRAMING = {
    "request line over 8 KiB": lambda key: request_head(
        "GET", "/api/v1/files?q=" + "a" * 20_000, {"Authorization": f"Bearer {key}"}
    ),
    "header value of 100 KiB": lambda key: request_head(
        "GET", "/api/v1/files", {"Authorization": f"Bearer {key}", "X-Big": "b" * 100 * KiB}
    ),
    "header name of 9 KiB": lambda key: request_head(
        "GET", "/api/v1/files", {"Authorization": f"Bearer {key}", "X-" + "n" * 9000: "v"}
    ),
    "300 headers": lambda key: request_head(
        "GET",
        "/api/v1/files",
        {"Authorization": f"Bearer {key}"} | {f"X-H{i}": "v" for i in range(300)},
    ),
    "Authorization of 8,000 bytes": lambda key: request_head(
        "GET", "/api/v1/files", {"Authorization": "Bearer lbk_abc_" + "s" * 8000}
    ),
    "bad HTTP version": lambda key: b"GET /api/v1/files HTTP/9.9\r\nHost: x\r\n\r\n",
    "TLS on a plain port": lambda key: b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64),
    "bare LF": lambda key: b"GET /api/v1/files HTTP/1.1\nHost: x\n\n",
    "folded header": lambda key: b"GET /api/v1/files HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
    "chunked and a length": lambda key: (
        b"POST /api/v1/files/upload-url HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "two lengths": lambda key: (
        b"POST /api/v1/files/upload-url HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Content-Length: 6\r\n\r\n"
    ),
    "negative length": lambda key: request_head(
        "POST", "/api/v1/files/upload-url", {"Content-Length": "-5"}
    ),
    "overflowing length": lambda key: request_head(
        "POST",
        "/api/v1/files/upload-url",
        {"Authorization": f"Bearer {key}", "Content-Length": "9" * 30},
    ),
    "bad chunk size": lambda key: (
        request_head(
            "POST",
            "/api/v1/files/upload-url",
            {"Authorization": f"Bearer {key}", "Transfer-Encoding": "chunked"},
        )
        + b"zz\r\n"
    ),
    "unknown method": lambda key: request_head("BREW", "/api/v1/files", {}),
}


@pytest.mark.parametrize("case", list(FRAMING))
async def test_broken_framing_and_huge_headers_are_4xx(server: LocalServer, case: str) -> None:
    reply = await exchange(server.port, FRAMING[case](server.admin_key))
    assert 400 <= reply.status < 500, (reply.status, reply.body[:200])
    # The connection was handled (answered, then closed or kept), and the server still serves.
    ok = await exchange(server.port, request_head("GET", "/api/v1/files", _auth(server)))
    assert ok.status == 200


async def test_pipelined_requests_with_a_bad_one_in_the_middle(server: LocalServer) -> None:
    """A framing error ends the connection: nothing after it is served (no request smuggled in
    behind a bad one). aiohttp parses what arrived together as one batch, so the good request
    before the bad one may be answered or dropped with it; both are safe."""
    good = request_head("GET", "/api/v1/files", _auth(server))
    bad = b"GET /api/v1/files HTTP/9.9\r\nHost: x\r\n\r\n"
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(good + bad + good)
        statuses = []
        async with asyncio.timeout(10):
            while not reader.at_eof():
                try:
                    statuses.append((await read_reply(reader)).status)
                except asyncio.IncompleteReadError:
                    break
        assert statuses in ([200, 400], [400]), statuses
        # After a framing error the connection is closed, never resynchronised.
        assert await closed_by_peer(reader, within=5) == b""
    finally:
        await _close(writer)


# -- slow and many clients ------------------------------------------------------------------

QUICK = 0.5  # seconds: the idle and body timeouts of the ``quick`` server


@pytest.fixture
async def quick(tmp_path: Path) -> AsyncIterator[LocalServer]:
    """A server that cuts idle and stalled connections off after half a second."""
    async with LocalServer(tmp_path / "quick", idle_timeout=QUICK, body_timeout=QUICK) as srv:
        yield srv


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close our end; the server may have reset the connection already, which is the point."""
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def _still_serves(server: LocalServer) -> None:
    reply = await exchange(server.port, request_head("GET", "/api/v1/files", _auth(server)))
    assert reply.status == 200


async def test_an_idle_connection_is_closed(quick: LocalServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", quick.port)
    try:
        assert await closed_by_peer(reader, within=10 * QUICK) == b""
    finally:
        await _close(writer)


async def test_a_kept_alive_connection_is_closed_once_idle(quick: LocalServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", quick.port)
    try:
        writer.write(request_head("GET", "/api/v1/files", _auth(quick)))
        assert (await read_reply(reader)).status == 200
        assert await closed_by_peer(reader, within=10 * QUICK) == b""
    finally:
        await _close(writer)


async def _trickle(writer: asyncio.StreamWriter, data: bytes, reader: asyncio.StreamReader) -> int:
    """Send ``data`` a byte at a time, each well inside the timeout, until the server hangs up;
    return how many bytes went out."""
    for sent, byte in enumerate(data):
        if reader.at_eof() or writer.is_closing():
            return sent
        try:
            writer.write(bytes([byte]))
            await writer.drain()
        except ConnectionError:
            return sent
        await asyncio.sleep(QUICK / 5)  # the pace of the attack, not a wait for an event
    return len(data)


async def test_trickled_headers_are_cut_off(quick: LocalServer) -> None:
    """Slowloris: every byte arrives in time, but the headers never finish within the deadline."""
    head = request_head("GET", "/api/v1/files", _auth(quick, **{"X-Pad": "p" * 500}))
    reader, writer = await asyncio.open_connection("127.0.0.1", quick.port)
    try:
        closed = asyncio.create_task(closed_by_peer(reader, within=20 * QUICK))
        sent = await _trickle(writer, head, reader)
        received = await closed
        assert sent < len(head), "the server waited for every byte of the headers"
        assert b"200 OK" not in received
    finally:
        await _close(writer)
    await _still_serves(quick)


@pytest.mark.parametrize("sent", [0, 10])
async def test_a_body_that_stops_arriving_is_cut_off(quick: LocalServer, sent: int) -> None:
    head = request_head(
        "POST",
        "/api/v1/files/upload-url",
        _auth(quick, **{"Content-Type": "application/json", "Content-Length": "100"}),
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", quick.port)
    try:
        writer.write(head + b'{"file_name": "a.csv"'[:sent])
        await writer.drain()
        received = await closed_by_peer(reader, within=20 * QUICK)
        # Closed without handling a request that never arrived whole.
        assert b" 200 " not in received.split(b"\r\n", 1)[0]
    finally:
        await _close(writer)
    await _still_serves(quick)


@pytest.mark.parametrize("declared", [True, False], ids=["Content-Length", "chunked"])
async def test_a_trickled_body_is_cut_off(quick: LocalServer, declared: bool) -> None:
    """A body that keeps sending a byte at a time, each well inside the timeout, is cut off
    too: a timeout that any byte resets would let it hold the connection for ever."""
    body = json.dumps({"file_name": "a.csv", "pad": "p" * 4000}).encode()
    framing = {"Content-Length": str(len(body))} if declared else {"Transfer-Encoding": "chunked"}
    head = request_head(
        "POST",
        "/api/v1/files/upload-url",
        _auth(quick, **{"Content-Type": "application/json", **framing}),
    )
    if not declared:
        body = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    reader, writer = await asyncio.open_connection("127.0.0.1", quick.port)
    try:
        writer.write(head)
        closed = asyncio.create_task(closed_by_peer(reader, within=40 * QUICK))
        sent = await _trickle(writer, body, reader)
        received = await closed
        assert sent < len(body), "the server waited for every byte of the body"
        assert b" 200 " not in received[:20]
    finally:
        await _close(writer)
    await _still_serves(quick)


async def test_a_storage_upload_that_stalls_is_cut_off(quick: LocalServer) -> None:
    instrument = quick.create_instrument("Plate reader")
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            quick.base_url + "/v1/files/upload-url",
            json={"file_name": "slow.bin", "instrument_id": instrument, "size_bytes": 1000},
            headers=_auth(quick),
        ) as resp,
    ):
        ticket = await resp.json()
        assert resp.status == 200, ticket
    url = yarl_url(ticket["upload_url"])
    head = request_head("PUT", url.raw_path_qs, {**ticket["headers"], "Content-Length": "1000"})
    reader, writer = await asyncio.open_connection("127.0.0.1", quick.port)
    try:
        writer.write(head + b"x" * 100)
        await writer.drain()
        await closed_by_peer(reader, within=20 * QUICK)
    finally:
        await _close(writer)
    # Nothing was stored: the file is still waiting for its bytes, and cannot be confirmed.
    async with aiohttp.ClientSession(headers=_auth(quick)) as s:
        path = f"{quick.base_url}/v1/files/{ticket['file_id']}"
        async with s.get(path + "/upload-status") as resp:
            assert (await resp.json())["status"] == "pending"
        async with s.post(path + "/confirm-upload") as resp:
            assert 400 <= resp.status < 500, await resp.text()


async def test_a_client_that_stops_reading_a_download_is_cut_off(quick: LocalServer) -> None:
    """Slow read: a download whose client takes nothing is dropped after the send timeout (it
    would otherwise hold its connection and open file for ever); one that reads gets it all."""
    size = 32 * MiB  # far more than the socket buffers on both sides hold
    instrument = quick.create_instrument("Plate reader")
    async with aiohttp.ClientSession(headers=_auth(quick)) as s:
        async with s.post(
            quick.base_url + "/v1/files/upload-url",
            json={"file_name": "big.bin", "instrument_id": instrument},
        ) as resp:
            ticket = await resp.json()
        async with s.put(
            ticket["upload_url"], data=io.BytesIO(bytes(size)), headers=ticket["headers"]
        ) as put:
            assert put.status == 200, await put.text()
        path = f"{quick.base_url}/v1/files/{ticket['file_id']}"
        async with s.post(path + "/confirm-upload") as resp:
            assert resp.status == 200, await resp.text()
        async with s.get(path + "/content") as resp:
            url = yarl_url((await resp.json())["download_url"])
        async with s.get(url) as resp:
            assert len(await resp.read()) == size  # a client that reads gets everything

    reader, writer = await asyncio.open_connection("127.0.0.1", quick.port)
    received = 0
    try:
        writer.write(request_head("GET", url.raw_path_qs))
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        # The attack itself: take nothing for several send timeouts (the server runs on this
        # loop, so its timeout fires first).
        await asyncio.sleep(4 * QUICK)
        async with asyncio.timeout(20 * QUICK):
            while chunk := await reader.read(MiB):
                received += len(chunk)
    except ConnectionResetError:
        pass  # the server aborted the connection: what the kernel held may be gone too
    finally:
        await _close(writer)
    assert received < size - len(head)
    await _still_serves(quick)


async def test_many_connections_do_not_stop_the_server(quick: LocalServer) -> None:
    """Hundreds of sockets held open (idle, half a request, half a body) while others are
    served; afterwards the server has closed them all and still answers."""
    held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    partial = [
        b"",
        b"GET /api/v1/fi",
        request_head(
            "POST",
            "/api/v1/files/upload-url",
            _auth(quick, **{"Content-Type": "application/json", "Content-Length": "50"}),
        )
        + b"{",
    ]
    try:
        for i in range(300):
            reader, writer = await asyncio.open_connection("127.0.0.1", quick.port)
            writer.write(partial[i % len(partial)])
            held.append((reader, writer))
        # Meanwhile, complete requests are answered.
        replies = await asyncio.gather(
            *(
                exchange(quick.port, request_head("GET", "/api/v1/files", _auth(quick)))
                for _ in range(20)
            )
        )
        assert [r.status for r in replies] == [200] * 20
        # And every held socket is closed by the server, none answered with a success.
        received = await asyncio.gather(
            *(closed_by_peer(reader, within=40 * QUICK) for reader, _ in held)
        )
        assert not [r for r in received if b" 200 " in r[:20]]
    finally:
        for _, writer in held:
            writer.close()
        await asyncio.gather(*(w.wait_closed() for _, w in held), return_exceptions=True)
    await _still_serves(quick)
