"""The local agent: a small deterministic planner that answers questions about the
organisation's data by really calling its tools.

The local server cannot host a language model. Instead, :func:`plan` reads the prompt for what
it can do, in this order, and each match becomes one tool call:

* SQL in backticks (```SELECT ...```) -> ``run_sql`` with that query;
* "notify", "notification" or "alert" -> ``send_notification``, titled with the text in
  quotes, else after "saying" or a colon, else the prompt (refused, in the stream, to a key
  without ``write``);
* "tables" (with "list", "which", "what" or "all" when a table is also named) -> ``list_tables``;
* "describe", "columns" or "schema" with a table named -> ``describe_table``;
* "how many", "count" or "rows" with a table named -> ``count_rows``;
* "files" -> ``recent_files``;
* a job named with "run", "execution" or "job" -> ``job_last_run``.

A table is named when one of the organisation's table names appears in the prompt as a word
(``core_experiment`` also as ``experiment``); a follow-up in a saved chat ("how many rows does
it have?") uses the table the chat last talked about. A prompt that matches nothing is answered
with what the agent can do.

:func:`run` yields the run's events in the hosted order: a reasoning delta with the plan, then
for each step a ``tool_call``, its ``tool_result`` and the text it contributes (as text deltas),
and finally the ``result`` with the whole answer. Tokens are counted as whitespace-separated
words (there is no tokenizer to count with).
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator
from typing import Any

import attrs

from labric.server.agent.tools import MAX_SQL_ROWS, TOOLS, ToolContext
from labric.server.jobs import store as jobs_store

__all__ = ["MODEL", "RunOutcome", "Step", "plan", "run"]

#: The model name every local answer carries (whatever model was asked for).
MODEL = "labric-local-agent"

_SQL = re.compile(r"`{1,3}([^`]+)`{1,3}")
_QUOTED = re.compile(r"[\"“]([^\"”]{1,255})[\"”]")
_WORD = re.compile(r"[a-z0-9_]+")


@attrs.frozen(kw_only=True)
class Step:
    """One planned tool call."""

    tool: str
    input: dict[str, Any]


@attrs.define
class RunOutcome:
    """What a run produced, filled in as its events go out."""

    output: str = ""
    tool_calls: list[dict[str, Any]] = attrs.field(factory=list)
    context: dict[str, Any] = attrs.field(factory=dict)


def _has(words: set[str], *wanted: str) -> bool:
    return any(w in words for w in wanted)


def _notification_title(prompt: str) -> str | None:
    quoted = _QUOTED.search(prompt)
    if quoted:
        return quoted.group(1).strip() or None
    for marker in (" saying ", ":"):
        _, found, rest = prompt.partition(marker)
        if found and rest.strip():
            return rest.strip()[:255]
    return None


def _tables_named(text: str, table_names: list[str]) -> list[str]:
    """Table names the text mentions as words, in the order they appear."""
    words = _WORD.findall(text.lower())
    found: list[str] = []
    for word in words:
        for name in table_names:
            if name not in found and word in (name, name.removeprefix("core_")):
                found.append(name)
    return found


def plan(
    prompt: str,
    *,
    table_names: list[str],
    jobs: dict[str, str],
    context: dict[str, Any],
) -> list[Step]:
    """The tool calls a prompt asks for (see the module docstring); empty when none.

    Args:
        prompt: The prompt.
        table_names: The organisation's tables (SQL names).
        jobs: The organisation's job names (lower case) -> ids.
        context: What the chat carried from its last turn (``{"table": ...}``).
    """
    steps: list[Step] = []
    sql = [m.group(1).strip() for m in _SQL.finditer(prompt) if m.group(1).strip()]
    rest = _SQL.sub(" ", prompt)
    lowered = rest.lower()
    words = set(_WORD.findall(lowered))
    steps += [Step(tool="run_sql", input={"query": q}) for q in sql]
    if _has(words, "notify", "notification", "alert"):
        title = _notification_title(rest) or " ".join(rest.split())[:255]
        steps.append(Step(tool="send_notification", input={"title": title}))
    named = _tables_named(rest, table_names)
    if not named and context.get("table") in table_names and _has(words, "it", "its", "that"):
        named = [context["table"]]
    if "tables" in words and (not named or _has(words, "list", "which", "what", "all")):
        steps.append(Step(tool="list_tables", input={}))
    if _has(words, "describe", "columns", "column", "schema") and named:
        steps += [Step(tool="describe_table", input={"table": t}) for t in named]
    if (_has(words, "count", "rows", "many") or "how many" in lowered) and named:
        steps += [Step(tool="count_rows", input={"table": t}) for t in named]
    if _has(words, "file", "files", "uploads"):
        steps.append(Step(tool="recent_files", input={"limit": 10}))
    if _has(words, "job", "run", "runs", "execution", "executions", "ran"):
        for name, job_id in sorted(jobs.items(), key=lambda kv: -len(kv[0])):
            if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", lowered):
                steps.append(Step(tool="job_last_run", input={"job": name, "job_id": job_id}))
                break
    return steps


def capabilities(can_write: bool) -> str:
    """What the agent can do, in a sentence or two."""
    text = (
        "I am the local server's agent: I answer from the organisation's own data by calling "
        "tools. I can list the tables, describe a table, count a table's rows, run a read-only "
        "SQL query you put in backticks (`SELECT ...`), list recent files and show a job's last "
        "run"
    )
    if can_write:
        return text + ', and send a notification ("notify: ...").'
    return text + "; sending notifications needs a key with the write scope."


def _describe(step: Step, output: Any) -> str:
    """One step's contribution to the answer."""
    if isinstance(output, dict) and "error" in output:
        return f"{step.tool} failed: {output['error']}"
    if step.tool == "list_tables":
        names = [t["name"] for t in output]
        own = [t["name"] for t in output if not t["platform"]]
        return (
            f"There are {len(names)} tables ({len(own)} of the organisation's own): "
            + ", ".join(names)
            + "."
        )
    if step.tool == "describe_table":
        cols = ", ".join(f"{c['name']} ({c['data_type']})" for c in output["columns"])
        return f"Table {output['name']} has {len(output['columns'])} columns: {cols}."
    if step.tool == "count_rows":
        return f"Table {output['table']} has {output['rows']} rows."
    if step.tool == "run_sql":
        shown = len(output["data"])
        head = f"The query returned {output['row_count']} rows"
        if output["truncated"]:
            head += f" (the first {MAX_SQL_ROWS} are shown in the tool result)"
        if shown == 1 and len(output["columns"]) == 1:
            return f"{head}: {output['columns'][0]} = {output['data'][0][0]}."
        return f"{head}, with columns {', '.join(output['columns'])}."
    if step.tool == "recent_files":
        if not output:
            return "There are no files yet."
        paths = ", ".join(f["path"] for f in output)
        return f"The {len(output)} most recent files: {paths}."
    if step.tool == "job_last_run":
        last = output["last_run"]
        if last is None:
            return f"Job {output['job']} has not run yet."
        return (
            f"Job {output['job']} last ran as {last['execution_id']}: {last['status']} "
            f"(created {last['created_at']})."
        )
    if step.tool == "send_notification":
        return f"Notification {output['title']!r}: {output['status']}."
    return f"{step.tool}: done."


