"""The jobs routes and ``client.jobs`` on a server that queues runs without starting them."""

from __future__ import annotations

import pytest

from labric import AsyncLabric
from labric.errors import (
    BadRequestError,
    ConflictError,
    NotFoundError,
    UnprocessableEntityError,
    WaitTimeoutError,
)
from labric.models.jobs import (
    ExecutionStatus,
    Job,
    ParameterDefinition,
    PublishStatus,
    ScriptEdit,
    TriggerCategory,
)
from labric.server import LocalServer

from ._support import Wire

CODE = "import sys\nprint('one')\nprint('two')\n"
HOSTED_JOB_FIELDS = {
    "id",
    "name",
    "description",
    "archived",
    "publish_status",
    "trigger",
    "parameter_definitions",
}


async def test_create_answers_the_hosted_shape_and_starts_as_draft(wire: Wire) -> None:
    job = await wire.create_job("parser", CODE, description="Parses plates")
    assert set(job) >= HOSTED_JOB_FIELDS
    assert job["publish_status"] == "draft"
    assert job["archived"] is False
    assert job["trigger"] is None
    assert job["code"] == CODE
    assert job["script_version"] == 1
    duplicate = await wire.post("/v1/jobs", json={"name": "parser", "code": CODE})
    assert duplicate.status == 409
    assert "already exists" in duplicate.detail
    missing = await wire.post("/v1/jobs", json={"name": "x"})
    assert missing.status == 422
    assert missing.detail[0]["loc"] == ["body", "code"]


async def test_trigger_fields_are_validated(wire: Wire, paused: LocalServer) -> None:
    async def problems(**body: object) -> list[list[object]]:
        reply = await wire.post("/v1/jobs", json={"name": "t", "code": CODE, **body})
        assert reply.status == 422, reply.body
        return [p["loc"] for p in reply.detail]

    assert await problems(trigger_enabled=True) == [["body", "trigger_category"]]
    assert await problems(trigger_category="file_uploaded") == [["body", "trigger_category"]]
    assert await problems(trigger_enabled=True, trigger_category="sometimes") == [
        ["body", "trigger_category"]
    ]
    assert await problems(
        trigger_enabled=True,
        trigger_category="schedule",
        trigger_conditions={"cron": "* * *", "timezone": "UTC"},
    ) == [["body", "trigger_conditions", "cron"]]
    assert await problems(
        trigger_enabled=True,
        trigger_category="job_completed",
        trigger_conditions={"source_job_id": "nope"},
    ) == [["body", "trigger_conditions", "source_job_id"]]
    unknown = await wire.post(
        "/v1/jobs",
        json={
            "name": "t",
            "code": CODE,
            "trigger_enabled": True,
            "trigger_category": "file_uploaded",
            "trigger_instrument_id": "nope",
        },
    )
    assert unknown.status == 404
    # Nothing was created by the failed attempts.
    assert await wire.ok("GET", "/v1/jobs", params={"name": "t"}) == []
    instrument = paused.create_instrument("reader")
    job = await wire.create_job(
        "t",
        trigger_enabled=True,
        trigger_category="file_uploaded",
        trigger_instrument_id=instrument,
        trigger_conditions={"file_name_pattern": "*.csv"},
    )
    assert job["trigger"]["category"] == "file_uploaded"
    assert job["trigger"]["instrument_id"] == instrument
    assert job["trigger"]["instrument_name"] == "reader"
    assert job["trigger"]["conditions"] == {"file_name_pattern": "*.csv"}


