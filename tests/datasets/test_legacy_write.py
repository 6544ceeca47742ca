"""The deprecated ``tools/write`` and ``tools/batch-write`` over real sockets, and the platform
tables the official client's helpers write (``procedurestep``, ``operation``) or read
(``table``, ``organization``, ``user``)."""

from __future__ import annotations

import io
import json
from typing import Any

from labric.server.datasets.legacy import batch_write_order
from labric.server.datasets.schema import PLATFORM_TABLES, Catalog

from ._support import Wire, create_tables

STEPS = {
    "name": "treated",
    "columns": [
        {"name": "sample", "type": "text", "nullable": False},
        {"name": "dose", "type": "float"},
        {"name": "operation", "foreign_key": "operation"},
    ],
}


async def tools_write(wire: Wire, **body: Any) -> Any:
    reply = await wire.post("/v1/tools/write", json=body)
    return reply


async def org_id(wire: Wire) -> str:
    reply = await wire.post(
        "/v1/tools/read", json={"target_name": "organization", "target_type": "core-table"}
    )
    assert reply.status == 200, reply.body
    (row,) = reply.json()
    return str(row["id"])


async def test_create_returns_records_and_records_an_execution(tables: Wire) -> None:
    reply = await tools_write(
        tables,
        target_name="samples",
        target_type="table",
        data=[{"name": "S-1", "od600": 0.5}, {"name": "S-2"}],
        mode="create",
        collect_output=True,
    )
    assert reply.status == 200, reply.body
    rows = reply.json()
    assert [r["name"] for r in rows] == ["S-1", "S-2"]
    assert rows[0]["od600"] == 0.5
    assert rows[0]["id"]
    execution = reply.headers["X-Labric-Job-Execution-Id"]
    # Revertible as a unit: the rows go with the execution.
    revert = await tables.post(f"/v1/job-executions/{execution}/revert")
    assert revert.status == 200
    assert revert.json()["deleted_count"] == 2
    assert await tables.scalar("SELECT count(*) FROM samples") == 0


async def test_collect_output_off_answers_an_empty_list(tables: Wire) -> None:
    reply = await tools_write(
        tables, target_name="samples", target_type="table", data=[{"name": "S"}], mode="create"
    )
    assert reply.status == 200
    assert reply.json() == []
    assert await tables.scalar("SELECT count(*) FROM samples") == 1


async def test_create_or_update_fill_missing_and_overwrite(tables: Wire) -> None:
    base = {"target_name": "samples", "target_type": "table", "collect_output": True}
    first = await tools_write(tables, **base, data=[{"name": "S", "label": "a"}], mode="create")
    sample_id = first.json()[0]["id"]
    # fill_missing (the default): only null columns take the new values.
    reply = await tools_write(
        tables,
        **base,
        data=[{"name": "S", "label": "b", "count": 3}],
        mode="create-or-update",
        params_to_match_for_update=["name"],
    )
    assert reply.status == 200, reply.body
    (row,) = reply.json()
    assert (row["id"], row["label"], row["count"]) == (sample_id, "a", 3)
    reply = await tools_write(
        tables,
        **base,
        data=[{"name": "S", "label": "b", "count": None}],
        mode="create-or-update",
        params_to_match_for_update=["name"],
        on_match="overwrite",
    )
    (row,) = reply.json()
    assert (row["label"], row["count"]) == ("b", None)  # a provided null clears
    # No match: a new row.
    reply = await tools_write(
        tables,
        **base,
        data=[{"name": "T"}],
        mode="create-or-update",
        params_to_match_for_update=["name"],
    )
    assert reply.json()[0]["id"] != sample_id
    assert await tables.scalar("SELECT count(*) FROM samples") == 2


