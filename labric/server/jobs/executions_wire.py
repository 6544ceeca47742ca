"""The job-executions family's wire shapes: executions, their logs and outcomes.

Component schemas are named after the SDK's models where they answer one (``tests/openapi``
compares their fields); each operation is declared with its handler.
"""

from __future__ import annotations

from labric.server.core.declare import (
    BOOLEAN,
    DATETIME,
    INTEGER,
    OBJECT,
    STRING,
    Family,
    array,
    integer,
    nullable,
    record,
    ref,
    request,
    string,
)

STATUSES = ["queued", "running", "completed", "failed"]

SCHEMAS = {
    "OffPlatformExecution": record(
        {
            "job_execution_id": STRING,
            "job_id": STRING,
            "job_name": STRING,
            "status": nullable(string(enum=STATUSES)),
            "started_at": nullable(DATETIME),
            "completed_at": nullable(DATETIME),
        },
        description="Hosted OffPlatformJobExecutionSchema",
    ),
    "ExecutionTrigger": record(
        {
            "category": string(enum=["file_uploaded", "job_completed", "schedule"]),
            "trigger_id": STRING,
            "file_id": nullable(STRING),
            "source_execution_id": nullable(STRING),
            "scheduled_for": nullable(DATETIME),
        },
        description="What started a triggered execution",
    ),
    "JobExecution": record(
        {
            "job_execution_id": STRING,
            "job_id": STRING,
            "job_name": STRING,
            "status": nullable(string(enum=STATUSES)),
            "started_at": nullable(DATETIME),
            "completed_at": nullable(DATETIME),
            "created_at": nullable(DATETIME),
            "off_platform": nullable(BOOLEAN),
            "script_version": nullable(INTEGER),
            "exit_code": nullable(INTEGER),
            "file_ids": array(STRING),
            "parameters": OBJECT,
            "trigger": nullable(ref("ExecutionTrigger")),
        },
        description="An execution, on the platform or off it (local)",
    ),
    "ExecutionLogs": record(
        {
            "job_execution_id": STRING,
            "status": nullable(string(enum=STATUSES)),
            "text": STRING,
            "truncated": BOOLEAN,
        }
    ),
    "StartExecutionRequest": request(
        {
            "job_id": string(maxLength=128),
            "job_name": string(maxLength=255),
            "timeout_minutes": integer(minimum=1, maximum=43200),
        }
    ),
    "CloseExecutionRequest": request(
        {"status": string(enum=["completed", "failed"])}, required=["status"]
    ),
}

EXECUTIONS = Family(
    tag="job-executions",
    description="Job executions: off-platform runs (hosted), listing, waiting and logs",
    schemas=SCHEMAS,
)
