"""Error mapping: statuses and bodies to classes, and every wire exception to the SDK's tree."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.client_reqrep import ConnectionKey
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from labric import errors
from labric._core.errormap import make_status_error, map_exception
from labric.errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    LabricError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    UnprocessableEntityError,
)

from ._support import SECRET, MakeClient, ScriptedServer

SIGNED = "https://storage.example.com/bucket/obj?X-Signature=deadbeefsig&expires=99"


def status_error(
    status: int,
    body: Any = None,
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    url: str = "https://api.example.com/api/v1/files/f1?cursor=abc",
    reason: str | None = None,
) -> APIStatusError:
    content = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    return make_status_error(
        status=status,
        headers=CIMultiDictProxy(CIMultiDict(headers or {})),
        content=content,
        method="GET",
        url=url,
        reason=reason,
    )


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (409, ConflictError),
        (413, PayloadTooLargeError),
        (422, UnprocessableEntityError),
        (429, RateLimitError),
        (500, InternalServerError),
        (501, InternalServerError),
        (502, InternalServerError),
        (503, InternalServerError),
        (504, InternalServerError),
        (505, InternalServerError),
        (599, InternalServerError),
        (405, APIStatusError),
        (408, APIStatusError),
        (410, APIStatusError),
        (418, APIStatusError),
    ],
)
def test_status_maps_to_class(status: int, cls: type[APIStatusError]) -> None:
    err = status_error(status, {"detail": "nope"})
    assert type(err) is cls
    assert err.status_code == status
    assert isinstance(err, APIStatusError)
    assert isinstance(err, LabricError)
    assert err.detail == "nope"
    assert str(err).startswith(f"{status} nope")


def test_every_status_class_is_exported_and_documented() -> None:
    for name in errors.__all__:
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, LabricError):
            assert name in (errors.__doc__ or ""), f"{name} missing from the error tree"


def test_json_detail_string() -> None:
    err = status_error(404, {"detail": "File f1 not found"})
    assert err.detail == "File f1 not found"
    assert err.body == {"detail": "File f1 not found"}
    assert err.message == "File f1 not found"


def test_422_list_detail_is_kept_and_summarised() -> None:
    problems = [
        {"type": "missing", "loc": ["body", "file_name"], "msg": "Field required"},
        {"type": "int_parsing", "loc": ["query", "limit"], "msg": "Input should be an integer"},
    ]
    err = status_error(422, {"detail": problems})
    assert isinstance(err, UnprocessableEntityError)
    assert err.detail == problems
    assert err.message == "body.file_name: Field required (and 1 more)"


def test_400_errors_list() -> None:
    body = {"errors": [{"path": "tables[0].rows[3].mass", "message": "not a number"}]}
    err = status_error(400, body)
    assert isinstance(err, BadRequestError)
    assert err.detail == body["errors"]
    assert err.message == "tables[0].rows[3].mass: not a number"


def test_html_413_from_an_edge_proxy() -> None:
    html = (
        b"<html><head><title>413 Request Entity Too Large</title></head><body>nginx</body></html>"
    )
    err = status_error(413, raw=html, headers={"Content-Type": "text/html"})
    assert isinstance(err, PayloadTooLargeError)
    assert err.body == html.decode()
    assert err.detail is None
    assert "<html>" not in str(err)
    assert str(err).startswith("413 Request Entity Too Large")


def test_plain_text_error_body_becomes_the_detail() -> None:
    err = status_error(502, raw=b"upstream connect error", reason="Bad Gateway")
    assert isinstance(err, InternalServerError)
    assert err.detail == "upstream connect error"


@pytest.mark.parametrize(
    ("status", "reason", "expected"),
    [(500, None, "Internal Server Error"), (404, "Gone Fishing", "Gone Fishing"), (599, None, "")],
)
def test_empty_body(status: int, reason: str | None, expected: str) -> None:
    err = status_error(status, raw=b"", reason=reason)
    assert err.body is None
    assert err.detail is None
    assert err.message == (expected or f"HTTP {status}")


def test_json_body_without_detail() -> None:
    err = status_error(401, {"error": "bad key"})
    assert isinstance(err, AuthenticationError)
    assert err.detail == {"error": "bad key"}
    assert err.message == "Unauthorized"


def test_long_detail_is_truncated_in_the_message() -> None:
    err = status_error(400, {"detail": "x" * 5000})
    assert len(err.message) < 600
    assert err.detail == "x" * 5000


def test_request_id_method_and_path_are_carried() -> None:
    err = status_error(404, {"detail": "missing"}, headers={"x-request-id": "req-42"})
    assert err.request_id == "req-42"
    assert err.method == "GET"
    assert err.path == "/api/v1/files/f1"
    assert str(err) == "404 missing (GET /api/v1/files/f1) [request id req-42]"


def test_headers_are_case_insensitive() -> None:
    err = status_error(429, {"detail": "slow down"}, headers={"Retry-After": "3"})
    assert err.headers["retry-after"] == "3"


def test_query_string_never_in_str() -> None:
    err = status_error(403, {"detail": "signature expired"}, url=SIGNED)
    assert err.path == "/bucket/obj"
    assert "deadbeefsig" not in str(err)
    assert "?" not in str(err)
    assert "deadbeefsig" not in repr(err)


KEY_ = ConnectionKey("storage.example.com", 443, True, True, None, None, None, None)


@pytest.mark.parametrize(
    ("exc", "cls", "text"),
    [
        pytest.param(
            aiohttp.ClientConnectorError(KEY_, ConnectionRefusedError(111, "Connection refused")),
            APIConnectionError,
            "Could not connect to storage.example.com:443: Connection refused",
            id="ClientConnectorError",
        ),
        pytest.param(
            aiohttp.ServerDisconnectedError(),
            APIConnectionError,
            "The server closed the connection",
            id="ServerDisconnectedError",
        ),
        pytest.param(
            aiohttp.ClientPayloadError("Response payload is not completed"),
            APIConnectionError,
            "The response body was cut short or malformed",
            id="ClientPayloadError",
        ),
        pytest.param(
            aiohttp.ServerTimeoutError("Timeout on reading data from socket"),
            APITimeoutError,
            "The request timed out",
            id="ServerTimeoutError",
        ),
        pytest.param(
            aiohttp.SocketTimeoutError("Timeout on reading data from socket"),
            APITimeoutError,
            "The read timed out",
            id="SocketTimeoutError",
        ),
        pytest.param(
            aiohttp.ConnectionTimeoutError("Connection timeout to host"),
            APITimeoutError,
            "The connect timed out",
            id="ConnectionTimeoutError",
        ),
        pytest.param(
            TimeoutError(), APITimeoutError, "The request timed out", id="asyncio.Timeout"
        ),
        pytest.param(
            aiohttp.ClientOSError(104, "Connection reset by peer"),
            APIConnectionError,
            "ClientOSError: [Errno 104] Connection reset by peer",
            id="ClientOSError",
        ),
        pytest.param(
            aiohttp.ClientConnectionResetError("Cannot write to closing transport"),
            APIConnectionError,
            "ClientConnectionResetError: Cannot write to closing transport",
            id="ClientConnectionResetError",
        ),
        pytest.param(
            ConnectionResetError(104, "Connection reset by peer"),
            APIConnectionError,
            "ConnectionResetError: [Errno 104] Connection reset by peer",
            id="bare OSError",
        ),
        pytest.param(
            aiohttp.InvalidURL(SIGNED),
            APIConnectionError,
            "InvalidURL: https://storage.example.com/bucket/obj",
            id="InvalidURL without its query",
        ),
        pytest.param(
            aiohttp.ClientResponseError(
                aiohttp.RequestInfo(
                    URL(SIGNED), "GET", CIMultiDictProxy(CIMultiDict()), URL(SIGNED)
                ),
                (),
                status=400,
                message="Got more than 8190 bytes when reading",
            ),
            APIConnectionError,
            "ClientResponseError: 400, message='Got more than 8190 bytes when reading', "
            "url='https://storage.example.com/bucket/obj'",
            id="ClientResponseError without the query",
        ),
    ],
)
def test_wire_exception_maps_to_our_class(
    exc: BaseException, cls: type[APIConnectionError], text: str
) -> None:
    err = map_exception(exc, method="PUT", url=SIGNED)
    assert type(err) is cls
    assert err.message == text
    assert err.method == "PUT"
    assert err.path == "/bucket/obj"
    assert "deadbeefsig" not in str(err)


def test_our_errors_pass_through_map_exception_unchanged() -> None:
    original = NotFoundError("gone", status_code=404)
    assert map_exception(original, method="GET", url=SIGNED) is original


# -- through a real server ------------------------------------------------------------------------


async def test_html_413_over_the_wire(api: ScriptedServer, make_client: MakeClient) -> None:
    html = "<html><body><h1>413 Request Entity Too Large</h1></body></html>"

    async def too_large(request: web.Request) -> web.Response:
        return web.Response(status=413, text=html, content_type="text/html")

    api.on("POST", "/api/v1/data/write", too_large)
    client = make_client()
    with pytest.raises(PayloadTooLargeError) as info:
        await client._transport.request("POST", "/v1/data/write", json={"rows": [1] * 100})
    err = info.value
    assert err.status_code == 413
    assert err.body == html
    assert str(err) == "413 Request Entity Too Large (POST /api/v1/data/write)"
    assert len(api.requests) == 1  # 413 is not retried


async def test_401_never_shows_the_key(api: ScriptedServer, make_client: MakeClient) -> None:
    async def unauthorized(request: web.Request) -> web.Response:
        return web.json_response({"detail": "Invalid API key"}, status=401)

    api.on("GET", "/api/v1/files/abc", unauthorized)
    client = make_client()
    with pytest.raises(AuthenticationError) as info:
        await client.files.get("abc")
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value)
    assert SECRET not in repr(info.value.headers)
