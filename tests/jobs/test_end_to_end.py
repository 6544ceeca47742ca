"""A parser job end to end: uploads trigger it, it writes rows and a summary; a revert."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from labric import AsyncLabric
from labric.errors import NotFoundError
from labric.models.jobs import ExecutionStatus
from labric.server import LocalServer

from ._support import script

PARSER = script(
    """
    import csv
    from labric import Labric
    from labric.job import JobContext

    ctx = JobContext.from_env()
    (source,) = ctx.files
    with source.path.open(newline="") as handle:
        rows = [
            {"well": r["well"], "value": float(r["value"]), "source_file": source.id}
            for r in csv.DictReader(handle)
        ]
    with Labric() as client:  # the sandbox's key and URL
        client.datasets.write("plate_reads", rows)
        client.files.upload(
            f"{len(rows)} rows from {source.path.name}\\n".encode(),
            name=f"summary-{source.path.stem}.txt",
        )
    print("parsed", len(rows), "rows from", source.path.name)
    """
)


def plate(n: int, wells: int) -> bytes:
    lines = ["well,value"] + [f"A{i},{n}.{i}" for i in range(1, wells + 1)]
    return ("\n".join(lines) + "\n").encode()


async def test_parser_job_end_to_end(runner: LocalServer, rclient: AsyncLabric) -> None:
    reader = runner.create_instrument("plate reader")
    await rclient.datasets.create(
        "plate_reads",
        columns=[
            {"name": "well", "type": "text"},
            {"name": "value", "type": "float"},
            {"name": "source_file", "type": "text"},
        ],
    )
    job = await rclient.jobs.create(
        name="plate-parser",
        code=PARSER,
        trigger_enabled=True,
        trigger_category="file_uploaded",
        trigger_instrument_id=reader,
        trigger_conditions={"file_name_pattern": "*.csv"},
    )

    # Three CSVs and one text file from the instrument: three runs, not four.
    uploads = await asyncio.gather(
        *(
            rclient.files.upload(
                plate(n, wells=n + 1), name=f"runs/plate{n}.csv", instrument_id=reader
            )
            for n in (1, 2, 3)
        ),
        rclient.files.upload(b"operator notes\n", name="runs/notes.txt", instrument_id=reader),
    )
    csv_ids = {u.file_id for u in uploads[:3]}
    executions = list(await rclient.jobs.executions.list(job_id=job.id))
    assert len(executions) == 3
    assert {e.file_ids[0] for e in executions} == csv_ids
    finished = await asyncio.gather(*(rclient.jobs.wait(e.id, timeout=60) for e in executions))
    assert [e.status for e in finished] == [ExecutionStatus.COMPLETED] * 3
    by_file = {e.file_ids[0]: e for e in finished}

    # The rows, one set per file, each written under its execution.
    rows = [row async for row in rclient.datasets.rows("plate_reads")]
    counts = Counter(row["source_file"] for row in rows)
    expected = {u.file_id: n + 1 for n, u in zip((1, 2, 3), uploads, strict=False)}
    assert counts == expected

    # Each run's logs and its summary file, linked to it.
    summaries = {f.job_execution_id: f async for f in rclient.files.list(extensions=["txt"])}
    for n, upload in zip((1, 2, 3), uploads, strict=False):
        execution = by_file[upload.file_id]
        logs = await rclient.jobs.executions.logs(execution.id)
        assert logs.text == f"parsed {n + 1} rows from plate{n}.csv\n"
        summary = summaries[execution.id]
        assert summary.file_name == f"summary-plate{n}.txt"
        text = await rclient.files.read_bytes(summary.file_id)
        assert text == f"{n + 1} rows from plate{n}.csv\n".encode()
    assert len(summaries) == 4  # three summaries and the operator's notes (no execution)

    # Reverting one run removes exactly its rows (and its summary file).
    reverted = by_file[uploads[1].file_id]
    result = await rclient.jobs.executions.revert(reverted.id)
    assert result.deleted_count == 3 + 1
    assert result.warnings == []
    with pytest.raises(NotFoundError):
        await rclient.files.get(summaries[reverted.id].file_id)
    left = Counter([row["source_file"] async for row in rclient.datasets.rows("plate_reads")])
    assert left == {uploads[0].file_id: 2, uploads[2].file_id: 4}
