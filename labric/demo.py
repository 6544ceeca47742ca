"""``labric demo``: the SDK's main job, end to end, against a local server, with no account.

It starts a local Labric server in a temporary data directory, generates an instrument run (plate
reader CSV exports plus one large raw file), bulk-uploads it, lists it back, downloads everything,
verifies every byte, and prints a summary. It exits non-zero if any check fails.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TextIO

from labric._client import AsyncLabric
from labric._config import TransferConfig
from labric.models.transfers import TransferPhase, TransferProgress

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


class _Bar:
    """A one-line progress display (plain lines when not on a terminal)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.last = 0.0

    def __call__(self, event: TransferProgress) -> None:
        now = time.monotonic()
        final = event.files_done == event.files_total and event.phase != TransferPhase.PROGRESS
        if not final and now - self.last < (0.1 if self.tty else 2.0):
            return
        self.last = now
        total = event.total_bytes or 0
        text = (
            f"  {event.direction:8s} {event.files_done}/{event.files_total} files "
            f"{event.total_bytes_done / MiB:8.1f} MiB"
            + (f" of {total / MiB:.1f}" if total else "")
            + f"  {event.rate / MiB:7.1f} MiB/s"
        )
        if self.tty:
            self.stream.write("\r" + text.ljust(78) + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(4 * MiB):
            h.update(chunk)
    return h.hexdigest()


async def _run(data_dir: Path, work: Path, *, plates: int, reads: int, big_mib: int) -> int:
    from labric.server import LocalServer

    out = sys.stdout
    run = generate_run(work, plates=plates, reads=reads, big_mib=big_mib)
    sources = sorted(p for p in run.rglob("*") if p.is_file())
    total_bytes = sum(p.stat().st_size for p in sources)
    out.write(f"Generated {len(sources)} instrument files ({total_bytes / MiB:.1f} MiB)\n")
    async with LocalServer(data_dir) as server:
        out.write(f"Local Labric server at {server.base_url} (data in {data_dir})\n")
        transfer = TransferConfig(state_dir=str(work / "state"))
        async with AsyncLabric(server.admin_key, base_url=server.base_url, transfer=transfer) as c:
            started = time.perf_counter()
            uploads = await c.files.upload_many([run], on_progress=_Bar(out))
            up_s = time.perf_counter() - started
            failed = [o for o in uploads if not o.ok]
            if failed:
                out.write(f"FAILED: {len(failed)} uploads, first: {failed[0].error}\n")
                return 1
            listed = [f async for f in c.files.list(page_size=500)]
            if len(listed) != len(sources):
                out.write(f"FAILED: listed {len(listed)} files, expected {len(sources)}\n")
                return 1
            ids = [o.file.file_id for o in uploads if o.file is not None]
            started = time.perf_counter()
            downloads = await c.files.download_many(ids, work / "back", on_progress=_Bar(out))
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
    out.write(
        "\nSummary\n"
        f"  files        {len(sources)} uploaded, listed, downloaded and verified (SHA-256)\n"
        f"  bytes        {total_bytes / MiB:.1f} MiB each way\n"
        f"  upload       {up_s:.2f} s ({total_bytes / MiB / up_s:.0f} MiB/s, "
        f"{len(sources) / up_s:.0f} files/s)\n"
        f"  download     {down_s:.2f} s ({total_bytes / MiB / down_s:.0f} MiB/s)\n"
        f"  data dir     {data_dir}\n"
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
        return asyncio.run(_run(target, work, plates=plates, reads=reads, big_mib=big_mib))
    finally:
        if keep:
            sys.stdout.write(f"Kept {work}\n")
        else:
            shutil.rmtree(work, ignore_errors=True)
