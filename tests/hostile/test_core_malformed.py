"""Whatever a server answers, the client raises a LabricError: never a TypeError or KeyError.

A table of routes (each called through its public method) times a table of malformed 2xx answers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from labric import AsyncLabric, RetryPolicy, Timeout, TransferConfig
from labric.errors import (
    APIResponseValidationError,
    ConfigurationError,
    LabricError,
)

from ._server import KEY, HostileServer, file_content

Call = Callable[[AsyncLabric], Awaitable[Any]]


async def _list_files(c: AsyncLabric) -> Any:
    return [f async for f in c.files.list()]


async def _rows(c: AsyncLabric) -> Any:
    return [r async for r in c.datasets.rows("readings")]


async def _upload(c: AsyncLabric) -> Any:
    # Without an execution, an upload opens one first: that answer is the malformed one here.
    return await c.files.upload(b"abc", name="a.csv")


ROUTES: dict[str, tuple[str, str, Call]] = {
    "files.get": ("GET", "/api/v1/files/f1", lambda c: c.files.get("f1")),
    "files.content": ("GET", "/api/v1/files/f1/content", lambda c: c.files.content("f1")),
    "files.list": ("GET", "/api/v1/files", _list_files),
    "files.upload (its execution)": ("POST", "/api/v1/job-executions", _upload),
    "jobs.executions.start": (
        "POST",
        "/api/v1/job-executions",
        lambda c: c.jobs.executions.start(job_name="nightly"),
    ),
    "jobs.executions.get": (
        "GET",
        "/api/v1/job-executions/e1",
        lambda c: c.jobs.executions.get("e1"),
    ),
    "instruments.get": ("GET", "/api/v1/instruments/i1", lambda c: c.instruments.get("i1")),
    "experiments.get": ("GET", "/api/v1/experiments/x1", lambda c: c.experiments.get("x1")),
    "dashboards.get": ("GET", "/api/v1/dashboards/d1", lambda c: c.dashboards.get("d1")),
    "datasets.query": ("POST", "/api/v1/tools/query", lambda c: c.datasets.query("select 1")),
    "datasets.rows": ("POST", "/api/v1/tools/read", _rows),
}

JSON = "application/json"
ANSWERS: dict[str, tuple[bytes, str]] = {
    "null": (b"null", JSON),
    "empty body": (b"", JSON),
    "a list": (b"[1, 2]", JSON),
    "a list of nulls": (b"[null]", JSON),
    "an empty object": (b"{}", JSON),
    "a string": (b'"ok"', JSON),
    "a number": (b"7", JSON),
    "fields of the wrong type": (
        b'{"job_execution_id": 5, "file_id": [], "id": {}, "name": 1, "columns": 3, '
        b'"download_url": 9, "status": []}',
        JSON,
    ),
    "not JSON": (b"{not json", JSON),
    "not UTF-8": (b'{"a": "\xff\xfe"}', JSON),
    "an HTML page": (b"<html><body>Welcome</body></html>", "text/html"),
    "JSON nested 50k deep": (b"[" * 50_000 + b"]" * 50_000, JSON),
}


@pytest.mark.parametrize("answer", list(ANSWERS))
@pytest.mark.parametrize("route", list(ROUTES))
async def test_a_malformed_answer_is_a_labric_error(
    hostile: HostileServer, route: str, answer: str
) -> None:
    method, path, call = ROUTES[route]
    body, content_type = ANSWERS[answer]

    @hostile.route(method, path)
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type=content_type, headers={"X-Request-ID": "r-9"})

    async with hostile.client(max_retries=0) as client:
        with pytest.raises(LabricError) as caught:
            await call(client)
    err = caught.value
    assert isinstance(err, APIResponseValidationError), repr(err)
    assert (err.method, err.path, err.request_id) == (method, path, "r-9")


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://127.0.0.1/blob",
        "gopher://127.0.0.1:70/x",
        "javascript:alert(1)",
        "/relative/only",
        "http://[::1/broken",
    ],
)
async def test_a_storage_url_that_is_not_http_is_refused_at_once(
    hostile: HostileServer, url: str
) -> None:
    @hostile.route("GET", "/api/v1/files/{file_id}/content")
    async def content(request: web.Request) -> web.StreamResponse:
        return web.json_response(file_content("f1", url, size=3))

    async with hostile.client(retry=RetryPolicy(max_retries=3, initial_delay=0)) as client:
        with pytest.raises(APIResponseValidationError, match="storage URL") as caught:
            await client.files.read_bytes("f1")
        # Refused, not tried as a connection and retried: no retry was counted.
        assert client.stats.retries == 0
    assert "passwd" not in str(caught.value) or url.startswith("file:")
    assert len(hostile.seen("GET", "/api/v1/files/f1/content")) == 1


async def test_a_redirect_to_another_scheme_is_refused(hostile: HostileServer) -> None:
    @hostile.route("GET", "/api/v1/files/{file_id}")
    async def get(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("file:///etc/passwd")

    async with hostile.client(max_retries=3) as client:
        with pytest.raises(APIResponseValidationError, match="redirected"):
            await client.files.get("f1")
    assert len(hostile.requests) == 1


@pytest.mark.parametrize(
    "make",
    [
        lambda: TransferConfig(part_size=0),
        lambda: TransferConfig(part_size=-1),
        lambda: TransferConfig(part_size=1.5),
        lambda: TransferConfig(part_size="16MiB"),
        lambda: TransferConfig(concurrency=2.5),
        lambda: TransferConfig(chunk_size=True),
        lambda: TransferConfig(memory_budget=float("inf")),
        lambda: TransferConfig(state_dir=3),
        lambda: Timeout(read=-1),
        lambda: Timeout(connect=float("nan")),
        lambda: RetryPolicy(max_retries=-1),
        lambda: RetryPolicy(initial_delay="soon"),
        lambda: AsyncLabric(KEY, base_url="http://127.0.0.1:1/api", transfer={"part_size": 1}),
        lambda: AsyncLabric(KEY, base_url="http://127.0.0.1:1/api", retry=3),
        lambda: AsyncLabric(KEY, base_url="http://127.0.0.1:1/api", timeout="slow"),
        lambda: AsyncLabric(KEY, base_url="http://127.0.0.1:1/api", max_connections=0),
        lambda: AsyncLabric(KEY, base_url="http://127.0.0.1:1/api", max_response_bytes=0),
        lambda: AsyncLabric(KEY, base_url="http://127.0.0.1:1/api", max_response_bytes=1.5),
        lambda: AsyncLabric(KEY, base_url="ftp://127.0.0.1/api"),
    ],
)
def test_nonsense_configuration_is_a_configuration_error(make: Callable[[], Any]) -> None:
    with pytest.raises(ConfigurationError):
        make()
