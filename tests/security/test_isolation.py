"""Organisation isolation for every resource: another organisation's ids are 404, listings never
show them, and nothing one organisation sends changes another's data.

Organisation A creates one of everything (instrument, file, job, execution, dataset and row,
experiment with links, dashboard with a widget, notification, ML model); organisation B, holding an
*admin* key of its own, then calls every registered route that takes an id with A's ids in each
position. Each answer must be exactly what B gets for an id that does not exist (so B cannot
even learn that A's ids exist), and never a success. Routes come from the server's registry: a
route added later is covered as soon as its path parameter has a resource below (the test fails
naming any parameter it cannot fill).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import attrs
import pytest
from _masks import image_png, mask_b64

from labric.server import LocalServer

from ._support import Route, keyed_routes

MARK = f"orgA{uuid.uuid4().hex[:10]}"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@attrs.frozen
class Reply:
    status: int
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


class Org:
    """Raw HTTP as one organisation's admin key."""

    def __init__(self, session: aiohttp.ClientSession, server: LocalServer, key: str) -> None:
        self.session, self.server, self.key = session, server, key

    async def call(self, method: str, path: str, body: Any = None) -> Reply:
        async with self.session.request(
            method,
            path if path.startswith("http") else self.server.base_url + path,
            json=body,
            headers={"Authorization": f"Bearer {self.key}"},
        ) as resp:
            return Reply(resp.status, await resp.text())

    async def ok(self, method: str, path: str, body: Any = None) -> Any:
        reply = await self.call(method, path, body)
        assert 200 <= reply.status < 300, (method, path, reply)
        return reply.json()


@attrs.frozen
class Holdings:
    """What one organisation created: an id for every path parameter, and secrets to look for."""

    ids: Mapping[str, str]
    table: str
    row_id: str
    markers: frozenset[str]


async def _populate(org: Org, label: str) -> Holdings:
    """One of every resource, named with ``label``."""
    instrument = (await org.ok("POST", "/v1/instruments", {"name": f"{label} reader"}))[
        "instrument"
    ]["id"]
    # The file is an image, so the image routes answer for it too.
    ticket = await org.ok(
        "POST", "/v1/files/upload-url", {"file_name": f"{label}.png", "instrument_id": instrument}
    )
    async with org.session.put(
        ticket["upload_url"], data=_image(label), headers=ticket["headers"]
    ) as put:
        assert put.status == 200
    file_id = ticket["file_id"]
    await org.ok("POST", f"/v1/files/{file_id}/confirm-upload")
    (mask,) = await org.ok(
        "POST",
        f"/v1/images/{file_id}/annotations",
        {"annotations": [{"mask": mask_b64(*IMAGE_SIZE, [(1, 1, 2, 2)]), "label": f"{label}-l"}]},
    )
    execution = (await org.ok("POST", "/v1/job-executions", {}))["job_execution_id"]
    job = (await org.ok("POST", "/v1/jobs", {"name": f"{label} job", "code": "print(1)"}))["id"]
    table = f"t_{label.lower()}"
    await org.ok(
        "POST", "/v1/datasets", {"name": table, "columns": [{"name": "v", "type": "text"}]}
    )
    written = await org.ok(
        "POST",
        "/v1/data/write",
        {"tables": [{"table": table, "rows": [{"v": f"{label} row"}]}], "job_name": label},
    )
    row_id = written["tables"][0]["ids"][0]
    experiment = (await org.ok("POST", "/v1/experiments", {"name": f"{label} experiment"}))["id"]
    await org.ok("POST", f"/v1/experiments/{experiment}/files", {"file_ids": [file_id]})
    await org.ok(
        "POST", f"/v1/experiments/{experiment}/rows", {"rows": [{"table": table, "row_id": row_id}]}
    )
    widget = f"{label}-widget"
    dashboard = (
        await org.ok(
            "POST",
            "/v1/dashboards",
            {
                "name": f"{label} board",
                "widgets": [
                    {"type": "text", "markdown": label, "id": f"{widget}-text"},
                    {
                        "type": "table",
                        "id": widget,
                        "source": {"type": "sql", "query": f"SELECT v FROM {table}"},
                    },
                ],
            },
        )
    )["id"]
    notification = (
        await org.ok(
            "POST",
            "/v1/notifications",
            {"title": f"{label} notice", "dedupe_key": f"{label}-dedupe", "data": {"from": label}},
        )
    )["id"]
    # A model (its training on one row fails: still a model, with an id and a name).
    ml_table = f"m_{label.lower()}"
    made = await org.ok(
        "POST",
        "/v1/datasets",
        {
            "name": ml_table,
            "columns": [{"name": "x", "type": "float"}, {"name": "y", "type": "text"}],
        },
    )
    await org.ok(
        "POST", "/v1/data/write", {"tables": [{"table": ml_table, "rows": [{"x": 1, "y": label}]}]}
    )
    ml_model = (
        await org.ok(
            "POST",
            "/v1/ml-models",
            {"dataset_id": str(made["id"]), "target_column": "y", "name": f"{label} model"},
        )
    )["id"]
    ids = {
        "file_id": file_id,
        "execution_id": execution,
        "job_id": job,
        "name": table,
        "instrument_id": instrument,
        "experiment_id": experiment,
        "dashboard_id": dashboard,
        "widget_id": widget,
        "ml_model_id": ml_model,
    }
    return Holdings(
        ids=ids,
        table=table,
        row_id=row_id,
        markers=frozenset(
            {
                *ids.values(),
                row_id,
                label,
                ticket["upload_url"].split("?")[0],
                notification,
                f"{label}-dedupe",
                mask["id"],
                f"{label}-l",
            }
        ),
    )


