"""``POST /v1/tools/read`` and ``client.datasets.rows``: filters, foreign keys, pagination."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from labric import AsyncLabric
from labric.errors import BadRequestError, NotFoundError
from labric.server import LocalServer
from labric.server.datasets import DatasetStore

from ._support import Wire


@pytest.fixture
async def store(server: LocalServer) -> AsyncIterator[DatasetStore]:
    """A second store on the server's dataset files, as the platform routes use one."""
    platform = DatasetStore(server.data_dir.root / "datasets")
    yield platform
    await platform.close()


async def _fill(wire: Wire, store: DatasetStore, server: LocalServer) -> None:
    await store.upsert_platform_row(
        server.default_org_id, "experiment", {"id": "e1", "name": "Run 1", "tags": ["a"]}
    )
    reply = await wire.write(
        tables=[
            {
                "table": "samples",
                "rows": [
                    {"_ref": "a", "name": "A", "experiment": "e1", "ok": True},
                    {"_ref": "b", "name": "B", "ok": False},
                    {"name": "C"},
                ],
            },
            {
                "table": "measurements",
                "rows": [
                    {"sample": "@a", "kind": "od", "value": 1.0},
                    {"sample": "@a", "kind": "ph", "value": 7.0},
                    {"sample": "@b", "kind": "od", "value": 2.0},
                ],
            },
        ]
    )
    assert reply.status == 200, reply.body


async def test_filters_and_foreign_key_filters(
    tables: Wire, client: AsyncLabric, store: DatasetStore, server: LocalServer
) -> None:
    await _fill(tables, store, server)

    async def names(table: str, field: str, **filters: object) -> list[object]:
        return [r[field] async for r in client.datasets.rows(table, filters=filters)]

    assert await names("samples", "name") == ["A", "B", "C"]
    assert await names("samples", "name", ok=False) == ["B"]
    assert await names("samples", "name", ok=None) == ["C"]
    assert await names("measurements", "value", kind="od") == [1.0, 2.0]
    assert await names("measurements", "value", sample__name="A") == [1.0, 7.0]
    assert await names("measurements", "kind", sample__name="A", value=7) == ["ph"]
    assert await names("measurements", "value", sample__experiment__name="Run 1") == [1.0, 7.0]
    assert await names("samples", "name", experiment__tags=["a"]) == ["A"]
    # Platform tables by either name.
    (experiment,) = [r async for r in client.datasets.rows("core_experiment")]
    assert experiment["tags"] == ["a"]
    assert experiment["name"] == "Run 1"
    assert await names("experiment", "id") == ["e1"]


async def test_read_problems(tables: Wire) -> None:
    async def read(**body: object) -> tuple[int, object]:
        reply = await tables.post("/v1/tools/read", json=body)
        return reply.status, reply.json()["detail"]

    status, detail = await read(target_name="samples", target_type="table", filters={"nope": 1})
    assert (status, detail) == (400, "Filter 'nope': samples has no column 'nope'")
    status, detail = await read(target_name="samples", target_type="table", filters={"name__x": 1})
    assert "not a foreign key" in str(detail)
    status, detail = await read(target_name="samples", target_type="table", filters={"count": "x"})
    assert "expected an integer" in str(detail)
    status, _ = await read(target_name="nope", target_type="table")
    assert status == 404
    status, _ = await read(target_name="samples", target_type="core-table")
    assert status == 404
    status, detail = await read(target_name="samples", target_type="view")
    assert status == 422
    status, detail = await read(target_name="samples", target_type="table", cursor="!!")
    assert (status, detail) == (
        400,
        "Invalid cursor: pass back the one from the previous page's Link header",
    )


async def test_mode_single(tables: Wire, store: DatasetStore, server: LocalServer) -> None:
    await _fill(tables, store, server)
    base = {"target_name": "samples", "target_type": "table", "mode": "single"}
    one = await tables.post("/v1/tools/read", json={**base, "filters": {"name": "A"}})
    assert [r["name"] for r in one.json()] == ["A"]
    none = await tables.post("/v1/tools/read", json={**base, "filters": {"name": "Z"}})
    assert none.json() == []
    many = await tables.post("/v1/tools/read", json=base)
    assert many.status == 400
    assert "More than one row" in many.json()["detail"]


async def test_paginates_25000_rows(tables: Wire, client: AsyncLabric, server: LocalServer) -> None:
    for start in range(0, 25_000, 10_000):
        reply = await tables.write(
            tables=[
                {
                    "table": "samples",
                    "rows": [
                        {"name": f"s{i:05}", "count": i}
                        for i in range(start, min(start + 10_000, 25_000))
                    ],
                }
            ]
        )
        assert reply.status == 200, reply.body
    server.reset_stats()
    counts = [r["count"] async for r in client.datasets.rows("samples", page_size=1000)]
    assert counts == list(range(25_000))
    assert server.stats["requests"]["by_route"]["POST /api/v1/tools/read"] == 25
    # limit caps the total; the pager stops asking once it is reached.
    first = [r["count"] async for r in client.datasets.rows("samples", limit=1500, page_size=1000)]
    assert first == list(range(1500))
    page = await client.datasets.rows("samples", filters={"count": 7})
    assert [r["name"] for r in page] == ["s00007"]
    # With a page_size (or cursor) the answer is paged, and Link chains the pages.
    raw = await tables.post(
        "/v1/tools/read", json={"target_name": "samples", "target_type": "table", "page_size": 100}
    )
    assert len(raw.json()) == 100
    assert 'rel="next"' in raw.headers["Link"]
    # Without either, the hosted answer: every row, one array, no Link.
    raw = await tables.post(
        "/v1/tools/read", json={"target_name": "samples", "target_type": "table"}
    )
    assert [r["count"] for r in raw.json()] == list(range(25_000))
    assert "Link" not in raw.headers


async def test_rows_of_an_unknown_table(client: AsyncLabric) -> None:
    with pytest.raises(NotFoundError):
        await client.datasets.rows("nope")
    with pytest.raises(BadRequestError):
        await client.datasets.rows("core_experiment", filters={"bogus": 1})
