"""The dashboards family's wire shapes: dashboards, widgets, sources and widget data.

Component schemas are named after the SDK's models where they answer one (``tests/openapi``
compares their fields); each operation is declared with its handler.
"""

from __future__ import annotations

from labric.server.core.declare import (
    ANY,
    BOOLEAN,
    DATETIME,
    INTEGER,
    STRING,
    Family,
    array,
    integer,
    nullable,
    obj,
    path_param,
    record,
    ref,
    request,
    string,
)

DASHBOARD_ID = path_param("dashboard_id", "The dashboard")


NAME128 = string(minLength=1, maxLength=128)

COMMON = {
    "id": nullable(string(pattern="^[A-Za-z0-9_-]{1,64}$")),
    "title": nullable(string(maxLength=255)),
    "layout": nullable(ref("WidgetLayout")),
}

SOURCE = {"anyOf": [ref("SQLSource"), ref("DatasetSource")]}

NAMES = {"anyOf": [NAME128, array(NAME128, minItems=1, uniqueItems=True)]}

SCALAR = {"type": ["string", "number", "boolean", "null"]}

SCHEMAS = {
    "WidgetLayout": record(
        {
            "x": integer(minimum=0, maximum=11),
            "y": integer(minimum=0, maximum=10_000),
            "w": integer(minimum=1, maximum=12),
            "h": integer(minimum=1, maximum=100),
        },
        description="A place on the 12-column grid (x + w at most 12)",
    ),
    "SQLSource": obj(
        {
            "type": string(enum=["sql"]),
            "query": string(minLength=1, maxLength=100_000),
            "params": nullable(array(SCALAR, maxItems=1000)),
        },
        required=["type", "query"],
        description="Read-only SQL with positional %s parameters",
    ),
    "DatasetSource": obj(
        {
            "type": string(enum=["dataset"]),
            "table": NAME128,
            "columns": nullable(NAMES),
            "filters": nullable(obj({}, additionalProperties=SCALAR)),
            "order_by": nullable(NAME128),
            "descending": nullable(BOOLEAN),
            "limit": nullable(integer(minimum=1)),
        },
        required=["type", "table"],
        description="Rows of one table, filtered as tools/read filters",
    ),
    "ChartWidget": obj(
        {
            "type": string(enum=["chart"]),
            **COMMON,
            "source": SOURCE,
            "kind": string(enum=["line", "bar", "scatter", "histogram"]),
            # Read for the kinds they belong to (below), ignored for the others.
            "x": ANY,
            "y": ANY,
            "column": ANY,
            "bins": ANY,
        },
        required=["type", "source", "kind"],
        description="x and y for line, bar and scatter charts; column and bins for histograms",
        **{
            "if": {"properties": {"kind": {"const": "histogram"}}},
            "then": {
                "properties": {
                    "column": nullable(NAME128),
                    "bins": nullable(integer(minimum=1, maximum=1000)),
                }
            },
            "else": {"properties": {"x": nullable(NAME128), "y": nullable(NAMES)}},
        },
    ),
    "TableWidget": obj(
        {"type": string(enum=["table"]), **COMMON, "source": SOURCE},
        required=["type", "source"],
    ),
    "MetricWidget": obj(
        {
            "type": string(enum=["metric"]),
            **COMMON,
            "source": SOURCE,
            "label": nullable(string(maxLength=255)),
            "unit": nullable(string(maxLength=64)),
        },
        required=["type", "source"],
    ),
    "TextWidget": obj(
        {"type": string(enum=["text"]), **COMMON, "markdown": string(maxLength=100_000)},
        required=["type", "markdown"],
    ),
    "Widget": {
        "anyOf": [
            ref("ChartWidget"),
            ref("TableWidget"),
            ref("MetricWidget"),
            ref("TextWidget"),
        ]
    },
    "Dashboard": record(
        {
            "id": STRING,
            "name": STRING,
            "description": nullable(STRING),
            "widgets": array(ref("Widget")),
            "created_at": nullable(DATETIME),
            "updated_at": nullable(DATETIME),
        }
    ),
    "WidgetData": record(
        {
            "widget_id": STRING,
            "type": STRING,
            "columns": array(STRING),
            "rows": array(array(ANY)),
            "kind": STRING,
            "x": nullable(STRING),
            "y": array(STRING),
            "column": STRING,
            "bins": INTEGER,
            "value": ANY,
            "label": nullable(STRING),
            "unit": nullable(STRING),
            "markdown": STRING,
        },
        optional=["kind", "x", "y", "column", "bins", "value", "label", "unit", "markdown"],
        description="One widget evaluated: its columns and rows, and what its type adds",
    ),
    "CreateDashboardRequest": request(
        {
            "name": string(minLength=1, maxLength=255),
            "description": string(maxLength=10_000),
            "widgets": array(ref("Widget"), maxItems=100),
        },
        required=["name"],
    ),
    "UpdateDashboardRequest": request(
        {
            "name": string(minLength=1, maxLength=255),
            "description": string(maxLength=10_000),
            "widgets": array(ref("Widget"), maxItems=100),
        },
        description="Only the fields sent change; widgets are replaced as a whole",
    ),
}

MISSING = {404: "No such dashboard"}

DASHBOARDS = Family(
    tag="dashboards",
    description="Dashboards: widgets (chart, table, metric, text) over SQL or dataset rows",
    schemas=SCHEMAS,
)
