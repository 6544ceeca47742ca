"""Server throughput: the local server alone, driven by lean raw clients, with its CPU counted.

The server runs in its own process (``labric serve``); the clients are raw aiohttp loops in
other processes (no SDK), so what limits the figures is the server. Its CPU seconds are read
from ``/proc/<pid>/stat`` around each scenario, which gives a figure less sensitive to a busy
machine than the throughput: server CPU milliseconds per file.

Scenarios:
  small   N files of 16 KiB through the hosted three-request flow (``upload-url``, ``PUT`` to the
          signed URL, ``confirm-upload``), from P client processes with C flows in flight each.
          The two POSTs carry an ``Idempotency-Key``, as the SDK sends them.
  parts   one file (1 GiB by default) sent as a multipart upload (its part plan, each part PUT
          from the file, K parts in flight, then ``confirm-upload`` with the parts' CRC32Cs)
          against the same bytes sent as one stream to a single signed PUT, each confirmed.

Usage::

    python -m benchmarks server                              # both, default sizes
    python -m benchmarks server --only small --files 3000 --clients 2 --concurrency 32
    python -m benchmarks server --only parts --parts-mib 1024 --part-concurrency 2,8,16
    python -m benchmarks server --profile-dir /tmp/prof      # py-spy the server (if installed)

Results: a Markdown table on stdout and JSON in ``.bench-data/server.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.transfer import MiB, make_big_file, run_contender, start_server

ROOT = Path(__file__).resolve().parent.parent
SMALL_SIZE = 16 * 1024


def me(*args: str) -> list[str]:
    return [sys.executable, "-m", "benchmarks.server", "--worker", *args]


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a process (and its threads) so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (and its threads) so far (Linux)."""
    return sum(cpu_times(pid))


# -- workers (run in their own process) ---------------------------------------------------------


async def worker_small(
    base_url: str, key: str, execution: str, count: int, concurrency: int
) -> dict[str, Any]:
    import aiohttp

    auth = {"Authorization": f"Bearer {key}"}
    data = os.urandom(SMALL_SIZE)
    connector = aiohttp.TCPConnector(limit=concurrency)
    left = [count]
    steps = dict.fromkeys(("upload-url", "put", "confirm"), 0.0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def post(path: str, body: Any) -> Any:
            headers = {**auth, "Idempotency-Key": uuid.uuid4().hex}
            async with session.post(base_url + path, json=body, headers=headers) as r:
                if r.status != 200:
                    raise RuntimeError(f"POST {path}: {r.status} {await r.text()}")
                return await r.json()

        async def loop(lane: int) -> None:
            while left[0] > 0:
                left[0] -= 1
                name = f"bench/{os.getpid()}/{lane}/{left[0]}.bin"
                t0 = time.perf_counter()
                ticket = await post(
                    "/v1/files/upload-url",
                    {"file_name": name, "job_execution_id": execution, "size_bytes": len(data)},
                )
                t1 = time.perf_counter()
                headers = {**ticket["headers"], "Content-Length": str(len(data))}
                async with session.put(ticket["upload_url"], data=data, headers=headers) as r:
                    if r.status != 200:
                        raise RuntimeError(f"PUT: {r.status} {await r.text()}")
                t2 = time.perf_counter()
                await post(f"/v1/files/{ticket['file_id']}/confirm-upload", None)
                t3 = time.perf_counter()
                for step, spent in zip(steps, (t1 - t0, t2 - t1, t3 - t2), strict=True):
                    steps[step] += spent

        started = time.time()
        await asyncio.gather(*(loop(i) for i in range(concurrency)))
        ended = time.time()
    return {"files": count, "started": started, "ended": ended, "step_s": steps}


async def worker_big(
    base_url: str, key: str, execution: str, path: str, mode: str, concurrency: int
) -> dict[str, Any]:
    import aiohttp
    import google_crc32c

    auth = {"Authorization": f"Bearer {key}"}
    size = os.path.getsize(path)
    fd = os.open(path, os.O_RDONLY)
    timeout = aiohttp.ClientTimeout(total=None)
    connector = aiohttp.TCPConnector(limit=max(concurrency, 1))

    async def body(offset: int, length: int):  # type: ignore[no-untyped-def]
        end = offset + length
        while offset < end:
            step = min(MiB, end - offset)
            yield await asyncio.to_thread(os.pread, fd, step, offset)
            offset += step

    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        request: dict[str, Any] = {"file_name": f"{mode}.bin", "job_execution_id": execution}
        if mode == "parts":
            request["size_bytes"] = size
        async with session.post(f"{base_url}/v1/files/upload-url", json=request, headers=auth) as r:
            ticket = await r.json()
        confirm: Any = None
        started = time.perf_counter()
        if mode == "parts":
            parts = ticket["parts"]
            crcs: dict[int, str] = {}

            def crc_of(offset: int, length: int) -> str:
                crc = google_crc32c.Checksum()
                done = 0
                while done < length:
                    chunk = os.pread(fd, min(4 * MiB, length - done), offset + done)
                    crc.update(chunk)
                    done += len(chunk)
                return base64.b64encode(crc.digest()).decode()

            # Checksums first (the client's cost, not the server's): the timing is the sending.
            for part in parts:
                crcs[part["number"]] = crc_of(part["offset"], part["size"])
            started = time.perf_counter()
            queue = list(reversed(parts))

            async def lane() -> None:
                while queue:
                    part = queue.pop()
                    headers = {
                        "Content-Length": str(part["size"]),
                        "x-goog-hash": f"crc32c={crcs[part['number']]}",
                    }
                    async with session.put(
                        part["url"], data=body(part["offset"], part["size"]), headers=headers
                    ) as r:
                        if r.status != 200:
                            raise RuntimeError(f"part PUT: {r.status} {await r.text()}")

            await asyncio.gather(*(lane() for _ in range(concurrency)))
            confirm = {"parts": [{"number": n, "crc32c": c} for n, c in sorted(crcs.items())]}
        else:
            headers = {**ticket["headers"], "Content-Length": str(size)}
            async with session.put(ticket["upload_url"], data=body(0, size), headers=headers) as r:
                if r.status != 200:
                    raise RuntimeError(f"PUT: {r.status} {await r.text()}")
        async with session.post(
            f"{base_url}/v1/files/{ticket['file_id']}/confirm-upload", json=confirm, headers=auth
        ) as r:
            if r.status != 200:
                raise RuntimeError(f"confirm: {r.status} {await r.text()}")
        elapsed = time.perf_counter() - started
    os.close(fd)
    return {"bytes": size, "seconds": elapsed}


def worker(argv: list[str]) -> None:
    kind, *args = argv
    if kind == "small":
        result = asyncio.run(worker_small(args[0], args[1], args[2], int(args[3]), int(args[4])))
    elif kind == "big":
        result = asyncio.run(worker_big(args[0], args[1], args[2], args[3], args[4], int(args[5])))
    else:
        raise SystemExit(f"unknown worker {kind}")
    print(json.dumps(result))


# -- scenarios ----------------------------------------------------------------------------------


async def _execution(base_url: str, key: str) -> str:
    import aiohttp

    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"{base_url}/v1/job-executions", json={}, headers={"Authorization": f"Bearer {key}"}
        ) as r,
    ):
        return str((await r.json())["job_execution_id"])