async def test_defaults_fill_inserted_rows_only(tables: Wire) -> None:
    await create_tables(
        tables,
        {
            "name": "stamped",
            "columns": [
                {"name": "id", "type": "text", "primary_key": True},
                {"name": "code", "type": "text", "nullable": False},
                {"name": "made", "type": "datetime", "nullable": False},
            ],
        },
    )
    body = {
        "target_name": "stamped",
        "target_type": "table",
        "mode": "create-or-update",
        "params_to_match_for_update": ["code"],
        "defaults": {"id": "UUID4", "made": "DATETIME_NOW"},
        "collect_output": True,
    }
    (first,) = (await tools_write(tables, **body, data=[{"code": "A"}])).json()
    assert len(first["id"]) == 36
    assert first["made"].endswith("Z")
    (again,) = (await tools_write(tables, **body, data=[{"code": "A"}])).json()
    assert again == first  # defaults never overwrite
    bad = await tools_write(tables, **{**body, "defaults": {"made": "TOMORROW"}}, data=[{}])
    assert bad.status == 400
    assert bad.json()["errors"][0]["path"] == "defaults.made"


async def test_problems_name_data_paths_and_write_nothing(tables: Wire) -> None:
    reply = await tools_write(
        tables,
        target_name="samples",
        target_type="table",
        data=[{"name": "ok"}, {"name": "x", "od600": "high"}, {"nope": 1}],
        mode="create",
    )
    assert reply.status == 400
    body = reply.json()
    paths = [e["path"] for e in body["errors"]]
    assert "data[1].od600" in paths
    assert "data[2].nope" in paths
    assert "nothing was written" in body["detail"]
    assert await tables.scalar("SELECT count(*) FROM samples") == 0


async def test_dry_run_validates_and_commits_nothing(tables: Wire) -> None:
    reply = await tools_write(
        tables,
        target_name="samples",
        target_type="table",
        data=[{"name": "S"}],
        mode="create",
        dry_run=True,
        collect_output=True,
    )
    assert reply.status == 200
    assert reply.json()[0]["name"] == "S"
    assert "X-Labric-Job-Execution-Id" not in reply.headers
    assert await tables.scalar("SELECT count(*) FROM samples") == 0


async def test_read_only_and_unknown_tables(wire: Wire) -> None:
    for name in ("organization", "organizationmember", "user", "table", "experiment"):
        reply = await tools_write(
            wire, target_name=name, target_type="core-table", data=[{}], mode="create"
        )
        assert reply.status == 403, (name, reply.body)
        assert "read" in reply.json()["detail"] or "own routes" in reply.json()["detail"]
    reply = await tools_write(
        wire, target_name="carrier", target_type="core-table", data=[{}], mode="create"
    )
    assert reply.status == 404
    reply = await tools_write(wire, target_name="x", target_type="view", data=[], mode="drop")
    assert reply.status == 422
    locs = {tuple(d["loc"]) for d in reply.json()["detail"]}
    assert {("body", "target_type"), ("body", "mode")} <= locs


async def test_body_limit(wire: Wire) -> None:
    rows = [{"name": "x" * 1000}] * 2600  # ~2.6 MB
    body = {"target_name": "samples", "target_type": "table", "data": rows, "mode": "create"}
    reply = await wire.post(
        "/v1/tools/write",
        data=io.BytesIO(json.dumps(body).encode()),
        headers={"Content-Type": "application/json"},
    )
    assert reply.status == 413
    assert "2,500,000" in reply.json()["detail"]


