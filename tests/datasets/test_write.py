"""``POST /v1/data/write``: modes, references, lookups, series, dry runs, problems, limits."""

from __future__ import annotations

import io
import json
import sqlite3
from typing import Any

from labric.server import LocalServer

from ._support import READINGS, SAMPLES, Wire, create_tables


async def _ok(reply: Any) -> dict[str, Any]:
    assert reply.status == 200, reply.body
    result: dict[str, Any] = reply.json()
    return result


async def _errors(reply: Any) -> list[dict[str, Any]]:
    assert reply.status == 400, reply.body
    errors: list[dict[str, Any]] = reply.json()["errors"]
    return errors


async def _rows(wire: Wire, table: str, **filters: Any) -> list[dict[str, Any]]:
    reply = await wire.post(
        "/v1/tools/read",
        json={"target_name": table, "target_type": "table", "filters": filters, "limit": 1000},
    )
    assert reply.status == 200, reply.body
    rows: list[dict[str, Any]] = reply.json()
    return rows


async def test_insert_returns_ids_in_input_order_and_stores_typed_values(tables: Wire) -> None:
    result = await _ok(
        await tables.write(
            tables=[
                {
                    "table": "samples",
                    "rows": [
                        {
                            "id": "s-b",
                            "name": "B",
                            "od600": 2,
                            "count": 3.0,
                            "ok": True,
                            "taken_at": "2025-01-02T04:05:06+01:00",
                            "extra": {"a": [1, 2]},
                        },
                        {"name": "A"},
                    ],
                }
            ]
        )
    )
    assert result["job_execution_id"]
    assert result["series"] == []
    assert result["refs"] == {}
    (written,) = result["tables"]
    assert written == {
        "table": "samples",
        "created": 2,
        "updated": 0,
        "deleted": 0,
        "cascade_deleted": None,
        "ids": ["s-b", written["ids"][1]],
        "rows": None,
    }
    assert len(written["ids"][1]) == 36  # a generated UUID
    rows = await _rows(tables, "samples", name="B")
    assert rows == [
        {
            "id": "s-b",
            "name": "B",
            "od600": 2.0,
            "count": 3,
            "ok": True,
            "taken_at": "2025-01-02T03:05:06.000000Z",
            "extra": {"a": [1, 2]},
            "label": None,
            "experiment": None,
        }
    ]


async def test_integer_primary_keys_are_assigned(wire: Wire) -> None:
    await create_tables(
        wire,
        {
            "name": "plates",
            "columns": [
                {"name": "n", "type": "integer", "primary_key": True},
                {"name": "code", "type": "text"},
            ],
        },
    )
    result = await _ok(
        await wire.write(tables=[{"table": "plates", "rows": [{"code": "a"}, {"n": 10}, {}]}])
    )
    assert result["tables"][0]["ids"] == ["1", "10", "11"]


async def test_upsert_creates_or_updates(tables: Wire) -> None:
    await _ok(
        await tables.write(
            tables=[{"table": "samples", "rows": [{"id": "s1", "name": "A", "od600": 1.0}]}]
        )
    )
    result = await _ok(
        await tables.write(
            tables=[
                {
                    "table": "samples",
                    "mode": "upsert",
                    "rows": [{"id": "s1", "od600": 5.0}, {"id": "s2", "name": "B"}],
                }
            ]
        )
    )
    assert result["tables"][0]["created"] == 1
    assert result["tables"][0]["updated"] == 1
    assert result["tables"][0]["ids"] == ["s1", "s2"]
    assert (await _rows(tables, "samples", id="s1"))[0]["od600"] == 5.0
    assert (await _rows(tables, "samples", id="s1"))[0]["name"] == "A"  # not sent, unchanged


async def test_upsert_on_a_natural_key(tables: Wire) -> None:
    await _ok(await tables.write(tables=[{"table": "samples", "rows": [{"name": "A"}]}]))
    result = await _ok(
        await tables.write(
            tables=[
                {
                    "table": "samples",
                    "mode": "upsert",
                    "key": ["name"],
                    "rows": [{"name": "A", "count": 1}, {"name": "B", "count": 2}],
                }
            ]
        )
    )
    assert (result["tables"][0]["created"], result["tables"][0]["updated"]) == (1, 1)
    assert [r["count"] for r in await _rows(tables, "samples")] == [1, 2]


