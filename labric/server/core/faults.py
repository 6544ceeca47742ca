"""Fault injection for the local server: errors, throttling, resets, latency and bandwidth caps.

Tests and benchmarks use it to check that a client survives a misbehaving platform. It is off
unless configured, either with ``labric serve --faults "error=0.1,seed=7"`` (see
:func:`parse_faults`) or at run time through the admin route, which calls
:meth:`FaultInjector.update`.

How a request is treated
    :attr:`FaultInjector.middleware` decides once per request, before the handler runs, by drawing
    two numbers from one ``random.Random(seed)``. The first picks the outcome: with probability
    ``error`` the request is answered 500 or 503 (the second number picks which) with a
    ``{"detail": ...}`` body; with probability ``throttle`` it is answered 429 with
    ``Retry-After: <retry_after>``; with probability ``reset`` its connection is reset; otherwise it
    is handled normally. ``latency_ms`` is slept before any of this. Injected responses carry
    ``X-Labric-Fault`` so a test can tell them from the server's own answers.

Bursts and spikes
    Rate limits come in bursts: each drawn throttle starts one of ``throttle_burst`` requests, so it
    and the ``throttle_burst - 1`` requests after it are all answered 429 (with ``Retry-After``),
    whatever their own draws said. With ``spike`` set, a third number is drawn per request: with
    that probability the request sleeps ``spike_ms`` more on top of ``latency_ms``, a latency
    spike.

Resets
    A request chosen for a reset gets a :class:`RequestFault` stored under :data:`FAULT_KEY`.
    Streaming handlers call :func:`pace` after each chunk they read or write; once the bytes seen
    pass a point drawn within the body (the second number times the body size when it is known,
    otherwise right after the first chunk), ``pace`` aborts the transport and raises
    :class:`ConnectionResetError`, as a real dropped connection would. A handler that never calls
    ``pace`` runs to the end and its connection is aborted before the response is sent. Either way
    the middleware then raises :class:`InjectedReset`, an HTTP exception that aiohttp cannot write
    to the closed transport, so the client sees the connection drop and nothing is logged but the
    access line.

Bandwidth
    ``bandwidth`` caps each request's body stream: ``pace`` sleeps until the bytes seen so far
    could not have moved faster than ``bandwidth`` bytes per second since the first chunk.

Determinism
    With a ``seed``, the outcomes repeat for the same sequence of requests: every request that
    is not exempt consumes exactly two draws while faults are active (three when ``spike`` is
    set), whatever its outcome, also inside a burst.
    :meth:`FaultInjector.update` starts the sequence again from the new config's seed. Concurrent
    requests are decided in the order the middleware sees them, which the network may shuffle.

Paths under ``/api/v1/admin/`` (and its alias ``/api/admin/``) are exempt, so a test can always
turn faults off again; so is the web console (``/console/`` and its front door ``/``), which
shows what the server did rather than emulating the platform's network.
"""

from __future__ import annotations

import asyncio
import enum
import json
import math
import random
import re
import time
from collections.abc import Mapping
from typing import Any, Final

import attrs
from aiohttp import web
from aiohttp.typedefs import Handler

__all__ = [
    "CONSOLE_FRONT_DOOR",
    "DEFAULT_EXEMPT_PREFIXES",
    "FAULT_HEADER",
    "FAULT_KEY",
    "FaultConfig",
    "FaultConfigError",
    "FaultInjector",
    "InjectedReset",
    "RequestFault",
    "pace",
    "parse_faults",
]

#: Path prefixes that never get faults: the admin routes that turn them off, and the console.
DEFAULT_EXEMPT_PREFIXES: Final = ("/api/v1/admin/", "/api/admin/", "/console/")
#: The console's sign-in link's path, also exempt (as a prefix it would exempt everything).
CONSOLE_FRONT_DOOR: Final = "/"
#: Response header naming the injected fault (``error`` or ``throttle``).
FAULT_HEADER: Final = "X-Labric-Fault"