#: The size of each organisation's image.
IMAGE_SIZE = (6, 4)


def _image(label: str) -> bytes:
    """The organisation's image file: a PNG whose colour depends on the label."""
    return image_png(*IMAGE_SIZE, color=(len(label), 80, 120))


#: Valid bodies for the write routes that take an id, so each gets past validation to the
#: lookup (then the answer must be 404). ``{b_file}`` and the like are B's own ids.
BODIES: dict[str, Any] = {
    "POST /api/v1/files/{file_id}/confirm-upload": {},
    "POST /api/v1/files/{file_id}/copy": {"original_path": "copied/by-b.csv"},
    "PATCH /api/v1/job-executions/{execution_id}": {"status": "failed"},
    "POST /api/v1/job-executions/{execution_id}/revert": {},
    "PATCH /api/v1/jobs/{job_id}": {"description": "changed by B"},
    "POST /api/v1/jobs/{job_id}/runs": {},
    "PATCH /api/v1/instruments/{instrument_id}": {"name": "taken by B"},
    "POST /api/v1/instruments/{instrument_id}/pairing-code": {},
    "POST /api/v1/instruments/{instrument_id}/device-status": {"status": "error"},
    "PATCH /api/v1/experiments/{experiment_id}": {"name": "taken by B"},
    "POST /api/v1/experiments/{experiment_id}/files": {"file_ids": ["{b_file}"]},
    "POST /api/v1/experiments/{experiment_id}/rows": {
        "rows": [{"table": "{b_table}", "row_id": "{b_row}"}]
    },
    "PATCH /api/v1/dashboards/{dashboard_id}": {"name": "taken by B"},
    "POST /api/v1/images/{file_id}/annotations": {
        "annotations": [{"mask": mask_b64(*IMAGE_SIZE), "label": "taken by B"}]
    },
}


def _fill(body: Any, b: Holdings) -> Any:
    text = json.dumps(body)
    text = text.replace("{b_file}", b.ids["file_id"]).replace("{b_table}", b.table)
    return json.loads(text.replace("{b_row}", b.row_id))


