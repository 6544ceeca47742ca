"""Benchmark worker for the official ``labric`` client (run with ``.venv-official``'s python).

It imports the official package, never this repository's: it is run in isolated mode
(``python -I``), from a directory outside the repository.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any


def small_serial(origin: str, key: str, folder: str) -> dict[str, Any]:
    from labric import Labric, StartJobExecutionSchema

    client = Labric(api_key=key, base_url=origin)
    request = StartJobExecutionSchema(job_name="bench official serial")
    execution = client.jobs.start(request=request).job_execution_id
    files = sorted(Path(folder).iterdir())
    started = time.perf_counter()
    for path in files:
        with open(path, "rb") as fh:
            client.files.upload(file=fh, job_execution_id=execution)
    elapsed = time.perf_counter() - started
    return {"files": len(files), "seconds": elapsed}


async def small_gather(origin: str, key: str, folder: str, concurrency: int) -> dict[str, Any]:
    from labric import AsyncLabric, StartJobExecutionSchema

    client = AsyncLabric(api_key=key, base_url=origin)
    request = StartJobExecutionSchema(job_name="bench official gather")
    execution = (await client.jobs.start(request=request)).job_execution_id
    files = sorted(Path(folder).iterdir())
    gate = asyncio.Semaphore(concurrency)

    async def one(path: Path) -> None:
        async with gate:
            await client.files.upload(
                file=(path.name, path.read_bytes()), job_execution_id=execution
            )

    started = time.perf_counter()
    await asyncio.gather(*(one(p) for p in files))
    elapsed = time.perf_counter() - started
    return {"files": len(files), "seconds": elapsed}


def big_up(origin: str, key: str, path: str) -> dict[str, Any]:
    from labric import Labric, StartJobExecutionSchema

    client = Labric(api_key=key, base_url=origin)
    request = StartJobExecutionSchema(job_name="bench official big")
    execution = client.jobs.start(request=request).job_execution_id
    size = Path(path).stat().st_size
    started = time.perf_counter()
    with open(path, "rb") as fh:
        client.files.upload(file=fh, job_execution_id=execution)
    return {"bytes": size, "seconds": time.perf_counter() - started}


def main() -> None:
    kind, *args = sys.argv[1:]
    # Imported before the clock starts: the harness subtracts start-up and import CPU.
    import labric  # noqa: F401

    usage = resource.getrusage(resource.RUSAGE_SELF)
    startup = usage.ru_utime + usage.ru_stime
    if kind == "small-serial":
        result = small_serial(args[0], args[1], args[2])
    elif kind == "small-gather":
        result = asyncio.run(small_gather(args[0], args[1], args[2], int(args[3])))
    elif kind == "big-up":
        result = big_up(args[0], args[1], args[2])
    else:
        raise SystemExit(f"unknown worker {kind}")
    result["startup_cpu_s"] = startup
    print(json.dumps(result))


if __name__ == "__main__":
    main()