async def test_step_recording_tables(wire: Wire) -> None:
    """The writes the official step-recording helpers make, in order."""
    await create_tables(wire, STEPS)
    organization = await org_id(wire)
    read = await wire.post(
        "/v1/tools/read",
        json={"target_name": "table", "target_type": "core-table", "filters": {"name": "treated"}},
    )
    (table_row,) = read.json()
    stamps = {"id": "UUID4", "date_created": "DATETIME_NOW", "date_updated": "DATETIME_NOW"}
    step_row = {
        "name": "anneal",
        "parameters": {"temperature": 450},
        "organization_id": organization,
        "table_id": table_row["id"],
        "has_effect": True,
    }
    step_body = {
        "target_name": "procedurestep",
        "target_type": "core-table",
        "data": [step_row],
        "mode": "create-or-update",
        "params_to_match_for_update": ["name", "parameters", "table_id", "has_effect"],
        "defaults": stamps,
        "collect_output": True,
        "on_match": "fill_missing",
    }
    (step,) = (await tools_write(wire, **step_body)).json()
    (same,) = (await tools_write(wire, **step_body)).json()
    assert same["id"] == step["id"]  # matched, not duplicated
    operation_row = {
        "name": "anneal 2025-01-01T00:00:00Z",
        "step_id": step["id"],
        "status": "completed",
        "organization_id": organization,
        "is_atomic": True,
        "start_time": "2025-01-01T00:00:00Z",
        "end_time": "2025-01-01T00:00:00Z",
    }
    reply = await tools_write(
        wire,
        target_name="operation",
        target_type="core-table",
        data=[operation_row],
        mode="create-or-update",
        params_to_match_for_update=list(operation_row)[:2],
        defaults=stamps,
        collect_output=True,
    )
    assert reply.status == 200, reply.body
    (operation,) = reply.json()
    assert operation["step"] == step["id"]
    assert operation["is_atomic"] is True
    reply = await tools_write(
        wire,
        target_name="treated",
        target_type="table",
        data=[{"sample": "S-1", "dose": 1.5, "operation_id": operation["id"]}],
        mode="create-or-update",
        params_to_match_for_update=["sample", "dose", "operation_id"],
        defaults={"id": "UUID4"},
        collect_output=True,
    )
    assert reply.status == 200, reply.body
    assert reply.json()[0]["operation"] == operation["id"]
    # Another organisation's id is refused.
    bad = await tools_write(
        wire, **{**step_body, "data": [{**step_row, "organization_id": "someone-else"}]}
    )
    assert bad.status == 400
    assert bad.json()["errors"][0]["path"] == "data[0].organization_id"


async def test_schema_describes_the_organisation(wire: Wire) -> None:
    await create_tables(wire, STEPS)
    user = await wire.post(
        "/v1/tools/read", json={"target_name": "user", "target_type": "core-table"}
    )
    (person,) = user.json()
    members = await wire.post(
        "/v1/tools/read",
        json={"target_name": "organizationmember", "target_type": "core-table"},
    )
    (member,) = members.json()
    assert member["user"] == person["id"]
    assert member["organization"] == await org_id(wire)
    schema = (await wire.get("/v1/tools/schema")).json()
    assert schema[-1]["name"] == "core_user"
    assert schema[-1]["id"] is None
    treated = next(t for t in schema if t["name"] == "treated")
    table_ids = await wire.query("SELECT id FROM core_table WHERE name = %s", "treated")
    assert table_ids.json()["data"] == [[treated["id"]]]


