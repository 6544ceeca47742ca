"""Helpers for the dataset tests: a raw caller and the tables most tests use."""

from __future__ import annotations

import json as jsonlib
from typing import Any

import aiohttp
import attrs
from multidict import CIMultiDictProxy

from labric.server import LocalServer


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

    async def get(self, path: str, **kw: Any) -> Reply:
        return await self.call("GET", path, **kw)

    async def post(self, path: str, **kw: Any) -> Reply:
        return await self.call("POST", path, **kw)

    async def put(self, path: str, **kw: Any) -> Reply:
        return await self.call("PUT", path, **kw)

    async def write(self, **body: Any) -> Reply:
        """``POST /v1/data/write``."""
        return await self.post("/v1/data/write", json=body)

    async def query(self, sql: str, *params: Any, key: str | None = None) -> Reply:
        """``POST /v1/tools/query``."""
        return await self.post(
            "/v1/tools/query", json={"query": sql, "params": list(params)}, key=key
        )

    async def scalar(self, sql: str, *params: Any) -> Any:
        reply = await self.query(sql, *params)
        assert reply.status == 200, reply.body
        return reply.json()["data"][0][0]

    async def limits(self, **limits: Any) -> None:
        reply = await self.put("/v1/admin/datasets/limits", json=limits)
        assert reply.status == 200, reply.body


SAMPLES = {
    "name": "samples",
    "description": "Samples under test",
    "columns": [
        {"name": "name", "type": "text", "nullable": False, "unique": True},
        {"name": "od600", "type": "float"},
        {"name": "count", "type": "integer"},
        {"name": "ok", "type": "boolean"},
        {"name": "taken_at", "type": "datetime"},
        {"name": "extra", "type": "json"},
        {"name": "label", "type": "text"},
        {"name": "experiment", "foreign_key": "experiment"},
    ],
}
MEASUREMENTS = {
    "name": "measurements",
    "columns": [
        {"name": "sample", "foreign_key": "samples", "nullable": False},
        {"name": "kind", "type": "text"},
        {"name": "value", "type": "float"},
    ],
}
READINGS = {
    "name": "readings",
    "semantic_category": "raw",
    "columns": [
        {"name": "sample", "foreign_key": "samples", "nullable": False},
        {"name": "t", "type": "float"},
        {"name": "value", "type": "float"},
    ],
}


async def create_tables(wire: Wire, *definitions: dict[str, Any]) -> None:
    for definition in definitions or (SAMPLES, MEASUREMENTS, READINGS):
        reply = await wire.post("/v1/datasets", json=definition)
        assert reply.status == 201, reply.body
