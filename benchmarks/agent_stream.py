"""Event streams: the SSE parser's throughput and memory, and reading a stream whole.

* **Parser**: :class:`labric._core.sse.SSEDecoder` on a synthetic stream of agent events
  (``data:`` lines of about 200 bytes, a keep-alive comment every 50 events), fed in chunks of
  1 KiB and of 64 KiB: MB/s, events/s, and the peak memory ``tracemalloc`` saw while a stream
  many times that size went through (events are dropped as they come, so the peak is what the
  decoder itself holds).
* **Streams end to end**: a server on its own thread sends N events in network chunks of 100
  events; the async client, the sync facade (one crossing per chunk, as it does), and, for
  reference, the sync facade crossing once per *event* read the whole stream: events/s.

Usage::

    python -m benchmarks.agent_stream                 # defaults: 32 MiB parsed, 20,000 events
    python -m benchmarks.agent_stream --mib 128 --events 50000

Results: a Markdown table on stdout and JSON in ``.bench-data/agent_stream.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiohttp import web

from labric import AsyncLabric, Labric
from labric._core.sse import SSEDecoder

ROOT = Path(__file__).resolve().parent.parent
KEY = "lbk_bench_0123456789abcdef"
PER_CHUNK = 100


def _event(i: int) -> bytes:
    data = {"type": "text_delta", "delta": f"word {i} of a long and steady answer " * 4}
    return b"data: " + json.dumps(data).encode() + b"\n\n"


def _body(size: int) -> bytes:
    out = bytearray()
    i = 0
    while len(out) < size:
        out += _event(i)
        if i % 50 == 0:
            out += b": keep-alive\n\n"
        i += 1
    return bytes(out)


def _feed(body: bytes, chunk: int) -> int:
    decoder = SSEDecoder()
    events = 0
    view = memoryview(body)
    for start in range(0, len(body), chunk):
        events += len(decoder.feed(bytes(view[start : start + chunk])))
    decoder.close()
    return events


def _parse(body: bytes, chunk: int, repeat: int) -> tuple[float, int, int]:
    """Seconds and events for ``repeat`` passes over ``body``, then the peak memory traced
    during one more pass (timed apart: tracing slows the parser several times over)."""
    events = 0
    started = time.perf_counter()
    for _ in range(repeat):
        events += _feed(body, chunk)
    elapsed = time.perf_counter() - started
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    _feed(body, chunk)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return elapsed, events, peak


# -- a streaming server on its own thread ------------------------------------------------------


class _Server:
    def __init__(self, events: int) -> None:
        self.events = events
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    async def _runs(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for start in range(0, self.events, PER_CHUNK):
            chunk = b"".join(_event(i) for i in range(start, min(start + PER_CHUNK, self.events)))
            await response.write(chunk)
        result = {
            "type": "result",
            "result": {"output": "", "model": "m", "tool_calls": [], "usage": {}},
        }
        await response.write(b"data: " + json.dumps(result).encode() + b"\n\n")
        await response.write_eof()
        return response

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/api/v1/agent/runs", self._runs)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ready.set()
        self._loop.run_forever()

    def __enter__(self) -> _Server:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *_: Any) -> None:
        assert self._runner is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"


def _timed(fn: Any) -> tuple[float, int]:
    started = time.perf_counter()
    count = fn()
    return time.perf_counter() - started, count


def _stream_rows(events: int, rounds: int) -> Iterator[tuple[str, float]]:
    with _Server(events) as server:

        async def read_async() -> int:
            async with (
                AsyncLabric(KEY, base_url=server.base_url) as client,
                client.agent.stream("x") as stream,
            ):
                return sum([1 async for _ in stream])

        def read_sync() -> int:
            with Labric(KEY, base_url=server.base_url) as client:
                return sum(1 for _ in client.agent.stream("x"))

        def read_sync_per_event() -> int:
            with Labric(KEY, base_url=server.base_url) as client:
                stream = client.agent.stream("x")._stream  # the async twin, in the loop
                portal = client._portal
                count = 0
                while True:
                    try:
                        portal.call(lambda _: stream.__anext__())
                    except StopAsyncIteration:
                        return count
                    count += 1

        best: dict[str, float] = {}
        for _ in range(rounds):
            for name, fn in (
                ("async", lambda: asyncio.run(read_async())),
                ("sync (a crossing per chunk)", read_sync),
                ("sync, a crossing per event (reference)", read_sync_per_event),
            ):
                elapsed, count = _timed(fn)
                assert count == events + 1, (name, count)
                best[name] = max(best.get(name, 0.0), count / elapsed)
        yield from best.items()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.agent_stream")
    parser.add_argument("--mib", type=int, default=32, help="MiB parsed per chunk size")
    parser.add_argument("--events", type=int, default=20_000, help="events per stream")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    body = _body(4 * 1024 * 1024)
    repeat = max(1, args.mib // 4)
    results: dict[str, Any] = {"parser": {}, "streams": {}}
    print("| parser chunk | MB/s | events/s | peak traced memory |")
    print("|---|---|---|---|")
    for chunk in (1024, 64 * 1024):
        elapsed, events, peak = _parse(body, chunk, repeat)
        mbps = len(body) * repeat / elapsed / 1e6
        results["parser"][chunk] = {"mb_s": mbps, "events_s": events / elapsed, "peak": peak}
        print(
            f"| {chunk // 1024} KiB | {mbps:.0f} | {events / elapsed:,.0f} | "
            f"{peak / 1024:.0f} KiB over {len(body) / 2**20:.0f} MiB |"
        )
    print()
    print(f"| reading a {args.events:,}-event stream (best of {args.rounds}) | events/s |")
    print("|---|---|")
    for name, rate in _stream_rows(args.events, args.rounds):
        results["streams"][name] = rate
        print(f"| {name} | {rate:,.0f} |")
    out = ROOT / ".bench-data"
    out.mkdir(exist_ok=True)
    (out / "agent_stream.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