def _normalise(reply: Reply, ids: Mapping[str, str]) -> tuple[int, str]:
    """The reply with the ids it was asked about masked, to compare with a missing id's."""
    text = reply.text
    for value in sorted(ids.values(), key=len, reverse=True):
        text = text.replace(value, "<id>")
    text = _UUID.sub("<uuid>", text)
    text = re.sub(r"req_[0-9a-f]{32}", "<req>", text)
    return reply.status, text


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def orgs(
    server: LocalServer, session: aiohttp.ClientSession
) -> tuple[Org, Holdings, Org, Holdings]:
    a = Org(session, server, server.admin_key)
    b = Org(session, server, server.create_key("admin", org="Org B"))
    return a, await _populate(a, MARK), b, await _populate(b, "OrgB")


def _id_routes(server: LocalServer) -> list[Route]:
    return [r for r in keyed_routes(server) if r.takes_id]


async def test_every_route_answers_for_another_orgs_ids_as_for_missing_ones(
    server: LocalServer, orgs: tuple[Org, Holdings, Org, Holdings]
) -> None:
    a, mine, b, theirs = orgs
    unknown = sorted({p for r in _id_routes(server) for p in r.params} - set(mine.ids))
    assert not unknown, f"no resource fills the path parameters {unknown}: add it to _populate"
    failures = []
    for route in _id_routes(server):
        body = _fill(BODIES.get(str(route), {}), theirs)
        send = body if route.method in ("POST", "PUT", "PATCH") else None
        # A's id in one position and B's own in the others, then A's in every position.
        choices = [(p,) for p in route.params]
        if len(route.params) > 1:
            choices.append(route.params)
        for from_a in choices:
            values = {p: (mine if p in from_a else theirs).ids[p] for p in route.params}
            missing = {
                p: (f"missing-{uuid.uuid4().hex}" if p in from_a else theirs.ids[p])
                for p in route.params
            }
            got = await b.call(route.method, route.path(**values), send)
            baseline = await b.call(route.method, route.path(**missing), send)
            cell = f"{route} with A's {'+'.join(from_a)}"
            if 200 <= got.status < 300:
                failures.append(f"{cell}: {got.status} {got.text[:200]}")
            elif _normalise(got, values) != _normalise(baseline, missing):
                failures.append(f"{cell}: {got} but a missing id gets {baseline}")
            elif str(route) in BODIES and got.status != 404:
                failures.append(f"{cell}: {got.status}, expected 404: {got.text[:200]}")
    assert not failures, "\n".join(failures)
    await _a_is_untouched(server, a, mine)


