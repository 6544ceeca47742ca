"""The agent family's wire shapes: a run's request, its answer and the events of a streamed run.

Component schemas are named after the SDK's models where they answer one (``tests/openapi``
compares their fields). ``AgentRunEvent`` is the hosted event shape: one object for every
``type``, each field present only where that type uses it.
"""

from __future__ import annotations

from labric.server.core.declare import (
    ANY,
    BOOLEAN,
    INTEGER,
    STRING,
    Family,
    array,
    nullable,
    obj,
    record,
    ref,
    request,
    string,
)

#: The longest prompt accepted, in characters.
MAX_PROMPT = 20_000
#: The longest model name and chat id accepted.
MAX_NAME = 255
#: The event types a streamed run sends (the hosted ``AgentRunEvent.type``).
EVENT_TYPES = ["text_delta", "reasoning_delta", "tool_call", "tool_result", "result", "error"]

SCHEMAS = {
    "AgentRunRequest": request(
        {
            "prompt": string(minLength=1, maxLength=MAX_PROMPT),
            "model": string(maxLength=MAX_NAME),
            "chat_id": string(maxLength=MAX_NAME),
            "save": BOOLEAN,
            "stream": BOOLEAN,
        },
        required=["prompt"],
        description="stream=true answers text/event-stream (the body flag, not Accept, "
        "picks the mode)",
    ),
    "AgentToolCall": record(
        {"tool_call_id": STRING, "tool_name": STRING, "input": ANY, "output": ANY},
    ),
    "AgentRunUsage": record(
        {
            "input_tokens": nullable(INTEGER),
            "output_tokens": nullable(INTEGER),
            "total_tokens": nullable(INTEGER),
        },
        description="Tokens, counted as whitespace-separated words by the local agent",
    ),
    "AgentRunResponse": record(
        {
            "output": STRING,
            "model": STRING,
            "tool_calls": array(ref("AgentToolCall")),
            "usage": ref("AgentRunUsage"),
            "chat_id": nullable(STRING),
        },
    ),
    "AgentRunEvent": obj(
        {
            "type": string(enum=EVENT_TYPES),
            "delta": STRING,
            "tool_call_id": STRING,
            "tool_name": STRING,
            "input": ANY,
            "output": ANY,
            "result": ref("AgentRunResponse"),
            "error": STRING,
        },
        required=["type"],
        additionalProperties=False,
        description="The JSON data of one server-sent event; the last is a result or an error",
    ),
}

AGENT = Family(
    tag="agent",
    description="The analysis agent: runs answered whole or streamed as server-sent events",
    schemas=SCHEMAS,
)
