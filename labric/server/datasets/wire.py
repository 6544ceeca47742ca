"""The datasets family's wire shapes: table definitions, reads, queries, ``data/write``.

Component schemas are named after the SDK's models where they answer one (``tests/openapi``
compares their fields); each operation is declared with its handler.
"""

from __future__ import annotations

from labric.server.core.declare import (
    ANY,
    BOOLEAN,
    INTEGER,
    OBJECT,
    STRING,
    Family,
    array,
    integer,
    nullable,
    obj,
    record,
    ref,
    request,
    string,
)
from labric.server.datasets.validate import DEFAULT_FUNCTIONS

DEFAULT_NAMES = list(DEFAULT_FUNCTIONS)

COLUMN_INFO = record(
    {
        "id": nullable(INTEGER),
        "name": STRING,
        "sql_column_name": STRING,
        "description": nullable(STRING),
        "data_type": STRING,
        "is_primary_key": BOOLEAN,
        "is_foreign_key": BOOLEAN,
        "is_nullable": BOOLEAN,
        "is_unique": BOOLEAN,
        "foreign_key_table_name": nullable(STRING),
    },
    description="Hosted QueryableColumnSchema",
)

TABLE_WRITE = obj(
    {
        "table": STRING,
        "rows": array(OBJECT),
        "mode": nullable(string(enum=["insert", "upsert", "update", "delete"])),
        "key": nullable(array(STRING)),
        "cascade": nullable(BOOLEAN),
        "on_match": nullable(string(enum=["overwrite", "fill_missing"])),
    },
    required=["table", "rows"],
)

SERIES_WRITE = obj(
    {
        "table": STRING,
        "parent": {"anyOf": [STRING, INTEGER, OBJECT]},
        "columns": obj({}, additionalProperties=array(ANY)),
        "parent_column": nullable(STRING),
    },
    required=["table", "parent", "columns"],
)

NAME = string(pattern="^[a-z][a-z0-9_]{0,62}$")

COLUMN = obj(
    {
        "name": NAME,
        "type": nullable(string(enum=["text", "integer", "float", "boolean", "datetime", "json"])),
        "nullable": nullable(BOOLEAN),
        "unique": nullable(BOOLEAN),
        "primary_key": nullable(BOOLEAN),
        "foreign_key": nullable(STRING),
        "description": nullable(STRING),
    },
    required=["name"],
    description="A column of a table to create",
)