async def test_update_overwrite_and_fill_missing(tables: Wire) -> None:
    rows = [{"name": "A", "label": "old"}, {"name": "B"}]
    await _ok(await tables.write(tables=[{"table": "samples", "rows": rows}]))
    await _ok(
        await tables.write(
            tables=[
                {
                    "table": "samples",
                    "mode": "update",
                    "key": ["name"],
                    "on_match": "fill_missing",
                    "rows": [{"name": "A", "label": "new"}, {"name": "B", "label": "new"}],
                }
            ]
        )
    )
    assert [r["label"] for r in await _rows(tables, "samples")] == ["old", "new"]
    await _ok(
        await tables.write(
            tables=[
                {
                    "table": "samples",
                    "mode": "update",
                    "key": ["name"],
                    "rows": [{"name": "A", "label": "newer"}],
                }
            ]
        )
    )
    assert [r["label"] for r in await _rows(tables, "samples")] == ["newer", "new"]


async def test_update_and_delete_must_match_a_row(tables: Wire) -> None:
    await _ok(await tables.write(tables=[{"table": "samples", "rows": [{"name": "A"}]}]))
    errors = await _errors(
        await tables.write(
            tables=[
                {
                    "table": "samples",
                    "mode": "update",
                    "key": ["name"],
                    "rows": [{"name": "A", "count": 1}, {"name": "Z", "count": 2}],
                },
            ]
        )
    )
    assert errors == [
        {"path": "tables[0].rows[1]", "message": "No row of samples matches the key (name='Z')"}
    ]
    # The first row's update was rolled back with everything else.
    assert (await _rows(tables, "samples"))[0]["count"] is None
    errors = await _errors(
        await tables.write(tables=[{"table": "samples", "mode": "delete", "rows": [{"id": "x"}]}])
    )
    assert errors[0]["path"] == "tables[0].rows[0]"
    errors = await _errors(
        await tables.write(tables=[{"table": "samples", "mode": "update", "rows": [{"count": 1}]}])
    )
    assert errors[0]["path"] == "tables[0].rows[0].id"
    assert "key column id is required" in errors[0]["message"]


async def test_a_key_matching_several_rows_is_refused(tables: Wire) -> None:
    rows = [{"name": "A", "label": "x"}, {"name": "B", "label": "x"}]
    await _ok(await tables.write(tables=[{"table": "samples", "rows": rows}]))
    errors = await _errors(
        await tables.write(
            tables=[
                {
                    "table": "samples",
                    "mode": "update",
                    "key": ["label"],
                    "rows": [{"label": "x", "count": 1}],
                }
            ]
        )
    )
    assert "matches more than one row" in errors[0]["message"]


async def test_delete_refuses_referenced_rows_unless_cascade(tables: Wire) -> None:
    await _ok(
        await tables.write(
            tables=[
                {
                    "table": "samples",
                    "rows": [{"_ref": "a", "id": "sa", "name": "A"}, {"id": "sb", "name": "B"}],
                },
                {
                    "table": "measurements",
                    "rows": [{"sample": "@a", "value": 1.0}, {"sample": "@a", "value": 2.0}],
                },
            ],
            series=[{"table": "readings", "parent": "@a", "columns": {"value": [1, 2, 3]}}],
        )
    )
    errors = await _errors(
        await tables.write(tables=[{"table": "samples", "mode": "delete", "rows": [{"id": "sa"}]}])
    )
    assert errors[0]["path"] == "tables[0].rows[0]"
    assert "2 row(s) of measurements" in errors[0]["message"]
    assert "cascade" in errors[0]["message"]
    # A row only raw rows reference goes with its series, without cascade.
    await _ok(
        await tables.write(
            series=[{"table": "readings", "parent": "sb", "columns": {"value": [9]}}]
        )
    )
    result = await _ok(
        await tables.write(tables=[{"table": "samples", "mode": "delete", "rows": [{"id": "sb"}]}])
    )
    assert result["tables"][0]["cascade_deleted"] == {"readings": 1}
    result = await _ok(
        await tables.write(
            tables=[
                {
                    "table": "samples",
                    "mode": "delete",
                    "cascade": True,
                    "rows": [{"id": "sa"}],
                }
            ]
        )
    )
    (deleted,) = result["tables"]
    assert (deleted["deleted"], deleted["ids"]) == (1, ["sa"])
    assert deleted["cascade_deleted"] == {"measurements": 2, "readings": 3}
    assert await tables.scalar("SELECT count(*) FROM measurements") == 0