def _parallel(argvs: list[list[str]]) -> list[dict[str, Any]]:
    """Run worker processes at once; their JSON reports."""
    procs = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for argv in argvs
    ]
    reports = []
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode:
            raise RuntimeError(f"worker failed ({proc.returncode}):\n{err.decode()[-3000:]}")
        reports.append(json.loads(out.decode().strip().splitlines()[-1]))
    return reports


def scenario_small(
    server_pid: int, base_url: str, key: str, files: int, clients: int, concurrency: int
) -> dict[str, Any]:
    execution = asyncio.run(_execution(base_url, key))
    # A short warm-up, so the first connections and imports do not count.
    _parallel([me("small", base_url, key, execution, str(concurrency), str(concurrency))])
    share = [files // clients + (1 if i < files % clients else 0) for i in range(clients)]
    user, system = cpu_times(server_pid)
    reports = _parallel(
        [me("small", base_url, key, execution, str(n), str(concurrency)) for n in share]
    )
    user_after, system_after = cpu_times(server_pid)
    user, system = user_after - user, system_after - system
    cpu = user + system
    seconds = max(r["ended"] for r in reports) - min(r["started"] for r in reports)
    latency = {
        step: sum(r["step_s"][step] for r in reports) / files * 1000
        for step in reports[0]["step_s"]
    }
    row = {
        "files": files,
        "clients": clients,
        "concurrency": concurrency,
        "seconds": seconds,
        "files_per_s": files / seconds,
        "server_cpu_s": cpu,
        "server_cpu_ms_per_file": cpu / files * 1000,
        "server_user_ms_per_file": user / files * 1000,
        "server_system_ms_per_file": system / files * 1000,
        "mean_latency_ms": latency,
    }
    print(
        f"  small: {row['files_per_s']:.0f} files/s, "
        f"server CPU {row['server_cpu_ms_per_file']:.2f} ms/file "
        f"(user {row['server_user_ms_per_file']:.2f}, "
        f"system {row['server_system_ms_per_file']:.2f}); mean ms per request: "
        + ", ".join(f"{step} {ms:.1f}" for step, ms in latency.items()),
        file=sys.stderr,
    )
    return row


def scenario_parts(
    server_pid: int,
    work: Path,
    base_url: str,
    key: str,
    size: int,
    concurrencies: list[int],
    repeat: int,
) -> list[dict[str, Any]]:
    execution = asyncio.run(_execution(base_url, key))
    path = make_big_file(work / "parts.bin", size)
    rows: list[dict[str, Any]] = []
    contenders = [("single stream", "single", 1)] + [
        (f"parts, {k} in flight", "parts", k) for k in concurrencies
    ]
    try:
        for _ in range(repeat):
            for name, mode, k in contenders:
                cpu = cpu_seconds(server_pid)
                report = run_contender(me("big", base_url, key, execution, str(path), mode, str(k)))
                report["server_cpu_s"] = cpu_seconds(server_pid) - cpu
                report["contender"] = name
                report["mb_per_s"] = report["bytes"] / report["seconds"] / 1e6
                rows.append(report)
                print(f"  parts: {name}: {report['mb_per_s']:.0f} MB/s", file=sys.stderr)
    finally:
        path.unlink()
    return rows


def markdown(results: dict[str, Any]) -> str:
    lines: list[str] = []
    small = results.get("small")
    if small:
        lines += [
            "| small files (16 KiB, 3 requests each) | files/s | server CPU ms/file "
            "| of which user / system |",
            "|---|---:|---:|---:|",
            f"| {small['files']} files, {small['clients']} clients × {small['concurrency']} "
            f"in flight | {small['files_per_s']:.0f} | {small['server_cpu_ms_per_file']:.2f} | "
            f"{small['server_user_ms_per_file']:.2f} / {small['server_system_ms_per_file']:.2f} |",
            "",
        ]
    parts = results.get("parts")
    if parts:
        best: dict[str, dict[str, Any]] = {}
        for r in parts:
            if r["contender"] not in best or r["mb_per_s"] > best[r["contender"]]["mb_per_s"]:
                best[r["contender"]] = r
        single = best["single stream"]["mb_per_s"]
        size = parts[0]["bytes"] // MiB
        lines += [
            f"| {size} MiB upload (best of {len(parts) // len(best)}) | MB/s | ÷ single stream "
            "| server CPU s |",
            "|---|---:|---:|---:|",
        ]
        for name, r in best.items():
            lines.append(
                f"| {name} | {r['mb_per_s']:.0f} | {r['mb_per_s'] / single:.2f}× | "
                f"{r['server_cpu_s']:.1f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        worker(argv[1:])
        return
    parser = argparse.ArgumentParser(prog="python -m benchmarks server", description=__doc__)
    parser.add_argument("--only", choices=["small", "parts"], action="append")
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--concurrency", type=int, default=32, help="flows per client")
    parser.add_argument("--parts-mib", type=int, default=1024)
    parser.add_argument("--part-concurrency", default="2,8,16")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each parts contender")
    parser.add_argument("--work-dir", default=None)
    parser.add_argument(
        "--profile-dir", default=None, help="record the server with py-spy into this folder"
    )
    args = parser.parse_args(argv)
    only = set(args.only or ["small", "parts"])
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="labric-bench-server-"))
    work.mkdir(parents=True, exist_ok=True)
    cap = str(args.parts_mib * MiB + MiB)
    server, base_url, key = start_server(work / "server", "--max-single-put", cap)
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count()}}
    spy: subprocess.Popen[bytes] | None = None
    py_spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if args.profile_dir and py_spy:
        Path(args.profile_dir).mkdir(parents=True, exist_ok=True)
        spy = subprocess.Popen(
            [
                py_spy,
                "record",
                "--pid",
                str(server.pid),
                "--threads",
                "--format",
                "raw",
                "--output",
                str(Path(args.profile_dir) / "server.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    try:
        if "small" in only:
            results["small"] = scenario_small(
                server.pid, base_url, key, args.files, args.clients, args.concurrency
            )
        if "parts" in only:
            concurrencies = [int(k) for k in args.part_concurrency.split(",") if k]
            results["parts"] = scenario_parts(
                server.pid,
                work,
                base_url,
                key,
                args.parts_mib * MiB,
                concurrencies,
                args.repeat,
            )
    finally:
        if spy is not None:
            spy.send_signal(2)
            spy.wait()
        server.terminate()
        server.wait()
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    out = ROOT / ".bench-data"
    out.mkdir(exist_ok=True)
    (out / "server.json").write_text(json.dumps(results, indent=2))
    print(markdown(results))


if __name__ == "__main__":
    main()