async def test_list_is_newest_first_filtered_and_paginated(wire: Wire) -> None:
    ids = [(await wire.create_job(f"job-{i}"))["id"] for i in range(5)]
    await wire.ok("PATCH", f"/v1/jobs/{ids[1]}", json={"archived": True})
    first = await wire.get("/v1/jobs", params={"page_size": "3"})
    assert [j["id"] for j in first.json()] == [ids[4], ids[3], ids[2]]
    assert "code" not in first.json()[0]
    link = first.headers["Link"]
    second = await wire.get(link[1 : link.index(">")])
    assert [j["id"] for j in second.json()] == [ids[0]]  # the archived one is hidden
    assert "Link" not in second.headers
    everything = await wire.ok("GET", "/v1/jobs", params={"archived": "true", "limit": "10"})
    assert [j["id"] for j in everything] == ids[::-1]
    named = await wire.ok("GET", "/v1/jobs", params={"name": "job-3"})
    assert [j["id"] for j in named] == [ids[3]]
    assert (await wire.get("/v1/jobs", params={"cursor": "garbage"})).status == 400


async def test_update_changes_only_what_is_sent(wire: Wire) -> None:
    job = await wire.create_job("upd", CODE, description="first")
    path = f"/v1/jobs/{job['id']}"
    renamed = await wire.ok("PATCH", path, json={"name": "renamed", "description": None})
    assert renamed["name"] == "renamed"
    assert renamed["description"] == "first"  # null counts as not sent
    assert renamed["script_version"] == 1
    cleared = await wire.ok("PATCH", path, json={"description": ""})
    assert cleared["description"] is None
    published = await wire.ok("PATCH", path, json={"publish_status": "in_review"})
    assert published["publish_status"] == "in_review"
    assert (await wire.patch(path, json={"publish_status": "live"})).status == 422
    other = await wire.create_job("other")
    taken = await wire.patch(f"/v1/jobs/{other['id']}", json={"name": "renamed"})
    assert taken.status == 409
    assert (await wire.patch("/v1/jobs/nope", json={"archived": True})).status == 404


async def test_code_and_edits_make_new_versions(wire: Wire) -> None:
    job = await wire.create_job("edit", CODE)
    path = f"/v1/jobs/{job['id']}"
    edited = await wire.ok(
        "PATCH",
        path,
        json={
            "edits": [
                {"old_string": "print('one')", "new_string": "print('uno')"},
                {"old_string": "uno", "new_string": "eins"},  # applies to the first's result
                {"old_string": "import sys\n", "new_string": ""},
            ]
        },
    )
    assert edited["code"] == "print('eins')\nprint('two')\n"
    assert edited["script_version"] == 2
    twice = await wire.patch(
        path,
        json={
            "edits": [
                {"old_string": "eins", "new_string": "one"},
                {"old_string": "print", "new_string": "log"},
            ]
        },
    )
    assert twice.status == 400
    assert twice.detail.startswith("Edit 2 of 2: old_string occurs more than once")
    absent = await wire.patch(path, json={"edits": [{"old_string": "three", "new_string": ""}]})
    assert absent.status == 400
    assert "does not occur" in absent.detail
    unchanged = await wire.ok("GET", path)
    assert unchanged["code"] == "print('eins')\nprint('two')\n"  # nothing of the failed updates
    assert unchanged["script_version"] == 2
    both = await wire.patch(
        path, json={"code": "x", "edits": [{"old_string": "a", "new_string": "b"}]}
    )
    assert both.status == 422
    replaced = await wire.ok("PATCH", path, json={"code": "print('new')\n"})
    assert replaced["script_version"] == 3


async def test_triggers_are_replaced_changed_and_removed(wire: Wire) -> None:
    source = await wire.create_job("source")
    job = await wire.create_job(
        "chained",
        trigger_enabled=True,
        trigger_category="job_completed",
        trigger_conditions={"source_job_id": source["id"]},
    )
    path = f"/v1/jobs/{job['id']}"
    trigger_id = job["trigger"]["id"]
    changed = await wire.ok(
        "PATCH",
        path,
        json={"trigger_conditions": {"source_job_id": source["id"], "statuses": ["failed"]}},
    )
    assert changed["trigger"]["id"] == trigger_id
    assert changed["trigger"]["conditions"]["statuses"] == ["failed"]
    scheduled = await wire.ok(
        "PATCH",
        path,
        json={
            "trigger_enabled": True,
            "trigger_category": "schedule",
            "trigger_conditions": {"cron": "0 6 * * *", "timezone": "Europe/Berlin"},
        },
    )
    assert scheduled["trigger"]["category"] == "schedule"
    own = await wire.patch(
        path,
        json={
            "trigger_enabled": True,
            "trigger_category": "job_completed",
            "trigger_conditions": {"source_job_id": job["id"]},
        },
    )
    assert own.status == 422
    removed = await wire.ok("PATCH", path, json={"trigger_enabled": False})
    assert removed["trigger"] is None
    nothing = await wire.patch(path, json={"trigger_conditions": {"cron": "0 6 * * *"}})
    assert nothing.status == 422
    assert "has no trigger" in nothing.detail[0]["msg"]


