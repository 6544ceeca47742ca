"""Schemathesis against a live local server: every operation of the OpenAPI document, with
inputs generated from its schemas, valid and invalid.

The server runs in its own thread on 127.0.0.1 and schemathesis calls it over real sockets with
``requests``. Checks: no 5xx, every
status documented for its operation, the body fits the documented schema, the content type is a
documented one, documented required headers are present, and an input that violates the
document is refused with a 4xx (so the document is no looser than the server).

The document is taken from :func:`labric.server.openapi.document`, the object the server serves
at ``GET /api/v1/openapi.json``.

Bounded for the suite: ``LABRIC_SCHEMATHESIS_EXAMPLES`` examples per operation (default 5), a
per-example deadline, derandomised so a run is repeatable, and without schemathesis' coverage
phase (``LABRIC_SCHEMATHESIS_COVERAGE=1`` adds it). ``nox -s schemathesis`` runs the same with
more examples, fresh randomness and the coverage phase.

The two admin ``PUT`` routes change the server for every later request (faults, query and lock
limits), so the defaults are put back after each of their examples.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

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

EXAMPLES = int(os.environ.get("LABRIC_SCHEMATHESIS_EXAMPLES", "5"))
RANDOM = os.environ.get("LABRIC_SCHEMATHESIS_RANDOM") == "1"
COVERAGE = os.environ.get("LABRIC_SCHEMATHESIS_COVERAGE") == "1"
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
# The coverage phase (every boundary and violation of every schema, thousands of calls) runs in
# ``nox -s schemathesis``; the suite keeps the examples and fuzzing phases.
schema.config.phases.coverage.enabled = COVERAGE


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=timedelta(seconds=5),
    derandomize=not RANDOM,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_schemathesis(
    case: schemathesis.Case, live: ThreadedServer, http: requests.Session
) -> None:
    secured = bool(case.operation.definition.raw.get("security"))
    headers = {"Authorization": f"Bearer {live.admin_key}"} if secured else {}
    try:
        case.call_and_validate(base_url=live.origin, session=http, headers=headers, checks=CHECKS)
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
            max_examples=EXAMPLES * 4,
            stateful_step_count=10,
            deadline=timedelta(seconds=5),
            derandomize=not RANDOM,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
    )
    assert not failures, "\n\n".join(failures[:5])
