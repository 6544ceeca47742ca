"""Schemathesis against a live local server: every operation of the OpenAPI document, with
inputs generated from its schemas, valid and invalid.

The server runs in its own thread on 127.0.0.1 and schemathesis calls it over real sockets with
``requests``. Checks: no 5xx, every
status documented for its operation, the body fits the documented schema, the content type is a
documented one, documented required headers are present, and an input that violates the
document is refused with a 4xx (so the document is no looser than the server).

The document is taken from :func:`labric.server.openapi.document`, the object the server serves
at ``GET /api/v1/openapi.json``.

Bounded for the suite by time, not by luck: the module gets ``LABRIC_SCHEMATHESIS_BUDGET``
seconds (default 105, about two minutes with start-up and collection), of which the stateful
workflows keep a fixed reserve and the operations share the rest. Each operation, when it
starts, is allowed an equal share of the time still left (so operations that finish early leave
more to the later ones); once its share is spent its remaining cases are generated but not sent.
Every operation still sends its first cases (:data:`FLOOR`), and an operation that has failed
sends everything, so hypothesis can replay and shrink the failure. Cases come from the examples
phase, the coverage phase (every boundary and violation of every schema, on by default;
``LABRIC_SCHEMATHESIS_COVERAGE=0`` drops it) and ``LABRIC_SCHEMATHESIS_EXAMPLES`` fuzzed ones
(default 50), all derandomised, so every run sends the same cases in the same order and only
where a slow machine stops may differ. ``nox -s schemathesis`` runs the same with more examples,
fresh randomness and a budget of an hour.

The two admin ``PUT`` routes change the server for every later request (faults, query and lock
limits), so the defaults are put back after each of their examples.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import attrs
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from labric.server import LocalServer
from labric.server.local import ThreadedServer
from labric.server.openapi import document

EXAMPLES = int(os.environ.get("LABRIC_SCHEMATHESIS_EXAMPLES", "50"))
RANDOM = os.environ.get("LABRIC_SCHEMATHESIS_RANDOM") == "1"
COVERAGE = os.environ.get("LABRIC_SCHEMATHESIS_COVERAGE", "1") == "1"
#: Seconds the module's tests may take, from the first one's start.
BUDGET = float(os.environ.get("LABRIC_SCHEMATHESIS_BUDGET", "105"))
#: Of which the stateful workflows (a fixed number of scenarios, run last) keep this many.
STATEFUL_RESERVE = min(15.0, BUDGET / 4)
#: Cases every operation sends whatever the clock says.
FLOOR = 3
#: Stateful scenarios (sequences of up to ten linked calls, each on a fresh server).
SCENARIOS = int(os.environ.get("LABRIC_SCHEMATHESIS_SCENARIOS", "20"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
]
#: Routes whose examples change server-wide settings; ``PUT {}`` restores their defaults.
_RESTORE = frozenset({("PUT", "/api/v1/admin/faults"), ("PUT", "/api/v1/admin/datasets/limits")})


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    """A server in its own thread. Cron schedules never come due and a job run (which random
    input is unlikely to reach) is cut short, so fuzzed jobs cannot load the machine."""
    with LocalServer.run_in_thread(
        tmp_path_factory.mktemp("schemathesis") / "server",
        schedule_interval=3600,
        max_concurrent_executions=1,
        job_timeout=10,
    ) as server:
        yield server


@attrs.define
class Budget:
    """The time the operations share: each takes an equal part of what is left when it starts."""

    deadline: float
    operations: int

    def allow(self) -> Allowance:
        now = time.monotonic()
        share = max(0.0, self.deadline - now) / max(1, self.operations)
        self.operations -= 1
        return Allowance(deadline=now + share)


@attrs.define
class Allowance:
    """One operation's share of the budget."""

    deadline: float
    sent: int = 0
    failed: bool = False

    def admits(self) -> bool:
        # After a failure everything runs: hypothesis replays the failing case to shrink it, and
        # a replay that skipped would read as a flaky test.
        return self.sent < FLOOR or self.failed or time.monotonic() < self.deadline


@pytest.fixture(scope="module")
def budget(request: pytest.FixtureRequest) -> Budget:
    selected = request.session.items
    operations = sum(1 for i in selected if getattr(i, "originalname", "") == "test_schemathesis")
    return Budget(time.monotonic() + BUDGET - STATEFUL_RESERVE, operations)