async def test_runs_check_files_and_parameters(wire: Wire, paused: LocalServer) -> None:
    definitions = [
        {"widget_type": "slider", "parameter_name": "gain", "min": 0, "max": 10, "default": 5},
        {"widget_type": "text", "parameter_name": "label", "required": True},
    ]
    job = await wire.create_job("runs", parameter_definitions=definitions)
    path = f"/v1/jobs/{job['id']}/runs"
    missing = await wire.post(path, json={})
    assert missing.status == 422
    assert missing.detail[0]["loc"] == ["body", "parameters", "label"]
    wrong = await wire.post(path, json={"parameters": {"label": "a", "gain": 99, "x": 1}})
    assert [p["loc"][-1] for p in wrong.detail] == ["x", "gain"]
    assert (await wire.post(path, json={"file_ids": ["nope"]})).status == 404
    assert (await wire.post("/v1/jobs/nope/runs", json={})).status == 404
    instrument = paused.create_instrument("reader")
    upload = await wire.upload(b"a,b\n", "in.csv", instrument_id=instrument)
    execution = await wire.ok(
        "POST", path, json={"file_ids": [upload["file_id"]], "parameters": {"label": "a"}}
    )
    assert execution["status"] == "queued"  # this server starts nothing
    assert execution["off_platform"] is False
    assert execution["file_ids"] == [upload["file_id"]]
    assert execution["parameters"] == {"label": "a", "gain": 5}
    assert execution["script_version"] == 1
    assert execution["trigger"] is None
    await wire.ok("PATCH", f"/v1/jobs/{job['id']}", json={"archived": True})
    archived = await wire.post(path, json={"parameters": {"label": "a"}})
    assert archived.status == 400
    assert "archived" in archived.detail


async def test_execution_listing_and_reads(wire: Wire) -> None:
    job = await wire.create_job("listed")
    runs = [await wire.ok("POST", f"/v1/jobs/{job['id']}/runs") for _ in range(4)]
    off = await wire.ok("POST", "/v1/job-executions", json={"job_id": job["id"]})
    listed = await wire.get("/v1/job-executions", params={"job_id": job["id"], "cursor": ""})
    ids = [e["job_execution_id"] for e in listed.json()]
    assert ids == [
        off["job_execution_id"],
        runs[3]["job_execution_id"],
        runs[2]["job_execution_id"],
    ]
    assert 'rel="next"' in listed.headers["Link"]
    queued = await wire.ok("GET", "/v1/job-executions", params={"status": "queued", "limit": "9"})
    assert len(queued) == 4
    assert (await wire.get("/v1/job-executions", params={"status": "odd"})).status == 422
    got = await wire.ok("GET", f"/v1/job-executions/{off['job_execution_id']}")
    assert got["off_platform"] is True
    assert got["status"] == "running"
    assert got["file_ids"] == []
    logs = await wire.ok("GET", f"/v1/job-executions/{runs[0]['job_execution_id']}/logs")
    assert logs == {
        "job_execution_id": runs[0]["job_execution_id"],
        "status": "queued",
        "text": "",
        "truncated": False,
    }
    assert (await wire.get("/v1/job-executions/nope")).status == 404
    assert (await wire.get("/v1/job-executions/nope/logs")).status == 404
    other_org = wire.server.create_key("read", org="elsewhere")
    hidden = await wire.get(f"/v1/job-executions/{off['job_execution_id']}", key=other_org)
    assert hidden.status == 404
    assert (await wire.get(f"/v1/jobs/{job['id']}", key=other_org)).status == 404


