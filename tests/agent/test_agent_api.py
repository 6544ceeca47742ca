"""``client.agent`` against a real local server: whole and streamed runs with real tool results,
SQL in backticks, the write tool and the key's scope, saved chats."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from typing import Any

import aiohttp
import attrs
import pytest

from labric import AsyncLabric
from labric._core.sse import SSEDecoder
from labric.errors import NotFoundError, UnprocessableEntityError
from labric.models import (
    AgentRunResponse,
    ReasoningDelta,
    RunResult,
    TextDelta,
    ToolCall,
    ToolResult,
)
from labric.server import LocalServer
from labric.server.agent import routes, store, tools

from .conftest import SAMPLES


async def collect(client: AsyncLabric, prompt: str, **kw: Any) -> list[Any]:
    async with client.agent.stream(prompt, **kw) as events:
        return [event async for event in events]


async def test_a_streamed_run_sends_its_events_in_order_with_real_tool_results(
    client: AsyncLabric,
) -> None:
    events = await collect(client, "How many rows does samples have?")
    kinds = [type(e) for e in events]
    assert kinds == [ReasoningDelta, ToolCall, ToolResult, TextDelta, RunResult]
    _, call, result, text, final = events
    truth = await client.datasets.query("SELECT count(*) FROM samples")
    assert truth.data == [[SAMPLES]]
    assert call.tool_name == result.tool_name == "count_rows"
    assert call.tool_call_id == result.tool_call_id
    assert call.input == {"table": "samples"}
    assert result.output == {"table": "samples", "rows": SAMPLES}
    assert text.delta == f"Table samples has {SAMPLES} rows."
    answer = final.result
    assert answer.output == text.delta
    assert [c.output for c in answer.tool_calls] == [result.output]
    assert answer.chat_id is None
    assert answer.usage.total_tokens == answer.usage.input_tokens + answer.usage.output_tokens


async def test_the_whole_answer_equals_the_streamed_result(client: AsyncLabric) -> None:
    prompt = "Describe samples and count its rows"
    whole = await client.agent.run(prompt)
    streamed = (await collect(client, prompt))[-1].result
    assert whole == streamed
    assert [c.tool_name for c in whole.tool_calls] == ["describe_table", "count_rows"]
    columns = {c["name"] for c in whole.tool_calls[0].output["columns"]}
    assert {"id", "name", "od600"} <= columns
    assert isinstance(whole, AgentRunResponse)


async def test_sql_in_backticks_runs_under_the_query_boundary(client: AsyncLabric) -> None:
    answer = await client.agent.run(
        "What is `SELECT round(sum(od600), 1) AS total FROM samples WHERE od600 > 1`?"
    )
    (call,) = answer.tool_calls
    truth = await client.datasets.query("SELECT round(sum(od600), 1) FROM samples WHERE od600 > 1")
    assert call.tool_name == "run_sql"
    assert call.output["data"] == truth.data
    assert answer.output == f"The query returned 1 rows: total = {truth.data[0][0]}."
    # Writes and the server's own tables are refused by the boundary, answered in the result.
    for sql in ("DELETE FROM samples", "SELECT * FROM api_keys"):
        refused = await client.agent.run(f"run `{sql}`")
        assert "error" in refused.tool_calls[0].output
    assert (await client.datasets.query("SELECT count(*) FROM samples")).data == [[SAMPLES]]


async def test_a_long_result_is_shown_in_part_and_says_so(client: AsyncLabric) -> None:
    answer = await client.agent.run("`SELECT name FROM samples ORDER BY name`")
    output = answer.tool_calls[0].output
    assert output["row_count"] == SAMPLES
    assert len(output["data"]) == SAMPLES  # fewer than the cap of 50 rows: all of them
    many = await client.agent.run(
        "`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 120) "
        "SELECT i FROM n`"
    )
    output = many.tool_calls[0].output
    assert (output["row_count"], len(output["data"]), output["truncated"]) == (120, 50, True)
    assert "first 50" in many.output


async def test_tables_files_and_a_jobs_last_run(client: AsyncLabric) -> None:
    async with client.jobs.track(job_name="nightly-parse") as execution:
        await client.files.upload(
            b"a,b\n1,2\n", name="plates/p1.csv", job_execution_id=execution.job_execution_id
        )
    tables = await client.agent.run("Which tables are there?")
    names = [t["name"] for t in tables.tool_calls[0].output]
    assert names[0] == "samples"
    assert "core_experiment" in names
    files = await client.agent.run("show me the recent files")
    assert [f["path"] for f in files.tool_calls[0].output] == ["plates/p1.csv"]
    job = await client.agent.run("When did nightly-parse last run?")
    (call,) = job.tool_calls
    assert call.tool_name == "job_last_run"
    assert call.output["last_run"]["execution_id"] == execution.job_execution_id
    assert call.output["last_run"]["status"] == "completed"


async def test_an_unanswerable_prompt_says_what_the_agent_can_do(
    client: AsyncLabric, reader: AsyncLabric
) -> None:
    answer = await client.agent.run("What is the weather in Lisbon?")
    assert answer.tool_calls == []
    assert answer.output.startswith("I cannot answer that.")
    assert "backticks" in answer.output
    assert "send a notification" in answer.output
    read_only = await reader.agent.run("What is the weather in Lisbon?")
    assert "needs a key with the write scope" in read_only.output


async def test_the_write_tool_runs_with_a_write_key_and_is_refused_to_a_read_key(
    client: AsyncLabric, reader: AsyncLabric
) -> None:
    refused = await collect(reader, 'notify "Plate 7 read"')
    result = next(e for e in refused if isinstance(e, ToolResult))
    assert result.tool_name == "send_notification"
    assert "refused" in result.output["error"]
    assert "'write' scope" in result.output["error"]
    assert isinstance(refused[-1], RunResult)
    assert (await client.notifications.list().to_list()) == []
    sent = await client.agent.run('notify "Plate 7 read"')
    assert sent.tool_calls[0].output["status"] == "delivered"
    (inbox,) = await client.notifications.list().to_list()
    assert inbox.title == "Plate 7 read"
    assert inbox.id == sent.tool_calls[0].output["id"]


async def test_save_stores_a_chat_that_a_later_run_continues(client: AsyncLabric) -> None:
    first = await client.agent.run("Describe samples", save=True)
    assert first.chat_id
    # A follow-up without the table's name uses the one the chat talked about.
    follow = await client.agent.run("How many rows does it have?", chat_id=first.chat_id)
    assert follow.chat_id == first.chat_id
    assert follow.tool_calls[0].output == {"table": "samples", "rows": SAMPLES}
    unsaved = await client.agent.run("How many rows does it have?")
    assert unsaved.tool_calls == []
    assert unsaved.chat_id is None
    streamed = (await collect(client, "count its rows", chat_id=first.chat_id))[-1].result
    assert streamed.chat_id == first.chat_id


async def test_an_unknown_chat_is_404_before_anything_runs(
    client: AsyncLabric, server: LocalServer
) -> None:
    with pytest.raises(NotFoundError, match="No agent chat"):
        await client.agent.run('notify "x"', chat_id="no-such-chat")
    with pytest.raises(NotFoundError):
        await collect(client, 'notify "x"', chat_id="no-such-chat")
    assert await client.notifications.list().to_list() == []
    other = server.create_key(["read", "write"], org="Other Org")
    async with AsyncLabric(other, base_url=server.base_url, max_retries=0) as outsider:
        mine = await client.agent.run("list tables", save=True)
        with pytest.raises(NotFoundError):
            await outsider.agent.run("list tables", chat_id=mine.chat_id)


async def test_a_failed_save_still_answers_with_a_null_chat_id(
    client: AsyncLabric, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: Any, **_kwargs: Any) -> bool:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(store, "save_turn", broken)
    answer = await client.agent.run("How many rows does samples have?", save=True)
    assert answer.chat_id is None
    assert answer.tool_calls[0].output["rows"] == SAMPLES
    streamed = (await collect(client, "How many rows does samples have?", save=True))[-1]
    assert streamed.result.chat_id is None
    assert streamed.result.output == answer.output


async def test_bad_requests_are_422(client: AsyncLabric, server: LocalServer) -> None:
    with pytest.raises(UnprocessableEntityError):
        await client.agent.run("   ")
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{server.base_url}/v1/agent/runs",
            json={"prompt": "x", "stream": "yes"},
            headers={"Authorization": f"Bearer {server.admin_key}"},
        ) as resp,
    ):
        assert resp.status == 422
        assert (await resp.json())["detail"][0]["loc"] == ["body", "stream"]


async def test_the_body_flag_not_accept_picks_the_mode(server: LocalServer) -> None:
    auth = {"Authorization": f"Bearer {server.admin_key}"}
    url = f"{server.base_url}/v1/agent/runs"
    async with aiohttp.ClientSession() as session:
        async with session.post(
            url, json={"prompt": "list tables", "stream": True}, headers={**auth, "Accept": "*/*"}
        ) as resp:
            assert resp.content_type == "text/event-stream"
            body = await resp.text()
        assert body.startswith(": labric agent stream\n\n")
        assert body.endswith("\n\n")
        assert '"type":"result"' in body.splitlines()[-2]
        async with session.post(
            url, json={"prompt": "list tables"}, headers={**auth, "Accept": "text/event-stream"}
        ) as resp:
            assert resp.content_type == "application/json"
            assert (await resp.json())["model"] == "labric-local-agent"


async def test_a_quiet_tool_gets_keepalive_comments(
    client: AsyncLabric, server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a tool works, the stream sends comments; the run then ends as usual."""
    release = asyncio.Event()
    real = tools.TOOLS["list_tables"]

    async def slow(ctx: tools.ToolContext, args: Any) -> Any:
        await release.wait()
        return await real.run(ctx, args)

    monkeypatch.setitem(tools.TOOLS, "list_tables", attrs.evolve(real, run=slow))
    monkeypatch.setattr(routes, "KEEPALIVE_SECONDS", 0.01)
    decoder = SSEDecoder()
    events: list[Any] = []
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{server.base_url}/v1/agent/runs",
            json={"prompt": "list tables", "stream": True},
            headers={"Authorization": f"Bearer {server.admin_key}"},
        ) as resp,
    ):
        async for chunk in resp.content.iter_any():
            events += [json.loads(e.data)["type"] for e in decoder.feed(chunk)]
            if decoder.comments >= 3:  # the opening comment, then keep-alives
                release.set()
    assert release.is_set()
    assert events == ["reasoning_delta", "tool_call", "tool_result", "text_delta", "result"]


def test_a_long_event_is_framed_over_short_lines() -> None:
    """An event whose JSON is long goes out over several ``data:`` lines, each short, and reads
    back as the same JSON."""
    event = {
        "type": "tool_result",
        "tool_call_id": "call_1",
        "tool_name": "run_sql",
        "output": {"columns": ["v"], "data": [[f"value {i} " * 20] for i in range(2000)]},
    }
    framed = routes._frame(event)
    lines = framed.split(b"\n")
    assert len(lines) > 2000
    assert max(len(line) for line in lines) < 1024
    decoder = SSEDecoder()
    (parsed,) = decoder.feed(framed)
    assert json.loads(parsed.data) == event
    short = routes._frame({"type": "text_delta", "delta": "hi"})
    assert short == b'data: {"type":"text_delta","delta":"hi"}\n\n'
