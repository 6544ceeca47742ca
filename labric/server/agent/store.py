"""Saved agent chats: one row per chat, its turns in order.

Functions run on the database thread inside the caller's transaction (``conn`` first), like
:mod:`labric.server.core.records`. A turn is the prompt and the answer of one run, with the
context the agent carries to the next turn (the table it last talked about).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import attrs

__all__ = ["Turn", "chat_exists", "save_turn", "turns"]


@attrs.frozen(kw_only=True)
class Turn:
    """One saved run of a chat."""

    prompt: str
    output: str
    tool_calls: list[dict[str, Any]]
    context: dict[str, Any]
    created_at: str


def chat_exists(conn: sqlite3.Connection, org_id: str, chat_id: str) -> bool:
    """Whether the organisation has the chat ``chat_id``."""
    row = conn.execute(
        "SELECT 1 FROM agent_chats WHERE id = ? AND org_id = ?", (chat_id, org_id)
    ).fetchone()
    return row is not None


def turns(conn: sqlite3.Connection, org_id: str, chat_id: str, *, last: int = 20) -> list[Turn]:
    """The chat's last ``last`` turns, oldest first (empty when the chat is not the org's)."""
    rows = conn.execute(
        "SELECT t.prompt, t.output, t.tool_calls, t.context, t.created_at "
        "FROM agent_turns t JOIN agent_chats c ON c.id = t.chat_id "
        "WHERE t.chat_id = ? AND c.org_id = ? ORDER BY t.seq DESC LIMIT ?",
        (chat_id, org_id, last),
    ).fetchall()
    return [
        Turn(
            prompt=row["prompt"],
            output=row["output"],
            tool_calls=json.loads(row["tool_calls"]),
            context=json.loads(row["context"]),
            created_at=row["created_at"],
        )
        for row in reversed(rows)
    ]


def save_turn(
    conn: sqlite3.Connection,
    org_id: str,
    chat_id: str,
    *,
    new: bool,
    api_key_id: str,
    prompt: str,
    output: str,
    tool_calls: list[dict[str, Any]],
    context: dict[str, Any],
    now: str,
) -> bool:
    """Store a turn: in a new chat ``chat_id`` (``new``), else at the end of that chat.

    Returns:
        Whether it was stored (``False``: the chat to continue is gone).
    """
    if new:
        conn.execute(
            "INSERT INTO agent_chats (id, org_id, api_key_id, title, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (chat_id, org_id, api_key_id, prompt[:200], now, now),
        )
    else:
        cur = conn.execute(
            "UPDATE agent_chats SET updated_at = ? WHERE id = ? AND org_id = ?",
            (now, chat_id, org_id),
        )
        if cur.rowcount == 0:
            return False
    conn.execute(
        "INSERT INTO agent_turns (chat_id, prompt, output, tool_calls, context, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (chat_id, prompt, output, json.dumps(tool_calls), json.dumps(context), now),
    )
    return True
