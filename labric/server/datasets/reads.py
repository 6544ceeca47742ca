"""``tools/read``: rows of one table, filtered by equality, in insertion order, a page at a time.

Filters map a column to the value it must equal (``null`` matches null). A key of the form
``fk__field`` follows the foreign key ``fk`` to the referenced table and filters on its
``field``; chains (``sample__experiment__name``) follow several. The SQL is built from the
catalog, never from caller text: unknown names are refused before any SQL exists.

Rows come back as objects keyed by column ``name`` (a foreign key holds the referenced id), in
insertion order (``rowid``), which is also the pagination cursor.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

from labric.server.datasets.schema import Catalog, InvalidValue, TableDef, decoder, encoder, quote

__all__ = ["ReadError", "build_filters", "read_page"]


class ReadError(Exception):
    """A read names something that does not exist, or a filter value of the wrong type."""


def build_filters(
    catalog: Catalog, table: TableDef, filters: Mapping[str, Any]
) -> tuple[list[str], list[str], list[Any]]:
    """``(joins, conditions, params)`` for equality filters on ``table`` (aliased ``t0``).

    Raises:
        ReadError: an unknown column, a path through a column that is not a foreign key, or a
            value the column cannot hold.
    """
    joins: list[str] = []
    aliases: dict[tuple[str, ...], tuple[str, TableDef]] = {(): ("t0", table)}
    conditions: list[str] = []
    params: list[Any] = []
    for key, value in filters.items():
        parts = key.split("__")
        path: tuple[str, ...] = ()
        alias, current = aliases[()]
        for hop in parts[:-1]:
            column = current.column(hop)
            if column is None or column.foreign_key is None:
                raise ReadError(f"Filter {key!r}: {hop!r} is not a foreign key of {current.name}")
            path = (*path, hop)
            if path not in aliases:
                target = catalog.tables[column.foreign_key]
                new_alias = f"t{len(aliases)}"
                joins.append(
                    f"LEFT JOIN {quote(target.name)} {new_alias} ON {new_alias}."
                    f"{quote(target.key.sql_name)} = {alias}.{quote(column.sql_name)}"
                )
                aliases[path] = (new_alias, target)
            alias, current = aliases[path]
        column = current.column(parts[-1])
        if column is None:
            raise ReadError(f"Filter {key!r}: {current.name} has no column {parts[-1]!r}")
        if value is None:
            conditions.append(f"{alias}.{quote(column.sql_name)} IS NULL")
            continue
        data_type = (
            catalog.tables[column.foreign_key].key.data_type
            if column.foreign_key is not None
            else column.data_type
        )
        try:
            stored = encoder(data_type)(value)
        except InvalidValue as exc:
            raise ReadError(f"Filter {key!r}: {exc}") from None
        conditions.append(f"{alias}.{quote(column.sql_name)} = ?")
        params.append(stored)
    return joins, conditions, params


def read_page(
    conn: sqlite3.Connection,
    catalog: Catalog,
    table: TableDef,
    filters: Mapping[str, Any],
    *,
    after: int | None,
    limit: int,
) -> list[tuple[int, dict[str, Any]]]:
    """Up to ``limit`` matching rows after the rowid ``after``, in rowid order, each with its
    rowid (the position of the next read)."""
    joins, conditions, params = build_filters(catalog, table, filters)
    if after is not None:
        conditions.append("t0.rowid > ?")
        params.append(after)
    columns = ", ".join(f"t0.{quote(c.sql_name)}" for c in table.columns)
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    sql = (
        f"SELECT t0.rowid, {columns} FROM {quote(table.name)} t0 {' '.join(joins)}{where} "
        "ORDER BY t0.rowid LIMIT ?"
    )
    decode = decoder(table.columns)
    return [(int(row[0]), decode(row[1:])) for row in conn.execute(sql, [*params, limit])]
