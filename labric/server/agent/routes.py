"""The agent API: one hosted route, answered whole (JSON) or streamed (server-sent events).

Routes::

    POST /v1/agent/runs    read    run the local agent; "stream": true answers text/event-stream

The body is the hosted ``AgentRunRequest``: ``prompt`` (required), ``model``, ``chat_id``,
``save`` and ``stream``. The body flag ``stream`` picks the mode, not the ``Accept`` header (the
official client sends ``Accept: */*`` for both). The run itself is :mod:`.engine`'s
deterministic agent over :mod:`.tools`; tools that change data run only for a key holding
``write`` (for any other key the call is answered, in its ``tool_result``, with why it was
refused, and the run goes on).

Chats
    ``save: true`` stores the run as a new chat and the answer names it in ``chat_id``.
    ``chat_id`` continues a saved chat of the organisation (404, before anything runs, when it
    names none): the agent gets the chat's context, and the turn is stored at its end unless
    ``save`` is ``false``. If storing fails the answer still comes back complete, with
    ``chat_id`` null.

The stream
    ``200 text/event-stream``, each event ``data: <AgentRunEvent JSON>`` followed by a blank line
    (long JSON is written over several ``data:`` lines, so no line nears the 1 MiB cap of SSE
    clients). It opens with a comment, sends a comment as a keep-alive whenever a tool is
    quiet for :data:`KEEPALIVE_SECONDS`, and ends with exactly one terminal event, ``result``
    (the whole ``AgentRunResponse``) or ``error``, after which the response is closed. Errors
    found before the stream starts (422, 404) are ordinary JSON answers. The stream's writes after
    the opening comment are paced by the fault injector, so an injected reset drops the stream
    after its headers and before its first event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from aiohttp import web

from labric.server.agent import engine, store, wire
from labric.server.agent.tools import ToolContext
from labric.server.core import records
from labric.server.core.auth import principal
from labric.server.core.declare import Body, Operation, Response, ref
from labric.server.core.faults import pace
from labric.server.core.http import Fields, HTTPError, json_response, read_json_object
from labric.server.core.routing import Router, Routes
from labric.server.core.state import STATE
from labric.server.datasets import DATASETS

__all__ = ["KEEPALIVE_SECONDS", "register"]

logger = logging.getLogger("labric.server")

ROUTES = Routes(wire.AGENT)

#: Seconds a stream may stay quiet before a keep-alive comment is sent (read when a stream
#: starts; well under the 60 s read timeout of the official client).
KEEPALIVE_SECONDS = 15.0
#: Events longer than this are written over several ``data:`` lines.
_ONE_LINE = 16 * 1024


def _read_run(body: dict[str, Any]) -> dict[str, Any]:
    f = Fields(body)
    run = {
        "prompt": f.string("prompt", required=True, max_length=wire.MAX_PROMPT),
        "model": f.string("model", max_length=wire.MAX_NAME),
        "chat_id": f.string("chat_id", max_length=wire.MAX_NAME),
    }
    for flag in ("save", "stream"):
        value = body.get(flag)
        if value is not None and not isinstance(value, bool):
            f.add([flag], "Input should be a valid boolean", "bool_type")
        run[flag] = value
    f.check()
    return run


def _frame(event: dict[str, Any]) -> bytes:
    """One event on the wire: ``data:`` lines and a blank line."""
    text = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
    if len(text) > _ONE_LINE:
        # Newlines between JSON tokens are whitespace: the client joins the lines with "\n".
        text = json.dumps(event, indent=1, ensure_ascii=False)
    return "".join(f"data: {line}\n" for line in text.split("\n")).encode() + b"\n"


class _Run:
    """One run of the agent for a request: its context, events and answer."""

    def __init__(self, request: web.Request, fields: dict[str, Any]) -> None:
        self.state = request.app[STATE]
        self.caller = principal(request)
        self.ctx = ToolContext(state=self.state, datasets=request.app[DATASETS], caller=self.caller)
        self.prompt: str = fields["prompt"]
        self.chat_id: str | None = fields["chat_id"]
        save = fields["save"]
        self.store_turn = save is True or (self.chat_id is not None and save is not False)
        self.outcome = engine.RunOutcome()
        self.context: dict[str, Any] = {}

    async def load_chat(self) -> None:
        """The context of the chat to continue; 404 when the organisation has no such chat."""
        if self.chat_id is None:
            return
        org_id, chat_id = self.caller.org_id, self.chat_id

        def load(conn: sqlite3.Connection) -> list[store.Turn] | None:
            if not store.chat_exists(conn, org_id, chat_id):
                return None
            return store.turns(conn, org_id, chat_id)

        turns = await self.state.db.run(load)
        if turns is None:
            raise HTTPError(404, f"No agent chat {chat_id!r} in this organisation")
        if turns:
            self.context = dict(turns[-1].context)

    def events(self) -> AsyncGenerator[dict[str, Any], None]:
        return engine.run(self.ctx, self.prompt, context=self.context, outcome=self.outcome)

    async def save(self) -> str | None:
        """Store the turn if asked; the chat's id, or ``None`` if not stored (or storing
        failed: the answer is complete without it)."""
        if not self.store_turn:
            return None
        chat_id = self.chat_id or records.new_id()
        new = self.chat_id is None
        outcome = self.outcome
        try:
            stored = await self.state.db.run(
                lambda conn: store.save_turn(
                    conn,
                    self.caller.org_id,
                    chat_id,
                    new=new,
                    api_key_id=self.caller.key_id,
                    prompt=self.prompt,
                    output=outcome.output,
                    tool_calls=outcome.tool_calls,
                    context=outcome.context,
                    now=self.state.now(),
                )
            )
        except (sqlite3.Error, OSError, ValueError):
            logger.exception("Could not save the agent chat; answering without a chat_id")
            return None
        return chat_id if stored else None

    def response(self, chat_id: str | None) -> dict[str, Any]:
        return {
            "output": self.outcome.output,
            "model": engine.MODEL,
            "tool_calls": self.outcome.tool_calls,
            "usage": engine.usage(self.prompt, self.outcome.output),
            "chat_id": chat_id,
        }


@ROUTES.route(
    Operation(
        method="POST",
        path="/v1/agent/runs",
        scope="read",
        summary="Run the agent on the organisation's data; stream=true streams its events",
        description="The local agent is deterministic: it answers by calling the "
        "organisation's tools (tables, row counts, read-only SQL in backticks, recent files, "
        "a job's last run; notifications with a write key). With stream=true the answer is "
        "text/event-stream: one AgentRunEvent JSON per event, ending with a result or error "
        "event.",
        body=Body(schema=ref("AgentRunRequest")),
        responses=(
            Response(schema=ref("AgentRunResponse")),
            Response(
                media_type="text/event-stream",
                description="The run's events (stream=true)",
                # One event of the stream (OpenAPI's reading of text/event-stream): its data
                # is an AgentRunEvent as JSON.
                schema={
                    "type": "object",
                    "required": ["data"],
                    "properties": {
                        "data": {
                            "type": "string",
                            "contentMediaType": "application/json",
                            "contentSchema": ref("AgentRunEvent"),
                        },
                        "event": {"type": "string"},
                        "id": {"type": "string"},
                        "retry": {"type": "integer", "minimum": 0},
                    },
                    "description": "One server-sent event; its data is an AgentRunEvent (JSON)",
                },
            ),
        ),
        errors={404: "chat_id names no chat of the organisation"},
        hosted=True,
    )
)
async def run_agent(request: web.Request) -> web.StreamResponse:
    """``POST /v1/agent/runs``: answer whole, or stream the events when ``stream`` is true."""
    fields = _read_run(await read_json_object(request))
    run = _Run(request, fields)
    await run.load_chat()
    if fields["stream"] is True:
        return await _stream(request, run)
    async for _event in run.events():
        pass
    return json_response(run.response(await run.save()))


class _Gone(Exception):
    """The client went away: a write to its connection failed."""


async def _stream(request: web.Request, run: _Run) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)

    async def send(chunk: bytes, *, paced: bool = True) -> None:
        try:
            if paced:  # an injected reset lands on the first paced write
                await pace(request, len(chunk), total=1)
            await response.write(chunk)
        except (ConnectionError, RuntimeError) as exc:  # RuntimeError: "transport closing"
            raise _Gone from exc

    events = run.events()
    ticks = _with_keepalives(events, KEEPALIVE_SECONDS)
    try:
        try:
            await send(b": labric agent stream\n\n", paced=False)
            async for event in ticks:
                await send(b": keep-alive\n\n" if event is None else _frame(event))
            final = {"type": "result", "result": run.response(await run.save())}
        except _Gone:
            return response
        except Exception as exc:
            logger.exception("The agent run failed")
            final = {"type": "error", "error": f"The run failed: {type(exc).__name__}"}
        with contextlib.suppress(_Gone):
            await send(_frame(final))
            await response.write_eof()
    finally:
        await ticks.aclose()
        await events.aclose()
    return response


async def _with_keepalives(
    events: AsyncIterator[dict[str, Any]], interval: float
) -> AsyncGenerator[dict[str, Any] | None, None]:
    """``events``, with ``None`` whenever one takes longer than ``interval`` seconds to come."""
    iterator = aiter(events)
    pending: asyncio.Future[dict[str, Any]] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(iterator))
            done, _ = await asyncio.wait({pending}, timeout=interval)
            if not done:
                yield None
                continue
            try:
                event = pending.result()
            except StopAsyncIteration:
                return
            pending = None
            yield event
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await pending


def register(router: Router) -> None:
    """Add the agent route."""
    router.add(ROUTES)
