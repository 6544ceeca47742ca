"""Models of the jobs resource, with the hosted platform's field names.

Hosted shapes: :class:`Job` (``ToolsJobSchema``), :class:`JobTrigger`, :class:`ParameterDefinition`,
:class:`OffPlatformExecution` and :class:`RevertResult`. The local server's additions (the execution
details of :class:`JobExecution`, :class:`ExecutionLogs`, and a job's ``code`` and
``script_version``) default to empty values, so answers without them still fit.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs

from labric.models._base import OpenEnum, bounded_repr

__all__ = [
    "ExecutionLogs",
    "ExecutionStatus",
    "ExecutionTrigger",
    "Job",
    "JobExecution",
    "JobTrigger",
    "OffPlatformExecution",
    "ParameterDefinition",
    "PublishStatus",
    "RevertResult",
    "ScriptEdit",
    "TriggerCategory",
    "WidgetType",
]


class ExecutionStatus(OpenEnum):
    """Status of a job execution."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


class PublishStatus(OpenEnum):
    """Where a job stands in review: ``in_review`` is ready for an admin to publish."""

    DRAFT = "draft"
    IN_REVIEW = "in_review"
    PUBLISHED = "published"


class TriggerCategory(OpenEnum):
    """What starts a job on its own."""

    FILE_UPLOADED = "file_uploaded"
    JOB_COMPLETED = "job_completed"
    SCHEDULE = "schedule"


class WidgetType(OpenEnum):
    """How a job parameter is entered in the platform's UI (and what values it takes)."""

    COMBOBOX = "combobox"
    DATE = "date"
    SLIDER = "slider"
    TEXT = "text"
    REGION = "region"


@attrs.frozen(kw_only=True)
class ParameterDefinition:
    """A parameter a job takes (hosted ``ParameterDefinitionSchema``; request and response).

    ``default`` is used when a run leaves the parameter unset (trigger runs included); its shape
    follows the widget: a string for text and combobox, an ISO timestamp for date, a number within
    ``min``..``max`` for slider, ``{"x0", "y0", "x1", "y1"}`` numbers for region. A ``required``
    parameter must be given by manual runs (a default counts).
    """

    widget_type: WidgetType | str
    parameter_name: str
    label: str | None = None
    model_source: str | None = None
    min: float | None = None
    max: float | None = None
    step: float | None = None
    file_id: str | None = None
    file_id_parameter: str | None = None
    required: bool | None = None
    default: Any = None


@attrs.frozen(kw_only=True)
class ScriptEdit:
    """One edit of a job's script: ``old_string`` must occur exactly once (whitespace included);
    ``new_string`` replaces it (``""`` deletes it)."""

    old_string: str
    new_string: str


@attrs.frozen(kw_only=True)
class JobTrigger:
    """What starts a job on its own (hosted ``JobTriggerSchema``).

    ``conditions`` depend on the category: for ``file_uploaded`` any of ``file_name_pattern``,
    ``file_extensions``, ``source_type``, ``min_size_kb``, ``max_size_kb``; for ``job_completed``
    ``source_job_id`` and ``statuses``; for ``schedule`` ``cron`` and ``timezone``.
    """

    __repr__ = bounded_repr

    id: str
    category: TriggerCategory | str
    instrument_id: str | None = None
    instrument_name: str | None = None
    conditions: dict[str, Any] | None = None


@attrs.frozen(kw_only=True)
class Job:
    """A job (hosted ``ToolsJobSchema``, plus what the local server adds).

    Attributes:
        code: The current script; sent on single-job answers (get, create, update), not in
            listings.
        script_version: The current script's version (each new script or edit adds one).
        timeout_seconds: The job's own time limit for platform runs, if it has one.
    """

    __repr__ = bounded_repr

    id: str
    name: str
    archived: bool
    publish_status: PublishStatus | str
    description: str | None = None
    trigger: JobTrigger | None = None
    parameter_definitions: list[ParameterDefinition] | None = None
    script_version: int | None = None
    timeout_seconds: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    code: str | None = attrs.field(default=None, repr=False)


@attrs.frozen(kw_only=True)
class OffPlatformExecution:
    """An execution opened for a script running outside the platform (hosted schema)."""

    job_execution_id: str
    job_id: str
    job_name: str
    status: ExecutionStatus | str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None

    @property
    def id(self) -> str:
        """The execution's id (``job_execution_id``)."""
        return self.job_execution_id


@attrs.frozen(kw_only=True)
class ExecutionTrigger:
    """What started a triggered execution.

    Attributes:
        category: The trigger's category.
        trigger_id: The trigger.
        file_id: The uploaded file (``file_uploaded``).
        source_execution_id: The execution whose end started this one (``job_completed``).
        scheduled_for: The scheduled time it ran for (``schedule``).
    """

    category: TriggerCategory | str
    trigger_id: str
    file_id: str | None = None
    source_execution_id: str | None = None
    scheduled_for: datetime | None = None


@attrs.frozen(kw_only=True)
class JobExecution:
    """An execution of a job, on the platform or off it (the local server's full record).

    The hosted ``OffPlatformJobExecutionSchema`` fields come first; the rest say what a platform
    execution ran and how it ended.

    Attributes:
        status: ``queued``, ``running``, ``completed`` or ``failed``.
        off_platform: Opened with ``executions.start()`` (or ``track()``) for a script running
            elsewhere, rather than run by the platform.
        script_version: The version of the job's script it ran.
        exit_code: The script's exit status (negative: killed by that signal).
        file_ids: Its input files.
        parameters: Its parameters, defaults applied.
        trigger: What started it; ``None`` for manual runs and off-platform executions.
    """

    __repr__ = bounded_repr

    job_execution_id: str
    job_id: str
    job_name: str
    status: ExecutionStatus | str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    created_at: datetime | None = None
    off_platform: bool | None = None
    script_version: int | None = None
    exit_code: int | None = None
    file_ids: list[str] = attrs.field(factory=list)
    parameters: dict[str, Any] = attrs.field(factory=dict)
    trigger: ExecutionTrigger | None = None

    @property
    def id(self) -> str:
        """The execution's id (``job_execution_id``)."""
        return self.job_execution_id

    @property
    def finished(self) -> bool:
        """Whether the execution has ended (``completed`` or ``failed``)."""
        return self.status in (ExecutionStatus.COMPLETED, ExecutionStatus.FAILED)


@attrs.frozen(kw_only=True)
class ExecutionLogs:
    """An execution's captured output (stdout and stderr, merged).

    Attributes:
        text: The output; lines from the platform itself start with ``[labric]``.
        truncated: Output was left out in the middle (the first and last parts are kept).
        status: The execution's status when the logs were read (live while ``running``).
    """

    job_execution_id: str
    text: str
    truncated: bool = False
    status: ExecutionStatus | str | None = None


@attrs.frozen(kw_only=True)
class RevertResult:
    """What reverting an execution removed (hosted ``RevertResultSchema``).

    Updates and deletes cannot be undone; they come back as ``warnings``.
    """

    __repr__ = bounded_repr

    deleted_count: int
    raws_deleted_count: int
    skipped_count: int
    warnings: list[str] = attrs.field(factory=list)
