"""``labric datasets ls|query|rows`` against the local server, in-process."""

from __future__ import annotations

import pytest

from labric import Labric

from ._support import call

TABLE_KEYS = {"id", "name", "description", "semantic_category", "columns"}
COLUMN_KEYS = {
    "id",
    "name",
    "sql_column_name",
    "description",
    "data_type",
    "is_primary_key",
    "is_foreign_key",
    "is_nullable",
    "is_unique",
    "foreign_key_table_name",
}
ROWS = [
    {"name": "S-1", "od600": 0.5, "lot": "007"},
    {"name": "S-2", "od600": 0.75, "lot": "008"},
    {"name": "S-3", "od600": 1.25, "lot": "007"},
]


@pytest.fixture
def samples(env: dict[str, str]) -> list[str]:
    """A ``samples`` table with three rows; returns their ids."""
    with Labric() as client:
        client.datasets.create(
            "samples",
            columns=[
                {"name": "name", "type": "text"},
                {"name": "od600", "type": "float"},
                {"name": "lot", "type": "text"},
            ],
            description="Samples of the CLI tests",
        )
        return client.datasets.write("samples", ROWS).ids


def test_ls(samples: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    done = call(capsys, "datasets", "ls", "--json")
    assert done.code == 0, done.err
    tables = done.json()
    assert all(set(t) == TABLE_KEYS for t in tables)
    assert all(set(c) == COLUMN_KEYS for t in tables for c in t["columns"])
    mine = next(t for t in tables if t["name"] == "samples")
    assert [c["name"] for c in mine["columns"]] == ["id", "name", "od600", "lot"]
    assert mine["description"] == "Samples of the CLI tests"

    human = call(capsys, "datasets", "ls")
    header, *rows = human.out.splitlines()
    assert header.split() == ["NAME", "CATEGORY", "COLUMNS", "DESCRIPTION"]
    assert any(row.split()[:3] == ["samples", "curated", "4"] for row in rows)


def test_query_with_typed_params(samples: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    sql = "SELECT name, od600 FROM samples WHERE od600 > %s AND lot = %s ORDER BY name"
    done = call(capsys, "datasets", "query", sql, "--param", "0.6", "--param", '"007"', "--json")
    assert done.code == 0, done.err
    assert done.json() == {"columns": ["name", "od600"], "data": [["S-3", 1.25]]}

    human = call(capsys, "datasets", "query", "SELECT name, lot FROM samples ORDER BY name")
    assert human.out.splitlines() == [
        "name  lot",
        "S-1   007",
        "S-2   008",
        "S-3   007",
    ]


def test_query_refused_is_one_line(samples: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    done = call(capsys, "datasets", "query", "DELETE FROM samples")
    assert done.code == 1
    assert done.err.startswith("labric: error: 400 ")
    assert done.err.count("\n") == 1


def test_rows(samples: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    done = call(capsys, "datasets", "rows", "samples", "--json")
    assert done.code == 0, done.err
    assert done.json() == [{"id": i, **row} for i, row in zip(samples, ROWS, strict=True)]

    # "007" is JSON for the text 007; a bare 007 is not valid JSON either, so it stays text.
    for value in ('"007"', "007"):
        filtered = call(capsys, "datasets", "rows", "samples", "--where", f"lot={value}", "--json")
        assert [r["name"] for r in filtered.json()] == ["S-1", "S-3"]

    limited = call(capsys, "datasets", "rows", "samples", "--limit", "2", "--json")
    assert [r["name"] for r in limited.json()] == ["S-1", "S-2"]

    human = call(capsys, "datasets", "rows", "samples", "--where", "name=S-2")
    assert [line.split() for line in human.out.splitlines()] == [
        ["id", "name", "od600", "lot"],
        [samples[1], "S-2", "0.75", "008"],
    ]


def test_rows_of_a_missing_table(env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    done = call(capsys, "datasets", "rows", "nope")
    assert done.code == 4
    assert done.err.startswith("labric: error: 404 ")
    assert done.err.count("\n") == 1


def test_bad_where_is_a_usage_error(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    done = call(capsys, "datasets", "rows", "samples", "--where", "lot")
    assert done.code == 2
    assert done.err == "labric: error: --where takes COLUMN=VALUE, got 'lot'\n"