@pytest.fixture
def allowance(budget: Budget) -> Allowance:
    """Per operation (hypothesis runs all of an operation's cases in one test call)."""
    return budget.allow()


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


# Loaded from the document itself, not through a fixture: schemathesis' fixture loader sets a
# private pytest attribute that pytest 9 no longer has. The served document is the same object
# (tests/openapi/test_document.py checks it), and every call below goes to the live server.
schema = schemathesis.openapi.from_dict(document())
schema.config.update(request_timeout=10)
schema.config.generation.update(
    modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE],
    max_examples=EXAMPLES,
    deterministic=not RANDOM,
    # The test sends the API key itself, and the server ignores query parameters it does not
    # know (as it ignores unknown body fields): neither is an invalid input to mutate.
    with_security_parameters=False,
    allow_extra_parameters=False,
)
# A body over a route's limit is refused with 413, which is a rejection too.
_rejection = schema.config.checks.negative_data_rejection
_rejection.expected_statuses = [*_rejection.expected_statuses, "413"]
# The coverage phase: every boundary and violation of every schema, as explicit examples that
# hypothesis runs before the fuzzed ones (thousands of calls in all; the budget bounds them).
schema.config.phases.coverage.enabled = COVERAGE


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=timedelta(seconds=5),
    derandomize=not RANDOM,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,  # the allowance is per operation on purpose
    ],
)
def test_schemathesis(
    case: schemathesis.Case, live: ThreadedServer, http: requests.Session, allowance: Allowance
) -> None:
    if not allowance.admits():
        return  # this operation's share of the budget is spent
    allowance.sent += 1
    secured = bool(case.operation.definition.raw.get("security"))
    headers = {"Authorization": f"Bearer {live.admin_key}"} if secured else {}
    try:
        case.call_and_validate(base_url=live.origin, session=http, headers=headers, checks=CHECKS)
    except BaseException:
        allowance.failed = True
        raise
    finally:
        if (case.method.upper(), case.operation.path) in _RESTORE:
            reply = http.put(
                f"{live.origin}{case.operation.path}",
                json={},
                headers={"Authorization": f"Bearer {live.admin_key}"},
                timeout=10,
            )
            assert reply.status_code == 200, reply.text


def test_stateful_workflows(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Sequences of calls that feed one answer's ids into the next request (links schemathesis
    infers from the document), so fuzzing reaches records that exist, not only 404s.

    Each scenario gets a fresh server (starting one takes milliseconds): hypothesis replays
    choice sequences and expects the same answers, which a server remembering earlier
    scenarios would not give.
    """
    failures: list[str] = []

    class Workflow(schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            self.server = LocalServer.run_in_thread(
                tmp_path_factory.mktemp("stateful") / "server",
                schedule_interval=3600,
                max_concurrent_executions=1,
                job_timeout=10,
            )
            self.server.start()
            self.session = requests.Session()
            self.auth = {"Authorization": f"Bearer {self.server.admin_key}"}

        def teardown(self) -> None:
            self.session.close()
            self.server.stop()

        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            secured = bool(case.operation.definition.raw.get("security"))
            return {
                "base_url": self.server.origin,
                "session": self.session,
                "headers": self.auth if secured else {},
            }

        def validate_response(
            self, response: schemathesis.Response, case: schemathesis.Case, **kwargs: Any
        ) -> None:
            kwargs.pop("additional_checks", None)
            try:
                case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs)
            except (AssertionError, schemathesis.errors.FailureGroup) as exc:
                failures.append(f"{case.operation.label}: {exc}\n{case.as_curl_command()}")

        def after_call(self, response: schemathesis.Response, case: schemathesis.Case) -> None:
            super().after_call(response, case)
            if (case.method.upper(), case.operation.path) in _RESTORE:
                reply = self.session.put(
                    f"{self.server.origin}{case.operation.path}", json={}, headers=self.auth
                )
                assert reply.status_code == 200, reply.text

    Workflow.run(
        settings=settings(
            max_examples=SCENARIOS,
            stateful_step_count=10,
            deadline=timedelta(seconds=5),
            derandomize=not RANDOM,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
    )
    assert not failures, "\n\n".join(failures[:5])
