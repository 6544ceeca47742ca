"""Helpers of the experiments tests: a hand-driven clock and raw HTTP calls."""

from __future__ import annotations

import json as jsonlib
from datetime import UTC, datetime
from typing import Any

import aiohttp
import attrs

from labric.server import LocalServer

#: A fixed start for hand-driven clocks (a whole second, so stored times are easy to read).
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC).timestamp()


class FakeClock:
    """A clock the test moves by hand (Unix seconds)."""

    def __init__(self, start: float = T0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def stamp(ts: float) -> str:
    """A Unix time in the server's stored (and wire) form."""
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def at(ts: float) -> datetime:
    """A Unix time as the aware datetime the SDK's models hold."""
    return datetime.fromtimestamp(ts, tz=UTC)


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
        headers.update(kwargs.pop("headers", {}))
        url = path if path.startswith("http") else f"{self.server.base_url}{path}"
        async with self.session.request(method, url, headers=headers, **kwargs) as resp:
            return Reply(resp.status, resp.headers, await resp.read())

    async def ok(self, method: str, path: str, **kw: Any) -> Any:
        """Call and return the JSON body, asserting a 200."""
        reply = await self.call(method, path, **kw)
        assert reply.status == 200, reply.body
        return reply.json()
