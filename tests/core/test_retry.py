"""The retry policy's pure functions, as tables, plus a property test of the backoff bounds."""

from __future__ import annotations

import email.utils

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labric import RetryPolicy
from labric._core.retry import backoff_delay, retry_delay, server_delay, should_retry_status

NOW = 1_700_000_000.0


def http_date(offset: float) -> str:
    return email.utils.formatdate(NOW + offset, usegmt=True)


@pytest.mark.parametrize(
    ("status", "retry"),
    [
        (200, False),
        (201, False),
        (204, False),
        (301, False),
        (304, False),
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (405, False),
        (408, True),
        (409, True),
        (410, False),
        (413, False),
        (422, False),
        (425, False),
        (429, True),
        (500, True),
        (501, False),
        (502, True),
        (503, True),
        (504, True),
        (505, False),
        (507, True),
        (520, True),
        (599, True),
    ],
)
def test_should_retry_status(status: int, retry: bool) -> None:
    assert should_retry_status(status) is retry


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({}, None, id="no headers"),
        pytest.param({"Content-Type": "text/plain"}, None, id="unrelated header"),
        # retry-after-ms
        pytest.param({"retry-after-ms": "10"}, 0.010, id="ms"),
        pytest.param({"Retry-After-Ms": "1500"}, 1.5, id="ms any case"),
        pytest.param({"retry-after-ms": "12.5"}, 0.0125, id="ms fractional"),
        pytest.param({"retry-after-ms": "0"}, None, id="ms zero"),
        pytest.param({"retry-after-ms": "-5"}, None, id="ms negative"),
        pytest.param({"retry-after-ms": "soon"}, None, id="ms garbage"),
        pytest.param({"retry-after-ms": "nan"}, None, id="ms nan"),
        pytest.param({"retry-after-ms": "inf"}, None, id="ms inf"),
        pytest.param({"retry-after-ms": ""}, None, id="ms empty"),
        # Retry-After, seconds
        pytest.param({"Retry-After": "3"}, 3.0, id="seconds"),
        pytest.param({"retry-after": " 2 "}, 2.0, id="seconds padded"),
        pytest.param({"Retry-After": "0.5"}, 0.5, id="seconds fractional"),
        pytest.param({"Retry-After": "0"}, None, id="seconds zero"),
        pytest.param({"Retry-After": "-1"}, None, id="seconds negative"),
        pytest.param({"Retry-After": "later"}, None, id="seconds garbage"),
        pytest.param({"Retry-After": "1e400"}, None, id="seconds overflow"),
        # Retry-After, HTTP-date
        pytest.param({"Retry-After": http_date(30)}, 30.0, id="date future"),
        pytest.param({"Retry-After": http_date(-30)}, None, id="date past"),
        pytest.param({"Retry-After": http_date(0)}, None, id="date now"),
        pytest.param(
            {"Retry-After": email.utils.formatdate(NOW + 20).replace("-0000", "+0000")},
            20.0,
            id="date numeric zone",
        ),
        pytest.param(
            {"Retry-After": email.utils.formatdate(NOW + 20)}, 20.0, id="date -0000 is utc"
        ),
        pytest.param({"Retry-After": "Mon, 99 Foo 2024 99:99:99 GMT"}, None, id="date garbage"),
        # X-RateLimit-Reset, epoch seconds
        pytest.param({"X-RateLimit-Reset": str(NOW + 7)}, 7.0, id="reset future"),
        pytest.param({"x-ratelimit-reset": str(int(NOW) + 4)}, 4.0, id="reset any case"),
        pytest.param({"X-RateLimit-Reset": str(NOW - 7)}, None, id="reset past"),
        pytest.param({"X-RateLimit-Reset": str(NOW)}, None, id="reset now"),
        pytest.param({"X-RateLimit-Reset": "tomorrow"}, None, id="reset garbage"),
        # precedence: ms > Retry-After > X-RateLimit-Reset, each skipped when unusable
        pytest.param(
            {"retry-after-ms": "250", "Retry-After": "9", "X-RateLimit-Reset": str(NOW + 30)},
            0.25,
            id="ms wins",
        ),
        pytest.param(
            {"Retry-After": "9", "X-RateLimit-Reset": str(NOW + 30)}, 9.0, id="retry-after next"
        ),
        pytest.param(
            {"retry-after-ms": "junk", "Retry-After": "9"}, 9.0, id="garbage ms falls through"
        ),
        pytest.param(
            {"retry-after-ms": "0", "Retry-After": "0", "X-RateLimit-Reset": str(NOW + 5)},
            5.0,
            id="zeros fall through",
        ),
        pytest.param(
            {"Retry-After": http_date(-100), "X-RateLimit-Reset": str(NOW + 5)},
            5.0,
            id="past date falls through",
        ),
    ],
)
def test_server_delay(headers: dict[str, str], expected: float | None) -> None:
    got = server_delay(headers, now=NOW)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected)


