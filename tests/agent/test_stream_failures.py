"""A streamed run that goes wrong: dropped (by the local server's fault injection and by a
hostile server), refused, malformed; never retried; and its connection released on ``break``,
on ``aclose`` and on cancellation."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from aiohttp import web

from labric import AsyncLabric
from labric.errors import (
    APIConnectionError,
    AuthenticationError,
    EventStreamError,
    InternalServerError,
    StreamInterruptedError,
)
from labric.models import RunResult, TextDelta, ToolCall
from labric.server import LocalServer
from labric.server.core.faults import FaultConfig
from tests.hostile._server import HostileServer, stream_chunks

from ._hanging import HangingStream

RUNS = "/api/v1/agent/runs"
RESULT = {
    "type": "result",
    "result": {
        "output": "done",
        "model": "m",
        "tool_calls": [],
        "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2},
        "chat_id": None,
    },
}


def sse(*events: Any) -> bytes:
    return b"".join(
        (e if isinstance(e, bytes) else f"data: {json.dumps(e)}\n\n".encode()) for e in events
    )


def answer(hostile: HostileServer, *chunks: bytes, **kw: Any) -> None:
    @hostile.route("POST", RUNS)
    async def runs(request: web.Request) -> web.StreamResponse:
        headers = {"Content-Type": "text/event-stream", **kw.pop("headers", {})}
        return await stream_chunks(request, chunks, headers=headers, **kw)


async def drain(client: AsyncLabric, prompt: str = "list tables") -> list[Any]:
    async with client.agent.stream(prompt) as events:
        return [e async for e in events]


async def read_into(seen: list[Any], client: AsyncLabric, prompt: str) -> None:
    """Read a stream, keeping each event as it arrives (so those before a failure are kept)."""
    async with client.agent.stream(prompt) as events:
        async for event in events:
            seen.append(event)


# -- dropped streams -------------------------------------------------------------------------


async def test_a_stream_reset_by_the_server_raises_and_is_not_retried(
    server: LocalServer, client: AsyncLabric
) -> None:
    server.reset_stats()
    server.faults.update(FaultConfig(reset=1.0, scope="api"))
    seen: list[Any] = []
    async with AsyncLabric(server.admin_key, base_url=server.base_url, max_retries=3) as retrying:
        with pytest.raises(StreamInterruptedError, match="broke off") as caught:
            await read_into(seen, retrying, "How many rows does samples have?")
    server.faults.update(FaultConfig())
    assert seen == []  # reset at the first event, after the headers and the opening comment
    assert caught.value.request_id is not None
    assert caught.value.request_id.startswith("req_")
    assert caught.value.path == RUNS
    assert isinstance(caught.value, APIConnectionError)
    stats = server.stats
    assert stats["requests"]["by_route"]["POST /api/v1/agent/runs"] == 1
    assert stats["faults"]["resets"] == 1


async def test_a_stream_closed_before_its_result_raises_and_is_not_retried(
    hostile: HostileServer,
) -> None:
    answer(hostile, sse({"type": "text_delta", "delta": "Hal"}), b'data: {"type": "text_d')
    received: list[Any] = []
    async with hostile.client() as client:
        with pytest.raises(StreamInterruptedError, match="in the middle of an event"):
            await read_into(received, client, "x")
    assert received == [TextDelta(delta="Hal")]
    assert len(hostile.seen("POST", RUNS)) == 1


async def test_a_clean_end_without_a_terminal_event_is_an_interruption(
    hostile: HostileServer,
) -> None:
    answer(hostile, sse({"type": "text_delta", "delta": "a"}, b": bye\n\n"))
    async with hostile.client() as client:
        with pytest.raises(StreamInterruptedError, match="before its final event"):
            await drain(client)


async def test_an_error_status_is_mapped_and_not_retried(hostile: HostileServer) -> None:
    @hostile.route("POST", RUNS)
    async def runs(_request: web.Request) -> web.StreamResponse:
        return web.json_response({"detail": "upstream model unavailable"}, status=502)

    async with hostile.client(max_retries=2) as client:
        with pytest.raises(InternalServerError, match="upstream model unavailable") as caught:
            await drain(client)
    assert caught.value.status_code == 502
    assert len(hostile.seen("POST", RUNS)) == 1


async def test_a_revoked_key_is_401_from_the_local_server(server: LocalServer) -> None:
    key = server.create_key(["read"])
    server.revoke_key(key)
    async with AsyncLabric(key, base_url=server.base_url) as client:
        with pytest.raises(AuthenticationError):
            await drain(client)


# -- what the client reads -------------------------------------------------------------------


async def test_the_request_shape(hostile: HostileServer) -> None:
    answer(hostile, sse(RESULT))
    async with hostile.client() as client:
        async for _ in client.agent.stream("p", model="m1", chat_id="c1", save=True):
            pass
    (seen,) = hostile.seen("POST", RUNS)
    body = json.loads(seen.body)
    assert body == {"prompt": "p", "stream": True, "model": "m1", "chat_id": "c1", "save": True}
    assert seen.headers["Accept"] == "text/event-stream"
    assert seen.headers["Authorization"].startswith("Bearer lbk_")


async def test_unknown_types_and_non_json_data_are_skipped_with_a_warning(
    hostile: HostileServer, caplog: pytest.LogCaptureFixture
) -> None:
    answer(
        hostile,
        sse(
            {"type": "text_delta", "delta": "a", "tool_call_id": None, "error": None},
            {"type": "citation", "url": "x"},
            b"data: [DONE]\n\n",
            b"event: ping\ndata: 1\n\n",
            RESULT,
            {"type": "text_delta", "delta": "after the end"},
        ),
    )
    async with hostile.client() as client:
        with caplog.at_level(logging.WARNING, logger="labric"):
            events = await drain(client)
    assert [type(e) for e in events] == [TextDelta, RunResult]
    warnings = [r.getMessage() for r in caplog.records]
    assert any("unknown type 'citation'" in w for w in warnings)
    assert any("not JSON" in w and "[DONE]" in w for w in warnings)


async def test_an_event_split_over_lines_and_chunks_is_read_whole(hostile: HostileServer) -> None:
    call = {"type": "tool_call", "tool_call_id": "c", "tool_name": "t", "input": {"q": "é" * 5}}
    body = json.dumps(call, indent=1).encode()
    framed = b"".join(b"data: " + line + b"\r\n" for line in body.split(b"\n")) + b"\r\n"
    answer(hostile, *(framed[i : i + 3] for i in range(0, len(framed), 3)), sse(RESULT))
    async with hostile.client() as client:
        first, last = await drain(client)
    assert first == ToolCall(tool_call_id="c", tool_name="t", input={"q": "é" * 5})
    assert isinstance(last, RunResult)


@pytest.mark.parametrize(
    ("headers", "body", "match"),
    [
        ({"Content-Type": "application/json"}, b"{}", "Expected a text/event-stream"),
        ({"Content-Encoding": "gzip"}, b"", "encoded"),
        ({"Content-Type": "text/event-stream; charset=klingon"}, b"", "charset"),
        ({}, b"data: " + b"x" * (1024 * 1024) + b"\n\n", "longer than 1048576"),
        ({}, sse({"type": "result", "result": {"output": 1}}), "does not fit"),
    ],
)
async def test_an_unusable_stream_is_a_clear_error(
    hostile: HostileServer, headers: dict[str, str], body: bytes, match: str
) -> None:
    answer(hostile, body, headers=headers)
    async with hostile.client() as client:
        with pytest.raises(EventStreamError, match=match) as caught:
            await drain(client)
    assert (caught.value.method, caught.value.path) == ("POST", RUNS)


# -- release ---------------------------------------------------------------------------------


async def test_leaving_async_with_after_a_break_releases_the_connection() -> None:
    with HangingStream() as hanging:
        async with AsyncLabric("lbk_x_" + "s" * 32, base_url=hanging.base_url) as client:
            async with client.agent.stream("x") as events:
                async for event in events:
                    assert event == TextDelta(delta="first")
                    break
            assert await asyncio.to_thread(hanging.wait_closed)


async def test_a_stream_dropped_after_a_break_is_closed_by_the_loop() -> None:
    with HangingStream() as hanging:
        async with AsyncLabric("lbk_x_" + "s" * 32, base_url=hanging.base_url) as client:
            stream = client.agent.stream("x")
            async for _ in stream:
                break
            del stream  # no gc needed: nothing holds the stream in a cycle
            assert await asyncio.to_thread(hanging.wait_closed)


async def test_cancelling_the_reader_releases_the_connection() -> None:
    with HangingStream() as hanging:
        async with AsyncLabric("lbk_x_" + "s" * 32, base_url=hanging.base_url) as client:
            first = asyncio.Event()

            async def read() -> None:
                async for _ in client.agent.stream("x"):
                    first.set()

            task = asyncio.create_task(read())
            await first.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await asyncio.to_thread(hanging.wait_closed)
            assert hanging.requests == 1
