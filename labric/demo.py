"""``labric demo``: the SDK's main job, end to end, against a local server, with no account.

It starts a local Labric server in a temporary data directory and generates an instrument run:
plate-reader CSV exports, one large raw file, and a ``run.json`` manifest written last. A parser
job is attached to the instrument with a ``file_uploaded`` trigger on ``*run.json``. The demo
bulk-uploads the run with progress bars; the manifest's arrival runs the parser, which reads the
run's CSVs through the SDK and fills the ``plate_reads`` dataset. The demo then queries the
dataset, downloads everything back, verifies every byte, and prints a summary. It exits non-zero
if any check fails.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from labric._client import AsyncLabric
from labric._core.config import TransferConfig
from labric.cli.progress import ProgressBar

__all__ = ["run_demo"]

MiB = 1024 * 1024


def _plate_csv(rng: random.Random, plate: int, read: int) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["plate", "read", "well", "od600", "temperature_c"])
    for row in "ABCDEFGH":
        for col in range(1, 13):
            od = round(0.05 + rng.random() * 1.2, 4)
            writer.writerow([f"P{plate:03d}", read, f"{row}{col}", od, round(30 + rng.random(), 2)])
    return out.getvalue().encode()


def generate_run(root: Path, *, plates: int, reads: int, big_mib: int, seed: int = 7) -> Path:
    """Write a synthetic plate-reader run under ``root/run``; return that directory."""
    rng = random.Random(seed)
    run = root / "run"
    run.mkdir(parents=True, exist_ok=True)
    for plate in range(plates):
        folder = run / f"plate_{plate:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        for read in range(reads):
            (folder / f"read_{read:02d}.csv").write_bytes(_plate_csv(rng, plate, read))
    if big_mib:
        block = rng.randbytes(MiB)
        with open(run / "raw_spectra.bin", "wb") as fh:
            for i in range(big_mib):
                fh.write(block[i % 7 :] + block[: i % 7])
    return run


#: The parser the demo installs: it runs on the platform when a run's manifest arrives.
PARSER_CODE = """
import csv
import json
import pathlib

from labric import Labric
from labric.job import JobContext

ctx = JobContext.from_env()
manifest = json.loads(pathlib.Path(ctx.files[0].path).read_text())
wanted = set(manifest["csv_files"])

with Labric() as client:
    files = [
        f
        for f in client.files.list(instrument_id=manifest["instrument_id"], extensions=["csv"])
        if f.original_path in wanted
    ]
    print(f"parsing {len(files)} of {len(wanted)} CSV files")
    local = client.files.download_many([f.file_id for f in files], ctx.file_dir / "csv")
    failed = [o for o in local if not o.ok]
    if failed:
        raise SystemExit(f"{len(failed)} downloads failed: {failed[0].error}")

    def rows():
        for info, outcome in zip(files, local):
            with open(outcome.path, newline="") as fh:
                for record in csv.DictReader(fh):
                    yield {
                        "plate": record["plate"],
                        "read": int(record["read"]),
                        "well": record["well"],
                        "od600": float(record["od600"]),
                        "temperature_c": float(record["temperature_c"]),
                        "file_id": info.file_id,
                    }

    summary = client.datasets.write("plate_reads", rows())
    print(f"wrote {summary.created} rows in {summary.requests} requests")
