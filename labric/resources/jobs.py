"""``client.jobs``: analysis jobs and their executions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from labric._core.context import use_execution
from labric._core.converter import unstructure
from labric._core.pagination import AsyncPager
from labric._core.transport import Transport
from labric._core.types import NOT_GIVEN, NotGiven
from labric._core.urls import path_segment
from labric.errors import WaitTimeoutError
from labric.models.jobs import (
    ExecutionLogs,
    ExecutionStatus,
    Job,
    JobExecution,
    OffPlatformExecution,
    ParameterDefinition,
    PublishStatus,
    RevertResult,
    ScriptEdit,
    TriggerCategory,
)
from labric.resources._base import AsyncResource

__all__ = ["AsyncJobExecutions", "AsyncJobs"]

#: The first pause of :meth:`AsyncJobs.wait` between polls, in seconds.
DEFAULT_POLL_INTERVAL = 0.5
#: The longest pause between polls (the pause grows by half each time up to this).
MAX_POLL_INTERVAL = 5.0
#: The longest a single poll asks the server to hold its answer (``?wait=``), in seconds.
MAX_HELD_POLL = 20.0

_TERMINAL = ("completed", "failed")


def _segment(value: str, what: str) -> str:
    return path_segment(value, what)


def _value(value: Any) -> Any:
    """An enum's value, else the value itself."""
    return getattr(value, "value", value)


def _definitions(items: Sequence[ParameterDefinition | Mapping[str, Any]]) -> list[Any]:
    return [
        unstructure(item) if isinstance(item, ParameterDefinition) else dict(item) for item in items
    ]


def _edits(items: Sequence[ScriptEdit | Mapping[str, str]]) -> list[dict[str, str]]:
    out = []
    for item in items:
        if isinstance(item, ScriptEdit):
            out.append({"old_string": item.old_string, "new_string": item.new_string})
        else:
            out.append({"old_string": item["old_string"], "new_string": item["new_string"]})
    return out


