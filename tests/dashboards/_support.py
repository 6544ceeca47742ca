"""Helpers of the dashboard tests: a raw caller, the sample rows, widgets in wire form."""

from __future__ import annotations

import json as jsonlib
from typing import Any

import aiohttp
import attrs
from multidict import CIMultiDictProxy

from labric.server import LocalServer

#: The rows of the ``samples`` table (the ``samples`` fixture writes them in this order).
SAMPLES: list[dict[str, Any]] = [
    {"name": "s1", "day": 1, "od600": 0.10, "strain": "wt", "ok": True},
    {"name": "s2", "day": 2, "od600": 0.25, "strain": "wt", "ok": True},
    {"name": "s3", "day": 3, "od600": 0.55, "strain": "wt", "ok": False},
    {"name": "s4", "day": 1, "od600": 0.12, "strain": "mut", "ok": True},
    {"name": "s5", "day": 2, "od600": 0.20, "strain": "mut", "ok": None},
    {"name": "s6", "day": 3, "od600": 0.90, "strain": "mut", "ok": True},
]

LAYOUT = {"x": 0, "y": 0, "w": 6, "h": 4}


def sql(query: str, *params: Any) -> dict[str, Any]:
    """An SQL source in wire form."""
    return {"type": "sql", "query": query, "params": list(params)}


def table_widget(query: str = "SELECT 1 AS one", **extra: Any) -> dict[str, Any]:
    """A table widget in wire form."""
    return {"type": "table", "layout": dict(LAYOUT), "source": sql(query), **extra}


@attrs.frozen
class Reply:
    """A fully read response."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        return jsonlib.loads(self.body)


class Wire:
    """Calls the API over a real socket without the SDK (for exact wire shapes)."""

    def __init__(self, session: aiohttp.ClientSession, server: LocalServer, key: str) -> None:
        self.session = session
        self.server = server
        self.key = key

    async def call(self, method: str, path: str, *, key: str | None = None, **kw: Any) -> Reply:
        url = path if path.startswith("http") else f"{self.server.base_url}{path}"
        headers = {"Authorization": f"Bearer {key or self.key}", **kw.pop("headers", {})}
        async with self.session.request(method, url, headers=headers, **kw) as resp:
            return Reply(resp.status, resp.headers, await resp.read())

    async def create(self, key: str | None = None, **body: Any) -> Reply:
        """``POST /v1/dashboards``."""
        return await self.call("POST", "/v1/dashboards", json=body, key=key)

    async def created(self, **body: Any) -> dict[str, Any]:
        """``POST /v1/dashboards``, which must succeed; the dashboard."""
        reply = await self.create(**body)
        assert reply.status == 201, reply.body
        answer: dict[str, Any] = reply.json()
        return answer

    async def problems(self, **body: Any) -> list[dict[str, Any]]:
        """``POST /v1/dashboards``, which must answer 422; its problems."""
        reply = await self.create(**body)
        assert reply.status == 422, reply.body
        detail: list[dict[str, Any]] = reply.json()["detail"]
        return detail