async def test_another_orgs_ids_inside_bodies_are_not_found(
    server: LocalServer, orgs: tuple[Org, Holdings, Org, Holdings]
) -> None:
    """References in a body (attribution, links, triggers, runs, SQL) resolve in the caller's
    organisation only."""
    a, mine, b, theirs = orgs
    cases = [
        ("POST", "/v1/files/upload-url", {"file_name": "x.csv", "instrument_id": "{i}"}),
        ("POST", "/v1/files/upload-url", {"file_name": "x.csv", "job_execution_id": "{e}"}),
        ("POST", f"/v1/jobs/{theirs.ids['job_id']}/runs", {"file_ids": ["{f}"]}),
        ("POST", f"/v1/experiments/{theirs.ids['experiment_id']}/files", {"file_ids": ["{f}"]}),
        (
            "POST",
            "/v1/jobs",
            {
                "name": "spy",
                "code": "print(1)",
                "trigger_category": "file_uploaded",
                "trigger_instrument_id": "{i}",
            },
        ),
        (
            "POST",
            "/v1/data/write",
            {"tables": [{"table": theirs.table, "rows": [{"v": "x"}]}], "job_execution_id": "{e}"},
        ),
        (
            "POST",
            f"/v1/experiments/{theirs.ids['experiment_id']}/rows",
            {"rows": [{"table": "{t}", "row_id": "{r}"}]},
        ),
        (
            "POST",
            f"/v1/images/{theirs.ids['file_id']}/annotations",
            {"annotations": [{"mask": mask_b64(*IMAGE_SIZE), "label": "x", "file_id": "{f}"}]},
        ),
        (
            "POST",
            f"/v1/images/{theirs.ids['file_id']}/annotations",
            {
                "annotations": [{"mask": mask_b64(*IMAGE_SIZE), "label": "x"}],
                "job_execution_id": "{e}",
            },
        ),
        ("POST", "/v1/tools/read", {"target_name": "{t}", "target_type": "table"}),
        (
            "POST",
            "/v1/tools/write",
            {
                "target_name": theirs.table,
                "target_type": "table",
                "data": [{"v": "x"}],
                "mode": "create",
                "job_execution_id": "{e}",
            },
        ),
        (
            "POST",
            "/v1/tools/write",
            {
                "target_name": "{t}",
                "target_type": "table",
                "data": [{"id": "{r}", "v": "overwritten"}],
                "mode": "create-or-update",
                "on_match": "overwrite",
            },
        ),
        ("POST", "/v1/tools/batch-write", {"tables": {"{t}": [{"v": "x"}]}}),
        (
            "POST",
            "/v1/tools/batch-write",
            {"tables": {theirs.table: [{"v": "x"}]}, "options": {"job_execution_id": "{e}"}},
        ),
        ("POST", "/v1/ml-models/predict", {"data": [{"x": 1}], "ml_model_id": "{m}"}),
        ("POST", "/v1/ml-models/predict", {"data": [{"x": 1}], "ml_model_name": "{n}"}),
        (
            "POST",
            "/v1/ml-models",
            {"dataset_id": "1", "target_column": "v", "ml_model_id": "{m}"},
        ),
        ("POST", "/v1/tools/query", {"query": "SELECT * FROM {t}"}),
        (
            "POST",
            "/v1/data/write",
            {"tables": [{"table": "{t}", "rows": [{"id": "{r}", "v": "overwritten"}]}]},
        ),
        (
            "POST",
            "/v1/dashboards",
            {
                "name": "spy",
                "widgets": [
                    {"type": "table", "source": {"type": "sql", "query": "SELECT * FROM {t}"}}
                ],
            },
        ),
    ]
    failures = []
    for method, path, template in cases:
        text = json.dumps(template)
        own = {
            "{i}": mine.ids["instrument_id"],
            "{e}": mine.ids["execution_id"],
            "{f}": mine.ids["file_id"],
            "{t}": mine.table,
            "{r}": mine.row_id,
            "{m}": mine.ids["ml_model_id"],
            "{n}": f"{MARK} model",
        }
        fake = {
            k: (f"t_missing{uuid.uuid4().hex[:8]}" if k == "{t}" else str(uuid.uuid4()))
            for k in own
        }
        body_a, body_missing = text, text
        for k in own:
            body_a, body_missing = body_a.replace(k, own[k]), body_missing.replace(k, fake[k])
        got = await b.call(method, path, json.loads(body_a))
        baseline = await b.call(method, path, json.loads(body_missing))
        cell = f"{method} {path} with {template}"
        # B may see the ids it sent echoed back, nothing else of A's.
        shown = [m for m in mine.markers if m in got.text and m not in body_a]
        if shown:
            failures.append(f"{cell}: shows A's {shown}: {got.text[:200]}")
        elif 200 <= got.status < 300 and 200 <= baseline.status < 300:
            continue  # accepted alike (a dashboard's SQL is only run when its data is asked for)
        elif _normalise(got, own) != _normalise(baseline, fake):
            failures.append(f"{cell}: {got} but a missing one gets {baseline}")
    assert not failures, "\n".join(failures)
    await _a_is_untouched(server, a, mine)


