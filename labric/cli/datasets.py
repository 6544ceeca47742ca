"""``labric datasets ls|query|rows``: an organisation's tables, SQL over them, their rows.

``--json`` shapes (new keys may be added):

``datasets ls``
    an array of table objects with the API's fields: ``name``, ``description``,
    ``semantic_category``, ``id`` and ``columns`` (each ``name``, ``sql_column_name``,
    ``data_type``, ``is_primary_key``, ``is_foreign_key``, ``is_nullable``, ``is_unique``,
    ``foreign_key_table_name``, ``description``, ``id``).
``datasets query``
    ``{"columns": [name, ...], "data": [[value, ...], ...]}``, as the API answers.
``datasets rows``
    an array of row objects keyed by column name, in insertion order.

Values given on the command line (``--param``, ``--where col=value``) are read as JSON when they
parse (``3``, ``2.5``, ``true``, ``null``, ``"007"``) and as text otherwise.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from labric.cli._common import (
    EXIT_USAGE,
    CLIError,
    add_common,
    emit_json,
    parse_value,
    positive_int,
    print_table,
    run_with_client,
    to_json,
)
from labric.models.datasets import QueryResult, TableInfo

if TYPE_CHECKING:
    from labric._client import AsyncLabric

__all__ = ["add_datasets"]


def add_datasets(commands: Any) -> None:
    """Register ``labric datasets`` and its subcommands."""
    parser = commands.add_parser(
        "datasets",
        help="list tables, query them with SQL, read their rows",
        description="Datasets: the organisation's tables.",
    )
    sub = parser.add_subparsers(dest="datasets_command", metavar="SUBCOMMAND", required=True)

    ls = sub.add_parser("ls", help="list tables", description="List tables.")
    add_common(ls, json_help="print an array of table objects")
    ls.set_defaults(func=_ls)

    query = sub.add_parser(
        "query",
        help="run one read-only SQL statement",
        description="Run one SELECT over the organisation's tables; use %s placeholders and "
        "--param for values. ",
    )
    query.add_argument("sql", metavar="SQL")
    query.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="VALUE",
        help="a value for the next %%s (repeatable; JSON when it parses, else text)",
    )
    add_common(query, json_help='print {"columns": [...], "data": [[...], ...]}')
    query.set_defaults(func=_query)

    rows = sub.add_parser("rows", help="read a table's rows", description="Read a table's rows.")
    rows.add_argument("table", metavar="TABLE")
    rows.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="COLUMN=VALUE",
        help="only rows whose column equals the value (repeatable; sample__name follows a "
        "foreign key)",
    )
    rows.add_argument("--limit", type=positive_int, metavar="N", help="read at most N rows")
    add_common(rows, json_help="print an array of row objects")
    rows.set_defaults(func=_rows)


def _ls(args: argparse.Namespace) -> int:
    async def work(client: AsyncLabric) -> list[TableInfo]:
        return await client.datasets.list()

    tables = run_with_client(work)
    if args.json:
        emit_json(to_json(tables))
        return 0
    print_table(
        ["NAME", "CATEGORY", "COLUMNS", "DESCRIPTION"],
        ([t.name, t.semantic_category, len(t.columns), t.description] for t in tables),
    )
    return 0


def _query(args: argparse.Namespace) -> int:
    params = [parse_value(p) for p in args.param]

    async def work(client: AsyncLabric) -> QueryResult:
        return await client.datasets.query(args.sql, params)

    result = run_with_client(work)
    if args.json:
        emit_json({"columns": result.columns, "data": result.data})
        return 0
    print_table(result.columns, result.data)
    return 0


def _filters(items: list[str]) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    for item in items:
        column, sep, value = item.partition("=")
        if not sep or not column:
            raise CLIError(f"--where takes COLUMN=VALUE, got {item!r}", code=EXIT_USAGE)
        filters[column] = parse_value(value)
    return filters


def _rows(args: argparse.Namespace) -> int:
    filters = _filters(args.where)

    async def work(client: AsyncLabric) -> list[dict[str, Any]]:
        pager = client.datasets.rows(args.table, filters=filters or None, limit=args.limit)
        return [row async for row in pager]

    rows = run_with_client(work)
    if args.json:
        emit_json(rows)
        return 0
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    print_table(columns, ([row.get(c) for c in columns] for row in rows))
    return 0
