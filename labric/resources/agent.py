"""``client.agent``: ask the analysis agent about the organisation's data, whole or streamed."""

from __future__ import annotations

import json
import logging
from typing import Any

import attrs

from labric._core.converter import structure
from labric._core.eventstream import AsyncEventStream
from labric._core.sse import ServerSentEvent
from labric.errors import APIResponseValidationError, EventStreamError
from labric.models.agent import (
    AgentRunEvent,
    AgentRunResponse,
    ReasoningDelta,
    RunError,
    RunResult,
    TextDelta,
    ToolCall,
    ToolResult,
)
from labric.resources._base import AsyncResource

__all__ = ["AsyncAgent"]

logger = logging.getLogger("labric")

_RUNS = "/v1/agent/runs"
_EVENTS: dict[str, type[Any]] = {
    cls.type: cls for cls in (TextDelta, ReasoningDelta, ToolCall, ToolResult, RunResult, RunError)
}


def _payload(
    prompt: str, model: str | None, chat_id: str | None, save: bool | None, stream: bool
) -> dict[str, Any]:
    body: dict[str, Any] = {"prompt": prompt, "stream": stream}
    if model is not None:
        body["model"] = model
    if chat_id is not None:
        body["chat_id"] = chat_id
    if save is not None:
        body["save"] = save
    return body


def _decode_event(raw: ServerSentEvent) -> AgentRunEvent | None:
    """One event's JSON ``data`` as its typed event; ``None`` (logged) for data that is not JSON
    or of a ``type`` this release does not know, as the official client skips them."""
    try:
        data = json.loads(raw.data)
    except ValueError:
        logger.warning("Skipping an agent event whose data is not JSON: %.60r", raw.data)
        return None
    kind = data.get("type") if isinstance(data, dict) else None
    cls = _EVENTS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        logger.warning("Skipping an agent event of unknown type %.60r", kind)
        return None
    # The hosted AgentRunEvent may send every field, null where unused: keep the class's own.
    own = attrs.fields_dict(cls)
    fields = {k: v for k, v in data.items() if k != "type" and (v is not None or k in own)}
    try:
        event: AgentRunEvent = structure(fields, cls, what=f"a {kind} event")
    except APIResponseValidationError as exc:
        # A known event that does not fit (a result without its answer) is not skipped: losing
        # the answer silently would be worse than saying so.
        raise EventStreamError(exc.message) from exc
    return event


def _is_terminal(event: AgentRunEvent) -> bool:
    return event.terminal


class AsyncAgent(AsyncResource):
    """The analysis agent: it answers questions about the organisation's data by calling tools
    (listing and describing tables, counting rows, read-only SQL, recent files, job runs).

    Agent runs need the ``read`` scope; tools that change data (such as sending a notification)
    are offered only to a key that also holds ``write``.
    """

    async def run(
        self,
        prompt: str,
        *,
        model: str | None = None,
        chat_id: str | None = None,
        save: bool | None = None,
    ) -> AgentRunResponse:
        """Run the agent and return its whole answer.

        Args:
            prompt: The question or instruction.
            model: The model to use (the server's default when unset).
            chat_id: Continue this saved chat: its context carries over, and the run is added
                to it as its next turn unless ``save`` is ``False``.
            save: Store the run as a new chat (or, with ``chat_id``, as that chat's next turn);
                the answer's ``chat_id`` names it. If saving fails the answer still comes back,
                with ``chat_id`` ``None``.

        Returns:
            The answer, the tools called with their inputs and outputs, and the usage.

        Raises:
            NotFoundError: ``chat_id`` names no chat of the organisation.
            UnprocessableEntityError: the prompt is empty or too long.

        Example::

            answer = await client.agent.run("How many rows does the samples table have?")
            print(answer.output)
        """
        payload = _payload(prompt, model, chat_id, save, stream=False)
        response = await self._transport.request("POST", _RUNS, json=payload)
        return self._parse(response, AgentRunResponse)

    def stream(
        self,
        prompt: str,
        *,
        model: str | None = None,
        chat_id: str | None = None,
        save: bool | None = None,
    ) -> AsyncEventStream[AgentRunEvent]:
        """Run the agent and yield its events as they happen.

        The events are :class:`~labric.models.TextDelta`, :class:`~labric.models.ReasoningDelta`,
        :class:`~labric.models.ToolCall` and :class:`~labric.models.ToolResult`, then one
        terminal :class:`~labric.models.RunResult` (the whole answer, as :meth:`run` returns
        it) or :class:`~labric.models.RunError`. Events of a type this release does not know,
        and events whose data is not JSON, are skipped with a logged warning.

        The request is sent when the first event is asked for, and only once: a stream is never
        retried. Use it with ``async with`` so the connection is released when the block is
        left, also after a ``break``.

        Args:
            prompt: The question or instruction.
            model: The model to use (the server's default when unset).
            chat_id: Continue this saved chat (as in :meth:`run`).
            save: Store the run as a chat; the :class:`~labric.models.RunResult` names it.

        Returns:
            An async iterator of the run's events.

        Raises:
            StreamInterruptedError: the stream ended before its terminal event.
            EventStreamError: the answer is not a usable event stream.
            NotFoundError: ``chat_id`` names no chat of the organisation.

        Example::

            async with client.agent.stream("Count the rows of samples") as events:
                async for event in events:
                    if isinstance(event, TextDelta):
                        print(event.delta, end="")
        """
        payload = _payload(prompt, model, chat_id, save, stream=True)
        transport = self._transport
        return AsyncEventStream(
            lambda: transport.api_stream(
                "POST", _RUNS, json=payload, headers={"Accept": "text/event-stream"}
            ),
            _decode_event,
            _is_terminal,
            method="POST",
            path=transport.url(_RUNS),
            max_event=transport.config.max_response_bytes,
        )