SCHEMAS = {
    "ColumnInfo": COLUMN_INFO,
    "TableInfo": record(
        {
            "id": nullable(INTEGER),
            "name": STRING,
            "description": nullable(STRING),
            "semantic_category": nullable(STRING),
            "columns": array(ref("ColumnInfo")),
        },
        description="Hosted QueryableTableSchema",
    ),
    "QueryResult": record({"columns": array(STRING), "data": array(array(ANY))}),
    "TableWriteResult": record(
        {
            "table": STRING,
            "created": INTEGER,
            "updated": INTEGER,
            "deleted": INTEGER,
            "cascade_deleted": nullable(obj({}, additionalProperties=INTEGER)),
            "ids": array(STRING),
            "rows": nullable(array(OBJECT)),
        }
    ),
    "SeriesWriteResult": record(
        {
            "table": STRING,
            "parent_id": STRING,
            "points_written": INTEGER,
            "points_replaced": INTEGER,
        }
    ),
    "WriteResult": record(
        {
            "job_execution_id": nullable(STRING),
            "tables": array(ref("TableWriteResult")),
            "series": array(ref("SeriesWriteResult")),
            "refs": obj({}, additionalProperties=STRING),
        },
        description="Hosted WriteDataResponse",
    ),
    "WriteErrors": record(
        {"errors": array(record({"path": nullable(STRING), "message": STRING}), minItems=1)},
        description="Every problem of a data/write request (hosted WriteDataErrorResponse)",
    ),
    "TableWrite": TABLE_WRITE,
    "SeriesWrite": SERIES_WRITE,
    "ReadRequest": request(
        {
            "target_name": string(maxLength=128),
            "target_type": string(enum=["table", "core-table"]),
            "filters": OBJECT,
            "mode": string(enum=["single", "multiple"]),
            "limit": integer(minimum=1),
            "page_size": integer(minimum=1),
            "cursor": string(maxLength=256),
        },
        required=["target_name", "target_type"],
    ),
    "QueryRequest": request(
        {
            "query": string(minLength=1, maxLength=100_000),
            "params": array({"type": ["string", "number", "boolean", "null"]}),
        },
        required=["query"],
    ),
    "WriteRequest": request(
        {
            "tables": array(ref("TableWrite")),
            "series": array(ref("SeriesWrite")),
            "job_execution_id": string(minLength=1),
            "job_name": string(maxLength=255),
            "dry_run": BOOLEAN,
            "return_rows": BOOLEAN,
        },
        description="Table writes and series, applied in one transaction",
    ),
    "Column": COLUMN,
    "TableDefinition": request(
        {
            "name": NAME,
            "description": string(maxLength=4000),
            "semantic_category": string(enum=["curated", "raw"]),
            "columns": array(ref("Column"), minItems=1, maxItems=200),
        },
        required=["name", "columns"],
    ),
    "LabricWriteRequest": request(
        {
            "target_name": string(maxLength=128),
            "target_type": string(enum=["table", "core-table"]),
            "data": array(OBJECT),
            "mode": string(enum=["create", "create-or-update", "update"]),
            "batch_insert_ok": BOOLEAN,
            "params_to_match_for_update": array(STRING),
            "on_match": string(enum=["overwrite", "fill_missing"]),
            "defaults": obj({}, additionalProperties=nullable(string(enum=[*DEFAULT_FUNCTIONS]))),
            "job_execution_id": string(minLength=1),
            "job_name": string(maxLength=255),
            "collect_output": BOOLEAN,
            "dry_run": BOOLEAN,
        },
        required=["target_name", "target_type", "data", "mode"],
        description="Deprecated tools/write (hosted LabricWriteSchema)",
    ),
    "BatchWriteOptions": request(
        {
            "mode": string(enum=["insert", "upsert"]),
            "match_on": obj({}, additionalProperties=nullable(array(STRING))),
            "dry_run": BOOLEAN,
            "return_records": BOOLEAN,
            "job_execution_id": string(minLength=1),
            "job_name": string(maxLength=255),
        },
        description="Hosted BatchWriteOptions",
    ),
    "BatchWriteRequest": request(
        {
            "tables": obj({}, additionalProperties=array(OBJECT)),
            "options": ref("BatchWriteOptions"),
        },
        required=["tables"],
        description="Deprecated tools/batch-write: table -> rows",
    ),
    "TableSummary": record(
        {"created": INTEGER, "updated": INTEGER}, description="Hosted TableSummary"
    ),
    "WritePlan": record(
        {"insert_order": array(STRING), "operations": array(OBJECT)},
        description="Hosted WritePlan (a dry run's)",
    ),
    "BatchWriteResult": record(
        {
            "success": BOOLEAN,
            "job_execution_id": nullable(STRING),
            "summary": obj({}, additionalProperties=ref("TableSummary")),
            "refs": obj({}, additionalProperties=STRING),
            "records": nullable(obj({}, additionalProperties=array(OBJECT))),
            "plan": nullable(ref("WritePlan")),
        },
        description="Hosted BatchWriteResponse",
    ),
    "WriteProblems": record(
        {
            "detail": STRING,
            "errors": array(record({"path": nullable(STRING), "message": STRING}), minItems=1),
        },
        description="Every problem of a tools/write or tools/batch-write request",
    ),
    "RevertResult": record(
        {
            "deleted_count": INTEGER,
            "raws_deleted_count": INTEGER,
            "skipped_count": INTEGER,
            "warnings": array(STRING),
        },
        description="Hosted RevertResultSchema",
    ),
}

BUSY = "The organisation's data is locked by other writes; nothing was written"

DATASETS_FAMILY = Family(
    tag="datasets",
    description="Datasets: the hosted tools/* and data/write, and local table definitions",
    schemas=SCHEMAS,
)
