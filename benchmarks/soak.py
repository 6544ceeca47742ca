"""Fault soak: bulk upload and download of N files plus one multi-part file through injected faults.

The local server (in this process, on 127.0.0.1) answers 10% of requests 500/503, 3% 429 with
``Retry-After``, resets 5% of connections mid-body (about one request in five fails) and adds
latency spikes, all drawn from one seed. The client runs at its default settings (retry policy,
transfer retry deadline, concurrency, part sizes; only its journal directory is set), so the soak
measures what a user gets. It uploads the whole tree with ``upload_many`` and fetches it back
with ``download_many``; then the run is checked:

* every file's CRC32C matches, three ways: the source, the server's record, the downloaded copy;
* no file record is duplicated: the server's database holds exactly one record per source path
  (pending ones included), so every retried write was applied once;
* no partial file exists under a final name: the download directory holds exactly the expected
  files, each byte-identical to its source, and no ``.part`` leftovers.

It reports requests (client and server), the faults injected (from ``GET /v1/admin/stats``), the
client's retries by cause (``client.stats``), bytes moved and the duration.

Usage::

    python -m benchmarks.soak                   # 1,000 files
    python -m benchmarks.soak --files 200 --seed 3
    python -m benchmarks.soak --error 0.1 --throttle 0.03 --reset 0.05 --throttle-burst 5
    nox -s soak -- --files 5000

Results: a table on stdout and JSON in ``.bench-data/soak.json``; the exit status is 1 if a check
failed. ``tests/reliability/test_soak.py`` runs the same soak at a small size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import attrs

from labric import AsyncLabric, TransferConfig
from labric._transfer.checksum import crc32c, crc32c_to_b64
from labric.server import FaultConfig, LocalServer

ROOT = Path(__file__).resolve().parent.parent
KiB = 1024
MiB = 1024 * KiB


@dataclass(frozen=True)
class SoakConfig:
    """What a soak run moves and which faults it injects.

    Attributes:
        files: Small files (between ``min_size`` and ``max_size`` bytes, spread over folders).
        big_parts: Parts of the one multi-part file (plus a few bytes, so its last part is short);
            with the default part size it is over the client's default multipart threshold
            (64 MiB), so it goes up in parts and comes back in ranges at default settings.
        part_size: The server's part size.
        seed: Seeds the file contents and sizes and the server's fault decisions.
        error: Fraction of requests answered 500 or 503.
        reset: Fraction of connections reset (mid-body for streamed bodies).
        throttle: Fraction of requests that start a burst of 429s.
        throttle_burst: 429s in a row per burst, each with ``Retry-After``.
        retry_after: Seconds in ``Retry-After`` (the client waits that long, as it would).
        spike: Fraction of requests with a latency spike.
        spike_ms: Length of a spike.
        concurrency: The client's transfer concurrency (``None``: the client's default).
    """

    files: int = 1000
    min_size: int = 512
    max_size: int = 24 * KiB
    big_parts: int = 9
    part_size: int = 8 * MiB
    seed: int = 7
    error: float = 0.10
    reset: float = 0.05
    throttle: float = 0.03
    throttle_burst: int = 1
    retry_after: int = 1
    spike: float = 0.02
    spike_ms: float = 40.0
    concurrency: int | None = None

    def faults(self) -> FaultConfig:
        """The server's fault settings."""
        return FaultConfig(
            error=self.error,
            reset=self.reset,
            throttle=self.throttle,
            throttle_burst=self.throttle_burst,
            retry_after=self.retry_after,
            spike=self.spike,
            spike_ms=self.spike_ms,
            seed=self.seed,
        )


@dataclass
class SoakReport:
    """What a soak run did and what its checks found (``problems`` empty: nothing lost)."""

    config: dict[str, Any]
    files: int = 0
    bytes_uploaded: int = 0
    bytes_downloaded: int = 0
    duration_s: float = 0.0
    upload_s: float = 0.0
    download_s: float = 0.0
    client_requests: int = 0
    server_requests: int = 0
    retries: int = 0
    retries_by_reason: dict[str, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    server_bytes_received: int = 0
    server_bytes_sent: int = 0
    records: int = 0
    checksums_matched: int = 0
    downloads_identical: int = 0
    lost: int = 0
    duplicated: int = 0
    partial: int = 0
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return asdict(self)


def make_tree(root: Path, config: SoakConfig) -> dict[str, bytes]:
    """Write the soak's files under ``root/soak``; return their upload names and contents."""
    rng = random.Random(config.seed)
    tree = root / "soak"
    made: dict[str, bytes] = {}
    for i in range(config.files):
        data = rng.randbytes(rng.randint(config.min_size, config.max_size))
        rel = f"plate-{i // 50:03d}/well-{i:05d}.csv"
        made[rel] = data
    made["big/run.raw"] = rng.randbytes(config.big_parts * config.part_size + 7)
    for rel, data in made.items():
        path = tree / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return {f"soak/{rel}": data for rel, data in made.items()}


async def _admin_stats(server: LocalServer) -> dict[str, Any]:
    """``GET /v1/admin/stats``, over HTTP as any tool would read it."""
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{server.base_url}/v1/admin/stats", headers=headers) as response,
    ):
        response.raise_for_status()
        stats: dict[str, Any] = await response.json()
        return stats