# -- the client ----------------------------------------------------------------------------


async def test_client_crud(pclient: AsyncLabric) -> None:
    job = await pclient.jobs.create(
        name="client-job",
        code=CODE,
        description="desc",
        parameter_definitions=[
            ParameterDefinition(widget_type="text", parameter_name="label", default="x"),
            {"widget_type": "slider", "parameter_name": "gain", "min": 0, "max": 1},
        ],
        timeout_seconds=30,
    )
    assert isinstance(job, Job)
    assert job.publish_status is PublishStatus.DRAFT
    assert job.parameter_definitions is not None
    assert job.parameter_definitions[0] == ParameterDefinition(
        widget_type="text", parameter_name="label", default="x"
    )
    assert job.timeout_seconds == 30
    with pytest.raises(ConflictError):
        await pclient.jobs.create(name="client-job", code=CODE)
    untouched = await pclient.jobs.update(job.id, archived=False)
    assert untouched.description == "desc"  # not given: not sent
    cleared = await pclient.jobs.update(job.id, description="")
    assert cleared.description is None
    edited = await pclient.jobs.update(
        job.id, edits=[ScriptEdit(old_string="'one'", new_string="'1'")]
    )
    assert edited.code == CODE.replace("'one'", "'1'")
    with pytest.raises(BadRequestError, match="does not occur"):
        await pclient.jobs.update(job.id, edits=[{"old_string": "zzz", "new_string": ""}])
    with pytest.raises(ValueError, match="either code or edits"):
        await pclient.jobs.update(job.id, code="x", edits=[])
    triggered = await pclient.jobs.update(
        job.id,
        trigger_enabled=True,
        trigger_category=TriggerCategory.SCHEDULE,
        trigger_conditions={"cron": "0 0 * * *", "timezone": "UTC"},
        publish_status=PublishStatus.PUBLISHED,
        parameter_definitions=[],
    )
    assert triggered.trigger is not None
    assert triggered.trigger.category is TriggerCategory.SCHEDULE
    assert triggered.publish_status is PublishStatus.PUBLISHED
    assert triggered.parameter_definitions is None
    assert (await pclient.jobs.get(job.id)).code == edited.code
    archived = await pclient.jobs.archive(job.id)
    assert archived.archived
    assert [j.id async for j in pclient.jobs.list()] == []
    assert [j.id async for j in pclient.jobs.list(archived=True)] == [job.id]
    assert [j.id async for j in pclient.jobs.list(name="client-job", archived=True)] == [job.id]
    with pytest.raises(NotFoundError):
        await pclient.jobs.get("nope")
    with pytest.raises(UnprocessableEntityError):
        await pclient.jobs.create(name="bad", code=CODE, trigger_enabled=True)


async def test_client_runs_listing_and_wait_timeout(pclient: AsyncLabric) -> None:
    job = await pclient.jobs.create(name="waited", code=CODE)
    runs = [await pclient.jobs.run(job.id, parameters={"n": i}) for i in range(4)]
    assert runs[0].status is ExecutionStatus.QUEUED
    assert runs[0].parameters == {"n": 0}
    listed = [e.id async for e in pclient.jobs.executions.list(job_id=job.id, page_size=3)]
    assert listed == [r.id for r in reversed(runs)]  # across two pages
    first = await pclient.jobs.executions.list(job_id=job.id, status="queued", limit=2)
    assert len(first) == 2
    assert (await pclient.jobs.executions.get(runs[0].id)).status is ExecutionStatus.QUEUED
    logs = await pclient.jobs.executions.logs(runs[0].id)
    assert logs.text == ""
    with pytest.raises(WaitTimeoutError) as caught:
        await pclient.jobs.wait(runs[0].id, timeout=0.3, poll_interval=0.1)
    assert caught.value.execution_id == runs[0].id
    assert caught.value.status == "queued"
    assert isinstance(caught.value, TimeoutError)
