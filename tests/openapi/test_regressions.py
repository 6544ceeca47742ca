"""Defects schemathesis found, each pinned by the request that showed it."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from labric.server import LocalServer
from labric.server.files.common import MAX_FILE_SIZE, MAX_PARTS
from labric.server.files.signed import plan_part_size


async def _upload_url(server: LocalServer, **body: object) -> tuple[int, dict[str, object]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{server.base_url}/v1/files/upload-url",
            json=body,
            headers={"Authorization": f"Bearer {server.admin_key}"},
        ) as resp,
    ):
        return resp.status, await resp.json()


async def test_a_size_beyond_any_file_is_refused_not_a_server_error(server: LocalServer) -> None:
    # Was a 500: the integer overflowed SQLite's 64 bits when the record was written.
    instrument = server.create_instrument("Plate reader")
    for size in (590481074600451139392503808, 2**63, MAX_FILE_SIZE + 1):
        status, body = await _upload_url(
            server, file_name="x.bin", instrument_id=instrument, size_bytes=size
        )
        assert status == 422, body
        assert body["detail"][0]["loc"] == ["body", "size_bytes"]


async def test_an_upload_is_planned_in_at_most_max_parts(tmp_path: Path) -> None:
    # Without a limit, a large size_bytes made the server sign (and send) a URL per part:
    # millions of them for a file a little over a terabyte at the default part size. A file that
    # would need more parts than that gets larger parts (whole multiples of the server's).
    async with LocalServer(tmp_path / "small-parts", part_size=1024) as server:
        instrument = server.create_instrument("Plate reader")
        status, body = await _upload_url(
            server, file_name="x.bin", instrument_id=instrument, size_bytes=MAX_PARTS * 1024
        )
        assert status == 200, body
        assert body["part_size"] == 1024
        assert len(body["parts"]) == MAX_PARTS
        status, body = await _upload_url(
            server, file_name="y.bin", instrument_id=instrument, size_bytes=MAX_PARTS * 1024 + 1
        )
        assert status == 200, body
        assert body["part_size"] == 2048
        assert len(body["parts"]) == MAX_PARTS // 2 + 1
        assert sum(p["size"] for p in body["parts"]) == MAX_PARTS * 1024 + 1


def test_part_sizes_grow_in_whole_multiples_to_stay_within_max_parts() -> None:
    assert plan_part_size(None, 16) == 16
    assert plan_part_size(0, 16) == 16
    assert plan_part_size(16 * MAX_PARTS, 16) == 16
    assert plan_part_size(16 * MAX_PARTS + 1, 16) == 32
    assert plan_part_size(MAX_FILE_SIZE, 16 * 1024 * 1024) % (16 * 1024 * 1024) == 0
    assert -(-MAX_FILE_SIZE // plan_part_size(MAX_FILE_SIZE, 16 * 1024 * 1024)) <= MAX_PARTS


# -- found by probing the boundaries the document names (64-bit integers, float range, years) --

BIG = 2**70


class _Api:
    def __init__(self, session: aiohttp.ClientSession, server: LocalServer) -> None:
        self.session = session
        self.server = server

    async def __call__(
        self, method: str, path: str, body: Any = None, **params: str
    ) -> tuple[int, Any]:
        async with self.session.request(
            method,
            f"{self.server.base_url}{path}",
            json=body,
            params=params,
            headers={"Authorization": f"Bearer {self.server.admin_key}"},
        ) as resp:
            return resp.status, await resp.json()


@pytest.fixture
async def api(server: LocalServer) -> AsyncIterator[_Api]:
    async with aiohttp.ClientSession() as session:
        yield _Api(session, server)


def _cursor(position: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "path",
    [
        "/v1/files",
        "/v1/jobs",
        "/v1/job-executions",
        "/v1/instruments",
        "/v1/experiments",
        "/v1/dashboards",
    ],
)
async def test_a_cursor_past_64_bits_is_an_invalid_cursor(api: _Api, path: str) -> None:
    # Was a 500: the cursor's number reached SQLite, which has no integer that large.
    status, body = await api("GET", path, cursor=_cursor(["2026-01-01T00:00:00.000000Z", BIG]))
    assert status == 400, body
    assert "Invalid cursor" in body["detail"]


async def test_a_rows_cursor_past_64_bits_is_an_invalid_cursor(api: _Api) -> None:
    await api("POST", "/v1/datasets", {"name": "t", "columns": [{"name": "n", "type": "integer"}]})
    cursor = base64.urlsafe_b64encode(f"r{BIG}".encode()).decode()
    status, body = await api(
        "POST", "/v1/tools/read", {"target_name": "t", "target_type": "table", "cursor": cursor}
    )
    assert status == 400, body
    assert "Invalid cursor" in body["detail"]


async def test_a_query_parameter_past_64_bits_is_refused(api: _Api) -> None:
    # Was a 500: SQLite could not bind the integer.
    status, body = await api("POST", "/v1/tools/query", {"query": "SELECT %s", "params": [BIG]})
    assert status == 400, body
    assert "64 bits" in body["detail"]
    status, body = await api(
        "POST", "/v1/tools/query", {"query": "SELECT %s", "params": [2**63 - 1]}
    )
    assert (status, body["data"]) == (200, [[2**63 - 1]])


async def test_an_integer_beyond_any_float_in_a_float_column_is_a_write_problem(api: _Api) -> None:
    # Was a 500: converting the integer to a float overflowed.
    await api("POST", "/v1/datasets", {"name": "t", "columns": [{"name": "x", "type": "float"}]})
    status, body = await api(
        "POST", "/v1/data/write", {"tables": [{"table": "t", "rows": [{"x": 2**2000}]}]}
    )
    assert status == 400, body
    assert body["errors"][0]["path"] == "tables[0].rows[0].x"
    assert "finite" in body["errors"][0]["message"]


async def test_a_histogram_of_values_spanning_the_float_range(api: _Api) -> None:
    # Was a 500: the span overflowed to infinity and the bin edges became NaN.
    source = {"type": "sql", "query": "SELECT 1e308 UNION ALL SELECT -1e308 UNION ALL SELECT 0"}
    widget = {"id": "h", "type": "chart", "kind": "histogram", "bins": 4, "source": source}
    status, made = await api("POST", "/v1/dashboards", {"name": "d", "widgets": [widget]})
    assert status == 201, made
    status, data = await api("GET", f"/v1/dashboards/{made['id']}/widgets/h/data")
    assert status == 200, data
    rows = data["rows"]
    assert [r[2] for r in rows] == [1, 0, 1, 1]
    assert rows[0][0] == -1e308
    assert rows[-1][1] == 1e308
    assert all(math.isfinite(edge) for r in rows for edge in r[:2])


async def test_times_in_the_first_and_last_years_iso_8601_writes(api: _Api) -> None:
    # Year 1 was written "1-01-01T..." (strftime does not pad it), which could not be read
    # back: a 500. A time whose UTC instant is in the year 10000 was a 500 too.
    status, body = await api(
        "POST", "/v1/experiments", {"name": "old", "started_at": "0001-01-01T00:00:00-23:59"}
    )
    assert status == 200, body
    assert body["started_at"] == "0001-01-01T23:59:00.000000Z"
    status, body = await api(
        "POST", "/v1/experiments", {"name": "late", "started_at": "9999-12-31T23:59:59-23:59"}
    )
    assert status == 422, body
    assert body["detail"][0]["loc"] == ["body", "started_at"]


async def test_a_status_window_ending_in_the_year_1(api: _Api) -> None:
    # Was a 500: the default start, 7 days before the end, fell before the year 1.
    status, made = await api("POST", "/v1/instruments", {"name": "Reader"})
    assert status == 200, made
    status, body = await api(
        "GET",
        f"/v1/instruments/{made['instrument']['id']}/device-status",
        end_time="0001-01-01T00:00:00Z",
    )
    assert status == 200, body
    assert body["start_time"] == "0001-01-01T00:00:00.000000Z"
    assert body["statuses"] == []


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
async def test_numbers_json_has_not_are_refused(server: LocalServer, number: bytes) -> None:
    # Were taken: metadata holding one was a 500 (its platform row could not be encoded), and
    # elsewhere one was stored and sent back as "NaN", which no JSON parser reads.
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{server.base_url}/v1/instruments",
            data=b'{"name": "Reader", "metadata": {"x": ' + number + b"}}",
            headers={
                "Authorization": f"Bearer {server.admin_key}",
                "Content-Type": "application/json",
            },
        ) as resp,
    ):
        assert resp.status == 400
        assert "not valid JSON" in (await resp.json())["detail"]


async def test_a_dataset_datetime_in_the_first_and_last_years(api: _Api) -> None:
    # Year 1 was stored as "1-01-01T..." (strftime does not pad it); a time in the year 10000
    # UTC was a 500.
    await api("POST", "/v1/datasets", {"name": "t", "columns": [{"name": "d", "type": "datetime"}]})
    status, body = await api(
        "POST",
        "/v1/data/write",
        {"tables": [{"table": "t", "rows": [{"d": "0001-01-01T00:00:00-23:59"}]}]},
    )
    assert status == 200, body
    status, rows = await api("POST", "/v1/tools/read", {"target_name": "t", "target_type": "table"})
    assert [r["d"] for r in rows] == ["0001-01-01T23:59:00.000000Z"]
    status, body = await api(
        "POST",
        "/v1/data/write",
        {"tables": [{"table": "t", "rows": [{"d": "9999-12-31T23:59:59-23:59"}]}]},
    )
    assert status == 400, body
    assert body["errors"][0]["path"] == "tables[0].rows[0].d"


@pytest.mark.parametrize("limit", ["\x857", "1_0", "\u0663", "7\n", "9" * 5000])
async def test_a_query_integer_is_ascii_digits(api: _Api, limit: str) -> None:
    # int() took all of these (U+0085 around "7", "1_0", an Arabic-Indic 3): the document's
    # integer was looser on the server than written.
    status, body = await api("GET", "/v1/instruments", limit=limit)
    assert status == 422, body
    assert body["detail"][0]["loc"] == ["query", "limit"]


async def test_a_query_integer_may_have_a_sign_and_spaces(api: _Api) -> None:
    status, body = await api("GET", "/v1/instruments", limit=" +7\t")
    assert status == 200, body


@pytest.mark.parametrize("body", [b"\x0b", b"\t", b" \r\n"])
async def test_a_body_of_whitespace_is_not_an_empty_body(server: LocalServer, body: bytes) -> None:
    # Any whitespace counted as no body, so PUT faults read b"\x0b" (a vertical tab, which JSON
    # does not even allow) as "{}". Only a body of no bytes is no body.
    async with (
        aiohttp.ClientSession() as session,
        session.put(
            f"{server.base_url}/v1/admin/faults",
            data=body,
            headers={
                "Authorization": f"Bearer {server.admin_key}",
                "Content-Type": "application/json",
            },
        ) as resp,
    ):
        assert resp.status == 400
        assert "not valid JSON" in (await resp.json())["detail"]


@pytest.mark.parametrize("timezone", ["Europe", "A" * 500])
async def test_a_schedule_timezone_that_names_no_zone_file(api: _Api, timezone: str) -> None:
    # Was a 500: "Europe" is a folder of the timezone database and 500 characters are too long
    # for a file name, so ZoneInfo raised OSError rather than "not found".
    status, body = await api(
        "POST",
        "/v1/jobs",
        {
            "name": "nightly",
            "code": "print(1)",
            "trigger_enabled": True,
            "trigger_category": "schedule",
            "trigger_conditions": {"cron": "0 3 * * *", "timezone": timezone},
        },
    )
    assert status == 422, body
    assert body["detail"][0]["loc"] == ["body", "trigger_conditions", "timezone"]
