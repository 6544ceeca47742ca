"""The platform API other routes use: platform rows, experiment links, read-only queries."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from labric.server.datasets import DatasetStore, PlatformRowInUse, QueryError
from labric.server.datasets.define import parse_definition
from labric.server.datasets.store import (
    FILE_VERSION,
    OrgDescription,
    OrgMember,
    insert_definition,
)

ORG = "org-1"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[DatasetStore]:
    s = DatasetStore(tmp_path / "datasets")
    yield s
    await s.close()


async def _table(store: DatasetStore, body: dict[str, object]) -> None:
    org = await store.org(ORG)
    table = parse_definition(body, org.catalog)
    await org.write(
        lambda conn: insert_definition(conn, table, "2025-01-01T00:00:00.000000Z"),
        after=lambda made: setattr(org, "catalog", org.catalog.with_table(made)),
    )


async def test_platform_rows_upsert_and_delete(store: DatasetStore) -> None:
    await store.upsert_platform_row(
        ORG,
        "experiment",
        {"id": "e1", "name": "Run", "tags": ["x"], "started_at": "2025-01-01T10:00:00+02:00"},
    )
    await store.upsert_platform_row(ORG, "core_experiment", {"id": "e1", "name": "Run 2"})
    await store.upsert_platform_row(ORG, "instrument", {"id": "i1", "name": "Reader"})
    result = await store.run_readonly_query(
        ORG, "SELECT name, tags, started_at FROM core_experiment WHERE id = %s", ["e1"]
    )
    assert result.data == [["Run 2", None, None]]  # an upsert replaces the row
    await _table(
        store,
        {
            "name": "samples",
            "columns": [
                {"name": "experiment", "foreign_key": "experiment"},
                {"name": "instrument", "foreign_key": "instrument", "nullable": False},
            ],
        },
    )
    org = await store.org(ORG)
    await org.write(
        lambda conn: conn.execute(
            "INSERT INTO samples (id, experiment_id, instrument_id) VALUES ('s', 'e1', 'i1')"
        )
    )
    # A nullable reference is cleared; a required one blocks the delete.
    assert await store.delete_platform_row(ORG, "experiment", "e1") is True
    assert (await store.run_readonly_query(ORG, "SELECT experiment_id FROM samples")).data == [
        [None]
    ]
    with pytest.raises(PlatformRowInUse, match=r"samples\.instrument"):
        await store.delete_platform_row(ORG, "instrument", "i1")
    assert await store.delete_platform_row(ORG, "experiment", "e1") is False
    with pytest.raises(ValueError, match="not a platform table"):
        await store.upsert_platform_row(ORG, "samples", {"id": "x"})
    with pytest.raises(ValueError, match="no column"):
        await store.upsert_platform_row(ORG, "experiment", {"id": "x", "nope": 1})
    with pytest.raises(ValueError, match="expected an ISO 8601"):
        await store.upsert_platform_row(
            ORG, "experiment", {"id": "x", "name": "n", "started_at": 5}
        )


async def test_experiment_links(store: DatasetStore) -> None:
    await store.upsert_platform_row(ORG, "experiment", {"id": "e1", "name": "Run"})
    await _table(store, {"name": "samples", "columns": [{"name": "n", "type": "integer"}]})
    org = await store.org(ORG)
    await org.write(lambda conn: conn.execute("INSERT INTO samples (id, n) VALUES ('a', 1)"))
    assert await store.link_experiment_rows(ORG, "e1", [("samples", "a"), ("samples", "a")]) == 1
    assert await store.experiment_rows(ORG, "e1") == [("samples", "a")]
    with pytest.raises(ValueError, match="no row"):
        await store.link_experiment_rows(ORG, "e1", [("samples", "zz")])
    with pytest.raises(ValueError, match="does not exist"):
        await store.link_experiment_rows(ORG, "e2", [("samples", "a")])
    joined = await store.run_readonly_query(
        ORG,
        "SELECT s.n FROM core_experiment_row l JOIN samples s ON s.id = l.row_id "
        "WHERE l.experiment_id = %s AND l.table_name = 'samples'",
        ["e1"],
    )
    assert joined.data == [[1]]
    assert await store.unlink_experiment_rows(ORG, "e1") == 1
    assert await store.experiment_rows(ORG, "e1") == []


async def test_readonly_query_limits(store: DatasetStore) -> None:
    with pytest.raises(QueryError, match="more than 2 rows"):
        await store.run_readonly_query(
            ORG, "SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3", limit=2
        )
    with pytest.raises(QueryError, match="refused"):
        await store.run_readonly_query(ORG, "SELECT * FROM _labric_columns")
    with pytest.raises(ValueError, match="not an organisation id"):
        await store.org("../escape")


async def test_files_survive_a_reopen(tmp_path: Path) -> None:
    first = DatasetStore(tmp_path)
    await _table(first, {"name": "samples", "columns": [{"name": "n", "type": "integer"}]})
    await first.close()
    second = DatasetStore(tmp_path)
    try:
        org = await second.org(ORG)
        assert [t.name for t in org.catalog.own()] == ["samples"]
    finally:
        await second.close()


async def test_a_version_1_file_is_upgraded_in_place(tmp_path: Path) -> None:
    """A file written before the organisation-describing tables gets them on open, with
    ``core_table`` filled from the table definitions already there."""
    first = DatasetStore(tmp_path)
    await _table(first, {"name": "samples", "columns": [{"name": "n", "type": "integer"}]})
    await first.close()
    path = tmp_path / f"{ORG}.sqlite3"
    conn = sqlite3.connect(path)
    try:
        for table in ("core_operation", "core_procedurestep", "core_organizationmember"):
            conn.execute(f"DROP TABLE {table}")
        for table in ("core_table", "core_user", "core_organization"):
            conn.execute(f"DROP TABLE {table}")
        conn.execute("PRAGMA user_version = 1")
        conn.commit()
    finally:
        conn.close()
    about = OrgDescription(
        name="Lab",
        created_at="2025-01-01T00:00:00.000000Z",
        members=(OrgMember(id="u1", name="Ada", joined="2025-01-01T00:00:00.000000Z"),),
    )

    async def describe(org_id: str) -> OrgDescription:
        assert org_id == ORG
        return about

    second = DatasetStore(tmp_path, describe=describe)
    try:
        tables = await second.run_readonly_query(ORG, "SELECT id, name FROM core_table")
        users = await second.run_readonly_query(
            ORG,
            "SELECT u.name, m.role, o.name FROM core_organizationmember m "
            "JOIN core_user u ON u.id = m.user_id JOIN core_organization o "
            "ON o.id = m.organization_id",
        )
    finally:
        await second.close()
    assert tables.data == [[1, "samples"]]
    assert users.data == [["Ada", "admin", "Lab"]]
    check = sqlite3.connect(path)
    try:
        assert check.execute("PRAGMA user_version").fetchone()[0] == FILE_VERSION
    finally:
        check.close()