async def test_listings_never_show_another_orgs_data(
    server: LocalServer, orgs: tuple[Org, Holdings, Org, Holdings]
) -> None:
    """Every GET route of B (listings, schema, its own resources' sub-listings) holds nothing of
    A's; the same routes with A's key do show A's data, so the scan can see it."""
    a, mine, b, theirs = orgs
    seen_by_a = ""
    for route in keyed_routes(server):
        if route.method != "GET":
            continue
        for org, held in ((b, theirs), (a, mine)):
            reply = await org.call("GET", route.path(**held.ids))
            assert reply.status < 500, (str(route), reply)
            if org is b:
                leaked = sorted(m for m in mine.markers if m in reply.text)
                assert not leaked, f"{route} shows B {leaked}: {reply.text[:300]}"
            else:
                seen_by_a += reply.text
    for marker in mine.markers:
        assert marker in seen_by_a, f"no listing of A's shows {marker}: the scan proves nothing"
    # B's dashboards cannot read A's table either: the widget's SQL resolves in B's database.
    board = await b.ok(
        "POST",
        "/v1/dashboards",
        {
            "name": "spy",
            "widgets": [
                {
                    "type": "table",
                    "id": "spy",
                    "source": {"type": "sql", "query": f"SELECT * FROM {mine.table}"},
                }
            ],
        },
    )
    data = await b.call("GET", f"/v1/dashboards/{board['id']}/widgets/spy/data")
    assert not any(m in data.text for m in mine.markers - {mine.table}), data


async def test_notifications_stay_in_their_organisation(
    server: LocalServer, orgs: tuple[Org, Holdings, Org, Holdings]
) -> None:
    """Each inbox holds only its organisation's notifications, dedupe keys are per organisation
    (B reusing A's key is delivered, and A's key stays taken for A), and muting is too."""
    a, _, b, _ = orgs
    key = f"{MARK}-dedupe"
    reused = await b.ok("POST", "/v1/notifications", {"title": "B's own", "dedupe_key": key})
    assert reused["status"] == "delivered"
    again = await a.ok("POST", "/v1/notifications", {"title": "again", "dedupe_key": key})
    assert again == {"id": None, "status": "deduplicated"}
    a_inbox = await a.ok("GET", "/v1/notifications")
    b_inbox = await b.ok("GET", "/v1/notifications")
    assert [n["title"] for n in a_inbox] == [f"{MARK} notice"]
    assert reused["id"] in {n["id"] for n in b_inbox}
    # B's inbox names A's dedupe key (B sent with it) but nothing else of A's.
    assert not any(m in json.dumps(b_inbox) for m in (f"{MARK} notice", a_inbox[0]["id"]))
    await b.ok("PUT", "/v1/admin/notifications", {"muted": True})
    assert await a.ok("GET", "/v1/admin/notifications") == {"muted": False}
    sent = await a.ok("POST", "/v1/notifications", {"title": "A still", "dedupe_key": "a-2"})
    assert sent["status"] == "delivered"


async def test_the_agent_sees_only_its_organisations_data(
    orgs: tuple[Org, Holdings, Org, Holdings],
) -> None:
    """B's agent runs never reach A's data: A's table is unknown to B's tools (by name and in
    SQL), B's recent files and job runs are B's, and A's saved chat is 404 for B, exactly as a
    chat that does not exist."""
    a, mine, b, _ = orgs
    path = "/v1/agent/runs"
    chat = await a.ok("POST", path, {"prompt": f"count the rows of {mine.table}", "save": True})
    assert chat["tool_calls"][0]["output"] == {"table": mine.table, "rows": 1}
    prompts = [
        "list tables",
        f"how many rows has {mine.table}? describe {mine.table}",
        f"`SELECT * FROM {mine.table}`",
        "show the recent files",
        f"when did {MARK} job last run?",
    ]
    for prompt in prompts:
        for stream in (False, True):
            reply = await b.call("POST", path, {"prompt": prompt, "stream": stream})
            assert reply.status == 200, reply
            assert not any(m in reply.text for m in mine.markers - {mine.table}), (prompt, reply)
    tables = await b.ok("POST", path, {"prompt": "list tables"})
    assert mine.table not in json.dumps(tables["tool_calls"])
    sql = await b.ok("POST", path, {"prompt": f"`SELECT * FROM {mine.table}`"})
    assert "no such table" in sql["tool_calls"][0]["output"]["error"]
    stolen = await b.call("POST", path, {"prompt": "list tables", "chat_id": chat["chat_id"]})
    missing = await b.call("POST", path, {"prompt": "list tables", "chat_id": "no-such-chat"})
    assert stolen.status == missing.status == 404
    assert stolen.json()["detail"].replace(chat["chat_id"], "X") == missing.json()[
        "detail"
    ].replace("no-such-chat", "X")


