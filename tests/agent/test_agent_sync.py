"""``Labric().agent``: the sync twin, against a real server on its own thread."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from labric import Labric, SyncEventStream
from labric.errors import NotFoundError, StreamInterruptedError
from labric.models import ReasoningDelta, RunResult, TextDelta, ToolCall, ToolResult
from labric.server import LocalServer, ThreadedServer
from labric.server.core.faults import FaultConfig

from ._hanging import HangingStream
from .conftest import SAMPLES


@pytest.fixture
def threaded(tmp_path: Path) -> Iterator[ThreadedServer]:
    with LocalServer.run_in_thread(tmp_path / "server") as srv:
        yield srv


@pytest.fixture
def sync_client(threaded: ThreadedServer) -> Iterator[Labric]:
    with Labric(threaded.admin_key, base_url=threaded.base_url, max_retries=0) as c:
        c.datasets.create("samples", columns=[{"name": "name", "type": "text"}])
        c.datasets.write("samples", [{"name": f"S-{i}"} for i in range(SAMPLES)])
        yield c


def test_run_and_stream_give_the_same_answer(sync_client: Labric) -> None:
    prompt = "How many rows does samples have?"
    whole = sync_client.agent.run(prompt, save=True)
    assert whole.tool_calls[0].output == {"table": "samples", "rows": SAMPLES}
    assert whole.chat_id
    stream = sync_client.agent.stream(prompt)
    assert isinstance(stream, SyncEventStream)
    with stream as events:
        kinds = [type(e) for e in events]
        assert stream.request_id is not None
    assert kinds == [ReasoningDelta, ToolCall, ToolResult, TextDelta, RunResult]
    continued = list(sync_client.agent.stream("count its rows", chat_id=whole.chat_id))
    assert continued[-1].result.chat_id == whole.chat_id
    with pytest.raises(NotFoundError):
        list(sync_client.agent.stream("x", chat_id="nope"))


def test_a_dropped_stream_raises_in_the_sync_client(
    threaded: ThreadedServer, sync_client: Labric
) -> None:
    threaded.faults.update(FaultConfig(reset=1.0, scope="api"))
    try:
        with pytest.raises(StreamInterruptedError):
            list(sync_client.agent.stream("list tables"))
    finally:
        threaded.faults.update(FaultConfig())
    assert sync_client.agent.run("list tables").tool_calls[0].tool_name == "list_tables"


def test_breaking_out_of_a_with_block_releases_the_connection() -> None:
    with (
        HangingStream() as hanging,
        Labric("lbk_x_" + "s" * 32, base_url=hanging.base_url) as client,
    ):
        with client.agent.stream("x") as events:
            for event in events:
                assert event == TextDelta(delta="first")
                break
        assert hanging.wait_closed()


def test_a_stream_dropped_after_a_break_is_closed_by_the_loop() -> None:
    with (
        HangingStream() as hanging,
        Labric("lbk_x_" + "s" * 32, base_url=hanging.base_url) as client,
    ):
        for _ in client.agent.stream("x"):
            break
        assert hanging.wait_closed()
