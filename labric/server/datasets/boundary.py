"""The SQL boundary: read-only SQL over one organisation's tables, and nothing else.

``tools/query`` (and dashboards) run caller-written SQL. What that SQL can reach is enforced by the
database layer, never by reading the SQL text:

1. **A separate file per organisation.** An organisation's tables live in its own SQLite file
   (``datasets/<org_id>.sqlite3``). The server's own tables (API keys, files, executions) and
   other organisations' tables are in other files, which a query's connection never opens: naming
   them fails with "no such table".
2. **A read-only connection.** The file is opened with ``mode=ro`` (the OS-level open is
   read-only), ``PRAGMA query_only`` is on, and attaching other databases is disabled
   (``SQLITE_LIMIT_ATTACHED`` = 0).
3. **An authorizer.** Every statement is checked while it is compiled: only ``SELECT``, reads of
   the organisation's own tables and the platform tables, function calls and recursive CTEs are
   allowed. Writes, DDL, ``ATTACH``, ``PRAGMA``, transactions, and reads of the server's
   bookkeeping tables in that file (``_labric_*``) or of SQLite's internals (``sqlite_*``) are
   denied, so the statement fails before it runs.
4. **Limits.** A progress handler interrupts a statement that runs past the time limit; the
   result is capped in rows and in (estimated JSON) bytes, and a query over a cap fails with an
   error that says so rather than returning a silently truncated answer. String and blob values
   are capped by ``SQLITE_LIMIT_LENGTH``.

Parameters are positional ``%s`` placeholders, as on the hosted platform; ``%%`` is a literal
``%``. SQLite's own placeholders (``?``, ``?1``, ``:name``, ``@name``, ``$name``) are refused with
a clear message: the scan that finds them skips string literals, quoted identifiers and comments.

Everything here is synchronous and runs on a reader thread (see
:class:`labric.server.datasets.store.DatasetStore`); each query gets a fresh connection.
"""

from __future__ import annotations

import base64
import math
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

__all__ = [
    "QueryError",
    "QueryLimits",
    "QueryOutcome",
    "convert_placeholders",
    "open_readonly",
    "run_readonly",
]

#: Authorizer actions a query may perform (reads are checked table by table).
_ALLOWED_ACTIONS = frozenset({sqlite3.SQLITE_SELECT, sqlite3.SQLITE_FUNCTION})
_RECURSIVE = getattr(sqlite3, "SQLITE_RECURSIVE", 33)
_DENIED_FUNCTIONS = frozenset({"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"})
#: The longest string or blob a query may build (zeroblob(1e9) must not exhaust memory).
MAX_VALUE_LENGTH = 16 * 1024 * 1024


class QueryError(Exception):
    """A query was refused or failed; ``status`` is the HTTP status to answer with.

    Args:
        status: 400 for a bad query (syntax, unknown table, denied action, a limit).
        detail: What went wrong, for the caller.
    """

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@attrs.frozen(kw_only=True)
class QueryLimits:
    """How long a query may run and how large its result may be.

    Attributes:
        timeout: Seconds a statement may run before it is interrupted.
        max_rows: The most rows a result may have.
        max_bytes: The most bytes a result may take (estimated as JSON).
    """

    timeout: float = 5.0
    max_rows: int = 100_000
    max_bytes: int = 16 * 1024 * 1024


@attrs.frozen
class QueryOutcome:
    """A query's result: column names and row-major data (JSON-ready values)."""

    columns: list[str]
    data: list[list[Any]]


def convert_placeholders(sql: str) -> tuple[str, int]:
    """Turn positional ``%s`` placeholders into SQLite's ``?``; count them.

    Returns:
        The SQL for SQLite and the number of placeholders.

    Raises:
        QueryError: the SQL uses SQLite's own placeholders (named or numbered), or a ``%`` that
            is not ``%s`` or ``%%`` outside a literal.
    """
    out: list[str] = []
    count = 0
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in "'\"`[":
            close = "]" if ch == "[" else ch
            j = i + 1
            while j < n:
                if sql[j] == close:
                    if close != "]" and j + 1 < n and sql[j + 1] == close:
                        j += 2  # a doubled quote inside the literal
                        continue
                    break
                j += 1
            out.append(sql[i : j + 1])
            i = j + 1
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            j = n if j < 0 else j
            out.append(sql[i:j])
            i = j
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(sql[i:j])
            i = j
        elif ch == "%":
            nxt = sql[i + 1 : i + 2]
            if nxt == "s":
                out.append("?")
                count += 1
            elif nxt == "%":
                out.append("%")
            else:
                raise QueryError(
                    400, "Use %s for each parameter (and %% for a literal percent sign)"
                )
            i += 2
        elif ch == "?" or (
            ch in ":@$" and i + 1 < n and (sql[i + 1].isalnum() or sql[i + 1] == "_")
        ):
            raise QueryError(
                400,
                f"Named and numbered parameters ({ch}...) are not supported: use positional %s "
                "placeholders and pass the values in order in params",
            )
        else:
            out.append(ch)
            i += 1
    return "".join(out), count


