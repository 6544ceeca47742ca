"""Every listing seeks in an index: no table scan, no temporary b-tree for its ordering.

A listing that scans (or sorts) costs time in proportion to the rows before its page, which makes
listing everything quadratic. Each store's listing query is captured as SQLite runs it (with its
values bound) and its plan is asked for, for every filter the route offers.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from labric.server.core import db, records
from labric.server.dashboards import store as dashboards
from labric.server.experiments import store as experiments
from labric.server.instruments import store as instruments
from labric.server.jobs import store as jobs

AFTER = ("2026-01-01T00:00:00.000000Z", 7)


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = db.connect(tmp_path / "meta.sqlite3")
    db.migrate(connection)
    connection.execute(
        "INSERT INTO organisations (id, name, created_at) VALUES ('o', 'org', '2026')"
    )
    yield connection
    connection.close()


def _plans(conn: sqlite3.Connection, run: Callable[[sqlite3.Connection], Any]) -> list[str]:
    """The plan of every SELECT ``run`` makes, one text per statement."""
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        run(conn)
    finally:
        conn.set_trace_callback(None)
    plans = []
    for sql in statements:
        if sql.lstrip().upper().startswith("SELECT"):
            rows = conn.execute("EXPLAIN QUERY PLAN " + sql).fetchall()
            plans.append("\n".join(str(row[3]) for row in rows))
    assert plans, "the listing ran no SELECT"
    return plans


LISTINGS: dict[str, tuple[str, Callable[[sqlite3.Connection], Any]]] = {
    "files": (
        "files",
        lambda c: records.list_files(
            c, "o", instrument_id=None, extensions=[], terms=[], after=AFTER, limit=101
        ),
    ),
    "files by instrument": (
        "files",
        lambda c: records.list_files(
            c, "o", instrument_id="i", extensions=[], terms=[], after=AFTER, limit=101
        ),
    ),
    "files by extension and query": (
        "files",
        lambda c: records.list_files(
            c, "o", instrument_id=None, extensions=[".csv"], terms=["x"], after=AFTER, limit=101
        ),
    ),
    "files, first page": (
        "files",
        lambda c: records.list_files(
            c, "o", instrument_id=None, extensions=[], terms=[], after=None, limit=101
        ),
    ),
    "jobs": (
        "jobs",
        lambda c: jobs.job_list(c, "o", name=None, include_archived=False, after=AFTER, limit=101),
    ),
    "jobs with archived": (
        "jobs",
        lambda c: jobs.job_list(c, "o", name=None, include_archived=True, after=AFTER, limit=101),
    ),
    "jobs by name": (
        "jobs",
        lambda c: jobs.job_list(c, "o", name="n", include_archived=False, after=AFTER, limit=101),
    ),
    "executions": (
        "job_executions",
        lambda c: jobs.execution_list(c, "o", job_id=None, status=None, after=AFTER, limit=101),
    ),
    "executions by job": (
        "job_executions",
        lambda c: jobs.execution_list(c, "o", job_id="j", status=None, after=AFTER, limit=101),
    ),
    "executions by status": (
        "job_executions",
        lambda c: jobs.execution_list(c, "o", job_id=None, status="queued", after=AFTER, limit=101),
    ),
    "executions by job and status": (
        "job_executions",
        lambda c: jobs.execution_list(c, "o", job_id="j", status="failed", after=AFTER, limit=101),
    ),
    "instruments": (
        "instruments",
        lambda c: instruments.list_instruments(c, "o", after=AFTER, limit=101, now=0.0),
    ),
    "experiments": (
        "experiments",
        lambda c: experiments.list_experiments(
            c, "o", status=None, tag=None, terms=[], after=AFTER, limit=101
        ),
    ),
    "experiments by status": (
        "experiments",
        lambda c: experiments.list_experiments(
            c, "o", status="running", tag=None, terms=[], after=AFTER, limit=101
        ),
    ),
    "experiments by tag and query": (
        "experiments",
        lambda c: experiments.list_experiments(
            c, "o", status=None, tag="t", terms=["x"], after=AFTER, limit=101
        ),
    ),
    "experiment files": (
        "experiment_files",
        lambda c: experiments.experiment_files(c, "e", after=AFTER, limit=101),
    ),
    "dashboards": (
        "dashboards",
        lambda c: dashboards.dashboard_list(c, "o", after=AFTER, limit=101),
    ),
}


@pytest.mark.parametrize("name", list(LISTINGS))
def test_listing_seeks_an_index_without_sorting(conn: sqlite3.Connection, name: str) -> None:
    table, run = LISTINGS[name]
    plan = _plans(conn, run)[0]
    assert "TEMP B-TREE" not in plan, f"{name} sorts its rows:\n{plan}"
    first = plan.splitlines()[0]
    assert first.startswith("SEARCH"), f"{name} does not seek:\n{plan}"
    assert "INDEX" in first, f"{name} does not seek in an index:\n{plan}"
    assert f"SCAN {table}" not in plan, f"{name} scans {table}:\n{plan}"
