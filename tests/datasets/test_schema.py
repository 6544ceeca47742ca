"""Creating tables and describing them: ``POST/GET /v1/datasets``, ``GET /v1/tools/schema``."""

from __future__ import annotations

import pytest

from labric import AsyncLabric
from labric.errors import ConflictError, NotFoundError, UnprocessableEntityError
from labric.models import Column, ColumnType, TableInfo
from labric.server import LocalServer

from ._support import Wire


async def test_create_from_models_and_dicts(client: AsyncLabric) -> None:
    samples = await client.datasets.create(
        "samples",
        columns=[
            Column(name="name", type=ColumnType.TEXT, nullable=False, unique=True),
            {"name": "od600", "type": "float", "description": "optical density"},
        ],
        description="Samples",
    )
    assert isinstance(samples, TableInfo)
    assert samples.name == "samples"
    assert samples.semantic_category == "curated"
    assert [c.name for c in samples.columns] == ["id", "name", "od600"]
    pk = samples.columns[0]
    assert (pk.is_primary_key, pk.data_type, pk.is_nullable, pk.is_unique) == (
        True,
        "text",
        False,
        True,
    )
    od = samples.column("od600")
    assert od is not None
    assert od.description == "optical density"
    assert await client.datasets.get("samples") == samples


async def test_foreign_keys_and_raw_tables(client: AsyncLabric) -> None:
    await client.datasets.create(
        "plates", columns=[{"name": "code", "type": "integer", "primary_key": True}]
    )
    wells = await client.datasets.create(
        "wells",
        columns=[
            {"name": "plate", "foreign_key": "plates", "nullable": False},
            {"name": "parent_id", "foreign_key": "wells"},
            {"name": "experiment", "foreign_key": "experiment"},
        ],
    )
    plate = wells.column("plate")
    assert plate is not None
    # Foreign keys: `name` for reads and writes, `sql_column_name` ending in _id for SQL, and the
    # type of the referenced key.
    assert (plate.sql_column_name, plate.is_foreign_key, plate.data_type) == (
        "plate_id",
        True,
        "integer",
    )
    assert plate.foreign_key_table_name == "plates"
    parent = wells.column("parent_id")
    assert parent is not None
    assert (parent.sql_column_name, parent.foreign_key_table_name) == ("parent_id", "wells")
    experiment = wells.column("experiment")
    assert experiment is not None
    assert experiment.foreign_key_table_name == "core_experiment"

    raw = await client.datasets.create(
        "traces",
        semantic_category="raw",
        columns=[{"name": "well", "foreign_key": "wells"}, {"name": "y", "type": "float"}],
    )
    assert raw.semantic_category == "raw"
    order = raw.column("order")
    assert order is not None
    assert (order.data_type, order.is_nullable) == ("integer", False)


async def test_schema_lists_own_tables_then_platform_tables(client: AsyncLabric) -> None:
    await client.datasets.create("b_table", columns=[{"name": "x", "type": "text"}])
    await client.datasets.create("a_table", columns=[{"name": "x", "type": "text"}])
    tables = await client.datasets.list()
    names = [t.name for t in tables]
    assert names[:2] == ["b_table", "a_table"]  # own tables first, in creation order
    assert names[2:] == [
        "core_experiment",
        "core_instrument",
        "core_experiment_row",
        "core_organization",
        "core_organizationmember",
        "core_table",
        "core_procedurestep",
        "core_operation",
        "core_user",  # last, as hosted
    ]
    own, platform = tables[0], tables[2]
    assert own.id is not None
    assert own.columns[0].id is not None
    assert (platform.id, platform.semantic_category) == (None, None)
    assert all(c.id is None for c in platform.columns)
    tags = platform.column("tags")
    assert tags is not None
    assert tags.data_type == "json"
    link = tables[4].column("experiment")
    assert link is not None
    assert (link.sql_column_name, link.foreign_key_table_name) == (
        "experiment_id",
        "core_experiment",
    )


async def test_schema_wire_shape(wire: Wire) -> None:
    reply = await wire.get("/v1/tools/schema")
    assert reply.status == 200
    experiment = reply.json()[0]
    assert set(experiment) == {"id", "name", "description", "semantic_category", "columns"}
    assert set(experiment["columns"][0]) == {
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
    listed = await wire.get("/v1/datasets")
    assert listed.json() == reply.json()


async def test_get_unknown_table_is_404(client: AsyncLabric) -> None:
    with pytest.raises(NotFoundError):
        await client.datasets.get("nope")


async def test_duplicate_table_is_409(server: LocalServer) -> None:
    # 409 is retried by default; this client answers at once.
    async with AsyncLabric(server.admin_key, base_url=server.base_url, max_retries=0) as client:
        await client.datasets.create("samples", columns=[{"name": "x", "type": "text"}])
        with pytest.raises(ConflictError):
            await client.datasets.create("samples", columns=[{"name": "x", "type": "text"}])


@pytest.mark.parametrize(
    ("name", "columns", "message"),
    [
        ("Bad-Name", [{"name": "x", "type": "text"}], "lowercase"),
        ("core_things", [{"name": "x", "type": "text"}], "reserved"),
        ("experiment", [{"name": "x", "type": "text"}], "reserved"),
        ("t", [], "at least one column"),
        ("t", [{"name": "x", "type": "decimal"}], "type must be one of"),
        ("t", [{"name": "x", "foreign_key": "missing"}], "No table named"),
        ("t", [{"name": "x", "type": "float", "primary_key": True}], "text or integer"),
        ("t", [{"name": "id", "type": "text"}], "rename the column id"),
        ("t", [{"name": "a", "type": "text"}, {"name": "a", "type": "text"}], "Two columns"),
        (
            "t",
            [
                {"name": "s", "type": "text"},
                {"name": "s_id", "type": "text"},
                {"name": "s", "foreign_key": "experiment"},
            ],
            "Two columns",
        ),
        (
            "t",
            [
                {"name": "x", "type": "text", "primary_key": True},
                {"name": "y", "type": "integer", "primary_key": True},
            ],
            "At most one",
        ),
        ("t", [{"name": "x", "foreign_key": "experiment", "type": "integer"}], "whose key is"),
    ],
)
async def test_invalid_definitions_are_422(
    client: AsyncLabric, name: str, columns: list[dict[str, object]], message: str
) -> None:
    with pytest.raises(UnprocessableEntityError) as caught:
        await client.datasets.create(name, columns=columns)
    assert message in str(caught.value.detail)


async def test_raw_table_needs_a_parent(client: AsyncLabric) -> None:
    with pytest.raises(UnprocessableEntityError) as caught:
        await client.datasets.create(
            "traces", semantic_category="raw", columns=[{"name": "y", "type": "float"}]
        )
    assert "foreign key to its parent" in str(caught.value.detail)


async def test_tables_are_per_organisation(client: AsyncLabric, server: LocalServer) -> None:
    await client.datasets.create("samples", columns=[{"name": "x", "type": "text"}])
    other_key = server.create_key("read,write", org="other")
    async with AsyncLabric(other_key, base_url=server.base_url) as other:
        assert next(t.name for t in await other.datasets.list()) == "core_experiment"
        with pytest.raises(NotFoundError):
            await other.datasets.get("samples")
