"""The experiments family's wire shapes: experiments, their files and dataset rows.

Component schemas are named after the SDK's models where they answer one (``tests/openapi``
compares their fields); each operation is declared with its handler.
"""

from __future__ import annotations

from labric.server.core.declare import (
    DATETIME,
    INTEGER,
    OBJECT,
    STRING,
    Family,
    array,
    nullable,
    obj,
    path_param,
    record,
    request,
    string,
)

STATUSES = ["planned", "running", "completed", "failed", "archived"]

EXPERIMENT_ID = path_param("experiment_id", "The experiment")

FIELDS = {
    "name": string(minLength=1, maxLength=255),
    "description": string(maxLength=10_000),
    "status": string(enum=STATUSES),
    "tags": array(string(minLength=1, maxLength=100), maxItems=100),
    "metadata": obj({}, description="Any JSON object (at most 64 KiB as JSON)"),
    "started_at": string(maxLength=64, description="ISO 8601"),
    "ended_at": string(maxLength=64, description="ISO 8601; not before started_at"),
}

IDS = array(string(minLength=1, maxLength=128), maxItems=1000)

SCHEMAS = {
    "Experiment": record(
        {
            "id": STRING,
            "name": STRING,
            "description": nullable(STRING),
            "status": string(enum=STATUSES),
            "tags": array(STRING),
            "metadata": OBJECT,
            "started_at": nullable(DATETIME),
            "ended_at": nullable(DATETIME),
            "created_at": nullable(DATETIME),
            "updated_at": nullable(DATETIME),
        }
    ),
    "ExperimentRow": record({"table": STRING, "row_id": STRING}),
    "ExperimentLinks": record({"linked": INTEGER, "total": INTEGER}),
    "CreateExperimentRequest": request(FIELDS, required=["name"]),
    "UpdateExperimentRequest": request(
        FIELDS, description="Only the fields sent change; tags and metadata are replaced"
    ),
    "LinkFilesRequest": request({"file_ids": IDS}, required=["file_ids"]),
    "LinkRowsRequest": request(
        {
            "rows": array(
                obj(
                    {
                        "table": string(minLength=1),
                        "row_id": {"anyOf": [string(minLength=1), INTEGER]},
                    },
                    required=["table", "row_id"],
                ),
                maxItems=1000,
            )
        },
        required=["rows"],
    ),
}

MISSING = {404: "No such experiment"}

EXPERIMENTS = Family(
    tag="experiments",
    description="Experiments: records with status, tags and times, linked to files and rows",
    schemas=SCHEMAS,
)
