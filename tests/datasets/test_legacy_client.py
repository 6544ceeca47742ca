"""The SDK's deprecated twins of ``tools/write`` and ``tools/batch-write`` (async, over real
sockets; the sync facade's are in ``tests/sync/test_smoke.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from labric import AsyncLabric
from labric.errors import BadRequestError, PermissionDeniedError
from labric.models import BatchWriteResult
from labric.server import LocalServer

from ._support import Wire


@pytest.fixture
async def aclient(server: LocalServer, tables: Wire) -> AsyncIterator[AsyncLabric]:
    async with AsyncLabric(server.admin_key, base_url=server.base_url, max_retries=0) as c:
        yield c


async def test_tools_write_warns_and_writes(aclient: AsyncLabric, tables: Wire) -> None:
    with pytest.warns(DeprecationWarning, match=r"datasets\.write\(\)"):
        rows = await aclient.datasets.tools_write("samples", [{"name": "S-1", "od600": 0.5}])
    assert [r["name"] for r in rows] == ["S-1"]
    with pytest.warns(DeprecationWarning, match="tools/write"):
        again = await aclient.datasets.tools_write(
            "samples",
            [{"name": "S-1", "od600": 0.9, "label": "x"}],
            mode="create-or-update",
            match_on=["name"],
        )
    # fill_missing: od600 was set and is kept, label was null and is set.
    assert (again[0]["id"], again[0]["od600"], again[0]["label"]) == (rows[0]["id"], 0.5, "x")
    with (
        pytest.warns(DeprecationWarning, match="tools/write"),
        pytest.raises(PermissionDeniedError),
    ):
        await aclient.datasets.tools_write("core_user", [{"name": "x"}])
    with (
        pytest.warns(DeprecationWarning, match="tools/write"),
        pytest.raises(BadRequestError) as caught,
    ):
        await aclient.datasets.tools_write("samples", [{"name": "S-2", "od600": "high"}])
    assert "od600" in str(caught.value)


async def test_batch_write_warns_and_writes(aclient: AsyncLabric, tables: Wire) -> None:
    with pytest.warns(DeprecationWarning, match=r"datasets\.transact\(\)"):
        result = await aclient.datasets.batch_write(
            {
                "measurements": [{"sample": "S-1", "value": 1.0}],
                "samples": [{"name": "S-1"}],
            },
            return_records=True,
        )
    assert isinstance(result, BatchWriteResult)
    assert result.job_execution_id
    assert result.summary["samples"].created == 1
    assert result.records is not None
    sample_id = result.records["samples"][0]["id"]
    assert result.records["measurements"][0]["sample"] == sample_id
    with pytest.warns(DeprecationWarning, match="tools/batch-write"):
        plan = await aclient.datasets.batch_write(
            {"samples": [{"name": "S-1", "label": "a"}]},
            mode="upsert",
            match_on={"samples": ["name"]},
            dry_run=True,
        )
    assert plan.plan is not None
    assert plan.plan.insert_order == ["samples"]
    assert plan.summary["samples"].updated == 1
    assert plan.job_execution_id is None
