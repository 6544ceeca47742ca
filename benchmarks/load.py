"""Load: many concurrent clients against one local server, mixing listings, uploads and dataset
writes for a bounded time, then a count of everything they wrote.

Each client is its own :class:`~labric.AsyncLabric` with a pool of one connection, so N clients
hold N connections. Until the deadline, each one picks (from a seeded generator) a listing
(``files.list``, first page), an upload (a few KiB, confirmed) or a dataset write (a few rows
tagged with the client and its sequence number), and times the whole SDK call. The server may
be told to throttle a fraction of requests (429 with ``Retry-After``): those are deliberate, and
the clients retry them.

Afterwards the run is checked: no error other than a deliberate 429; every upload a client saw
confirmed is listed by the server, and nothing else is; the table holds exactly the rows the
clients saw written, each tag once (a retried write was applied once). It reports operations,
requests, retries, 429s, throughput and p50/p99 latency per kind of operation.

By default the server runs in its own process (``labric serve``), so it does not share the
clients' core; ``--in-process`` runs it on the clients' event loop instead.

Usage::

    python -m benchmarks.load                          # 200 clients for 20 s
    python -m benchmarks.load --clients 50 --seconds 5 --throttle 0

Results: a table on stdout and JSON in ``.bench-data/load.json``; the exit status is 1 if a check
failed. ``tests/security/test_load.py`` runs the same thing small.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from labric import AsyncLabric, RetryPolicy, TransferConfig
from labric.errors import LabricError, RateLimitError
from labric.server import LocalServer

ROOT = Path(__file__).resolve().parent.parent
KiB = 1024
TABLE = "load_rows"
KINDS = ("list", "upload", "write")


@dataclass(frozen=True)
class LoadConfig:
    """What a load run does.

    Attributes:
        clients: Concurrent clients (one connection each).
        seconds: How long they keep starting operations (each finishes the one it started).
        mix: Relative weights of listings, uploads and dataset writes.
        upload_size: Bytes per uploaded file.
        rows_per_write: Rows per dataset write.
        throttle: Fraction of requests the server answers 429 (deliberately).
        retry_after: The ``Retry-After`` of those 429s, in seconds.
        max_server_delay: The most a client waits on a ``Retry-After``.
        seed: Seeds every client's choices and the server's throttling.
    """

    clients: int = 200
    seconds: float = 20.0
    mix: tuple[float, float, float] = (0.5, 0.25, 0.25)
    upload_size: int = 4 * KiB
    rows_per_write: int = 5
    throttle: float = 0.01
    retry_after: int = 1
    max_server_delay: float = 0.25
    seed: int = 7


@dataclass
class LoadReport:
    """What a load run did and what its checks found (``problems`` empty: nothing lost)."""

    config: dict[str, Any]
    duration_s: float = 0.0
    operations: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    error_examples: list[str] = field(default_factory=list)
    throttled_operations: int = 0
    client_requests: int = 0
    client_retries: int = 0
    retries_by_reason: dict[str, int] = field(default_factory=dict)
    server_requests: int = 0
    server_429s: int = 0
    files_uploaded: int = 0
    files_listed: int = 0
    rows_written: int = 0
    rows_stored: int = 0
    distinct_tags: int = 0
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def percentile(values: list[float], q: float) -> float:
    """The ``q``-quantile (0..1) of ``values`` by the nearest-rank method (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    # The smallest value with at least q of all values at or below it (rounded first: 0.99 *
    # 100 is 99.00000000000001 in floating point).
    rank = max(1, min(len(ordered), math.ceil(round(q * len(ordered), 9))))
    return ordered[rank - 1]


@dataclass
class _Tally:
    """What the clients saw, together (they share one event loop, so no lock is needed)."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})
    errors: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    throttled: int = 0
    uploaded: set[str] = field(default_factory=set)
    tags: set[str] = field(default_factory=set)


async def _client_loop(
    index: int,
    base_url: str,
    key: str,
    config: LoadConfig,
    deadline: float,
    tally: _Tally,
    state_dir: Path,
) -> dict[str, Any]:
    rng = random.Random(config.seed * 100_003 + index)
    retry = RetryPolicy(max_server_delay=config.max_server_delay)
    transfer = TransferConfig(concurrency=1, state_dir=str(state_dir / f"c{index}"))
    payload = bytes(rng.getrandbits(8) for _ in range(config.upload_size))
    seq = 0
    async with AsyncLabric(
        key, base_url=base_url, max_connections=1, retry=retry, transfer=transfer
    ) as client:
        while time.perf_counter() < deadline:
            kind = rng.choices(KINDS, weights=config.mix)[0]
            seq += 1
            started = time.perf_counter()
            try:
                if kind == "list":
                    await client.files.list(page_size=20)
                elif kind == "upload":
                    name = f"load/c{index:03d}/f{seq:05d}.bin"
                    uploaded = await client.files.upload(payload, name=name)
                    tally.uploaded.add(uploaded.file_id)
                else:
                    tags = [f"c{index}-{seq}-{k}" for k in range(config.rows_per_write)]
                    rows = [{"tag": t, "client": index, "value": rng.random()} for t in tags]
                    await client.datasets.write(TABLE, rows)
                    tally.tags.update(tags)
            except RateLimitError:
                # Every retry met another 429: deliberate when the server was told to throttle.
                tally.throttled += 1
                if config.throttle == 0:
                    tally.errors["RateLimitError"] += 1
                continue
            except LabricError as exc:
                tally.errors[type(exc).__name__] += 1
                if len(tally.examples) < 5:
                    tally.examples.append(f"{kind}: {type(exc).__name__}: {str(exc)[:200]}")
                continue
            tally.latencies[kind].append((time.perf_counter() - started) * 1000)
        return client.stats.snapshot()


async def _admin(
    session: aiohttp.ClientSession, base_url: str, key: str, method: str, path: str, body: Any
) -> Any:
    async with session.request(
        method, base_url + path, json=body, headers={"Authorization": f"Bearer {key}"}
    ) as resp:
        data = await resp.json() if resp.status != 204 else None
        if resp.status >= 300:
            raise RuntimeError(f"{method} {path}: {resp.status} {data}")
        return data


async def run_load(base_url: str, key: str, config: LoadConfig, work_dir: Path) -> LoadReport:
    """Run the load against a server (admin ``key``) and check what it wrote."""
    report = LoadReport(config=asdict(config))
    async with AsyncLabric(key, base_url=base_url) as admin:
        await admin.datasets.create(
            TABLE,
            columns=[
                {"name": "tag", "type": "text", "nullable": False, "unique": True},
                {"name": "client", "type": "integer"},
                {"name": "value", "type": "float"},
            ],
        )
    async with aiohttp.ClientSession() as session:
        await _admin(
            session,
            base_url,
            key,
            "PUT",
            "/v1/admin/faults",
            {"throttle": config.throttle, "retry_after": config.retry_after, "seed": config.seed},
        )
        await _admin(session, base_url, key, "DELETE", "/v1/admin/stats", None)

        tally = _Tally()
        started = time.perf_counter()
        deadline = started + config.seconds
        stats = await asyncio.gather(
            *(
                _client_loop(i, base_url, key, config, deadline, tally, work_dir)
                for i in range(config.clients)
            )
        )
        report.duration_s = time.perf_counter() - started

        server = await _admin(session, base_url, key, "GET", "/v1/admin/stats", None)
        await _admin(session, base_url, key, "PUT", "/v1/admin/faults", {})
    report.server_requests = server["requests"]["total"]
    report.server_429s = server["faults"].get("throttled", 0)
    report.client_requests = sum(s["requests"] for s in stats)
    report.client_retries = sum(s["retries"] for s in stats)
    reasons: Counter[str] = Counter()
    for s in stats:
        reasons.update(s["retries_by_reason"])
    report.retries_by_reason = dict(sorted(reasons.items()))
    report.operations = {k: len(v) for k, v in tally.latencies.items()}
    report.errors = dict(tally.errors)
    report.error_examples = tally.examples
    report.throttled_operations = tally.throttled
    everything = [ms for values in tally.latencies.values() for ms in values]
    for kind, values in [*tally.latencies.items(), ("all", everything)]:
        report.latency_ms[kind] = {
            "p50": round(percentile(values, 0.50), 2),
            "p99": round(percentile(values, 0.99), 2),
            "max": round(max(values, default=0.0), 2),
        }
    await _check(report, base_url, key, tally)
    return report


async def _check(report: LoadReport, base_url: str, key: str, tally: _Tally) -> None:
    """Count what the server holds against what the clients saw written."""
    async with AsyncLabric(key, base_url=base_url) as admin:
        listed = {f.file_id async for f in admin.files.list(page_size=1000)}
        counts = await admin.datasets.query(f"SELECT count(*), count(DISTINCT tag) FROM {TABLE}")
        tags = await admin.datasets.query(f"SELECT tag FROM {TABLE}")
    report.files_uploaded = len(tally.uploaded)
    report.files_listed = len(listed)
    report.rows_written = len(tally.tags)
    report.rows_stored, report.distinct_tags = counts.data[0]
    stored_tags = {row[0] for row in tags.data}
    if report.errors:
        report.problems.append(f"errors other than deliberate 429s: {report.errors}")
    if lost := tally.uploaded - listed:
        report.problems.append(f"{len(lost)} confirmed uploads are not listed")
    if extra := listed - tally.uploaded:
        report.problems.append(f"{len(extra)} files are listed that no client saw confirmed")
    if report.rows_stored != report.distinct_tags:
        report.problems.append("a row was stored twice")
    if lost_rows := tally.tags - stored_tags:
        report.problems.append(f"{len(lost_rows)} written rows are not stored")
    if extra_rows := stored_tags - tally.tags:
        report.problems.append(f"{len(extra_rows)} rows are stored that no client saw written")
    if not all(report.operations.values()):
        report.problems.append(f"some kind of operation never completed: {report.operations}")


def table(report: LoadReport) -> str:
    """The report as a Markdown table."""
    ops = sum(report.operations.values())
    c = report.config
    lines = [
        f"{c['clients']} clients for {c['seconds']} s "
        f"(mix list/upload/write {'/'.join(str(m) for m in c['mix'])}, "
        f"throttle {c['throttle']:.0%})",
        "",
        "| operation | count | per s | p50 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for kind in (*KINDS, "all"):
        count = ops if kind == "all" else report.operations.get(kind, 0)
        lat = report.latency_ms.get(kind, {})
        lines.append(
            f"| {kind} | {count:,} | {count / max(report.duration_s, 1e-9):,.1f} | "
            f"{lat.get('p50', 0):,.1f} | {lat.get('p99', 0):,.1f} | {lat.get('max', 0):,.1f} |"
        )
    lines += [
        "",
        "| measure | value |",
        "|---|---:|",
        f"| duration | {report.duration_s:.2f} s |",
        f"| client requests (every attempt) | {report.client_requests:,} |",
        f"| server requests | {report.server_requests:,} |",
        f"| 429s injected by the server | {report.server_429s:,} |",
        f"| client retries | {report.client_retries:,} {report.retries_by_reason} |",
        f"| operations given up on 429 | {report.throttled_operations:,} |",
        f"| errors (other than deliberate 429s) | {sum(report.errors.values()):,} |",
        f"| files confirmed / listed | {report.files_uploaded:,} / {report.files_listed:,} |",
        f"| rows written / stored / distinct | {report.rows_written:,} / "
        f"{report.rows_stored:,} / {report.distinct_tags:,} |",
        "",
        "nothing lost" if not report.problems else "PROBLEMS: " + "; ".join(report.problems),
    ]
    return "\n".join(lines)


@asynccontextmanager
async def _server(in_process: bool, data_dir: Path) -> AsyncIterator[tuple[str, str]]:
    if in_process:
        async with LocalServer(data_dir) as server:
            yield server.base_url, server.admin_key
        return
    from benchmarks.transfer import start_server

    proc, base_url, key = start_server(data_dir)
    try:
        yield base_url, key
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _main(config: LoadConfig, in_process: bool) -> LoadReport:
    work = Path(tempfile.mkdtemp(prefix="labric-load-"))
    try:
        async with _server(in_process, work / "server") as (base_url, key):
            return await run_load(base_url, key, config, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None, *, out: Callable[[str], None] = print) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__)
    defaults = LoadConfig()
    parser.add_argument("--clients", type=int, default=defaults.clients)
    parser.add_argument("--seconds", type=float, default=defaults.seconds)
    parser.add_argument("--throttle", type=float, default=defaults.throttle)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--upload-size", type=int, default=defaults.upload_size)
    parser.add_argument("--in-process", action="store_true", help="serve on the clients' loop")
    args = parser.parse_args(argv)
    config = LoadConfig(
        clients=args.clients,
        seconds=args.seconds,
        throttle=args.throttle,
        seed=args.seed,
        upload_size=args.upload_size,
    )
    report = asyncio.run(_main(config, args.in_process))
    out(table(report))
    results = ROOT / ".bench-data"
    results.mkdir(exist_ok=True)
    (results / "load.json").write_text(json.dumps(report.to_json(), indent=2) + "\n")
    out(json.dumps(report.to_json()))
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
