"""The experiments routes and ``client.experiments``: CRUD, filters, links, scopes, isolation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from _clocked import FakeClock, Wire, at

from labric import AsyncLabric, WriteBatchError
from labric.errors import ConflictError, NotFoundError, UnprocessableEntityError
from labric.models import Experiment, ExperimentLinks, ExperimentRow, ExperimentStatus, FileInfo
from labric.server import LocalServer


async def test_create_get_and_defaults(client: AsyncLabric, clock: FakeClock) -> None:
    made = await client.experiments.create(name="Kinetics run")
    assert isinstance(made, Experiment)
    assert made.status == ExperimentStatus.PLANNED
    assert (made.tags, made.metadata, made.description) == ([], {}, None)
    assert made.started_at is None
    assert made.ended_at is None
    assert made.created_at == made.updated_at == at(clock.now)
    assert await client.experiments.get(made.id) == made


async def test_create_with_every_field(client: AsyncLabric, clock: FakeClock) -> None:
    started = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)
    made = await client.experiments.create(
        name="Plate 42",
        description="OD600 over 12 h",
        status="completed",
        tags=["kinetics", "plate", "kinetics", " plate "],
        metadata={"operator": "ada", "plate": {"rows": 8}},
        started_at=started,
        ended_at="2026-03-01T20:30:00+00:00",
    )
    assert made.tags == ["kinetics", "plate"]  # distinct, trimmed, in the order given
    assert made.metadata == {"operator": "ada", "plate": {"rows": 8}}
    assert made.started_at == started
    assert made.ended_at == started + timedelta(hours=12)  # given: not set to now


async def test_status_moves_set_the_times(client: AsyncLabric, clock: FakeClock) -> None:
    made = await client.experiments.create(name="Run")
    clock.advance(60)
    running = await client.experiments.update(made.id, status=ExperimentStatus.RUNNING)
    assert running.started_at == at(clock.now)
    assert running.ended_at is None
    clock.advance(60)
    failed = await client.experiments.update(made.id, status="failed")
    assert failed.started_at == at(clock.now - 60)
    assert failed.ended_at == at(clock.now)
    clock.advance(60)
    # Times already set are kept on later moves.
    again = await client.experiments.update(made.id, status="running")
    assert again.started_at == running.started_at
    done = await client.experiments.update(made.id, status="completed")
    assert done.ended_at == failed.ended_at
    born_running = await client.experiments.create(name="Live", status="running")
    assert born_running.started_at == at(clock.now)


async def test_update_sends_only_the_fields_given(client: AsyncLabric, clock: FakeClock) -> None:
    made = await client.experiments.create(
        name="Run", description="first", tags=["a"], metadata={"k": 1}
    )
    clock.advance(5)
    renamed = await client.experiments.update(made.id, name="Run 2")
    assert (renamed.name, renamed.description, renamed.tags, renamed.metadata) == (
        "Run 2",
        "first",
        ["a"],
        {"k": 1},
    )
    assert renamed.updated_at == at(clock.now)
    cleared = await client.experiments.update(made.id, description="", tags=[], metadata={})
    assert (cleared.description, cleared.tags, cleared.metadata) == (None, [], {})
    assert await client.experiments.update(made.id) == cleared


async def test_invalid_fields_are_refused(client: AsyncLabric, wire: Wire) -> None:
    made = await client.experiments.create(name="Run", started_at="2026-03-01T10:00:00Z")
    with pytest.raises(UnprocessableEntityError) as err:
        await client.experiments.update(made.id, ended_at="2026-03-01T09:00:00Z")
    assert err.value.detail[0]["loc"] == ["body", "ended_at"]
    assert (await client.experiments.get(made.id)).ended_at is None  # nothing was saved
    reply = await wire.call(
        "POST",
        "/v1/experiments",
        json={
            "name": "",
            "status": "paused",
            "tags": ["ok", 5, ""],
            "metadata": [1],
            "started_at": "soon",
        },
    )
    assert reply.status == 422
    assert sorted(tuple(p["loc"][1:]) for p in reply.detail) == [
        ("metadata",),
        ("name",),
        ("started_at",),
        ("status",),
        ("tags", 1),
        ("tags", 2),
    ]
    too_many = await wire.call(
        "POST", "/v1/experiments", json={"name": "x", "tags": [str(n) for n in range(101)]}
    )
    assert too_many.status == 422
    listing = await wire.call("GET", "/v1/experiments", params={"status": "paused"})
    assert listing.status == 422
    assert listing.detail[0]["loc"] == ["query", "status"]


async def test_list_filters_and_pages(client: AsyncLabric, clock: FakeClock) -> None:
    specs = [
        ("Growth curve A", "planned", ["growth"], None),
        ("Growth curve B", "running", ["growth", "od600"], "Strain K12 in LB"),
        ("Plate assay", "running", ["plate"], "Growth inhibition"),
        ("Archived pilot", "archived", [], None),
        ("Kinetics", "completed", ["od600"], None),
    ]
    ids = {}
    for name, status, tags, description in specs:
        made = await client.experiments.create(
            name=name, status=status, tags=tags, description=description
        )
        ids[name] = made.id
        clock.advance(1)

    async def names(**filters: object) -> list[str]:
        return [e.name async for e in client.experiments.list(**filters)]  # type: ignore[arg-type]

    newest_first = [s[0] for s in reversed(specs)]
    assert await names() == newest_first
    first = await client.experiments.list(page_size=2)
    assert len(first) == 2
    assert first.has_next
    assert await names(limit=3) == newest_first[:3]
    assert await names(page_size=4) == newest_first
    assert await names(status="running") == ["Plate assay", "Growth curve B"]
    assert await names(status=ExperimentStatus.ARCHIVED) == ["Archived pilot"]
    assert await names(tag="od600") == ["Kinetics", "Growth curve B"]
    assert await names(tag="od") == []  # tags match exactly
    # Every term must appear in the name or the description, in any case.
    assert await names(query="GROWTH") == ["Plate assay", "Growth curve B", "Growth curve A"]
    assert await names(query="growth k12") == ["Growth curve B"]
    assert await names(query="growth", status="running", tag="plate") == ["Plate assay"]


async def test_delete(client: AsyncLabric) -> None:
    made = await client.experiments.create(name="Run")
    await client.experiments.delete(made.id)
    with pytest.raises(NotFoundError, match=f"Experiment {made.id} not found"):
        await client.experiments.get(made.id)
    with pytest.raises(NotFoundError):
        await client.experiments.delete(made.id)
    with pytest.raises(NotFoundError):
        await client.experiments.update(made.id, name="x")


async def test_files_are_linked_listed_and_unlinked(client: AsyncLabric, clock: FakeClock) -> None:
    instrument = (await client.instruments.create(name="Reader")).instrument.id
    uploads = []
    for n in range(3):
        uploads.append(
            await client.files.upload(
                f"{n}\n".encode(), name=f"run/{n}.csv", instrument_id=instrument
            )
        )
        clock.advance(1)
    made = await client.experiments.create(name="Run")
    ids = [u.file_id for u in uploads]
    linked = await client.experiments.link_files(made.id, ids[:2])
    assert linked == ExperimentLinks(linked=2, total=2)
    again = await client.experiments.link_files(made.id, ids)
    assert again == ExperimentLinks(linked=1, total=3)  # linking twice does nothing
    files = [f async for f in client.experiments.files(made.id)]
    assert all(isinstance(f, FileInfo) for f in files)
    assert [f.file_id for f in files] == ids[::-1]  # newest first, paged by two
    assert files[0].source_instrument_id == instrument
    assert [f.file_id async for f in client.experiments.files(made.id, limit=1)] == [ids[2]]
    await client.experiments.unlink_file(made.id, ids[1])
    assert [f.file_id async for f in client.experiments.files(made.id)] == [ids[2], ids[0]]
    with pytest.raises(NotFoundError, match="not linked"):
        await client.experiments.unlink_file(made.id, ids[1])
    # An unknown file links nothing.
    with pytest.raises(NotFoundError, match="File nope not found"):
        await client.experiments.link_files(made.id, [ids[1], "nope"])
    assert len([f async for f in client.experiments.files(made.id)]) == 2
    # Deleting a file removes its link; deleting the experiment leaves the files.
    await client.files.delete(ids[0])
    assert [f.file_id async for f in client.experiments.files(made.id)] == [ids[2]]
    await client.experiments.delete(made.id)
    assert (await client.files.get(ids[2])).file_id == ids[2]
    with pytest.raises(NotFoundError):
        await client.experiments.files(made.id)
    with pytest.raises(TypeError):
        await client.experiments.link_files(made.id, "one-id")


async def test_dataset_rows_are_linked_through_the_platform_table(client: AsyncLabric) -> None:
    await client.datasets.create("samples", columns=[{"name": "name", "type": "text"}])
    written = await client.datasets.write(
        "samples", [{"id": "s1", "name": "S-1"}, {"id": "s2", "name": "S-2"}]
    )
    assert written.created == 2
    made = await client.experiments.create(name="Run")
    links = await client.experiments.link_rows(
        made.id, [("samples", "s1"), ExperimentRow(table="samples", row_id="s2")]
    )
    assert links == ExperimentLinks(linked=2, total=2)
    assert await client.experiments.rows(made.id) == [
        ExperimentRow(table="samples", row_id="s1"),
        ExperimentRow(table="samples", row_id="s2"),
    ]
    joined = await client.datasets.query(
        "SELECT s.name FROM core_experiment_row l JOIN samples s ON s.id = l.row_id "
        "WHERE l.experiment_id = %s ORDER BY s.name",
        [made.id],
    )
    assert joined.data == [["S-1"], ["S-2"]]
    with pytest.raises(UnprocessableEntityError, match="no row 'zz'"):
        await client.experiments.link_rows(made.id, [("samples", "s1"), ("samples", "zz")])
    with pytest.raises(UnprocessableEntityError, match="no dataset table"):
        await client.experiments.link_rows(made.id, [("nope", "s1")])
    assert len(await client.experiments.rows(made.id)) == 2
    await client.experiments.delete(made.id)
    links_left = await client.datasets.query("SELECT count(*) AS n FROM core_experiment_row")
    assert links_left.data == [[0]]


async def test_the_experiment_platform_table_agrees(client: AsyncLabric, clock: FakeClock) -> None:
    made = await client.experiments.create(
        name="Run", tags=["a"], metadata={"k": [1, 2]}, status="running"
    )
    rows = [r async for r in client.datasets.rows("experiment")]
    assert len(rows) == 1
    row = rows[0]
    assert row["id"] == made.id
    assert (row["name"], row["status"], row["tags"], row["metadata"]) == (
        "Run",
        "running",
        ["a"],
        {"k": [1, 2]},
    )
    clock.advance(60)
    await client.experiments.update(made.id, name="Run 1", status="completed", tags=["a", "b"])
    result = await client.datasets.query(
        "SELECT name, status, tags, started_at, ended_at FROM core_experiment WHERE id = %s",
        [made.id],
    )
    got = dict(zip(result.columns, result.data[0], strict=True))
    assert (got["name"], got["status"]) == ("Run 1", "completed")
    assert got["tags"] == '["a","b"]'  # SQL sees a JSON column as its stored text
    fetched = await client.experiments.get(made.id)
    assert fetched.ended_at is not None
    assert fetched.started_at is not None
    assert got["ended_at"] == fetched.ended_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    # A dataset table may reference experiments; a filter follows the reference.
    await client.datasets.create(
        "samples", columns=[{"name": "experiment", "foreign_key": "experiment"}]
    )
    await client.datasets.write("samples", [{"id": "s1", "experiment": made.id}])
    by_name = [
        r async for r in client.datasets.rows("samples", filters={"experiment__name": "Run 1"})
    ]
    assert [r["id"] for r in by_name] == ["s1"]
    await client.experiments.delete(made.id)
    assert [r async for r in client.datasets.rows("experiment")] == []
    orphan = [r async for r in client.datasets.rows("samples")]
    assert orphan[0]["experiment"] is None  # a nullable reference is cleared


async def test_a_required_reference_blocks_the_delete(client: AsyncLabric) -> None:
    made = await client.experiments.create(name="Run")
    await client.datasets.create(
        "runs", columns=[{"name": "experiment", "foreign_key": "experiment", "nullable": False}]
    )
    await client.datasets.write("runs", [{"experiment": made.id}])
    with pytest.raises(ConflictError, match=r"runs\.experiment"):
        await client.experiments.delete(made.id)
    assert (await client.experiments.get(made.id)).name == "Run"
    assert len([r async for r in client.datasets.rows("experiment")]) == 1


async def test_platform_tables_cannot_be_written_around_the_routes(client: AsyncLabric) -> None:
    with pytest.raises(WriteBatchError, match="platform table"):
        await client.datasets.write("experiment", [{"id": "x", "name": "sneaky"}])
    assert [e async for e in client.experiments.list()] == []


async def test_scopes(server: LocalServer, wire: Wire) -> None:
    read_key = server.create_key("read")
    made = await wire.ok("POST", "/v1/experiments", json={"name": "Run"})
    path = f"/v1/experiments/{made['id']}"
    for method, where in (
        ("GET", "/v1/experiments"),
        ("GET", path),
        ("GET", f"{path}/files"),
        ("GET", f"{path}/rows"),
    ):
        assert (await wire.call(method, where, key=read_key)).status == 200, where
    refused = [
        await wire.call("POST", "/v1/experiments", key=read_key, json={"name": "x"}),
        await wire.call("PATCH", path, key=read_key, json={"name": "x"}),
        await wire.call("DELETE", path, key=read_key),
        await wire.call("POST", f"{path}/files", key=read_key, json={"file_ids": []}),
        await wire.call("DELETE", f"{path}/files/f", key=read_key),
        await wire.call("POST", f"{path}/rows", key=read_key, json={"rows": []}),
    ]
    assert [r.status for r in refused] == [403] * 6
    assert (await wire.call("GET", "/v1/experiments", key=None)).status == 401


async def test_another_organisation_sees_nothing(
    server: LocalServer, wire: Wire, client: AsyncLabric
) -> None:
    other = server.create_key("read,write", org="elsewhere")
    made = await wire.ok("POST", "/v1/experiments", json={"name": "Ours"})
    path = f"/v1/experiments/{made['id']}"
    answers = [
        await wire.call("GET", path, key=other),
        await wire.call("PATCH", path, key=other, json={"name": "theirs"}),
        await wire.call("DELETE", path, key=other),
        await wire.call("GET", f"{path}/files", key=other),
        await wire.call("POST", f"{path}/files", key=other, json={"file_ids": ["x"]}),
        await wire.call("GET", f"{path}/rows", key=other),
        await wire.call("POST", f"{path}/rows", key=other, json={"rows": []}),
    ]
    assert [a.status for a in answers] == [404] * 7
    assert await wire.ok("GET", "/v1/experiments", key=other) == []
    # Their experiment cannot link our files, and their platform table holds only theirs.
    ours = await client.files.upload(
        b"x", name="a.csv", instrument_id=(await client.instruments.create(name="R")).instrument.id
    )
    theirs = await wire.ok("POST", "/v1/experiments", key=other, json={"name": "Theirs"})
    stolen = await wire.call(
        "POST",
        f"/v1/experiments/{theirs['id']}/files",
        key=other,
        json={"file_ids": [ours.file_id]},
    )
    assert stolen.status == 404
    seen = await wire.ok(
        "POST", "/v1/tools/query", key=other, json={"query": "SELECT name FROM core_experiment"}
    )
    assert seen["data"] == [["Theirs"]]


async def test_link_bodies_are_validated(client: AsyncLabric, wire: Wire) -> None:
    made = await client.experiments.create(name="Run")
    files = await wire.call("POST", f"/v1/experiments/{made.id}/files", json={"file_ids": "x"})
    assert files.status == 422
    rows = await wire.call(
        "POST", f"/v1/experiments/{made.id}/rows", json={"rows": [{"table": "t"}, "x"]}
    )
    assert rows.status == 422
    assert [p["loc"] for p in rows.detail] == [["body", "rows", 0], ["body", "rows", 1]]
    many = await wire.call(
        "POST", f"/v1/experiments/{made.id}/files", json={"file_ids": [str(n) for n in range(1001)]}
    )
    assert many.status == 422
