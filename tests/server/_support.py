"""Helpers for the server tests: a raw HTTP caller and a controllable clock."""

from __future__ import annotations

import base64
import json as jsonlib
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
import attrs
import google_crc32c
from multidict import CIMultiDictProxy

from labric.server import LocalServer

KiB = 1024


def crc_b64(data: bytes) -> str:
    """The GCS wire form of ``data``'s CRC32C."""
    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode()


class FakeClock:
    """A clock the test moves by hand (Unix seconds)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@attrs.frozen
class Reply:
    """A fully read response."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        return jsonlib.loads(self.body)

    @property
    def detail(self) -> Any:
        return self.json()["detail"]


_DEFAULT: Any = object()


class Wire:
    """Calls a server's API and storage routes over a real socket, without the SDK."""

    def __init__(self, session: aiohttp.ClientSession, server: LocalServer) -> None:
        self.session = session
        self.server = server
        self.key = server.admin_key

    def url(self, path: str) -> str:
        if path.startswith("http"):
            return path
        return f"{self.server.base_url}{path}"

    async def call(
        self,
        method: str,
        path: str,
        *,
        key: str | None = _DEFAULT,
        json: Any = _DEFAULT,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Reply:
        sent = dict(headers or {})
        key = self.key if key is _DEFAULT else key
        if key is not None and self.url(path).startswith(self.server.base_url + "/"):
            sent["Authorization"] = f"Bearer {key}"
        kwargs: dict[str, Any] = {"headers": sent, "params": params, "data": data}
        if json is not _DEFAULT:
            kwargs["json"] = json
        async with self.session.request(method, self.url(path), **kwargs) as resp:
            body = await resp.read()
            return Reply(resp.status, resp.headers, body)

    async def get(self, path: str, **kw: Any) -> Reply:
        return await self.call("GET", path, **kw)

    async def post(self, path: str, **kw: Any) -> Reply:
        return await self.call("POST", path, **kw)

    async def put(self, path: str, **kw: Any) -> Reply:
        return await self.call("PUT", path, **kw)

    async def patch(self, path: str, **kw: Any) -> Reply:
        return await self.call("PATCH", path, **kw)

    async def delete(self, path: str, **kw: Any) -> Reply:
        return await self.call("DELETE", path, **kw)

    # -- flows ----------------------------------------------------------------------------------

    async def ticket(self, name: str = "data.csv", **body: Any) -> dict[str, Any]:
        """``POST upload-url``; asserts 200."""
        reply = await self.post("/v1/files/upload-url", json={"file_name": name, **body})
        assert reply.status == 200, reply.body
        ticket: dict[str, Any] = reply.json()
        return ticket

    async def upload(self, data: bytes, name: str = "data.csv", **body: Any) -> dict[str, Any]:
        """The hosted three-step upload; returns the confirmed FileUpload body."""
        ticket = await self.ticket(name, **body)
        put = await self.put(ticket["upload_url"], data=data, headers=ticket["headers"])
        assert put.status == 200, put.body
        confirm = await self.post(f"/v1/files/{ticket['file_id']}/confirm-upload")
        assert confirm.status == 200, confirm.body
        result: dict[str, Any] = confirm.json()
        return result

    async def put_parts(self, ticket: dict[str, Any], data: bytes) -> list[dict[str, Any]]:
        """PUT every planned part; returns the confirm manifest."""
        manifest = []
        for part in ticket["parts"]:
            chunk = data[part["offset"] : part["offset"] + part["size"]]
            reply = await self.put(
                part["url"],
                data=chunk,
                headers={**part["headers"], "x-goog-hash": f"crc32c={crc_b64(chunk)}"},
            )
            assert reply.status == 200, reply.body
            manifest.append({"number": part["number"], "crc32c": crc_b64(chunk)})
        return manifest
