"""Job triggers: what each category's conditions mean, and deciding whether a trigger fires.

A job has at most one trigger, of one of three categories:

``file_uploaded``
    Fires once per file when an upload is confirmed (the signed-URL flow's ``confirm-upload``,
    or a multipart ``POST /v1/files``), if the file passes every condition given:
    ``file_name_pattern`` (see :func:`glob_matches`), ``file_extensions`` (a file without an
    extension always passes; compared case-insensitively, with or without the dot),
    ``source_type``, ``min_size_kb`` and ``max_size_kb`` (inclusive, on the listed
    ``size_kilobytes``). ``trigger_instrument_id`` restricts it to one instrument's files.
    The run gets that one file as its input.
``job_completed``
    Fires when an execution of ``source_job_id`` ends with one of ``statuses`` (default
    ``["completed"]``): a platform execution finishing, or an off-platform one being closed.
    The run's inputs are the files that execution uploaded.
``schedule``
    Fires at the times of ``cron`` (five fields) in ``timezone`` (IANA), from the server's clock.
    Times missed while the server was down fire once, at the next check, not once per miss.

Loops. A file or a finished execution carries the *chain* of jobs that led to it: the job of the
execution that uploaded the file (or finished), and that execution's own chain. A trigger never
starts a job that is already in the chain, so a job's own output can never re-trigger it, directly
or through other jobs (A's output triggers B whose output would trigger A again: the second A is
not started). Chains are also capped at :data:`MAX_CHAIN` jobs. The chain of an upload made with a
job's ephemeral key is its execution's, whether or not the upload names another execution or an
instrument.

Every function here is pure: validation turns request JSON into stored conditions (or a list of
problems), and matching works on plain values, so the rules are unit-testable without a server.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import attrs

from labric.server.jobs.cron import CronError, CronSchedule

__all__ = [
    "CATEGORIES",
    "MAX_CHAIN",
    "FileFacts",
    "Problem",
    "completed_statuses",
    "file_matches",
    "glob_matches",
    "validate_conditions",
]

CATEGORIES = ("file_uploaded", "job_completed", "schedule")
#: The longest chain of jobs one trigger may extend (see the module docstring).
MAX_CHAIN = 16
_STATUSES = ("completed", "failed")
_KEYS = {
    "file_uploaded": (
        "file_name_pattern",
        "file_extensions",
        "source_type",
        "min_size_kb",
        "max_size_kb",
    ),
    "job_completed": ("source_job_id", "statuses"),
    "schedule": ("cron", "timezone"),
}

#: ``(location under trigger_conditions, message)`` of one validation problem.
Problem = tuple[list[str | int], str]


# -- glob ----------------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    parts = []
    for char in pattern.replace("\\", "/"):
        if char == "*":
            parts.append(".*")
        elif char == "?":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), re.DOTALL)


def glob_matches(pattern: str, path: str) -> bool:
    """Whether a hosted-style glob matches a file path.

    Case-sensitive. ``*`` matches any run of characters, folder separators included; ``?``
    matches one character; every other character matches itself. ``/`` and ``\\`` are the same
    separator in both the pattern and the path. The pattern may match the whole path or any
    suffix that starts right after a separator, so ``*.csv`` and ``plate?.csv`` match files in
    any folder while ``runs/*.csv`` needs a ``runs`` folder.
    """
    regex = _glob_regex(pattern)
    normal = path.replace("\\", "/")
    if regex.fullmatch(normal):
        return True
    index = normal.find("/")
    while index != -1:
        if regex.fullmatch(normal, index + 1):
            return True
        index = normal.find("/", index + 1)
    return False


# -- file conditions -----------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class FileFacts:
    """What a ``file_uploaded`` trigger looks at."""

    original_path: str
    file_name: str
    source_type: str
    instrument_id: str | None
    size_kilobytes: int


def _extension(file_name: str) -> str:
    return os.path.splitext(file_name)[1].lower()


def file_matches(
    conditions: Mapping[str, Any], instrument_id: str | None, facts: FileFacts
) -> bool:
    """Whether a ``file_uploaded`` trigger (``conditions``, ``instrument_id``) fires for a file."""
    if instrument_id is not None and facts.instrument_id != instrument_id:
        return False
    pattern = conditions.get("file_name_pattern")
    if pattern is not None and not glob_matches(pattern, facts.original_path or facts.file_name):
        return False
    extensions = conditions.get("file_extensions")
    if extensions:
        ext = _extension(facts.file_name)
        if ext and ext not in {_normal_extension(e) for e in extensions}:
            return False
    source_type = conditions.get("source_type")
    if source_type is not None and facts.source_type != source_type:
        return False
    low = conditions.get("min_size_kb")
    if low is not None and facts.size_kilobytes < low:
        return False
    high = conditions.get("max_size_kb")
    return high is None or facts.size_kilobytes <= high


def _normal_extension(text: str) -> str:
    text = text.strip().lower()
    return text if text.startswith(".") else f".{text}"


# -- validation ----------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def validate_conditions(
    category: str, conditions: Mapping[str, Any] | None
) -> tuple[dict[str, Any] | None, list[Problem]]:
    """Check a trigger's conditions for its category.

    Returns:
        The conditions to store (``None`` when there are none; ``null`` values dropped) and the
        problems found; the conditions are only meaningful when there are no problems.
    """
    problems: list[Problem] = []
    given = {k: v for k, v in (conditions or {}).items() if v is not None}
    allowed = _KEYS[category]
    for key in sorted(set(given) - set(allowed)):
        problems.append(
            ([key], f"Unknown condition for a {category} trigger; use {', '.join(allowed)}")
        )
    if category == "file_uploaded":
        _check_file_conditions(given, problems)
    elif category == "job_completed":
        _check_completed_conditions(given, problems)
    else:
        _check_schedule_conditions(given, problems)
    return (given or None), problems


def _check_file_conditions(given: dict[str, Any], problems: list[Problem]) -> None:
    pattern = given.get("file_name_pattern")
    if pattern is not None and (not isinstance(pattern, str) or not pattern):
        problems.append((["file_name_pattern"], "Expected a non-empty glob string"))
    extensions = given.get("file_extensions")
    valid = isinstance(extensions, list) and all(
        isinstance(e, str) and e.strip(" .") for e in extensions
    )
    if extensions is not None and not valid:
        problems.append((["file_extensions"], 'Expected a list of extensions like ".csv"'))
    source_type = given.get("source_type")
    if source_type is not None and not isinstance(source_type, str):
        problems.append((["source_type"], "Expected a string"))
    for key in ("min_size_kb", "max_size_kb"):
        value = given.get(key)
        if value is not None and (not _is_number(value) or value < 0):
            problems.append(([key], "Expected a number of kilobytes >= 0"))
    low, high = given.get("min_size_kb"), given.get("max_size_kb")
    if isinstance(low, int | float) and isinstance(high, int | float) and low > high:
        problems.append((["min_size_kb"], "min_size_kb is larger than max_size_kb"))


def _check_completed_conditions(given: dict[str, Any], problems: list[Problem]) -> None:
    source = given.get("source_job_id")
    if not isinstance(source, str) or not source:
        problems.append((["source_job_id"], "A job_completed trigger needs source_job_id"))
    statuses = given.get("statuses")
    if statuses is not None and (
        not isinstance(statuses, list) or not statuses or not all(s in _STATUSES for s in statuses)
    ):
        problems.append((["statuses"], "Expected a non-empty list of 'completed' and 'failed'"))


def _check_schedule_conditions(given: dict[str, Any], problems: list[Problem]) -> None:
    cron, timezone = given.get("cron"), given.get("timezone")
    if not isinstance(cron, str) or not cron.strip():
        problems.append((["cron"], "A schedule trigger needs cron, e.g. '0 6 * * mon-fri'"))
    if not isinstance(timezone, str) or not timezone:
        problems.append((["timezone"], "A schedule trigger needs an IANA timezone"))
    if problems or not isinstance(cron, str) or not isinstance(timezone, str):
        return
    try:
        CronSchedule.parse(cron, timezone)
    except CronError as exc:
        where = "timezone" if "timezone" in str(exc) else "cron"
        problems.append(([where], str(exc)))


def completed_statuses(conditions: Mapping[str, Any] | None) -> Sequence[str]:
    """The statuses of the source execution a ``job_completed`` trigger fires on."""
    statuses = (conditions or {}).get("statuses")
    return tuple(statuses) if statuses else ("completed",)