async def test_batch_write_orders_tables_and_resolves_references(tables: Wire) -> None:
    body = {
        "tables": {
            # Listed before the table they reference: written after it.
            "measurements": [
                {"sample": "@s1", "kind": "od", "value": 0.1},
                {"sample": "S-2", "kind": "od", "value": 0.2},  # a natural key (name)
            ],
            "samples": [{"_ref": "s1", "name": "S-1"}, {"name": "S-2"}],
        },
        "options": {"return_records": True},
    }
    reply = await tables.post("/v1/tools/batch-write", json=body)
    assert reply.status == 200, reply.body
    result = reply.json()
    assert result["success"] is True
    assert result["plan"] is None
    assert result["summary"] == {
        "samples": {"created": 2, "updated": 0},
        "measurements": {"created": 2, "updated": 0},
    }
    assert list(result["refs"]) == ["s1"]
    by_name = {r["name"]: r["id"] for r in result["records"]["samples"]}
    assert [r["sample"] for r in result["records"]["measurements"]] == [
        by_name["S-1"],
        by_name["S-2"],
    ]
    # A natural key of an existing row, and an upsert matched on name.
    again = await tables.post(
        "/v1/tools/batch-write",
        json={
            "tables": {
                "measurements": [{"sample": "S-1", "kind": "ph", "value": 7.0}],
                "samples": [{"name": "S-1", "label": "first"}],
            },
            "options": {"mode": "upsert", "match_on": {"samples": ["name"]}},
        },
    )
    assert again.status == 200, again.body
    assert again.json()["summary"]["samples"] == {"created": 0, "updated": 1}
    assert (
        await tables.scalar(
            "SELECT count(*) FROM measurements WHERE sample_id = %s", by_name["S-1"]
        )
        == 2
    )
    # Revert the first write as a unit.
    revert = await tables.post(f"/v1/job-executions/{result['job_execution_id']}/revert")
    assert revert.status == 200


async def test_batch_write_dry_run_plan_and_problems(tables: Wire) -> None:
    body = {
        "tables": {
            "measurements": [{"sample": "@s", "value": 1.0}],
            "samples": [{"_ref": "s", "name": "A"}],
        },
        "options": {"dry_run": True},
    }
    reply = await tables.post("/v1/tools/batch-write", json=body)
    assert reply.status == 200, reply.body
    result = reply.json()
    assert result["job_execution_id"] is None
    assert result["plan"]["insert_order"] == ["samples", "measurements"]
    assert [op["create"] for op in result["plan"]["operations"]] == [1, 1]
    assert await tables.scalar("SELECT count(*) FROM samples") == 0
    bad = await tables.post(
        "/v1/tools/batch-write",
        json={"tables": {"samples": [{"name": "A"}], "measurements": [{"sample": "nobody"}]}},
    )
    assert bad.status == 400
    assert [e["path"] for e in bad.json()["errors"]] == ["tables.measurements[0].sample"]
    readonly = await tables.post("/v1/tools/batch-write", json={"tables": {"user": [{}]}})
    assert readonly.status == 400
    assert readonly.json()["errors"][0]["path"] == "tables.user"
    shape = await tables.post("/v1/tools/batch-write", json={"tables": {"samples": {}}})
    assert shape.status == 422


def test_batch_write_order_follows_foreign_keys() -> None:
    catalog = Catalog(dict(PLATFORM_TABLES))
    # operation -> procedurestep -> organization; unknown names keep their place.
    assert batch_write_order(catalog, ["operation", "nope", "procedurestep", "organization"]) == [
        "nope",
        "organization",
        "procedurestep",
        "operation",
    ]
    assert batch_write_order(catalog, ["experiment", "instrument"]) == ["experiment", "instrument"]


async def test_data_write_writes_process_steps_but_not_the_organisation(wire: Wire) -> None:
    organization = await org_id(wire)
    now = "2025-01-01T00:00:00Z"
    step = {
        "_ref": "s",
        "name": "mix",
        "organization": organization,
        "has_effect": True,
        "date_created": now,
        "date_updated": now,
    }
    operation = {
        "name": "mix 1",
        "step": "@s",
        "organization": organization,
        "is_atomic": True,
        "date_created": now,
        "date_updated": now,
    }
    reply = await wire.write(
        tables=[
            {"table": "procedurestep", "rows": [step]},
            {"table": "operation", "rows": [operation]},
        ]
    )
    assert reply.status == 200, reply.body
    assert [t["created"] for t in reply.json()["tables"]] == [1, 1]
    refused = await wire.write(tables=[{"table": "organization", "rows": [{"name": "x"}]}])
    assert refused.status == 400
    (problem,) = refused.json()["errors"]
    assert problem["path"] == "tables[0].table"
    assert "read-only" in problem["message"]