async def test_cascade_is_for_delete_only(tables: Wire) -> None:
    errors = await _errors(
        await tables.write(tables=[{"table": "samples", "cascade": True, "rows": [{"name": "A"}]}])
    )
    assert errors == [
        {"path": "tables[0].cascade", "message": "cascade applies to mode delete only"}
    ]


async def test_references_labels_and_lookups(tables: Wire) -> None:
    await _ok(
        await tables.write(tables=[{"table": "samples", "rows": [{"id": "old", "name": "Old"}]}])
    )
    result = await _ok(
        await tables.write(
            tables=[
                {"table": "samples", "rows": [{"_ref": "n", "name": "New"}]},
                {
                    "table": "measurements",
                    "rows": [
                        {"sample": "@n", "kind": "label"},
                        {"sample": {"name": "Old"}, "kind": "lookup"},
                        {"sample_id": "old", "kind": "id by sql name"},
                    ],
                },
            ]
        )
    )
    new_id = result["refs"]["n"]
    assert result["tables"][0]["ids"] == [new_id]
    rows = await _rows(tables, "measurements")
    assert [(r["sample"], r["kind"]) for r in rows] == [
        (new_id, "label"),
        ("old", "lookup"),
        ("old", "id by sql name"),
    ]


async def test_reference_problems_are_reported_with_paths(tables: Wire) -> None:
    await _ok(
        await tables.write(
            tables=[
                {
                    "table": "samples",
                    "rows": [{"name": "A", "label": "x"}, {"name": "B", "label": "x"}],
                }
            ]
        )
    )
    errors = await _errors(
        await tables.write(
            tables=[
                {
                    "table": "measurements",
                    "rows": [
                        {"sample": "@later"},
                        {"sample": {"name": "missing"}},
                        {"sample": {"label": "x"}},
                        {"sample": "no-such-id"},
                        {"sample": {"nope": 1}},
                    ],
                },
                {
                    "table": "samples",
                    "rows": [{"_ref": "later", "name": "L"}, {"_ref": "later", "name": "M"}],
                },
                {"table": "measurements", "rows": [{"_ref": "m", "sample": "@m"}]},
            ]
        )
    )
    by_path = {e["path"]: e["message"] for e in errors}
    assert "not a label defined" in by_path["tables[0].rows[0].sample"]
    assert "matches no row of samples" in by_path["tables[0].rows[1].sample"]
    assert "more than one row of samples" in by_path["tables[0].rows[2].sample"]
    assert by_path["tables[0].rows[3].sample"] == "No row of samples has id 'no-such-id'"
    assert "has no column 'nope'" in by_path["tables[0].rows[4].sample"]
    assert "already defined" in by_path["tables[1].rows[1]._ref"]
    assert "labels a row of measurements" in by_path["tables[2].rows[0].sample"]


async def test_an_id_inserted_earlier_in_the_request_can_be_referenced(tables: Wire) -> None:
    await _ok(
        await tables.write(
            tables=[
                {"table": "samples", "rows": [{"id": "fresh", "name": "F"}]},
                {"table": "measurements", "rows": [{"sample": "fresh"}]},
            ]
        )
    )
    errors = await _errors(
        await tables.write(
            tables=[
                {"table": "measurements", "rows": [{"sample": "fresher"}]},
                {"table": "samples", "rows": [{"id": "fresher", "name": "G"}]},
            ]
        )
    )
    assert errors[0]["path"] == "tables[0].rows[0].sample"


