"""Which job execution the current code runs under, for attributing uploads and dataset writes.

Two sources, in order:

1. An execution made current for a block of code with :func:`use_execution` (``jobs.track()``
   does this). It lives in a :class:`contextvars.ContextVar`, so it follows the code that entered
   the block, including tasks started inside it, and never leaks into concurrent tasks.
2. ``LABRIC_JOB_EXECUTION_ID``, which the platform sets inside a job's sandbox. It is read at call
   time, not at import.

Resources that record their work under an execution (``files.upload``, ``datasets.write``) call
:func:`current_execution_id` when the caller passes no ``job_execution_id`` of their own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["ENV_JOB_EXECUTION_ID", "current_execution_id", "use_execution"]

#: The variable a job's sandbox sets to the running execution's id.
ENV_JOB_EXECUTION_ID = "LABRIC_JOB_EXECUTION_ID"

_CURRENT: ContextVar[str | None] = ContextVar("labric_current_execution", default=None)


def current_execution_id() -> str | None:
    """The execution new uploads and writes default to, or ``None`` when there is none.

    Returns:
        The id made current by :func:`use_execution` (``jobs.track()``), else the value of
        ``LABRIC_JOB_EXECUTION_ID``, else ``None``.
    """
    return _CURRENT.get() or os.environ.get(ENV_JOB_EXECUTION_ID) or None


@contextmanager
def use_execution(execution_id: str) -> Iterator[None]:
    """Make ``execution_id`` the current execution for the duration of the block."""
    token = _CURRENT.set(execution_id)
    try:
        yield
    finally:
        _CURRENT.reset(token)