def open_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection to an organisation's file (no authorizer: for the server's SQL)."""
    conn = sqlite3.connect(
        f"{path.resolve().as_uri()}?mode=ro",
        uri=True,
        isolation_level=None,
        check_same_thread=False,
    )
    conn.execute("PRAGMA query_only=ON")
    conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
    return conn


def _authorizer(
    action: int, arg1: str | None, arg2: str | None, db: str | None, _trigger: str | None
) -> int:
    if action == sqlite3.SQLITE_READ:
        table = (arg1 or "").lower()
        # db is None for CTEs and for count(*)'s read of a table; temp is never populated.
        if db not in (None, "main") or table.startswith(("_labric", "sqlite_")):
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_FUNCTION:
        return (
            sqlite3.SQLITE_DENY if (arg2 or "").lower() in _DENIED_FUNCTIONS else sqlite3.SQLITE_OK
        )
    if action in _ALLOWED_ACTIONS or action == _RECURSIVE:
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


def _json_value(value: Any) -> tuple[Any, int]:
    """A result value as JSON-ready data, and its estimated encoded size."""
    if value is None:
        return None, 4
    if isinstance(value, str):
        return value, len(value) + 2
    if isinstance(value, float) and not math.isfinite(value):
        return None, 4
    if isinstance(value, bytes):
        text = base64.b64encode(value).decode()
        return text, len(text) + 2
    return value, 12


def run_readonly(path: Path, sql: str, params: Sequence[Any], limits: QueryLimits) -> QueryOutcome:
    """Run one read-only statement on an organisation's file, under the boundary.

    Args:
        path: The organisation's dataset file.
        sql: One statement with ``%s`` placeholders.
        params: One value per placeholder (strings, numbers, booleans, null).
        limits: Time and size limits.

    Raises:
        QueryError: the statement was refused, failed, ran too long or returned too much.
    """
    converted, count = convert_placeholders(sql)
    if count != len(params):
        raise QueryError(
            400, f"The query has {count} %s placeholder(s) but {len(params)} parameter(s)"
        )
    values: list[Any] = []
    for value in params:
        if value is not None and not isinstance(value, str | int | float | bool):
            raise QueryError(400, "Parameters must be strings, numbers, booleans or null")
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            raise QueryError(400, "Integer parameters must fit in 64 bits (SQLite's integers)")
        values.append(value)
    conn = open_readonly(path)
    try:
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE_LENGTH)
        conn.set_authorizer(_authorizer)
        deadline = time.monotonic() + limits.timeout

        def over_time() -> int:
            return 1 if time.monotonic() > deadline else 0

        conn.set_progress_handler(over_time, 1000)
        try:
            cursor = conn.execute(converted, values)
            if cursor.description is None:
                raise QueryError(400, "Only SELECT statements are allowed")
            columns = [d[0] for d in cursor.description]
            data: list[list[Any]] = []
            size = 0
            while True:
                chunk = cursor.fetchmany(512)
                if not chunk:
                    break
                for row in chunk:
                    out = []
                    for value in row:
                        converted_value, nbytes = _json_value(value)
                        out.append(converted_value)
                        size += nbytes
                    data.append(out)
                if len(data) > limits.max_rows:
                    raise QueryError(
                        400,
                        f"The result has more than {limits.max_rows:,} rows, the most a query "
                        "may return: aggregate, filter or add LIMIT/OFFSET",
                    )
                if size > limits.max_bytes:
                    raise QueryError(
                        400,
                        f"The result is larger than {limits.max_bytes:,} bytes, the most a query "
                        "may return: select fewer columns or rows",
                    )
            return QueryOutcome(columns, data)
        except sqlite3.DatabaseError as exc:
            raise _query_error(exc, limits) from None
        except sqlite3.ProgrammingError as exc:
            raise QueryError(400, f"Invalid query: {exc}") from None
    finally:
        conn.close()


def _query_error(exc: sqlite3.Error, limits: QueryLimits) -> QueryError:
    message = str(exc)
    if message == "interrupted":
        return QueryError(
            400, f"The query ran longer than the {limits.timeout:g} s limit and was interrupted"
        )
    if "not authorized" in message or "prohibited" in message:
        return QueryError(
            400,
            "The query was refused: only SELECT statements reading your organisation's tables "
            f"are allowed ({message})",
        )
    if "readonly" in message or "read-only" in message:
        return QueryError(400, "Only SELECT statements are allowed: the query tried to write")
    if "too many attached" in message:
        return QueryError(400, "The query was refused: ATTACH is not allowed")
    return QueryError(400, f"Query failed: {message}")