async def _known_jobs(ctx: ToolContext) -> dict[str, str]:
    org_id = ctx.caller.org_id
    rows = await ctx.state.db.run(
        lambda conn: jobs_store.job_list(
            conn, org_id, name=None, include_archived=False, after=None, limit=1000
        )
    )
    return {job.name.lower(): job.id for job in rows}


def _words(text: str) -> int:
    return len(text.split())


async def run(
    ctx: ToolContext, prompt: str, *, context: dict[str, Any], outcome: RunOutcome
) -> AsyncGenerator[dict[str, Any], None]:
    """Plan the prompt, call the tools, and yield the run's events (the JSON of each) up to,
    not including, the terminal ``result``; ``outcome`` holds the answer when it is done."""
    org = await ctx.datasets.org(ctx.caller.org_id)
    table_names = [t.name for t in org.catalog.ordered()]
    steps = plan(prompt, table_names=table_names, jobs=await _known_jobs(ctx), context=context)
    can_write = ctx.caller.allows("write")
    outcome.context = dict(context)
    if not steps:
        yield {"type": "reasoning_delta", "delta": "No tool matches this request."}
        text = "I cannot answer that. " + capabilities(can_write)
        outcome.output = text
        yield {"type": "text_delta", "delta": text}
        return
    yield {
        "type": "reasoning_delta",
        "delta": "Plan: " + ", ".join(s.tool for s in steps) + ".",
    }
    parts: list[str] = []
    for number, step in enumerate(steps, 1):
        call_id = f"call_{number}"
        tool = TOOLS[step.tool]
        visible = {k: v for k, v in step.input.items() if k != "job_id"}
        yield {
            "type": "tool_call",
            "tool_call_id": call_id,
            "tool_name": tool.name,
            "input": visible,
        }
        if tool.scope != "read" and not ctx.caller.allows(tool.scope):
            output: Any = {
                "error": f"refused: {tool.name} changes data and needs a key with the "
                f"'{tool.scope}' scope; this key lacks it"
            }
        else:
            output = await tool.run(ctx, step.input)
        yield {
            "type": "tool_result",
            "tool_call_id": call_id,
            "tool_name": tool.name,
            "output": output,
        }
        outcome.tool_calls.append(
            {"tool_call_id": call_id, "tool_name": tool.name, "input": visible, "output": output}
        )
        if "table" in step.input:
            outcome.context["table"] = step.input["table"]
        text = _describe(step, output)
        delta = text if not parts else " " + text
        parts.append(delta)
        yield {"type": "text_delta", "delta": delta}
    outcome.output = "".join(parts)


def usage(prompt: str, output: str) -> dict[str, int]:
    """The run's usage, in words."""
    spent = {"input_tokens": _words(prompt), "output_tokens": _words(output)}
    return {**spent, "total_tokens": spent["input_tokens"] + spent["output_tokens"]}