async def test_series_replace_the_parents_points(tables: Wire) -> None:
    result = await _ok(
        await tables.write(
            tables=[{"table": "samples", "rows": [{"_ref": "s", "name": "A"}]}],
            series=[
                {
                    "table": "readings",
                    "parent": "@s",
                    "columns": {"t": [0, 1, 2], "value": [0.1, 0.2, 0.3]},
                }
            ],
        )
    )
    parent = result["refs"]["s"]
    assert result["series"] == [
        {"table": "readings", "parent_id": parent, "points_written": 3, "points_replaced": 0}
    ]
    points = await _rows(tables, "readings")
    assert [(p["sample"], p["order"], p["value"]) for p in points] == [
        (parent, 0, 0.1),
        (parent, 1, 0.2),
        (parent, 2, 0.3),
    ]
    assert all(len(p["id"]) == 36 for p in points)
    # Writing the series again replaces it (a repeat is safe); order may be given.
    result = await _ok(
        await tables.write(
            series=[
                {
                    "table": "readings",
                    "parent": {"name": "A"},
                    "columns": {"value": [9.0, 8.0], "order": [10, 20]},
                }
            ]
        )
    )
    assert result["series"][0]["points_replaced"] == 3
    points = await _rows(tables, "readings")
    assert [(p["order"], p["value"]) for p in points] == [(10, 9.0), (20, 8.0)]


async def test_series_problems(tables: Wire) -> None:
    await create_tables(
        tables,
        {
            "name": "pairs",
            "semantic_category": "raw",
            "columns": [
                {"name": "a", "foreign_key": "samples"},
                {"name": "b", "foreign_key": "samples"},
                {"name": "v", "type": "float"},
            ],
        },
    )
    errors = await _errors(
        await tables.write(
            series=[
                {"table": "samples", "parent": "x", "columns": {"name": ["a"]}},
                {"table": "readings", "parent": "nope", "columns": {"value": [1, 2], "t": [1]}},
                {"table": "pairs", "parent": "x", "columns": {"v": [1]}},
                {"table": "readings", "parent": "x", "columns": {"id": ["x"], "value": ["bad"]}},
            ]
        )
    )
    by_path = {e["path"]: e["message"] for e in errors}
    assert "not a raw table" in by_path["series[0].table"]
    assert "same length" in by_path["series[1].columns.t"]
    assert by_path["series[1].parent"] == "No row of samples has id 'nope'"
    assert "several foreign keys" in by_path["series[2].parent_column"]
    assert "filled by the server" in by_path["series[3].columns.id"]
    assert "expected a number" in by_path["series[3].columns.value[0]"]


async def test_dry_run_checks_everything_and_commits_nothing(tables: Wire) -> None:
    result = await _ok(
        await tables.write(
            tables=[{"table": "samples", "rows": [{"_ref": "s", "name": "A"}]}],
            series=[{"table": "readings", "parent": "@s", "columns": {"value": [1.0]}}],
            dry_run=True,
        )
    )
    assert result["job_execution_id"] is None
    assert result["tables"][0]["created"] == 1
    assert result["series"][0]["points_written"] == 1
    assert await tables.scalar("SELECT count(*) FROM samples") == 0
    errors = await _errors(
        await tables.write(tables=[{"table": "samples", "rows": [{}]}], dry_run=True)
    )
    assert errors[0]["path"] == "tables[0].rows[0].name"


async def test_return_rows(tables: Wire) -> None:
    result = await _ok(
        await tables.write(
            tables=[{"table": "samples", "rows": [{"name": "A", "ok": False}]}], return_rows=True
        )
    )
    (row,) = result["tables"][0]["rows"]
    assert (row["name"], row["ok"], row["id"]) == ("A", False, result["tables"][0]["ids"][0])


async def test_every_problem_is_reported_at_once(tables: Wire) -> None:
    rows = [{"name": i, "od600": "x"} for i in range(60)]  # two problems per row
    reply = await tables.write(
        tables=[{"table": "samples", "rows": rows}, {"table": "nope", "rows": []}],
        series=[{"table": "readings"}],
    )
    errors = await _errors(reply)
    assert len(errors) == 101
    assert errors[0] == {
        "path": "tables[0].rows[0].name",
        "message": "name: expected a string, got an integer",
    }
    assert errors[1]["path"] == "tables[0].rows[0].od600"
    assert errors[100]["path"] is None
    # 120 row problems + the unknown table + the series' parent and columns.
    assert errors[100]["message"].startswith("23 more problem(s)")