POLICY = RetryPolicy(initial_delay=0.5, max_delay=8.0, max_server_delay=60.0)


@pytest.mark.parametrize(
    ("attempt", "rand", "expected"),
    [
        (0, 0.0, 0.125),  # a quarter of 0.5
        (0, 1.0, 0.5),
        (0, 0.5, 0.3125),
        (1, 0.0, 0.25),
        (1, 1.0, 1.0),
        (2, 1.0, 2.0),
        (3, 1.0, 4.0),
        (4, 1.0, 8.0),  # reaches max_delay
        (5, 1.0, 8.0),  # capped
        (5, 0.0, 2.0),  # a quarter of the cap
        (10_000, 1.0, 8.0),  # no overflow
        (-1, 1.0, 0.5),  # nonsense attempt numbers are treated as the first
    ],
)
def test_backoff_delay(attempt: int, rand: float, expected: float) -> None:
    assert backoff_delay(attempt, POLICY, rand=rand) == pytest.approx(expected)


def test_backoff_delay_zero_initial_delay_means_no_wait() -> None:
    policy = RetryPolicy(initial_delay=0.0, max_delay=5.0)
    assert backoff_delay(3, policy, rand=0.7) == 0.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param(None, 0.5, id="no headers: backoff"),
        pytest.param({}, 0.5, id="empty headers: backoff"),
        pytest.param({"Retry-After": "2"}, 2.0, id="server delay wins"),
        pytest.param({"Retry-After": "0.01"}, 0.01, id="server delay may be below backoff"),
        pytest.param({"Retry-After": "3600"}, 60.0, id="capped at max_server_delay"),
        pytest.param({"retry-after-ms": "600000"}, 60.0, id="ms capped"),
        pytest.param({"X-RateLimit-Reset": str(NOW + 90)}, 60.0, id="reset capped"),
        pytest.param({"Retry-After": http_date(3600)}, 60.0, id="date capped"),
        pytest.param({"Retry-After": "garbage"}, 0.5, id="garbage: backoff"),
    ],
)
def test_retry_delay(headers: dict[str, str] | None, expected: float) -> None:
    assert retry_delay(0, POLICY, headers, now=NOW, rand=1.0) == pytest.approx(expected)


def test_retry_delay_cap_is_configurable() -> None:
    policy = RetryPolicy(max_server_delay=5.0)
    assert retry_delay(0, policy, {"Retry-After": "30"}, now=NOW, rand=0.0) == 5.0


@given(
    attempt=st.integers(min_value=0, max_value=2_000),
    rand=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
    initial=st.floats(min_value=0.0, max_value=100.0),
    max_delay=st.floats(min_value=0.0, max_value=1_000.0),
)
def test_backoff_stays_within_bounds(
    attempt: int, rand: float, initial: float, max_delay: float
) -> None:
    policy = RetryPolicy(initial_delay=initial, max_delay=max_delay)
    ceiling = min(max_delay, initial * 2.0 ** min(attempt, 64))
    delay = backoff_delay(attempt, policy, rand=rand)
    assert 0.25 * ceiling - 1e-9 <= delay <= ceiling + 1e-9
    assert delay <= max_delay + 1e-9


@given(attempt=st.integers(min_value=0, max_value=50))
def test_backoff_never_shrinks_as_attempts_grow(attempt: int) -> None:
    # With the same draw, a later retry never waits less than an earlier one.
    assert backoff_delay(attempt + 1, POLICY, rand=0.5) >= backoff_delay(attempt, POLICY, rand=0.5)