async def test_ml_models_stay_in_their_organisation(
    server: LocalServer, orgs: tuple[Org, Holdings, Org, Holdings]
) -> None:
    """Model names are per organisation: B may take A's name, and each name then means its own
    organisation's model; B's cancel of A's model is a 404 that leaves A's model as it was."""
    a, mine, b, _ = orgs
    name = f"{MARK} model"
    tables = await b.ok("GET", "/v1/datasets")
    own = next(t for t in tables if t["name"] == "m_orgb")
    taken = await b.ok(
        "POST", "/v1/ml-models", {"dataset_id": str(own["id"]), "target_column": "y", "name": name}
    )
    assert taken["id"] != mine.ids["ml_model_id"]
    assert [m["id"] for m in await b.ok("GET", "/v1/ml-models") if m["name"] == name] == [
        taken["id"]
    ]
    cancel = await b.call("POST", f"/v1/ml-models/{mine.ids['ml_model_id']}/cancel-training")
    assert cancel.status == 404
    assert (await a.ok("GET", f"/v1/ml-models/{mine.ids['ml_model_id']}"))["name"] == name


async def _a_is_untouched(server: LocalServer, a: Org, mine: Holdings) -> None:
    """Every GET of A's own resources still answers, with A's names and values."""
    for route in keyed_routes(server):
        if route.method == "GET" and route.takes_id:
            reply = await a.call("GET", route.path(**mine.ids))
            assert reply.status == 200, (str(route), reply)
    instrument = await a.ok("GET", f"/v1/instruments/{mine.ids['instrument_id']}")
    assert instrument["name"] == f"{MARK} reader"
    experiment = await a.ok("GET", f"/v1/experiments/{mine.ids['experiment_id']}")
    assert experiment["name"] == f"{MARK} experiment"
    execution = await a.ok("GET", f"/v1/job-executions/{mine.ids['execution_id']}")
    assert execution["status"] == "running"
    rows = await a.ok("POST", "/v1/tools/read", {"target_name": mine.table, "target_type": "table"})
    assert f"{MARK} row" in json.dumps(rows)
    content = await a.ok("GET", f"/v1/files/{mine.ids['file_id']}/content")
    async with a.session.get(content["download_url"]) as resp:
        assert await resp.read() == _image(MARK)
    (mask,) = await a.ok("GET", f"/v1/images/{mine.ids['file_id']}/annotations")
    assert mask["label"] == f"{MARK}-l"
    async with a.session.get(mask["mask_url"]) as resp:
        assert resp.status == 200


async def test_an_idempotency_key_replays_only_for_the_key_that_used_it(
    server: LocalServer, orgs: tuple[Org, Holdings, Org, Holdings]
) -> None:
    """Stored answers are per API key: B sending A's Idempotency-Key runs its own request and
    never sees A's answer (nor does another key of A's own organisation)."""
    a, mine, b, _ = orgs
    same = f"idem-{uuid.uuid4().hex}"
    body = {"name": f"{MARK} idempotent"}
    headers = {"Idempotency-Key": same}

    async def post(org: Org) -> Reply:
        async with org.session.post(
            server.base_url + "/v1/experiments",
            json=body,
            headers={"Authorization": f"Bearer {org.key}", **headers},
        ) as resp:
            return Reply(resp.status, await resp.text())

    first = await post(a)
    again = await post(a)
    assert first.status == again.status == 200
    assert again.json()["id"] == first.json()["id"]  # replayed for the same key
    other_key = Org(a.session, server, server.create_key("write"))
    for org in (b, other_key):
        reply = await post(org)
        assert reply.status == 200, reply
        assert reply.json()["id"] != first.json()["id"]
    listed = await b.ok("GET", "/v1/experiments")
    assert first.json()["id"] not in json.dumps(listed)
    assert mine.ids["experiment_id"] not in json.dumps(listed)
