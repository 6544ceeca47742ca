"""The jobs family's wire shapes: jobs, triggers, parameter definitions, runs.

Component schemas are named after the SDK's models where they answer one (``tests/openapi``
compares their fields); each operation is declared with its handler.
"""

from __future__ import annotations

from labric.server.core.declare import (
    ANY,
    BOOLEAN,
    DATETIME,
    INTEGER,
    NUMBER,
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

CATEGORIES = ["file_uploaded", "job_completed", "schedule"]

PUBLISH = ["draft", "in_review", "published"]

PARAMETER = obj(
    {
        "widget_type": string(enum=["combobox", "date", "slider", "text", "region"]),
        "parameter_name": string(minLength=1),
        "label": nullable(STRING),
        "model_source": nullable(STRING),
        "min": nullable(NUMBER),
        "max": nullable(NUMBER),
        "step": nullable(NUMBER),
        "file_id": nullable(STRING),
        "file_id_parameter": nullable(STRING),
        "required": nullable(BOOLEAN),
        "default": ANY,
    },
    required=["widget_type", "parameter_name"],
    description="A parameter a job takes (hosted ParameterDefinitionSchema)",
)

TRIGGER_FIELDS = {
    "trigger_enabled": BOOLEAN,
    "trigger_category": string(enum=CATEGORIES),
    "trigger_instrument_id": string(maxLength=128),
    "trigger_conditions": OBJECT,
}

SCHEMAS = {
    "ParameterDefinition": PARAMETER,
    "JobTrigger": record(
        {
            "id": STRING,
            "category": string(enum=CATEGORIES),
            "instrument_id": nullable(STRING),
            "instrument_name": nullable(STRING),
            "conditions": nullable(OBJECT),
        },
        description="Hosted JobTriggerSchema",
    ),
    "Job": record(
        {
            "id": STRING,
            "name": STRING,
            "description": nullable(STRING),
            "archived": BOOLEAN,
            "publish_status": string(enum=PUBLISH),
            "trigger": nullable(ref("JobTrigger")),
            "parameter_definitions": nullable(array(ref("ParameterDefinition"))),
            "script_version": nullable(INTEGER),
            "timeout_seconds": nullable(INTEGER),
            "created_at": nullable(DATETIME),
            "updated_at": nullable(DATETIME),
            "code": nullable(STRING),
        },
        optional=["code"],
        description="Hosted ToolsJobSchema plus local fields; `code` on single-job answers",
    ),
    "ScriptEdit": obj(
        {"old_string": string(minLength=1), "new_string": STRING},
        required=["old_string", "new_string"],
    ),
    "CreateJobRequest": request(
        {
            "name": string(minLength=1, maxLength=255),
            "code": string(minLength=1),
            "description": string(maxLength=10_000),
            **TRIGGER_FIELDS,
            "parameter_definitions": array(ref("ParameterDefinition")),
            "timeout_seconds": integer(minimum=1, maximum=7 * 24 * 3600),
        },
        required=["name", "code"],
    ),
    "UpdateJobRequest": request(
        {
            "name": string(minLength=1, maxLength=255),
            "description": string(maxLength=10_000),
            "code": string(minLength=1),
            "edits": array(ref("ScriptEdit"), minItems=1),
            "archived": BOOLEAN,
            **TRIGGER_FIELDS,
            "parameter_definitions": array(ref("ParameterDefinition")),
            "publish_status": string(enum=PUBLISH),
            "timeout_seconds": integer(minimum=1, maximum=7 * 24 * 3600),
        },
        description="Only the fields sent change; `code` and `edits` exclude each other",
    ),
    "RunJobRequest": request(
        {
            "file_ids": array(string(minLength=1), maxItems=1000, uniqueItems=True),
            "parameters": OBJECT,
            "timeout_seconds": integer(minimum=1, maximum=7 * 24 * 3600),
        }
    ),
}

JOBS = Family(
    tag="jobs",
    description="Jobs: scripts with versions, triggers and parameters; runs on demand",
    schemas=SCHEMAS,
)