"""

PLATE_READS_COLUMNS: list[dict[str, Any]] = [
    {"name": "id", "type": "text", "primary_key": True},
    {"name": "plate", "type": "text"},
    {"name": "read", "type": "integer"},
    {"name": "well", "type": "text"},
    {"name": "od600", "type": "float"},
    {"name": "temperature_c", "type": "float"},
    {"name": "file_id", "type": "text"},
]


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(4 * MiB):
            h.update(chunk)
    return h.hexdigest()


async def _run(
    data_dir: Path, work: Path, *, plates: int, reads: int, big_mib: int, keep: bool
) -> int:
    from labric.server import LocalServer

    out = sys.stdout
    run = generate_run(work, plates=plates, reads=reads, big_mib=big_mib)
    sources = sorted(p for p in run.rglob("*") if p.is_file())
    csv_names = [p.relative_to(run.parent).as_posix() for p in sources if p.suffix == ".csv"]
    total_bytes = sum(p.stat().st_size for p in sources)
    out.write(
        f"Generated a plate-reader run: {len(csv_names)} CSV reads and "
        f"{len(sources) - len(csv_names)} raw file(s), {total_bytes / MiB:.1f} MiB\n"
    )
    async with LocalServer(data_dir) as server:
        out.write(f"Local Labric server at {server.base_url} (data in {data_dir})\n")
        transfer = TransferConfig(state_dir=str(work / "state"))
        async with AsyncLabric(server.admin_key, base_url=server.base_url, transfer=transfer) as c:
            instrument = server.create_instrument("plate-reader-1")
            await c.datasets.create(
                "plate_reads", columns=PLATE_READS_COLUMNS, description="Parsed plate reads"
            )
            job = await c.jobs.create(
                name="parse-plate-reads",
                code=PARSER_CODE,
                description="Parses a plate-reader run into the plate_reads dataset",
                trigger_enabled=True,
                trigger_category="file_uploaded",
                trigger_instrument_id=instrument,
                trigger_conditions={"file_name_pattern": "*run.json"},
            )
            started = time.perf_counter()
            uploads = await c.files.upload_many(
                [run], instrument_id=instrument, on_progress=ProgressBar(out)
            )
            up_s = time.perf_counter() - started
            failed = [o for o in uploads if not o.ok]
            if failed:
                out.write(f"FAILED: {len(failed)} uploads, first: {failed[0].error}\n")
                return 1
            # The manifest goes last: its arrival is what runs the parser.
            manifest = {"instrument_id": instrument, "csv_files": csv_names}
            await c.files.upload(
                json.dumps(manifest).encode(), name="run/run.json", instrument_id=instrument
            )
            executions = [e async for e in c.jobs.executions.list(job_id=job.id)]
            if len(executions) != 1:
                out.write(f"FAILED: expected one parser run, saw {len(executions)}\n")
                return 1
            execution = await c.jobs.wait(executions[0].id, timeout=120)
            logs = await c.jobs.executions.logs(execution.id)
            out.write(f"Parser job {execution.status}: {logs.text.strip().splitlines()[-1]}\n")
            if execution.status != "completed":
                out.write(logs.text)
                return 1
            result = await c.datasets.query(
                "SELECT plate, COUNT(*) AS wells, ROUND(AVG(od600), 3) AS mean_od600 "
                "FROM plate_reads GROUP BY plate ORDER BY plate LIMIT 3"
            )
            for row in result.rows():
                out.write(
                    f"  {row['plate']}: {row['wells']} wells, mean OD600 {row['mean_od600']}\n"
                )
            count = (await c.datasets.query("SELECT COUNT(*) FROM plate_reads")).data[0][0]
            if count != len(csv_names) * 96:
                out.write(
                    f"FAILED: the dataset holds {count} rows, expected {len(csv_names) * 96}\n"
                )
                return 1
            ids = [o.file.file_id for o in uploads if o.file is not None]
            started = time.perf_counter()
            downloads = await c.files.download_many(
                ids, work / "back", on_progress=ProgressBar(out)
            )
            down_s = time.perf_counter() - started
            bad = [o for o in downloads if not o.ok]
            if bad:
                out.write(f"FAILED: {len(bad)} downloads, first: {bad[0].error}\n")
                return 1
        mismatched = [
            up.source
            for up, down in zip(uploads, downloads, strict=True)
            if down.path is None or _digest(Path(str(up.source))) != _digest(Path(down.path))
        ]
        if mismatched:
            out.write(f"FAILED: {len(mismatched)} files differ after the round trip\n")
            return 1
    # A temporary data directory goes with the rest of the work directory at exit.
    temporary = data_dir.is_relative_to(work)
    where = " (removed at exit; --keep keeps it)" if temporary and not keep else ""
    out.write(
        "\nSummary\n"
        f"  files        {len(sources)} uploaded, downloaded and verified (SHA-256)\n"
        f"  bytes        {total_bytes / MiB:.1f} MiB each way\n"
        f"  upload       {up_s:.2f} s ({total_bytes / MiB / up_s:.0f} MiB/s, "
        f"{len(sources) / up_s:.0f} files/s)\n"
        f"  download     {down_s:.2f} s ({total_bytes / MiB / down_s:.0f} MiB/s)\n"
        f"  dataset      plate_reads: {count} rows parsed by the job\n"
        f"  data dir     {data_dir}{where}\n"
        "OK\n"
    )
    return 0


def run_demo(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    plates: int = 24,
    reads: int = 12,
    big_mib: int = 256,
    keep: bool = False,
) -> int:
    """Run the demo; returns the process exit code (0 when every check passed)."""
    work = Path(tempfile.mkdtemp(prefix="labric-demo-"))
    target = Path(data_dir) if data_dir is not None else work / "server"
    try:
        return asyncio.run(
            _run(target, work, plates=plates, reads=reads, big_mib=big_mib, keep=keep)
        )
    finally:
        if keep:
            sys.stdout.write(f"Kept {work}\n")
        else:
            shutil.rmtree(work, ignore_errors=True)
