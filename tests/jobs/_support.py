"""Helpers of the jobs tests: a hand-driven clock, raw HTTP calls, job scripts."""

from __future__ import annotations

import json as jsonlib
import textwrap
import time
from typing import Any

import aiohttp
import attrs

from labric.server import LocalServer


class FakeClock:
    """A clock the test moves by hand (Unix seconds)."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@attrs.frozen
class Reply:
    """A fully read response."""

    status: int
    headers: Any
    body: bytes

    def json(self) -> Any:
        return jsonlib.loads(self.body)

    @property
    def detail(self) -> Any:
        return self.json()["detail"]


_ADMIN: Any = object()


class Wire:
    """Calls a server's API over a real socket, without the SDK (and without retries)."""

    def __init__(self, session: aiohttp.ClientSession, server: LocalServer) -> None:
        self.session = session
        self.server = server

    async def call(
        self, method: str, path: str, *, key: str | None = _ADMIN, **kwargs: Any
    ) -> Reply:
        key = self.server.admin_key if key is _ADMIN else key
        headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
        url = path if path.startswith("http") else f"{self.server.base_url}{path}"
        async with self.session.request(method, url, headers=headers, **kwargs) as resp:
            return Reply(resp.status, resp.headers, await resp.read())

    async def get(self, path: str, **kw: Any) -> Reply:
        return await self.call("GET", path, **kw)

    async def post(self, path: str, **kw: Any) -> Reply:
        return await self.call("POST", path, **kw)

    async def patch(self, path: str, **kw: Any) -> Reply:
        return await self.call("PATCH", path, **kw)

    async def ok(self, method: str, path: str, **kw: Any) -> Any:
        """Call and return the JSON body, asserting a 200."""
        reply = await self.call(method, path, **kw)
        assert reply.status == 200, reply.body
        return reply.json()

    async def create_job(self, name: str, code: str = "print('hi')\n", **body: Any) -> Any:
        return await self.ok("POST", "/v1/jobs", json={"name": name, "code": code, **body})

    async def executions(self, job_id: str) -> list[Any]:
        listed: list[Any] = await self.ok(
            "GET", "/v1/job-executions", params={"job_id": job_id, "limit": "100"}
        )
        return listed

    async def upload(self, data: bytes, name: str, *, key: str | None = _ADMIN, **body: Any) -> Any:
        """The hosted three-step upload; returns the confirmed FileUpload body."""
        ticket = await self.ok(
            "POST", "/v1/files/upload-url", key=key, json={"file_name": name, **body}
        )
        async with self.session.put(
            ticket["upload_url"], data=data, headers=ticket["headers"]
        ) as put:
            assert put.status == 200, await put.read()
        return await self.ok("POST", f"/v1/files/{ticket['file_id']}/confirm-upload", key=key)


def script(text: str) -> str:
    """A job script from an indented block."""
    return textwrap.dedent(text).lstrip()
