"""Models of the jobs resource, with the hosted platform's field names."""

from __future__ import annotations

from datetime import datetime

import attrs

from labric.models._base import OpenEnum

__all__ = ["ExecutionStatus", "OffPlatformExecution"]


class ExecutionStatus(OpenEnum):
    """Status of a job execution."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


@attrs.frozen(kw_only=True)
class OffPlatformExecution:
    """An execution opened for a script running outside the platform (hosted schema)."""

    job_execution_id: str
    job_id: str
    job_name: str
    status: ExecutionStatus | str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
