"""``POST /v1/tools/query`` and the SQL boundary."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

from labric import AsyncLabric
from labric.errors import BadRequestError
from labric.models import QueryResult
from labric.server import LocalServer
from labric.server.datasets.boundary import QueryError, convert_placeholders

from ._support import Wire


async def _detail(wire: Wire, sql: str, *params: Any, key: str | None = None) -> str:
    reply = await wire.query(sql, *params, key=key)
    assert reply.status == 400, reply.body
    detail: str = reply.json()["detail"]
    return detail


async def test_query_with_positional_parameters(tables: Wire, client: AsyncLabric) -> None:
    reply = await tables.write(
        tables=[
            {
                "table": "samples",
                "rows": [
                    {"name": "A", "od600": 0.5},
                    {"name": "B", "od600": 1.5},
                    {"name": "50%", "od600": 2.0},
                ],
            }
        ]
    )
    assert reply.status == 200
    result = await client.datasets.query(
        "SELECT name, od600 FROM samples WHERE od600 > %s AND name LIKE '%%' ORDER BY name", [1]
    )
    assert isinstance(result, QueryResult)
    assert result.columns == ["name", "od600"]
    assert result.data == [["50%", 2.0], ["B", 1.5]]
    assert list(result.rows()) == [{"name": "50%", "od600": 2.0}, {"name": "B", "od600": 1.5}]
    assert len(result) == 2
    joined = await client.datasets.query(
        "SELECT count(*) AS n FROM measurements m JOIN samples s ON s.id = m.sample_id"
    )
    assert list(joined.rows()) == [{"n": 0}]


def test_placeholders() -> None:
    assert convert_placeholders("SELECT %s, '%s', \"%s\", %% -- %s\n") == (
        "SELECT ?, '%s', \"%s\", % -- %s\n",
        1,
    )
    assert convert_placeholders("SELECT 'it''s ?', /* :x */ %s")[1] == 1
    for sql in ("SELECT ?", "SELECT ?1", "SELECT :name", "SELECT @name", "SELECT $name"):
        with pytest.raises(QueryError) as caught:
            convert_placeholders(sql)
        assert "use positional %s" in caught.value.detail
    with pytest.raises(QueryError):
        convert_placeholders("SELECT 5 % 2")


async def test_named_parameters_are_rejected(tables: Wire, client: AsyncLabric) -> None:
    with pytest.raises(BadRequestError) as caught:
        await client.datasets.query("SELECT * FROM samples WHERE name = :name", ["A"])
    assert "Named and numbered parameters" in str(caught.value)
    detail = await _detail(tables, "SELECT %s, %s", 1)
    assert detail == "The query has 2 %s placeholder(s) but 1 parameter(s)"
    detail = await _detail(tables, "SELECT %s", {"a": 1})
    assert "Parameters must be" in detail


async def test_the_server_tables_are_out_of_reach(tables: Wire) -> None:
    for table in ("api_keys", "files", "job_executions", "organisations", "dataset_writes"):
        assert await _detail(tables, f"SELECT * FROM {table}") == (
            f"Query failed: no such table: {table}"
        )


async def test_another_organisations_tables_are_out_of_reach(
    tables: Wire, server: LocalServer
) -> None:
    other = server.create_key("read,write", org="other")
    made = await tables.post(
        "/v1/datasets",
        key=other,
        json={"name": "secrets", "columns": [{"name": "x", "type": "text"}]},
    )
    assert made.status == 201
    assert (await tables.query("SELECT * FROM secrets", key=other)).status == 200
    assert await _detail(tables, "SELECT * FROM secrets") == "Query failed: no such table: secrets"
    # Not by file name either: attaching is refused.
    path = server.data_dir.root / "datasets"
    detail = await _detail(tables, f"ATTACH DATABASE '{path}/x.sqlite3' AS other")
    assert "refused" in detail
    detail = await _detail(tables, "SELECT * FROM main.samples, other.secrets")
    assert detail == "Query failed: no such table: other.secrets"


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM _labric_created",
        "SELECT * FROM _labric_tables",
        "SELECT name FROM sqlite_master",
        "SELECT * FROM sqlite_schema",
        "SELECT * FROM sqlite_sequence",
        "PRAGMA table_info(samples)",
        "SELECT * FROM pragma_table_info('samples')",
        "INSERT INTO samples (id, name) VALUES ('x', 'y')",
        "UPDATE samples SET name = 'y'",
        "DELETE FROM samples",
        "DROP TABLE samples",
        "CREATE TABLE t (x)",
        "CREATE TEMP TABLE t (x)",
        "ALTER TABLE samples ADD COLUMN y",
        "BEGIN",
        "VACUUM",
        "SELECT load_extension('x')",
        "WITH x AS (SELECT 1) INSERT INTO samples (id, name) SELECT 'a', 'b' FROM x",
    ],
)
async def test_anything_but_reading_own_tables_is_refused(tables: Wire, sql: str) -> None:
    detail = await _detail(tables, sql)
    assert "refused" in detail or "Only SELECT" in detail or "failed" in detail
    assert await tables.scalar("SELECT count(*) FROM samples") == 0


async def test_only_one_statement(tables: Wire) -> None:
    detail = await _detail(tables, "SELECT 1; DELETE FROM samples")
    assert "one statement" in detail


async def test_a_runaway_query_is_interrupted(tables: Wire) -> None:
    await tables.limits(query_timeout=0.2)
    detail = await _detail(
        tables,
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
    )
    assert detail == "The query ran longer than the 0.2 s limit and was interrupted"
    # The server is fine afterwards.
    assert await tables.scalar("SELECT 41 + 1") == 42


async def test_huge_results_are_refused_not_truncated(tables: Wire) -> None:
    await tables.limits(max_query_rows=1000, max_query_bytes=50_000)
    series = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT {n}) "
    assert (await tables.query(series.format(n=1000) + "SELECT x FROM c")).status == 200
    detail = await _detail(tables, series.format(n=1001) + "SELECT x FROM c")
    assert "more than 1,000 rows" in detail
    detail = await _detail(tables, series.format(n=10) + "SELECT hex(zeroblob(10000)) FROM c")
    assert "larger than 50,000 bytes" in detail
    detail = await _detail(tables, "SELECT zeroblob(100000000)")
    assert "too big" in detail


async def test_values_become_json(tables: Wire) -> None:
    reply = await tables.query("SELECT x'00ff', 1e999, NULL, 1.5, 'é'")
    assert reply.json()["data"] == [["AP8=", None, None, 1.5, "é"]]


def test_to_pandas_builds_a_data_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[tuple[Any, Any]] = []
    fake = types.ModuleType("pandas")
    fake.DataFrame = lambda data, columns: made.append((data, columns)) or "frame"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pandas", fake)
    result = QueryResult(columns=["a"], data=[[1], [2]])
    assert result.to_pandas() == "frame"
    assert made == [([[1], [2]], ["a"])]


def test_to_pandas_without_pandas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match="needs pandas"):
        QueryResult(columns=[], data=[]).to_pandas()
