"""Reading a table definition (``POST /v1/datasets``) into a :class:`TableDef`.

Names are lowercase identifiers (``^[a-z][a-z0-9_]{0,62}$``), so they never need escaping and
never collide by case. Table names may not start with ``core_``, ``_labric`` or ``sqlite_``, nor
be a platform table's name (``experiment``, ``operation``, ``user``, ...). A table without
a primary key gets a text ``id``; a foreign key's type follows the referenced primary key; a raw
table needs a foreign key (its parent) and gets an integer ``order`` column if it lacks one.
"""

from __future__ import annotations

from typing import Any

from labric.server.core.http import Fields
from labric.server.datasets.schema import (
    CATEGORIES,
    DATA_TYPES,
    NAME_RE,
    PLATFORM_TABLES,
    RAW,
    REFERENCEABLE_PLATFORM,
    Catalog,
    ColumnDef,
    TableDef,
)

__all__ = ["parse_definition"]

_RESERVED_PREFIXES = ("core_", "_labric", "sqlite_")
_RESERVED_NAMES = frozenset(t.write_name for t in PLATFORM_TABLES.values())
_MAX_COLUMNS = 200


def parse_definition(body: dict[str, Any], catalog: Catalog) -> TableDef:
    """Validate a definition against the organisation's current tables.

    Raises:
        HTTPError: 422 listing every problem.
    """
    f = Fields(body)
    name = f.string("name", required=True, max_length=63)
    description = f.string("description", max_length=4000)
    category = f.string("semantic_category", max_length=32) or "curated"
    raw_columns = f.array("columns", required=True)
    if name is not None:
        if not NAME_RE.match(name):
            f.add(["name"], "Use lowercase letters, digits and _, starting with a letter")
        elif name.startswith(_RESERVED_PREFIXES) or name in _RESERVED_NAMES:
            f.add(["name"], f"{name!r} is reserved for platform tables")
    if category not in CATEGORIES:
        f.add(["semantic_category"], f"semantic_category must be one of {', '.join(CATEGORIES)}")
    columns: list[ColumnDef] = []
    if raw_columns is not None:
        if not raw_columns:
            f.add(["columns"], "A table needs at least one column")
        if len(raw_columns) > _MAX_COLUMNS:
            f.add(["columns"], f"A table may have at most {_MAX_COLUMNS} columns")
        for i, item in enumerate(raw_columns):
            column = _column(f, i, item, catalog, name)
            if column is not None:
                columns.append(column)
    f.check()
    assert name is not None
    pks = [c for c in columns if c.primary_key]
    if len(pks) > 1:
        f.add(["columns"], "At most one column may be the primary key")
    if not pks:
        if any(c.name == "id" or c.sql_name == "id" for c in columns):
            f.add(["columns"], "Mark a primary key, or rename the column id (it is added as one)")
        columns.insert(
            0,
            ColumnDef(
                name="id",
                sql_name="id",
                data_type="text",
                primary_key=True,
                nullable=False,
                unique=True,
            ),
        )
    pk_type = next(c.data_type for c in columns if c.primary_key)
    # A foreign key to the table itself takes the table's own key type.
    columns = [_self_reference(c, pk_type, f) if c.foreign_key == name else c for c in columns]
    if category == RAW:
        if not any(c.foreign_key for c in columns):
            f.add(["columns"], "A raw table needs a foreign key to its parent table")
        order = next((c for c in columns if c.name == "order"), None)
        if order is None:
            columns.append(
                ColumnDef(name="order", sql_name="order", data_type="integer", nullable=False)
            )
        elif order.data_type != "integer":
            f.add(["columns"], "The order column of a raw table must be an integer")
    seen: set[str] = set()
    for c in columns:
        for ident in {c.name, c.sql_name}:
            if ident in seen:
                f.add(["columns"], f"Two columns are called {ident!r} (foreign keys add _id)")
            seen.add(ident)
    f.check()
    return TableDef(
        name=name,
        write_name=name,
        description=description,
        semantic_category=category,
        columns=tuple(columns),
    )


def _self_reference(column: ColumnDef, pk_type: str, f: Fields) -> ColumnDef:
    if column.data_type not in ("", pk_type):
        f.add(["columns"], f"{column.name} references this table, whose key is {pk_type}")
    return ColumnDef(
        name=column.name,
        sql_name=column.sql_name,
        data_type=pk_type,
        nullable=column.nullable,
        unique=column.unique,
        foreign_key=column.foreign_key,
        description=column.description,
    )


def _column(
    f: Fields, i: int, item: Any, catalog: Catalog, table_name: str | None
) -> ColumnDef | None:
    loc: list[str | int] = ["columns", i]
    if not isinstance(item, dict):
        f.add(loc, "A column must be an object with at least a name")
        return None
    name = item.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        f.add([*loc, "name"], "Use lowercase letters, digits and _, starting with a letter")
        return None
    data_type = item.get("type")
    flags: dict[str, bool] = {}
    for flag, default in (("primary_key", False), ("nullable", True), ("unique", False)):
        value = item.get(flag, default)
        if value is None:
            value = default
        if not isinstance(value, bool):
            f.add([*loc, flag], f"{flag} must be true or false")
            return None
        flags[flag] = value
    description = item.get("description")
    if description is not None and not isinstance(description, str):
        f.add([*loc, "description"], "description must be a string")
        return None
    target_name = item.get("foreign_key")
    if target_name is not None:
        if not isinstance(target_name, str):
            f.add([*loc, "foreign_key"], "foreign_key must name a table")
            return None
        if target_name == table_name:
            target_sql, target_type = target_name, ""
        else:
            target = catalog.resolve(target_name)
            if target is None or (target.platform and target.name not in REFERENCEABLE_PLATFORM):
                f.add([*loc, "foreign_key"], f"No table named {target_name!r} to reference")
                return None
            target_sql, target_type = target.name, target.key.data_type
        if data_type is not None and target_type and data_type != target_type:
            f.add(
                [*loc, "type"],
                f"{name} references {target_sql}, whose key is {target_type}, not {data_type}",
            )
            return None
        if flags["primary_key"]:
            f.add([*loc, "primary_key"], "A foreign key cannot be the primary key")
            return None
        sql_name = name if name.endswith("_id") else f"{name}_id"
        return ColumnDef(
            name=name,
            sql_name=sql_name,
            data_type=target_type,
            nullable=flags["nullable"],
            unique=flags["unique"],
            foreign_key=target_sql,
            description=description,
        )
    if data_type not in DATA_TYPES:
        f.add([*loc, "type"], f"type must be one of {', '.join(DATA_TYPES)}")
        return None
    if flags["primary_key"]:
        if data_type not in ("text", "integer"):
            f.add([*loc, "type"], "A primary key must be text or integer")
            return None
        flags["nullable"], flags["unique"] = False, True
    return ColumnDef(
        name=name,
        sql_name=name,
        data_type=data_type,
        primary_key=flags["primary_key"],
        nullable=flags["nullable"],
        unique=flags["unique"],
        description=description,
    )
