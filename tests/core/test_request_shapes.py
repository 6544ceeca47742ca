"""Request shapes as the client hands them to aiohttp, checked with aioresponses.

aioresponses replaces ``ClientSession._request``: these tests see the method, URL, headers and
body arguments aiohttp was given, not the bytes it would send (no socket, no server). What a
server actually receives is tested against real sockets: ids in paths in ``test_path_escaping``,
query strings in ``test_transport``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator, Mapping

import pytest
from _aioresponses_compat import aioresponses
from yarl import URL

from labric import AsyncLabric, __version__

from ._support import KEY

BASE = "https://api.example.com/api"


@pytest.fixture
async def client() -> AsyncIterator[AsyncLabric]:
    async with AsyncLabric(KEY, base_url=BASE, max_retries=0) as c:
        yield c


@pytest.fixture
def mocked() -> Iterator[aioresponses]:
    mock = aioresponses()
    with mock:
        yield mock


def only_request(mocked: aioresponses) -> tuple[str, URL, dict[str, object]]:
    ((method, url), calls), *rest = mocked.requests.items()
    assert rest == []
    assert len(calls) == 1
    return method, url, calls[0].kwargs


async def test_files_list_query_handed_to_aiohttp(
    client: AsyncLabric, mocked: aioresponses
) -> None:
    mocked.get(re.compile(r"^https://api\.example\.com/api/v1/files\?.*"), payload=[])
    await client.files.list(
        extensions=["csv", ".txt"], query="plate 7", limit=5, instrument_id="ins 1"
    )
    method, url, kwargs = only_request(mocked)
    assert method == "GET"
    assert url.path == "/api/v1/files"
    assert kwargs["params"] == [
        ("instrument_id", "ins 1"),
        ("extensions", "csv,txt"),
        ("query", "plate 7"),
        ("page_size", "5"),
        ("limit", "5"),
    ]
    assert dict(url.query) == {
        "instrument_id": "ins 1",
        "extensions": "csv,txt",
        "query": "plate 7",
        "page_size": "5",
        "limit": "5",
    }
    assert kwargs["json"] is None
    assert kwargs["data"] is None


async def test_files_list_sends_nothing_it_was_not_given(
    client: AsyncLabric, mocked: aioresponses
) -> None:
    mocked.get(f"{BASE}/v1/files?extensions=csv,txt&page_size=100", payload=[])
    await client.files.list(extensions="csv,txt")
    _, url, kwargs = only_request(mocked)
    # page_size is always sent: it is what asks a paging server for pages (design.md 3.1).
    assert kwargs["params"] == [("extensions", "csv,txt"), ("page_size", "100")]
    assert str(url) == f"{BASE}/v1/files?extensions=csv,txt&page_size=100"


async def test_post_headers_and_body_handed_to_aiohttp(
    client: AsyncLabric, mocked: aioresponses
) -> None:
    mocked.post(f"{BASE}/v1/job-executions", payload={"ok": True})
    body = {"job_name": "nightly", "parameters": {"plate": 7}, "job_execution_id": None}
    await client._transport.request("POST", "/v1/job-executions", json=body)
    method, url, kwargs = only_request(mocked)
    assert (method, str(url)) == ("POST", f"{BASE}/v1/job-executions")
    assert kwargs["json"] == body
    assert kwargs["data"] is None
    headers = kwargs["headers"]
    assert isinstance(headers, Mapping)
    sent = {str(k).lower(): v for k, v in headers.items()}
    assert sent["authorization"] == f"Bearer {KEY}"
    assert re.fullmatch(r"[0-9a-f]{32}", sent["idempotency-key"])
    assert sent["user-agent"].startswith(f"labric-python/{__version__} ")
    # Only the encodings the bounded reader decodes (never br or zstd, which it cannot limit).
    assert sent["accept-encoding"] == "gzip, deflate"
    assert set(sent) == {"authorization", "idempotency-key", "user-agent", "accept-encoding"}
    assert kwargs["allow_redirects"] is False


async def test_delete_is_handed_no_body_and_no_idempotency_key(
    client: AsyncLabric, mocked: aioresponses
) -> None:
    mocked.delete(f"{BASE}/v1/files/f1", status=204)
    await client.files.delete("f1")
    method, _, kwargs = only_request(mocked)
    assert method == "DELETE"
    assert kwargs["json"] is None
    assert kwargs["data"] is None
    assert "Idempotency-Key" not in kwargs["headers"]  # type: ignore[operator]


@pytest.mark.parametrize(
    ("file_id", "raw_path"),
    [
        ("f1", "/api/v1/files/f1"),
        ("a/b", "/api/v1/files/a%2Fb"),
        ("a b", "/api/v1/files/a%20b"),
        ("what?x=1", "/api/v1/files/what%3Fx=1"),
        ("frag#1", "/api/v1/files/frag%231"),
        ("../admin", "/api/v1/files/..%2Fadmin"),
        ("ünï", "/api/v1/files/%C3%BCn%C3%AF"),
    ],
)
async def test_file_ids_are_escaped_in_the_url_handed_to_aiohttp(
    client: AsyncLabric, mocked: aioresponses, file_id: str, raw_path: str
) -> None:
    mocked.get(re.compile(r"^https://api\.example\.com/.*"), payload={"file_id": file_id})
    assert (await client.files.get(file_id)).file_id == file_id
    _, url, _ = only_request(mocked)
    assert url.raw_path == raw_path
    assert url.query_string == ""


async def test_content_path_handed_to_aiohttp(client: AsyncLabric, mocked: aioresponses) -> None:
    mocked.get(
        f"{BASE}/v1/files/a%2Fb/content",
        payload={"file_id": "a/b", "download_url": "https://s/x?sig=1", "preview_truncated": False},
    )
    content = await client.files.content("a/b")
    assert content.file_id == "a/b"
    _, url, _ = only_request(mocked)
    assert url.raw_path == "/api/v1/files/a%2Fb/content"
