"""Models of the agent resource: a run's answer (hosted ``AgentRunResponse``) and the typed events
of a streamed run (the hosted ``AgentRunEvent``, one class per ``type``).

A streamed run yields, in order, any number of :class:`TextDelta`, :class:`ReasoningDelta`,
:class:`ToolCall` and :class:`ToolResult` events, then exactly one terminal event:
:class:`RunResult` (the whole answer, as :meth:`~labric.resources.agent.AsyncAgent.run` returns
it) or :class:`RunError`. Each event class names its wire ``type`` in a class constant.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

from labric.models._base import bounded_repr

__all__ = [
    "AgentRunEvent",
    "AgentRunResponse",
    "AgentRunUsage",
    "AgentToolCall",
    "ReasoningDelta",
    "RunError",
    "RunResult",
    "TextDelta",
    "ToolCall",
    "ToolResult",
]


@attrs.frozen(kw_only=True)
class AgentRunUsage:
    """Tokens a run used (``None`` where the server does not count them)."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None


@attrs.frozen(kw_only=True)
class AgentToolCall:
    """One tool the agent called during a run, with what it was given and what it returned."""

    __repr__ = bounded_repr

    tool_call_id: str
    tool_name: str
    input: Any = None
    output: Any = None


@attrs.frozen(kw_only=True)
class AgentRunResponse:
    """A run's answer.

    Attributes:
        output: The final answer, as text.
        model: The model that answered.
        tool_calls: The tools called, in order.
        usage: Tokens used.
        chat_id: The saved chat (with ``save=True``, or the one continued); ``None`` when the run
            was not saved, or saving it failed (the answer is still complete).
    """

    __repr__ = bounded_repr

    output: str
    model: str
    tool_calls: list[AgentToolCall]
    usage: AgentRunUsage
    chat_id: str | None = None


@attrs.frozen(kw_only=True)
class TextDelta:
    """The next piece of the answer's text."""

    type: ClassVar[str] = "text_delta"
    terminal: ClassVar[bool] = False

    delta: str


@attrs.frozen(kw_only=True)
class ReasoningDelta:
    """The next piece of the agent's reasoning (not part of the answer)."""

    type: ClassVar[str] = "reasoning_delta"
    terminal: ClassVar[bool] = False

    delta: str


@attrs.frozen(kw_only=True)
class ToolCall:
    """The agent calls a tool; its :class:`ToolResult` carries the same ``tool_call_id``."""

    __repr__ = bounded_repr

    type: ClassVar[str] = "tool_call"
    terminal: ClassVar[bool] = False

    tool_call_id: str
    tool_name: str
    input: Any = None


@attrs.frozen(kw_only=True)
class ToolResult:
    """What a tool returned (or, for a tool the key may not use, why it was refused)."""

    __repr__ = bounded_repr

    type: ClassVar[str] = "tool_result"
    terminal: ClassVar[bool] = False

    tool_call_id: str
    tool_name: str
    output: Any = None


@attrs.frozen(kw_only=True)
class RunResult:
    """The run is done (terminal): the whole answer (the wire ``type`` ``result``)."""

    type: ClassVar[str] = "result"
    terminal: ClassVar[bool] = True

    result: AgentRunResponse


@attrs.frozen(kw_only=True)
class RunError:
    """The run failed (terminal): what went wrong (the wire ``type`` ``error``)."""

    type: ClassVar[str] = "error"
    terminal: ClassVar[bool] = True

    error: str


#: One event of a streamed run.
AgentRunEvent = TextDelta | ReasoningDelta | ToolCall | ToolResult | RunResult | RunError
