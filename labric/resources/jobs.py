"""``client.jobs``: analysis jobs and their executions."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from labric._transport import Transport
from labric.models.jobs import ExecutionStatus, OffPlatformExecution
from labric.resources._base import AsyncResource

__all__ = ["AsyncJobExecutions", "AsyncJobs"]


class AsyncJobExecutions(AsyncResource):
    """Job executions: runs of a job, on the platform or off it."""

    async def start(
        self,
        *,
        job_id: str | None = None,
        job_name: str | None = None,
        timeout_minutes: int | None = None,
    ) -> OffPlatformExecution:
        """Open an execution for a script running outside the platform; it is running at once.

        Files uploaded and rows written under its id can later be reverted together.

        Args:
            job_id: The job it belongs to.
            job_name: A job name, created if missing (ignored when ``job_id`` is given).
            timeout_minutes: Fail the execution automatically if it is not closed in time
                (at most 43,200, 30 days).
        """
        body: dict[str, Any] = {}
        if job_id is not None:
            body["job_id"] = job_id
        if job_name is not None:
            body["job_name"] = job_name
        if timeout_minutes is not None:
            body["timeout_minutes"] = timeout_minutes
        response = await self._transport.request("POST", "/v1/job-executions", json=body)
        return self._parse(response, OffPlatformExecution)

    async def close(
        self, execution_id: str, *, status: ExecutionStatus | str
    ) -> OffPlatformExecution:
        """Close an off-platform execution as ``completed`` or ``failed`` (final).

        Closing again with the same status does nothing; changing it is rejected.
        """
        value = status.value if isinstance(status, ExecutionStatus) else status
        if value not in ("completed", "failed"):
            raise ValueError("status must be 'completed' or 'failed'")
        response = await self._transport.request(
            "PATCH",
            f"/v1/job-executions/{quote(execution_id, safe='')}",
            json={"status": value},
        )
        return self._parse(response, OffPlatformExecution)


class AsyncJobs(AsyncResource):
    """Jobs: Python scripts the platform runs when files arrive or on demand."""

    def __init__(self, transport: Transport) -> None:
        super().__init__(transport)
        self.executions = AsyncJobExecutions(transport)