async def test_request_level_problems(tables: Wire) -> None:
    errors = await _errors(
        await tables.write(
            tables={"samples": []},
            series="x",
            job_execution_id="not-an-execution",
            dry_run="yes",
        )
    )
    assert {e["path"] for e in errors} == {"tables", "series", "job_execution_id", "dry_run"}
    errors = await _errors(
        await tables.write(
            tables=[
                {"table": "samples", "mode": "merge", "rows": []},
                {"table": "samples", "on_match": "keep", "rows": "x"},
                {"table": "experiment", "rows": []},
                {"table": "samples", "key": ["name"], "rows": []},
                {"table": "samples", "rows": [{"_ref": "@x", "name": "A"}, 5]},
            ]
        )
    )
    by_path = {e["path"]: e["message"] for e in errors}
    assert "mode must be one of" in by_path["tables[0].mode"]
    assert "overwrite or fill_missing" in by_path["tables[1].on_match"]
    assert "list of row objects" in by_path["tables[1].rows"]
    assert "platform table" in by_path["tables[2].table"]
    assert "key applies to modes" in by_path["tables[3].key"]
    assert "_ref must be" in by_path["tables[4].rows[0]._ref"]
    assert by_path["tables[4].rows[1]"] == "A row must be an object"


async def test_inserted_keys_and_unique_values_must_be_new(tables: Wire) -> None:
    await _ok(
        await tables.write(tables=[{"table": "samples", "rows": [{"id": "s1", "name": "A"}]}])
    )
    errors = await _errors(
        await tables.write(
            tables=[
                {
                    "table": "samples",
                    "rows": [
                        {"id": "s1", "name": "B"},
                        {"name": "C"},
                        {"name": "C"},
                        {"name": "A"},
                    ],
                }
            ]
        )
    )
    by_path = {e["path"]: e["message"] for e in errors}
    assert "already exists" in by_path["tables[0].rows[0].id"]
    assert "repeats row 1" in by_path["tables[0].rows[2].name"]
    assert "already exists" in by_path["tables[0].rows[3].name"]


async def test_body_limit_is_413(tables: Wire) -> None:
    big = {"tables": [{"table": "samples", "rows": [{"name": "x" * 4_600_000}]}]}
    reply = await tables.post(
        "/v1/data/write",
        data=io.BytesIO(json.dumps(big).encode()),
        headers={"Content-Type": "application/json"},
    )
    assert reply.status == 413
    assert "4,500,000 bytes" in reply.json()["detail"]


async def test_row_limit_is_413(tables: Wire) -> None:
    reply = await tables.write(tables=[{"table": "samples", "rows": [{}] * 10_001}])
    assert reply.status == 413
    assert "at most 10,000 rows" in reply.json()["detail"]
    ok = await tables.write(
        tables=[{"table": "samples", "rows": [{"name": str(i)} for i in range(10_000)]}],
        dry_run=True,
    )
    assert ok.status == 200


async def test_series_value_limit_is_413(tables: Wire) -> None:
    reply = await tables.write(
        series=[
            {
                "table": "readings",
                "parent": "x",
                "columns": {"t": [0] * 125_001, "value": [0] * 125_000},
            }
        ]
    )
    assert reply.status == 413
    assert "at most 250,000 series values" in reply.json()["detail"]


async def test_lock_contention_is_429_with_retry_after(tables: Wire, server: LocalServer) -> None:
    await tables.limits(lock_timeout=0.2)
    path = server.data_dir.root / "datasets" / f"{server.default_org_id}.sqlite3"
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        reply = await tables.write(tables=[{"table": "samples", "rows": [{"name": "A"}]}])
        assert reply.status == 429
        assert reply.headers["Retry-After"] == "1"
        assert "nothing was written" in reply.json()["detail"]
        other.execute("ROLLBACK")
    finally:
        other.close()
    await _ok(await tables.write(tables=[{"table": "samples", "rows": [{"name": "A"}]}]))
    assert await tables.scalar("SELECT count(*) FROM samples") == 1


