"""Fault injection for the local server (interface; the full implementation replaces this).

Interface used by the rest of the server:

* ``FaultConfig`` (attrs, frozen): ``error`` (fraction answered 500/503), ``throttle`` (fraction
  answered 429 with ``Retry-After``), ``reset`` (fraction of connections reset mid-body),
  ``latency_ms`` (added latency), ``bandwidth`` (bytes/second cap per body stream, 0 = none),
  ``seed`` (makes the pattern repeatable). ``parse_faults("error=0.1,seed=7")`` builds one from the
  CLI syntax; ``FaultConfig.from_json(dict)`` from the admin route's body.
* ``FaultInjector(config)``: ``.config``, ``.update(config)``, ``.middleware`` (an aiohttp
  middleware deciding per request), ``.counters`` (dict of what was injected), and
  ``await pace(request, nbytes)`` which streaming handlers call after each chunk they read or write
  (it applies the bandwidth cap and aborts the connection when a reset was decided for the request).
"""

from __future__ import annotations

from typing import Any

import attrs
from aiohttp import web

__all__ = ["FaultConfig", "FaultInjector", "pace", "parse_faults"]


@attrs.frozen(kw_only=True)
class FaultConfig:
    error: float = 0.0
    throttle: float = 0.0
    reset: float = 0.0
    latency_ms: float = 0.0
    bandwidth: int = 0
    seed: int | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaultConfig:
        return cls(**data)

    @property
    def active(self) -> bool:
        return bool(self.error or self.throttle or self.reset or self.latency_ms or self.bandwidth)


def parse_faults(spec: str) -> FaultConfig:
    values: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in spec.split(","))):
        key, _, value = item.partition("=")
        values[key.strip()] = float(value) if key.strip() not in ("seed", "bandwidth") else int(value)
    return FaultConfig(**values)


class FaultInjector:
    def __init__(self, config: FaultConfig | None = None) -> None:
        self.config = config or FaultConfig()
        self.counters: dict[str, int] = {}

    def update(self, config: FaultConfig) -> None:
        self.config = config

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        return await handler(request)  # type: ignore[no-any-return]


async def pace(request: web.Request, nbytes: int) -> None:
    """Called by streaming handlers after each chunk; see the module docstring."""
    return None