_COUNTER_NAMES: Final = (
    "requests",
    "errors_500",
    "errors_503",
    "throttled",
    "resets",
    "delayed",
    "bytes_paced",
    "throttle_bursts",
    "spikes",
)
_FRACTIONS: Final = ("error", "throttle", "reset")


class FaultConfigError(ValueError):
    """A fault setting is unknown or out of range; the message says which and why."""


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _fraction(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not (_is_number(value) and 0.0 <= value <= 1.0):
        raise FaultConfigError(f"{attribute.name} must be a fraction in [0, 1], got {value!r}")


def _non_negative_number(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not (_is_number(value) and value >= 0):
        raise FaultConfigError(f"{attribute.name} must be a number >= 0, got {value!r}")


def _non_negative_int(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        raise FaultConfigError(f"{attribute.name} must be a whole number >= 0, got {value!r}")


def _positive_int(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        raise FaultConfigError(f"{attribute.name} must be a whole number >= 1, got {value!r}")


def _optional_int(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not (isinstance(value, int) and not isinstance(value, bool)):
        raise FaultConfigError(f"{attribute.name} must be a whole number or null, got {value!r}")


_SCOPES: Final = ("all", "api", "storage")


def _scope(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value not in _SCOPES:
        raise FaultConfigError(
            f"{attribute.name} must be one of {', '.join(_SCOPES)}, got {value!r}"
        )


@attrs.frozen(kw_only=True)
class FaultConfig:
    """What to inject; the default injects nothing.

    Attributes:
        error: Fraction of requests answered 500 or 503.
        throttle: Fraction of requests answered 429 with ``Retry-After``.
        reset: Fraction of requests whose connection is reset (mid-body when the body streams).
        latency_ms: Milliseconds slept before each request is handled.
        bandwidth: Bytes per second allowed on each request's body stream; 0 means no cap.
        seed: Seed of the decisions, so a run can be repeated; ``None`` draws a fresh one.
        retry_after: Seconds sent in ``Retry-After`` on injected 429s.
        scope: Which requests get faults: ``all`` (default), ``api`` (``/api/...``) or
            ``storage`` (the signed storage routes), so a test can break one side only.
        throttle_burst: Requests in a row answered 429 per drawn throttle (the drawn one
            included), so throttling comes in bursts as from a real rate limiter.
        spike: Fraction of requests that get a latency spike.
        spike_ms: Milliseconds a latency spike adds to ``latency_ms``.

    Raises:
        FaultConfigError: A value is out of range, or ``error + throttle + reset`` exceeds 1.
    """

    error: float = attrs.field(default=0.0, validator=_fraction)
    throttle: float = attrs.field(default=0.0, validator=_fraction)
    reset: float = attrs.field(default=0.0, validator=_fraction)
    latency_ms: float = attrs.field(default=0.0, validator=_non_negative_number)
    bandwidth: int = attrs.field(default=0, validator=_non_negative_int)
    seed: int | None = attrs.field(default=None, validator=_optional_int)
    retry_after: int = attrs.field(default=1, validator=_non_negative_int)
    scope: str = attrs.field(default="all", validator=_scope)
    throttle_burst: int = attrs.field(default=1, validator=_positive_int)
    spike: float = attrs.field(default=0.0, validator=_fraction)
    spike_ms: float = attrs.field(default=0.0, validator=_non_negative_number)

    def __attrs_post_init__(self) -> None:
        total = self.error + self.throttle + self.reset
        # A little slack so that e.g. 0.1 + 0.2 + 0.7 is not refused over rounding.
        if total > 1.0 + 1e-9:
            raise FaultConfigError(
                f"error + throttle + reset must be at most 1, got {total:g} "
                f"({self.error:g} + {self.throttle:g} + {self.reset:g})"
            )

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FaultConfig:
        """Build a config from a JSON object (the admin route's body); absent keys take defaults.

        Args:
            data: Keys among the field names; ``seed`` may be ``null``. Whole-valued floats are
                accepted for the integer fields, since some JSON encoders write ``5e7``.

        Raises:
            FaultConfigError: ``data`` is not an object, has an unknown key, or a bad value.
        """
        if not isinstance(data, Mapping):
            raise FaultConfigError(f"faults must be a JSON object, got {type(data).__name__}")
        _check_keys(data)
        values = dict(data)
        for name in _INT_FIELDS:
            value = values.get(name)
            if isinstance(value, float) and value.is_integer():
                values[name] = int(value)
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        """Return every field as a JSON-ready object that :meth:`from_json` reads back."""
        return attrs.asdict(self)

    def to_spec(self) -> str:
        """Return the CLI form of the settings that differ from the defaults (``""`` if none)."""
        defaults = FaultConfig()
        parts = [
            f"{name}={value if isinstance(value, str) else repr(value)}"
            for name, value in attrs.asdict(self).items()
            if value != getattr(defaults, name)
        ]
        return ",".join(parts)

    @property
    def active(self) -> bool:
        """Whether anything is injected at all."""
        return bool(
            self.error
            or self.throttle
            or self.reset
            or self.latency_ms
            or self.bandwidth
            or (self.spike and self.spike_ms)
        )


_FIELD_NAMES: Final = tuple(a.name for a in attrs.fields(FaultConfig))
_INT_FIELDS: Final = frozenset({"bandwidth", "seed", "retry_after", "throttle_burst"})
_SIZE_RE: Final = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*([kmg]?)b?(?:/s)?$", re.IGNORECASE)
_SIZE_UNITS: Final = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}


def _check_keys(keys: Mapping[str, Any]) -> None:
    unknown = sorted(str(k) for k in keys if k not in _FIELD_NAMES)
    if unknown:
        raise FaultConfigError(
            f"unknown fault setting {', '.join(map(repr, unknown))}; "
            f"valid settings are {', '.join(_FIELD_NAMES)}"
        )


def _parse_value(key: str, text: str) -> float | int | str:
    if key == "bandwidth":
        # Bandwidth is easier to read with a unit: 50M, 1.5MB, 200k/s (decimal, bytes per second).
        match = _SIZE_RE.match(text)
        if match:
            return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])
    if key == "scope":
        return text  # validated by FaultConfig
    try:
        return int(text) if key in _INT_FIELDS else float(text)
    except ValueError:
        kind = "a whole number" if key in _INT_FIELDS else "a number"
        raise FaultConfigError(f"{key} must be {kind}, got {text!r}") from None


def parse_faults(spec: str) -> FaultConfig:
    """Parse the CLI form, e.g. ``"error=0.1,throttle=0.03,reset=0.05,latency_ms=20,seed=7"``.

    Settings are comma-separated ``key=value`` pairs; ``bandwidth`` also takes a decimal unit
    (``50M`` is 50,000,000 bytes per second). An empty spec, ``none`` or ``off`` means no faults.

    Args:
        spec: The settings, in any order, each at most once.

    Returns:
        The validated config.

    Raises:
        FaultConfigError: A pair is malformed, a key is unknown or repeated, or a value is invalid.
    """
    if spec.strip().lower() in ("", "none", "off"):
        return FaultConfig()
    values: dict[str, Any] = {}
    for item in spec.split(","):
        key, sep, text = (part.strip() for part in item.partition("="))
        if not key and not sep:
            continue  # tolerate "error=0.1," and doubled commas
        if not sep or not key or not text:
            raise FaultConfigError(f"expected key=value in the fault spec, got {item.strip()!r}")
        _check_keys({key: None})
        if key in values:
            raise FaultConfigError(f"fault setting {key!r} is given more than once")
        values[key] = _parse_value(key, text)
    return FaultConfig(**values)


def _in_scope(scope: str, path: str) -> bool:
    if scope == "all":
        return True
    is_api = path == "/api" or path.startswith("/api/")
    return is_api if scope == "api" else not is_api


class _Outcome(enum.Enum):
    PASS = "pass"
    ERROR = "error"
    THROTTLE = "throttle"
    RESET = "reset"


@attrs.define(eq=False)
class RequestFault:
    """The per-request state :func:`pace` acts on, stored under :data:`FAULT_KEY`.

    Attributes:
        reset: Whether this request's connection is to be reset.
        reset_fraction: Where in the body the reset happens, as a fraction of its size.
        bandwidth: Bytes per second allowed on the body stream; 0 means no cap.
        counters: The injector's counters, updated as faults happen.
        bytes_seen: Body bytes reported to :func:`pace` so far.
        reset_done: Whether the connection has been reset.
    """

    reset: bool
    reset_fraction: float
    bandwidth: int
    counters: dict[str, int]
    bytes_seen: int = 0
    reset_done: bool = False
    _reset_at: int | None = attrs.field(default=None, init=False)
    _started: float | None = attrs.field(default=None, init=False)

    def abort(self, request: web.BaseRequest) -> None:
        """Reset the connection now (once), without sending anything more."""
        if self.reset_done:
            return
        self.reset_done = True
        self.counters["resets"] += 1
        transport = request.transport
        if transport is not None:
            transport.abort()

    async def advance(self, request: web.BaseRequest, nbytes: int, total: int | None) -> None:
        """Account for ``nbytes`` more body bytes: reset or sleep as configured."""
        self.bytes_seen += nbytes
        if self.reset and not self.reset_done:
            if self._reset_at is None:
                size = total if total is not None else request.content_length
                self._reset_at = int(self.reset_fraction * size) if size else 0
            if self.bytes_seen > self._reset_at:
                self.abort(request)
        if self.reset_done:
            raise ConnectionResetError("connection reset by fault injection")
        if self.bandwidth:
            self.counters["bytes_paced"] += nbytes
            now = time.monotonic()
            if self._started is None:
                self._started = now
            ahead = self.bytes_seen / self.bandwidth - (now - self._started)
            if ahead > 0:
                await asyncio.sleep(ahead)


#: Where the middleware keeps a request's :class:`RequestFault`.
FAULT_KEY: Final = web.RequestKey("labric.fault", RequestFault)


class InjectedReset(web.HTTPInternalServerError):
    """Raised by the middleware once a request's connection is reset.

    The transport is already closed, so aiohttp's attempt to write this response fails and is
    dropped quietly. Middlewares outside this one should re-raise it unchanged rather than log it.
    """


class FaultInjector:
    """Decides, per request, which fault to inject; see the module docstring.

    Args:
        config: The faults to inject; ``None`` injects nothing.
        exempt_prefixes: Path prefixes never touched (the admin routes by default).

    Attributes:
        config: The current settings; replace them with :meth:`update`.
        counters: Counts of ``requests`` (not exempt) and of each injected fault: ``errors_500``,
            ``errors_503``, ``throttled`` (every 429), ``throttle_bursts`` (bursts begun),
            ``resets``, ``delayed`` (by ``latency_ms``), ``spikes``, ``bytes_paced``.

    Example:
        >>> injector = FaultInjector(parse_faults("error=0.2,seed=1"))
        >>> app = web.Application(middlewares=[injector.middleware])
    """

    def __init__(
        self,
        config: FaultConfig | None = None,
        *,
        exempt_prefixes: tuple[str, ...] = DEFAULT_EXEMPT_PREFIXES,
    ) -> None:
        self.config = config or FaultConfig()
        self.counters: dict[str, int] = dict.fromkeys(_COUNTER_NAMES, 0)
        self._exempt_prefixes = exempt_prefixes
        self._rng = random.Random(self.config.seed)
        self._burst_left = 0

    def update(self, config: FaultConfig) -> None:
        """Apply new settings to every request from now on; the draws restart from its seed.

        Requests already in flight keep the decision made for them.
        """
        self.config = config
        self._rng = random.Random(config.seed)
        self._burst_left = 0

    def reset_counters(self) -> None:
        """Set every counter back to zero."""
        self.counters.update(dict.fromkeys(_COUNTER_NAMES, 0))

    def is_exempt(self, path: str) -> bool:
        """Whether requests to ``path`` are never given faults (the exempt prefixes, and ``/``,
        the console's front door)."""
        if path == CONSOLE_FRONT_DOOR:
            return True
        return any(path.startswith(p) or path == p.rstrip("/") for p in self._exempt_prefixes)

    def _decide(self, config: FaultConfig) -> tuple[_Outcome, float, bool]:
        # Always the same number of draws, so the sequence of outcomes depends only on the seed
        # and the request order (a burst ignores its requests' draws but still consumes them).
        draw, detail = self._rng.random(), self._rng.random()
        spiked = bool(config.spike) and self._rng.random() < config.spike
        if self._burst_left > 0:
            self._burst_left -= 1
            return _Outcome.THROTTLE, detail, spiked
        if draw < config.error:
            return _Outcome.ERROR, detail, spiked
        if draw < config.error + config.throttle:
            self.counters["throttle_bursts"] += 1
            self._burst_left = config.throttle_burst - 1
            return _Outcome.THROTTLE, detail, spiked
        if draw < config.error + config.throttle + config.reset:
            return _Outcome.RESET, detail, spiked
        return _Outcome.PASS, detail, spiked

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The aiohttp middleware that injects the configured faults."""
        config = self.config
        if self.is_exempt(request.path) or not _in_scope(config.scope, request.path):
            return await handler(request)
        self.counters["requests"] += 1
        if not config.active:
            return await handler(request)
        outcome, detail, spiked = self._decide(config)
        delay_ms = config.latency_ms
        if config.latency_ms:
            self.counters["delayed"] += 1
        if spiked and config.spike_ms:
            self.counters["spikes"] += 1
            delay_ms += config.spike_ms
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)

        if outcome is _Outcome.ERROR:
            status = 500 if detail < 0.5 else 503
            self.counters[f"errors_{status}"] += 1
            return _fault_response(status, "error", f"injected fault: status {status}")
        if outcome is _Outcome.THROTTLE:
            self.counters["throttled"] += 1
            response = _fault_response(429, "throttle", "injected fault: too many requests")
            response.headers["Retry-After"] = str(config.retry_after)
            return response
        if outcome is _Outcome.PASS and not config.bandwidth:
            return await handler(request)

        state = RequestFault(
            reset=outcome is _Outcome.RESET,
            reset_fraction=detail,
            bandwidth=config.bandwidth,
            counters=self.counters,
        )
        request[FAULT_KEY] = state
        if not state.reset:
            return await handler(request)
        try:
            await handler(request)
        except Exception:
            # Whatever the handler made of the reset (or of anything else), the client gets
            # nothing more.
            state.abort(request)
            raise InjectedReset() from None
        # The handler finished without streaming past the reset point: reset before responding.
        state.abort(request)
        raise InjectedReset()


def _fault_response(status: int, kind: str, detail: str) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps({"detail": detail}),
        content_type="application/json",
        headers={FAULT_HEADER: kind},
    )


async def pace(request: web.BaseRequest, nbytes: int, *, total: int | None = None) -> None:
    """Report ``nbytes`` more body bytes read or written; apply the request's faults to them.

    Streaming handlers call this for each chunk: after reading it, or before writing it (so that
    a reset lands before the bytes past its point reach the client). It returns at once for a
    request without faults; otherwise it sleeps to hold the bandwidth cap, or resets the
    connection when this request was chosen for a reset and its body has passed the drawn point.

    Args:
        request: The request whose body (or response body) is streaming.
        nbytes: Bytes in the chunk just read or written.
        total: The body's full size when known, so the reset point falls within it; defaults to
            the request's ``Content-Length`` (right for uploads; pass it for downloads).

    Raises:
        ConnectionResetError: The connection was reset; the handler should stop and clean up.
    """
    state = request.get(FAULT_KEY)
    if state is not None:
        await state.advance(request, nbytes, total)