class AsyncJobExecutions(AsyncResource):
    """Job executions: runs of a job, on the platform or off it."""

    def list(
        self,
        *,
        job_id: str | None = None,
        status: ExecutionStatus | str | None = None,
        limit: int | None = None,
        page_size: int | None = None,
    ) -> AsyncPager[JobExecution]:
        """List executions, newest first.

        Args:
            job_id: Only this job's executions.
            status: Only executions with this status (``queued``, ``running``, ``completed``,
                ``failed``).
            limit: The most executions to yield in total.
            page_size: Executions fetched per request (100 when unset; the server may cap it).

        Returns:
            A pager: ``await`` it for the first page, ``async for`` over it for every execution.
        """
        params = {"job_id": job_id, "status": _value(status)}
        return self._pager(
            "/v1/job-executions", JobExecution, params=params, limit=limit, page_size=page_size
        )

    async def get(self, execution_id: str) -> JobExecution:
        """Get one execution: its status, inputs, parameters, trigger and exit code.

        Raises:
            NotFoundError: no such execution in the key's organisation.
        """
        response = await self._transport.request(
            "GET", f"/v1/job-executions/{_segment(execution_id, 'execution_id')}"
        )
        return self._parse(response, JobExecution)

    async def logs(self, execution_id: str) -> ExecutionLogs:
        """Get an execution's captured output (stdout and stderr; live while it runs).

        Raises:
            NotFoundError: no such execution in the key's organisation.
        """
        response = await self._transport.request(
            "GET", f"/v1/job-executions/{_segment(execution_id, 'execution_id')}/logs"
        )
        return self._parse(response, ExecutionLogs)

    async def start(
        self,
        *,
        job_id: str | None = None,
        job_name: str | None = None,
        timeout_minutes: int | None = None,
    ) -> OffPlatformExecution:
        """Open an execution for a script running outside the platform; it is running at once.

        Files uploaded and rows written under its id can later be reverted together. Prefer
        :meth:`AsyncJobs.track`, which also closes it and makes it the default for uploads.

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
        value = _value(status)
        if value not in _TERMINAL:
            raise ValueError("status must be 'completed' or 'failed'")
        response = await self._transport.request(
            "PATCH",
            f"/v1/job-executions/{_segment(execution_id, 'execution_id')}",
            json={"status": value},
        )
        return self._parse(response, OffPlatformExecution)

    async def revert(self, execution_id: str) -> RevertResult:
        """Undo what an execution created (rows with their series, files), in one step.

        Updates and deletes cannot be undone; they come back as ``warnings``.
        """
        response = await self._transport.request(
            "POST", f"/v1/job-executions/{_segment(execution_id, 'execution_id')}/revert"
        )
        return self._parse(response, RevertResult)


class AsyncJobs(AsyncResource):
    """Jobs: Python scripts the platform runs when files arrive or on demand.

    A job's script runs with the variables :class:`labric.job.JobContext` reads (its input
    files, parameters and execution), and with ``Labric()`` / ``AsyncLabric()`` configured for
    the platform: uploads and dataset writes it makes default to its execution.
    """

    def __init__(self, transport: Transport) -> None:
        super().__init__(transport)
        self.executions = AsyncJobExecutions(transport)

    def list(
        self,
        *,
        name: str | None = None,
        archived: bool | None = None,
        limit: int | None = None,
        page_size: int | None = None,
    ) -> AsyncPager[Job]:
        """List jobs, newest first.

        Args:
            name: Only the job with this exact name (names are unique, so 0 or 1 job).
            archived: Include archived jobs (they are left out unless this is true).
            limit: The most jobs to yield in total.
            page_size: Jobs fetched per request (100 when unset; the server may cap it).

        Returns:
            A pager: ``await`` it for the first page, ``async for`` over it for every job.
        """
        params = {"name": name, "archived": archived}
        return self._pager("/v1/jobs", Job, params=params, limit=limit, page_size=page_size)

    async def get(self, job_id: str) -> Job:
        """Get one job, with its current script in ``code``.

        Raises:
            NotFoundError: no such job in the key's organisation.
        """
        response = await self._transport.request("GET", f"/v1/jobs/{_segment(job_id, 'job_id')}")
        return self._parse(response, Job)

    async def create(
        self,
        *,
        name: str,
        code: str,
        description: str | None = None,
        trigger_enabled: bool | None = None,
        trigger_category: TriggerCategory | str | None = None,
        trigger_instrument_id: str | None = None,
        trigger_conditions: Mapping[str, Any] | None = None,
        parameter_definitions: Sequence[ParameterDefinition | Mapping[str, Any]] | None = None,
        timeout_seconds: int | None = None,
    ) -> Job:
        """Create a job (as a draft).

        Args:
            name: Unique within the organisation.
            code: The Python script; dependencies go in a PEP 723 ``# /// script`` block.
            description: What the job does.
            trigger_enabled: Create the trigger the ``trigger_*`` arguments describe.
            trigger_category: ``file_uploaded``, ``job_completed`` or ``schedule`` (needed when
                ``trigger_enabled``).
            trigger_instrument_id: Only that instrument's uploads fire it (``file_uploaded``).
            trigger_conditions: The category's conditions, e.g.
                ``{"file_name_pattern": "*.csv"}``, ``{"source_job_id": ...}`` or
                ``{"cron": "0 6 * * *", "timezone": "Europe/Berlin"}``.
            parameter_definitions: The parameters the job takes.
            timeout_seconds: The job's time limit for platform runs (local server).

        Raises:
            ConflictError: a job with this name exists.
            UnprocessableEntityError: a field is invalid (the error lists each problem).

        Example::

            job = await client.jobs.create(
                name="plate-parser",
                code=Path("parse.py").read_text(),
                trigger_enabled=True,
                trigger_category="file_uploaded",
                trigger_instrument_id=reader_id,
                trigger_conditions={"file_name_pattern": "*.csv"},
            )
        """
        body: dict[str, Any] = {"name": name, "code": code}
        optional = {
            "description": description,
            "trigger_enabled": trigger_enabled,
            "trigger_category": _value(trigger_category),
            "trigger_instrument_id": trigger_instrument_id,
            "trigger_conditions": dict(trigger_conditions) if trigger_conditions else None,
            "timeout_seconds": timeout_seconds,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        if parameter_definitions is not None:
            body["parameter_definitions"] = _definitions(parameter_definitions)
        response = await self._transport.request("POST", "/v1/jobs", json=body)
        return self._parse(response, Job)

    async def update(
        self,
        job_id: str,
        *,
        name: str | NotGiven = NOT_GIVEN,
        description: str | NotGiven = NOT_GIVEN,
        code: str | NotGiven = NOT_GIVEN,
        edits: Sequence[ScriptEdit | Mapping[str, str]] | NotGiven = NOT_GIVEN,
        archived: bool | NotGiven = NOT_GIVEN,
        trigger_enabled: bool | NotGiven = NOT_GIVEN,
        trigger_category: TriggerCategory | str | NotGiven = NOT_GIVEN,
        trigger_instrument_id: str | NotGiven = NOT_GIVEN,
        trigger_conditions: Mapping[str, Any] | NotGiven = NOT_GIVEN,
        parameter_definitions: Sequence[ParameterDefinition | Mapping[str, Any]]
        | NotGiven = NOT_GIVEN,
        publish_status: PublishStatus | str | NotGiven = NOT_GIVEN,
        timeout_seconds: int | NotGiven = NOT_GIVEN,
    ) -> Job:
        """Change a job; only the arguments given are sent, and only those fields change.

        Args:
            job_id: The job.
            name: A new unique name.
            description: A new description; ``""`` clears it.
            code: A whole new script (a new script version; past executions keep theirs).
            edits: Replacements applied in order, each ``old_string`` matching the current
                script exactly once (a new script version). If any fails to match, nothing is
                saved. Not together with ``code``.
            archived: Archive (hide, stop triggering) or restore the job.
            trigger_enabled: ``True`` creates or replaces the trigger from the ``trigger_*``
                arguments given; ``False`` removes it. Without it, ``trigger_*`` arguments change
                the existing trigger.
            trigger_category: See :meth:`create`.
            trigger_instrument_id: See :meth:`create`.
            trigger_conditions: See :meth:`create`.
            parameter_definitions: The new list (``[]`` removes them all).
            publish_status: ``draft``, ``in_review`` or ``published``.
            timeout_seconds: The job's time limit for platform runs (local server).

        Raises:
            BadRequestError: an edit does not match exactly once (the message says which).
            ConflictError: the new name is taken.

        Example::

            await client.jobs.update(
                job.id, edits=[ScriptEdit(old_string="sep=','", new_string="sep=';'")]
            )
        """
        fields: dict[str, Any] = {
            "name": name,
            "description": description,
            "code": code,
            "archived": archived,
            "trigger_enabled": trigger_enabled,
            "trigger_category": trigger_category,
            "trigger_instrument_id": trigger_instrument_id,
            "publish_status": publish_status,
            "timeout_seconds": timeout_seconds,
        }
        body = {k: _value(v) for k, v in fields.items() if v is not NOT_GIVEN}
        if not isinstance(trigger_conditions, NotGiven):
            body["trigger_conditions"] = dict(trigger_conditions)
        if not isinstance(parameter_definitions, NotGiven):
            body["parameter_definitions"] = _definitions(parameter_definitions)
        if not isinstance(edits, NotGiven):
            body["edits"] = _edits(edits)
        if "code" in body and "edits" in body:
            raise ValueError("give either code or edits, not both")
        response = await self._transport.request(
            "PATCH", f"/v1/jobs/{_segment(job_id, 'job_id')}", json=body
        )
        return self._parse(response, Job)

    async def archive(self, job_id: str) -> Job:
        """Archive a job: it is hidden from listings and its trigger stops firing."""
        return await self.update(job_id, archived=True)

    async def run(
        self,
        job_id: str,
        *,
        file_ids: Sequence[str] | None = None,
        parameters: Mapping[str, Any] | None = None,
        timeout_seconds: int | None = None,
    ) -> JobExecution:
        """Run a job's current script on the platform, now (queued if all slots are busy).

        Args:
            job_id: The job.
            file_ids: Input files, handed to the script in this order.
            parameters: Parameter values; defaults fill the rest, and required parameters must
                be covered.
            timeout_seconds: A time limit for this run (default: the job's, else the server's).

        Returns:
            The new execution (``queued`` or ``running``); see :meth:`wait`.

        Raises:
            UnprocessableEntityError: a parameter is missing, unknown or of the wrong kind.
            NotFoundError: the job or an input file does not exist.
        """
        body: dict[str, Any] = {
            "file_ids": list(file_ids or []),
            "parameters": dict(parameters or {}),
        }
        if timeout_seconds is not None:
            body["timeout_seconds"] = timeout_seconds
        response = await self._transport.request(
            "POST", f"/v1/jobs/{_segment(job_id, 'job_id')}/runs", json=body
        )
        return self._parse(response, JobExecution)

    async def wait(
        self,
        execution_id: str,
        *,
        timeout: float | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> JobExecution:
        """Wait until an execution has ended (``completed`` or ``failed``) and return it.

        Each poll asks the server to hold its answer until the execution ends (the local server
        does; others answer at once). Between answers that come back unfinished, the pause
        starts at ``poll_interval`` and grows by half each time, up to 5 seconds.

        Args:
            execution_id: The execution.
            timeout: Give up after this many seconds (``None``: wait as long as it takes).
            poll_interval: The first pause between polls, in seconds.

        Returns:
            The finished execution; check its ``status``.

        Raises:
            WaitTimeoutError: ``timeout`` passed first. The execution goes on.
            NotFoundError: no such execution.
        """
        if poll_interval <= 0:
            raise ValueError("poll_interval must be positive")
        path = f"/v1/job-executions/{_segment(execution_id, 'execution_id')}"
        deadline = None if timeout is None else time.monotonic() + timeout
        read_timeout = self._transport.config.timeout.read
        hold_cap = MAX_HELD_POLL if read_timeout is None else min(MAX_HELD_POLL, read_timeout / 2)
        pause = poll_interval
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            hold = hold_cap if remaining is None else min(hold_cap, max(remaining, 0.0))
            held = int(hold)
            params = {"wait": held} if held >= 1 else None
            asked = time.monotonic()
            response = await self._transport.request("GET", path, params=params)
            execution = self._parse(response, JobExecution)
            if _value(execution.status) in _TERMINAL:
                return execution
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise WaitTimeoutError(
                    f"Job execution {execution_id} did not end within {timeout:g} s "
                    f"(it is {_value(execution.status)}); it goes on running",
                    execution_id=execution_id,
                    status=_value(execution.status),
                )
            if held >= 1 and time.monotonic() - asked >= held * 0.9:
                continue  # the server held the poll for us: ask again at once
            await asyncio.sleep(pause if remaining is None else min(pause, remaining))
            pause = min(pause * 1.5, MAX_POLL_INTERVAL)

    @asynccontextmanager
    async def track(
        self,
        *,
        job_name: str | None = None,
        job_id: str | None = None,
        timeout_minutes: int | None = None,
    ) -> AsyncIterator[OffPlatformExecution]:
        """Record the work of a block of code as an off-platform execution of a job.

        Opens an execution (``executions.start``), makes it the default for uploads and dataset
        writes inside the block, and closes it ``completed`` when the block ends, or ``failed``
        when it raises (the exception then propagates). Everything it recorded can later be
        reverted together with ``executions.revert``.

        Args:
            job_name: The job, by name (created if missing).
            job_id: The job, by id. Give exactly one of ``job_name`` and ``job_id``.
            timeout_minutes: Fail the execution by itself if the block has not ended in time.

        Example::

            async with client.jobs.track(job_name="nightly-import") as execution:
                await client.files.upload("summary.csv")   # recorded under execution
        """
        if (job_name is None) == (job_id is None):
            raise ValueError("give exactly one of job_name and job_id")
        execution = await self.executions.start(
            job_id=job_id, job_name=job_name, timeout_minutes=timeout_minutes
        )
        try:
            with use_execution(execution.job_execution_id):
                yield execution
        except BaseException as exc:
            try:
                await self.executions.close(execution.job_execution_id, status="failed")
            except Exception as close_error:  # report the block's own error, not this one
                exc.add_note(
                    f"(closing job execution {execution.job_execution_id} as failed also "
                    f"failed: {close_error})"
                )
            raise
        await self.executions.close(execution.job_execution_id, status="completed")
