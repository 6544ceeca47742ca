"""The documented unversioned paths (``/api/files``) answer as their ``/api/v1`` routes do.

The platform's introduction shows ``curl https://platform.labric.co/api/files -H "Authorization:
Bearer lbk_..."``; the README shows the same against ``labric serve``. These requests are raw
HTTP, as curl sends them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from labric.server import LocalServer


@pytest.fixture
async def http(server: LocalServer) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _upload(http: aiohttp.ClientSession, server: LocalServer, path: str, name: str) -> str:
    form = aiohttp.FormData()
    form.add_field("instrument_id", server.create_instrument("reader"))
    form.add_field("file", b"a,b\n1,2\n", filename=name, content_type="text/csv")
    async with http.post(server.origin + path, data=form, headers=_auth(server.admin_key)) as r:
        assert r.status in (200, 201), await r.text()
        file_id: str = (await r.json())["file_id"]
        return file_id


async def test_the_readme_curl_lists_files(
    server: LocalServer, http: aiohttp.ClientSession
) -> None:
    first = await _upload(http, server, "/api/files", "a.csv")  # an upload through an alias too
    second = await _upload(http, server, "/api/v1/files", "b.csv")
    async with http.get(server.origin + "/api/files", headers=_auth(server.admin_key)) as r:
        assert r.status == 200
        unversioned = await r.json()
    async with http.get(server.origin + "/api/v1/files", headers=_auth(server.admin_key)) as r:
        versioned = await r.json()
    assert [f["file_id"] for f in unversioned] == [second, first]
    assert unversioned == versioned
    async with http.get(
        server.origin + f"/api/files/{first}", headers=_auth(server.admin_key)
    ) as r:
        assert (await r.json())["file_id"] == first


async def test_aliases_check_keys_scopes_and_input_as_v1_does(
    server: LocalServer, http: aiohttp.ClientSession
) -> None:
    async with http.get(server.origin + "/api/files") as r:
        assert r.status == 401
    read_only = server.create_key(["read"])
    async with http.post(
        server.origin + "/api/jobs",
        json={"name": "j", "code": "print(1)\n"},
        headers=_auth(read_only),
    ) as r:
        assert r.status == 403
    async with http.get(
        server.origin + "/api/files", params={"limit": "0"}, headers=_auth(read_only)
    ) as r:
        assert r.status == 422
        assert (await r.json())["detail"][0]["loc"] == ["query", "limit"]
    async with http.get(server.origin + "/api/nothing-here", headers=_auth(read_only)) as r:
        assert r.status == 404
    async with http.get(server.origin + "/api/openapi.json") as r:
        paths = (await r.json())["paths"]
    assert "/api/v1/files" in paths
    assert "/api/files" not in paths  # the document lists the versioned paths


async def test_paged_alias_links_stay_on_the_alias(
    server: LocalServer, http: aiohttp.ClientSession
) -> None:
    for name in ("a.csv", "b.csv", "c.csv"):
        await _upload(http, server, "/api/files", name)
    url: str | None = server.origin + "/api/files?page_size=2"
    seen = 0
    while url is not None:
        async with http.get(url, headers=_auth(server.admin_key)) as r:
            seen += len(await r.json())
            link = r.headers.get("Link")
        url = link[1 : link.index(">")] if link else None
        if url is not None:
            assert url.startswith(server.origin + "/api/files?")
    assert seen == 3
    body = {"target_name": "nothing", "target_type": "table"}
    async with http.post(
        server.origin + "/api/tools/read", json=body, headers=_auth(server.admin_key)
    ) as r:
        assert r.status == 404  # the dataset route, reached without /v1