def count_records(db_path: Path) -> Counter[str]:
    """File records per ``original_path`` in the server's database, pending ones included."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT original_path, COUNT(*) FROM files GROUP BY original_path")
        return Counter({path: n for path, n in rows})
    finally:
        conn.close()


def check_download_dir(dest: Path, expected: dict[str, bytes]) -> tuple[int, list[str]]:
    """Compare the download directory with the sources: ``(identical files, problems)``."""
    problems: list[str] = []
    found = {p.relative_to(dest).as_posix(): p for p in dest.rglob("*") if p.is_file()}
    partial = sorted(name for name in found if name.endswith(".part"))
    if partial:
        problems.append(f"{len(partial)} .part files left, e.g. {partial[0]}")
    finals = {name: path for name, path in found.items() if not name.endswith(".part")}
    missing = sorted(set(expected) - set(finals))
    extra = sorted(set(finals) - set(expected))
    if missing:
        problems.append(f"{len(missing)} files missing from the download, e.g. {missing[0]}")
    if extra:
        problems.append(f"{len(extra)} unexpected files in the download, e.g. {extra[0]}")
    identical = 0
    for name, path in finals.items():
        if name in expected:
            if path.read_bytes() == expected[name]:
                identical += 1
            else:
                problems.append(f"{name} differs from its source (a partial or mixed file)")
    return identical, problems


async def run_soak(work: Path, config: SoakConfig) -> SoakReport:
    """Run one soak in ``work`` (a fresh directory) and check its results."""
    report = SoakReport(config=asdict(config))
    sources = make_tree(work / "src", config)
    report.files = len(sources)
    report.bytes_uploaded = report.bytes_downloaded = sum(len(d) for d in sources.values())
    # Default client settings: the journal's directory is the only one set (so a soak leaves
    # nothing in the user's cache), and the concurrency only when asked for.
    transfer = TransferConfig(state_dir=str(work / "state"))
    if config.concurrency is not None:
        transfer = attrs.evolve(transfer, concurrency=config.concurrency)
    dest = work / "back"
    async with LocalServer(work / "server", part_size=config.part_size) as server:
        async with AsyncLabric(
            server.admin_key, base_url=server.base_url, transfer=transfer
        ) as client:
            server.faults.update(config.faults())
            started = time.perf_counter()
            uploads = await client.files.upload_many([work / "src" / "soak"])
            report.upload_s = time.perf_counter() - started
            ids = [o.file.file_id for o in uploads if o.file is not None]
            begun = time.perf_counter()
            downloads = await client.files.download_many(ids, dest)
            report.download_s = time.perf_counter() - begun
            report.duration_s = time.perf_counter() - started
            stats = await _admin_stats(server)
            server.faults.update(FaultConfig())
            report.client_requests = client.stats.requests
            report.retries = client.stats.retries
            report.retries_by_reason = dict(sorted(client.stats.retries_by_reason.items()))
        report.faults = {k: v for k, v in stats["faults"].items() if k != "bytes_paced"}
        report.server_requests = stats["requests"]["total"]
        report.server_bytes_received = stats["storage"]["bytes_received"]
        report.server_bytes_sent = stats["storage"]["bytes_sent"]
        records = count_records(server.data_dir.db_path)

    problems = report.problems
    failed_up = [o for o in uploads if not o.ok]
    failed_down = [o for o in downloads if not o.ok]
    if failed_up:
        problems.append(f"{len(failed_up)} uploads failed, e.g. {failed_up[0].error!r}")
    if failed_down:
        problems.append(f"{len(failed_down)} downloads failed, e.g. {failed_down[0].error!r}")
    for outcome in uploads:
        if outcome.file is None:
            continue
        name = Path(str(outcome.source)).relative_to(work / "src").as_posix()
        if outcome.file.crc32c_hash == crc32c_to_b64(crc32c(sources[name])):
            report.checksums_matched += 1
        else:
            problems.append(f"{name}: the server's CRC32C differs from the source's")
    report.records = sum(records.values())
    duplicated = sorted(path for path, n in records.items() if n > 1)
    if duplicated:
        problems.append(f"{len(duplicated)} paths have several file records, e.g. {duplicated[0]}")
    unknown = sorted(set(records) - set(sources))
    if unknown or set(records) != set(sources):
        problems.append(
            f"records and sources differ: {len(unknown)} unknown, "
            f"{len(set(sources) - set(records))} missing"
        )
    identical, found = check_download_dir(dest, sources)
    report.downloads_identical = identical
    problems.extend(found)
    confirmed = {
        Path(str(o.source)).relative_to(work / "src").as_posix() for o in uploads if o.file
    }
    downloaded = {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()}
    report.lost = len(set(sources) - (confirmed & set(records) & downloaded))
    report.duplicated = len(duplicated)
    report.partial = sum(1 for name in downloaded if name.endswith(".part")) + sum(
        1 for name in set(sources) & downloaded if (dest / name).read_bytes() != sources[name]
    )
    return report


def table(report: SoakReport) -> str:
    """The report's figures as a small Markdown table."""
    faults = report.faults
    rows = [
        ("files (incl. 1 multi-part)", f"{report.files:,}"),
        (
            "fault mix (of requests)",
            f"error={report.config['error']}, throttle={report.config['throttle']} "
            f"(bursts of {report.config['throttle_burst']}), reset={report.config['reset']}, "
            f"seed={report.config['seed']}; client at default settings",
        ),
        ("bytes up / down", f"{report.bytes_uploaded:,} / {report.bytes_downloaded:,}"),
        (
            "duration (up + down)",
            f"{report.duration_s:.2f} s ({report.upload_s:.2f} + {report.download_s:.2f})",
        ),
        ("requests (client / server)", f"{report.client_requests:,} / {report.server_requests:,}"),
        (
            "faults injected",
            f"500: {faults.get('errors_500', 0)}, 503: {faults.get('errors_503', 0)}, "
            f"resets: {faults.get('resets', 0)}, 429: {faults.get('throttled', 0)} "
            f"in {faults.get('throttle_bursts', 0)} bursts, spikes: {faults.get('spikes', 0)}",
        ),
        (
            "client retries",
            f"{report.retries:,} "
            + "("
            + ", ".join(f"{k}: {v}" for k, v in report.retries_by_reason.items())
            + ")",
        ),
        (
            "server bytes received (all read) / sent (whole bodies)",
            f"{report.server_bytes_received:,} / {report.server_bytes_sent:,}",
        ),
        ("file records (one per path)", f"{report.records:,}"),
        ("CRC32C matched (server record)", f"{report.checksums_matched:,}"),
        ("downloads identical, no partials", f"{report.downloads_identical:,}"),
        (
            "files lost / duplicated / partial",
            f"{report.lost:,} / {report.duplicated:,} / {report.partial:,}",
        ),
        ("problems", "none" if not report.problems else "; ".join(report.problems)),
    ]
    lines = ["| soak | |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """``python -m benchmarks.soak [--files N] [--seed S] [--work-dir DIR]``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak")
    defaults = SoakConfig()
    parser.add_argument("--files", type=int, default=defaults.files)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--error", type=float, default=defaults.error, help="500/503 fraction")
    parser.add_argument("--throttle", type=float, default=defaults.throttle, help="429 fraction")
    parser.add_argument("--reset", type=float, default=defaults.reset, help="reset fraction")
    parser.add_argument("--throttle-burst", type=int, default=defaults.throttle_burst)
    parser.add_argument(
        "--concurrency", type=int, default=None, help="default: the client's own default"
    )
    parser.add_argument("--work-dir", default=None, help="kept afterwards (default: a temp dir)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    config = SoakConfig(
        files=args.files,
        seed=args.seed,
        error=args.error,
        throttle=args.throttle,
        reset=args.reset,
        throttle_burst=args.throttle_burst,
        concurrency=args.concurrency,
    )
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="labric-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        report = asyncio.run(run_soak(work, config))
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    out = ROOT / ".bench-data"
    out.mkdir(exist_ok=True)
    (out / "soak.json").write_text(json.dumps(report.to_json(), indent=2))
    print(table(report))
    if report.problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
