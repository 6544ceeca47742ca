"""Retry policy as small pure functions, so it can be tested as tables.

* :func:`should_retry_status` decides which statuses are worth another attempt.
* :func:`server_delay` reads the delay a server asks for (``retry-after-ms``, ``Retry-After`` in
  seconds or as an HTTP-date, ``X-RateLimit-Reset`` as Unix seconds).
* :func:`backoff_delay` is capped exponential backoff with jitter, never under a quarter of the cap.
* :func:`retry_delay` combines them: the server's word wins (capped), else backoff.

Nothing here sleeps, reads a clock or draws a random number on its own: callers pass ``now`` and
``rand`` in, which keeps these functions deterministic under test.
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Mapping
from datetime import UTC

from labric._core.config import RetryPolicy

__all__ = [
    "RETRYABLE_STATUSES",
    "backoff_delay",
    "retry_delay",
    "server_delay",
    "should_retry_status",
]

#: 4xx statuses that mean "try again": timeout, conflict (often a lock), rate limit.
RETRYABLE_STATUSES = frozenset({408, 409, 429})
#: 5xx statuses that will not change on a retry: not implemented, HTTP version not supported.
_PERMANENT_5XX = frozenset({501, 505})


def should_retry_status(status: int) -> bool:
    """Return whether a response with this status may succeed if sent again."""
    if status in RETRYABLE_STATUSES:
        return True
    return status >= 500 and status not in _PERMANENT_5XX


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        for key, candidate in headers.items():
            if key.lower() == lowered:
                return candidate
        return None
    return value


def _number(text: str) -> float | None:
    """A finite float from a header value, or ``None`` for garbage (``nan``, ``inf``, words)."""
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _http_date(text: str, *, now: float) -> float | None:
    """Seconds from ``now`` until an HTTP-date (RFC 9110 IMF-fixdate and its obsolete forms)."""
    try:
        when = email.utils.parsedate_to_datetime(text.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" means UTC with no stated zone; never the local zone
        when = when.replace(tzinfo=UTC)
    return when.timestamp() - now


def server_delay(headers: Mapping[str, str], *, now: float) -> float | None:
    """Return the delay (seconds) the server asked for, or ``None`` when it asked for none.

    Precedence: ``retry-after-ms``, then ``Retry-After`` (seconds or HTTP-date), then
    ``X-RateLimit-Reset`` (Unix epoch seconds). Values that do not parse, are not finite, or are
    zero or negative (including dates in the past) are ignored and the next header is tried.

    Args:
        headers: Response headers (any case).
        now: Current Unix time, used for HTTP-dates and reset times.
    """
    ms = _header(headers, "retry-after-ms")
    if ms is not None:
        value = _number(ms)
        if value is not None and value > 0:
            return value / 1000.0
    after = _header(headers, "retry-after")
    if after is not None:
        seconds = _number(after)
        if seconds is None:
            seconds = _http_date(after, now=now)
        if seconds is not None and seconds > 0:
            return seconds
    reset = _header(headers, "x-ratelimit-reset")
    if reset is not None:
        epoch = _number(reset)
        if epoch is not None and epoch - now > 0:
            return epoch - now
    return None


def backoff_delay(attempt: int, policy: RetryPolicy, *, rand: float) -> float:
    """Capped exponential backoff with jitter.

    Args:
        attempt: 0 for the first retry, 1 for the second, ...
        policy: The retry policy (``initial_delay``, ``max_delay``).
        rand: A number in ``[0, 1)``; the delay is ``rand`` times the capped exponential, but never
            less than a quarter of it, so retries never stampede back at once.
    """
    # The exponent is clamped so a very high attempt number cannot overflow a float.
    ceiling = min(policy.max_delay, policy.initial_delay * (2.0 ** min(max(attempt, 0), 64)))
    return ceiling * (0.25 + 0.75 * min(max(rand, 0.0), 1.0))


def retry_delay(
    attempt: int,
    policy: RetryPolicy,
    headers: Mapping[str, str] | None,
    *,
    now: float,
    rand: float,
) -> float:
    """The delay before retry number ``attempt`` (0-based).

    The server's requested delay wins when present, capped at ``policy.max_server_delay``;
    otherwise :func:`backoff_delay`.
    """
    if headers:
        asked = server_delay(headers, now=now)
        if asked is not None:
            return min(asked, policy.max_server_delay)
    return backoff_delay(attempt, policy, rand=rand)
