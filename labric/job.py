"""``JobContext``: what a job script is given by the platform, typed.

A job's script runs in a sandbox whose environment says what to work on::

    LABRIC_API_KEY            an ephemeral key (read + write) that stops working when the run ends
    LABRIC_API_BASE_URL       the API to talk to
    LABRIC_JOB_EXECUTION_ID   this run
    LABRIC_ORGANIZATION_ID    the organisation it runs for
    LABRIC_FILE_DIR           the directory holding the input files
    LABRIC_FILE_COUNT         how many input files there are
    LABRIC_FILE_ID_<N>        the id of input file N (from 0)
    LABRIC_FILE_PATH_<N>      its local path
    LABRIC_PARAMETERS         the run's parameters, one JSON object (optional; defaults applied)
    LABRIC_JOB_ID             the job (optional)

A parser then reads like this::

    from labric import Labric
    from labric.job import JobContext

    ctx = JobContext.from_env()
    with Labric() as client:              # key and URL come from the sandbox
        for f in ctx.files:
            rows = parse(f.path.read_text())
            client.datasets.write("plate_reads", rows)   # recorded under ctx.execution_id

``Labric()`` and ``AsyncLabric()`` need no arguments inside a job, and uploads and dataset writes
default to the running execution, so everything a run produced can be reverted together.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from labric.errors import ConfigurationError

__all__ = ["JobContext", "JobFile"]

_REQUIRED = (
    "LABRIC_JOB_EXECUTION_ID",
    "LABRIC_ORGANIZATION_ID",
    "LABRIC_FILE_DIR",
    "LABRIC_FILE_COUNT",
)


@attrs.frozen(kw_only=True)
class JobFile:
    """One input file of a job run: its platform id and where the sandbox put it."""

    id: str
    path: Path


@attrs.frozen(kw_only=True)
class JobContext:
    """The sandbox of a running job (see the module docstring for the variables behind it).

    Attributes:
        execution_id: The running execution; uploads and writes default to it.
        organization_id: The organisation the job runs for.
        file_dir: The directory holding the input files.
        files: The input files, in order (``LABRIC_FILE_ID_0`` first).
        parameters: The run's parameters, with the job's defaults applied.
        job_id: The job, when the platform says (``LABRIC_JOB_ID``).
    """

    execution_id: str
    organization_id: str
    file_dir: Path
    files: tuple[JobFile, ...] = ()
    parameters: Mapping[str, Any] = attrs.field(factory=dict)
    job_id: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> JobContext:
        """Read the sandbox variables.

        Args:
            environ: The variables to read (default: ``os.environ``).

        Raises:
            ConfigurationError: not inside a job: the message lists every variable that is
                missing or malformed.
        """
        env = os.environ if environ is None else environ
        problems = [f"{name} is not set" for name in _REQUIRED if not env.get(name)]
        count = 0
        count_text = env.get("LABRIC_FILE_COUNT")
        if count_text:
            try:
                count = int(count_text)
                if count < 0:
                    raise ValueError
            except ValueError:
                problems.append(f"LABRIC_FILE_COUNT is {count_text!r}, not a count")
                count = 0
        files = []
        for index in range(count):
            file_id = env.get(f"LABRIC_FILE_ID_{index}")
            path = env.get(f"LABRIC_FILE_PATH_{index}")
            if not file_id:
                problems.append(f"LABRIC_FILE_ID_{index} is not set")
            if not path:
                problems.append(f"LABRIC_FILE_PATH_{index} is not set")
            if file_id and path:
                files.append(JobFile(id=file_id, path=Path(path)))
        parameters: Any = {}
        raw = env.get("LABRIC_PARAMETERS")
        if raw:
            try:
                parameters = json.loads(raw)
            except ValueError:
                parameters = None
            if not isinstance(parameters, dict):
                problems.append("LABRIC_PARAMETERS is not a JSON object")
                parameters = {}
        if problems:
            raise ConfigurationError(
                "JobContext.from_env() found no job sandbox here (it only works inside a Labric "
                "job): " + "; ".join(problems)
            )
        return cls(
            execution_id=env["LABRIC_JOB_EXECUTION_ID"],
            organization_id=env["LABRIC_ORGANIZATION_ID"],
            file_dir=Path(env["LABRIC_FILE_DIR"]),
            files=tuple(files),
            parameters=parameters,
            job_id=env.get("LABRIC_JOB_ID") or None,
        )