async def test_writes_are_recorded_under_an_execution(tables: Wire, server: LocalServer) -> None:
    opened = (await tables.post("/v1/job-executions", json={"job_name": "mine"})).json()
    given = opened["job_execution_id"]
    result = await _ok(
        await tables.write(
            tables=[{"table": "samples", "rows": [{"name": "A"}]}], job_execution_id=given
        )
    )
    assert result["job_execution_id"] == given
    # A running job's key records its writes under its execution by default.
    job_key = server.create_key("read,write", job_execution_id=given)
    result = await _ok(
        await tables.post(
            "/v1/data/write",
            key=job_key,
            json={"tables": [{"table": "samples", "rows": [{"name": "B"}]}]},
        )
    )
    assert result["job_execution_id"] == given
    # Otherwise the server opens a new execution (completed) of the named or default job.
    result = await _ok(
        await tables.write(tables=[{"table": "samples", "rows": [{"name": "C"}]}], job_name="etl")
    )
    assert result["job_execution_id"] not in (None, given)


async def test_revert_deletes_what_the_execution_created(tables: Wire, server: LocalServer) -> None:
    from labric import AsyncLabric

    await _ok(
        await tables.write(
            tables=[
                {
                    "table": "samples",
                    "rows": [{"id": "pre", "name": "P"}, {"id": "pre2", "name": "Q"}],
                }
            ]
        )
    )
    execution = (await tables.post("/v1/job-executions", json={})).json()["job_execution_id"]
    result = await _ok(
        await tables.write(
            job_execution_id=execution,
            tables=[
                {
                    "table": "samples",
                    "rows": [{"_ref": "a", "name": "A"}, {"_ref": "b", "name": "B"}],
                },
                {"table": "measurements", "rows": [{"sample": "@a"}]},
                {"table": "samples", "mode": "update", "rows": [{"id": "pre", "label": "x"}]},
                {"table": "samples", "mode": "delete", "rows": [{"id": "pre2"}]},
            ],
            series=[
                {"table": "readings", "parent": "@a", "columns": {"value": [1, 2]}},
                {"table": "readings", "parent": "pre", "columns": {"value": [3]}},
            ],
        )
    )
    b_id = result["refs"]["b"]
    # Someone else's later row references b: b must survive the revert.
    await _ok(await tables.write(tables=[{"table": "measurements", "rows": [{"sample": b_id}]}]))
    async with AsyncLabric(server.admin_key, base_url=server.base_url) as client:
        upload = await client.files.upload(b"data", name="x.csv", job_execution_id=execution)
    reply = await tables.post(f"/v1/job-executions/{execution}/revert")
    assert reply.status == 200, reply.body
    outcome = reply.json()
    assert outcome["deleted_count"] == 3  # sample a, its measurement, the file
    assert outcome["raws_deleted_count"] == 2  # a's series
    assert outcome["skipped_count"] == 1  # b, still referenced
    warnings = "\n".join(outcome["warnings"])
    assert "1 row(s) of samples updated" in warnings
    assert "1 row(s) of samples deleted" in warnings
    assert "Series written onto 1 parent row(s)" in warnings
    assert "kept: rows written since reference them" in warnings
    names = [r["name"] for r in await _rows(tables, "samples")]
    assert names == ["P", "B"]
    assert await tables.scalar("SELECT count(*) FROM readings") == 1  # pre's series stays
    assert (await tables.get(f"/v1/files/{upload.file_id}")).status == 404
    # Reverting again finds nothing left to do.
    again = (await tables.post(f"/v1/job-executions/{execution}/revert")).json()
    assert again == {
        "deleted_count": 0,
        "raws_deleted_count": 0,
        "skipped_count": 0,
        "warnings": [],
    }
    assert (await tables.post("/v1/job-executions/nope/revert")).status == 404


async def test_writes_need_the_write_scope(tables: Wire, server: LocalServer) -> None:
    reader = server.create_key("read")
    reply = await tables.post("/v1/data/write", key=reader, json={"tables": []})
    assert reply.status == 403
    assert (await tables.post("/v1/datasets", key=reader, json=SAMPLES)).status == 403
    assert (await tables.query("SELECT 1", key=reader)).status == 200


async def test_platform_tables_are_not_writable_but_referenceable(tables: Wire) -> None:
    errors = await _errors(await tables.write(tables=[{"table": "core_instrument", "rows": []}]))
    assert "platform table" in errors[0]["message"]
    errors = await _errors(
        await tables.write(
            tables=[{"table": "samples", "rows": [{"name": "A", "experiment": "e1"}]}]
        )
    )
    assert errors[0]["message"] == "No row of core_experiment has id 'e1'"
    assert READINGS["semantic_category"] == "raw"
