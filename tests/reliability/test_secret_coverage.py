"""Secrets: a full run of every client method, with coverage that fails loudly when it goes stale.

``tests/security/test_secrets.py`` runs files, jobs, datasets and ML models on purpose and
reaches the rest by reflection, with placeholder arguments. This run reuses its helpers and
scanner and adds deliberate runs of what it reaches only by reflection (``datasets.transact`` and
``write_series``, instruments with pairing, experiments, dashboards, notifications, the agent
whole and streamed, image annotations and their mask URLs), then the sync client. It enumerates
every public attribute of the client, recursively, and fails:

* when a resource appears that this run does not know (so a new resource gets a deliberate run
  here, with its secrets, instead of placeholder calls only);
* when a method sent no request at all (a placeholder call refused locally proves nothing).

Everything the run produced is scanned at debug logging for the API keys (the admin key, a bad
key, the paired device's key), the pairing codes and every signed-URL signature the proxy saw;
and the proxy shows that no storage request carried ``Authorization``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
from security._support import RecordingProxy, SecretScanner, key_secret
from security.test_secrets import (
    Run,
    _client,
    _datasets,
    _failures,
    _files,
    _images,
    _jobs,
    _ml_models,
    _random_key,
    debug_logs,
    parts_server,
    proxy,
)

from labric import AsyncLabric, Labric
from labric.errors import BadRequestError, LabricError, NotFoundError, UnprocessableEntityError
from labric.models import TableWrite
from labric.resources._base import AsyncResource
from labric.server import LocalServer

__all__ = ["debug_logs", "parts_server", "proxy"]

#: The resources this run exercises on purpose. A resource missing here fails the run.
KNOWN_RESOURCES = frozenset(
    {
        "files",
        "datasets",
        "jobs",
        "jobs.executions",
        "instruments",
        "experiments",
        "dashboards",
        "notifications",
        "agent",
        "ml_models",
        "images",
    }
)


def client_resources(client: AsyncLabric) -> tuple[dict[str, AsyncResource], list[str]]:
    """Every resource reachable from the client's public attributes, by dotted name, and every
    public attribute that is not a resource (which the scan would not know how to run)."""
    found: dict[str, AsyncResource] = {}
    strange: list[str] = []

    def walk(obj: object, prefix: str) -> None:
        for name, value in vars(obj).items():
            if name.startswith("_"):
                continue
            if isinstance(value, AsyncResource):
                found[prefix + name] = value
                walk(value, f"{prefix}{name}.")
            else:
                strange.append(f"{prefix}{name} ({type(value).__name__})")

    walk(client, "")
    return found, strange


def resource_methods(resources: dict[str, AsyncResource]) -> dict[str, Callable[..., Any]]:
    """``"files.upload"`` -> bound method, for every public method of every resource."""
    return {
        f"{prefix}.{name}": getattr(resource, name)
        for prefix, resource in resources.items()
        for name, _ in inspect.getmembers(type(resource), inspect.isfunction)
        if not name.startswith("_")
    }


@attrs.define
class CoverageRun(Run):
    """A :class:`Run` that tells deliberate calls from placeholder ones, and which of the latter
    reached the server (counted by the recording proxy)."""

    proxy: RecordingProxy | None = None
    deliberate: set[str] = attrs.field(factory=set)
    reached: set[str] = attrs.field(factory=set)

    async def call(
        self,
        name: str,
        call: Callable[[], Awaitable[Any]],
        *,
        expect: type[BaseException] | tuple[type[BaseException], ...] | None = None,
    ) -> Any:
        self.deliberate.add(name)
        return await super().call(name, call, expect=expect)

    async def call_generically(self, name: str, method: Callable[..., Any]) -> None:
        assert self.proxy is not None
        before = len(self.proxy.requests)
        await super().call_generically(name, method)
        if len(self.proxy.requests) > before:
            self.reached.add(name)


async def _more_datasets(run: CoverageRun, c: AsyncLabric) -> None:
    ds = c.datasets
    write = TableWrite(table="readings", rows=[{"sample": "S-9", "od600": 0.9}])
    await run.call("datasets.transact", lambda: ds.transact([write], return_rows=True))
    await run.call("datasets.transact", lambda: ds.transact([write], dry_run=True))
    await run.call(
        "datasets.write_series",
        lambda: ds.write_series("no_such_raw", parent="S-9", columns={"v": [1, 2]}),
        expect=(BadRequestError, NotFoundError),
    )


async def _instruments(run: CoverageRun, c: AsyncLabric, tmp: Path, base_url: str) -> None:
    ins = c.instruments
    made = await run.call("instruments.create", lambda: ins.create(name="Plate reader 2"))
    run.scanner.add_secret(made.pairing_code)
    iid = made.instrument.id
    await run.call("instruments.get", lambda: ins.get(iid))
    await run.call("instruments.list", lambda: ins.list().to_list())
    await run.call("instruments.update", lambda: ins.update(iid, description="bay 2"))
    fresh = await run.call("instruments.pairing_code", lambda: ins.pairing_code(iid))
    run.scanner.add_secret(fresh.pairing_code)
    await run.call("instruments.pair", lambda: ins.pair(made.pairing_code), expect=LabricError)
    device = await run.call("instruments.pair", lambda: ins.pair(fresh.pairing_code))
    run.scanner.add_secret(key_secret(device.api_key))
    async with _client(base_url, device.api_key, tmp / "device") as as_device:
        await run.call(
            "instruments.report_status",
            lambda: as_device.instruments.report_status(iid, status="online", app_version="1.0"),
        )
        await run.call(
            "files.upload", lambda: as_device.files.upload(b"A1,0.4\n", name="device/p1.csv")
        )
    await run.call("instruments.device_status", lambda: ins.device_status(iid))
    await run.call("instruments.get", lambda: ins.get("no-such-instrument"), expect=NotFoundError)
    await run.call("instruments.delete", lambda: ins.delete(iid, force=True))


async def _experiments(run: CoverageRun, c: AsyncLabric, file_id: str) -> None:
    ex = c.experiments
    made = await run.call("experiments.create", lambda: ex.create(name="Scan run", tags=["s"]))
    eid = made.id
    await run.call("experiments.get", lambda: ex.get(eid))
    await run.call("experiments.list", lambda: ex.list(tag="s").to_list())
    await run.call("experiments.update", lambda: ex.update(eid, status="running"))
    await run.call("experiments.link_files", lambda: ex.link_files(eid, [file_id]))
    await run.call("experiments.files", lambda: ex.files(eid).to_list())
    await run.call("experiments.unlink_file", lambda: ex.unlink_file(eid, file_id))
    await run.call(
        "experiments.link_rows",
        lambda: ex.link_rows(eid, [("readings", "no-such-row")]),
        expect=UnprocessableEntityError,
    )
    await run.call("experiments.rows", lambda: ex.rows(eid))
    await run.call("experiments.delete", lambda: ex.delete(eid))
    await run.call("experiments.get", lambda: ex.get(eid), expect=NotFoundError)


async def _dashboards(run: CoverageRun, c: AsyncLabric, tmp: Path) -> None:
    db = c.dashboards
    text = {"type": "text", "markdown": "plate summary", "id": "note"}
    made = await run.call("dashboards.create", lambda: db.create(name="Scan", widgets=[text]))
    did = made.id
    await run.call("dashboards.get", lambda: db.get(did))
    await run.call("dashboards.list", lambda: db.list().to_list())
    await run.call("dashboards.update", lambda: db.update(did, description="scanned"))
    await run.call("dashboards.widget_data", lambda: db.widget_data(did, "note"))
    await run.call(
        "dashboards.widget_data", lambda: db.widget_data(did, "no-such"), expect=NotFoundError
    )
    try:
        import matplotlib  # noqa: F401
    except ImportError:  # rendering is an extra; its request is still made below
        await run.call(
            "dashboards.render", lambda: db.render(did, tmp / "board.png"), expect=LabricError
        )
    else:
        await run.call("dashboards.render", lambda: db.render(did, tmp / "board.png"))
    await run.call("dashboards.delete", lambda: db.delete(did))


async def _notifications(run: CoverageRun, c: AsyncLabric) -> None:
    nt = c.notifications
    await run.call("notifications.send", lambda: nt.send("Scan done", dedupe_key="scan"))
    await run.call("notifications.send", lambda: nt.send("Scan again", dedupe_key="scan"))
    await run.call(
        "notifications.send",
        lambda: nt.send("x", dedupe_key="reserved", data={"api_key_id": "me"}),
        expect=UnprocessableEntityError,
    )
    await run.call("notifications.list", lambda: nt.list(page_size=1).to_list())


async def _agent(run: CoverageRun, c: AsyncLabric) -> None:
    ag = c.agent

    async def streamed(prompt: str, **kw: Any) -> list[Any]:
        stream = ag.stream(prompt, **kw)
        run.scanner.add_repr("AsyncEventStream", stream)
        async with stream as events:
            return [event async for event in events]

    saved = await run.call("agent.run", lambda: ag.run("list tables and recent files", save=True))
    await run.call("agent.stream", lambda: streamed("`SELECT 1`", chat_id=saved.chat_id))
    await run.call("agent.stream", lambda: streamed('notify "Scan"'))
    await run.call("agent.run", lambda: ag.run("x", chat_id="no-such-chat"), expect=NotFoundError)
    await run.call("agent.stream", lambda: streamed("x", chat_id="nope"), expect=NotFoundError)


def _sync_run(run: CoverageRun, base_url: str, key: str, file_id: str, tmp: Path) -> None:
    """The sync client: its calls cross a thread; errors carry loop-side frames."""
    with Labric(key, base_url=base_url, max_retries=0) as sync:
        run.scanner.add_repr("Labric", sync)
        run.scanner.add_repr("Labric.files", sync.files)
        got = sync.files.read_bytes(file_id)
        assert got
        sync.files.download(file_id, tmp / "sync.csv")
        uploaded = sync.files.upload(b"x,y\n1,2\n", name="sync.csv")
        run.scanner.add_repr("sync upload", uploaded)
        for call in (
            lambda: sync.files.get("no-such-file"),
            lambda: sync.files.read_bytes("no-such-file"),
            lambda: sync.jobs.get("no-such-job"),
        ):
            with pytest.raises(NotFoundError) as caught:
                call()
            run.scanner.add_exception("sync", caught.value)
        pager = sync.files.list(page_size=1)
        run.scanner.add_repr("SyncPager", pager)
        assert next(iter(pager)) is not None
        with sync.agent.stream("list tables") as events:
            run.scanner.add_repr("SyncEventStream", events)
            for event in events:
                run.scanner.add_repr("sync agent event", event)


async def test_every_client_method_is_scanned_and_leaks_nothing(
    parts_server: LocalServer,
    proxy: RecordingProxy,
    tmp_path: Path,
    debug_logs: pytest.LogCaptureFixture,
    request: pytest.FixtureRequest,
) -> None:
    bad_key = _random_key()
    scanner = SecretScanner([key_secret(parts_server.admin_key), key_secret(bad_key)])
    run = CoverageRun(scanner, proxy=proxy)
    instrument = parts_server.create_instrument("Plate reader")
    async with _client(proxy.base_url, parts_server.admin_key, tmp_path / "state") as c:
        resources, strange = client_resources(c)
        assert strange == [], f"public client attributes the scan cannot run: {strange}"
        unknown = sorted(set(resources) - KNOWN_RESOURCES)
        assert not unknown, (
            f"new resources {unknown}: add a deliberate run of them to "
            "tests/reliability/test_secret_coverage.py (and KNOWN_RESOURCES)"
        )
        methods = resource_methods(resources)
        file_id = await _files(run, c, instrument, tmp_path)
        await _jobs(run, c, file_id)
        await _datasets(run, c)
        await _more_datasets(run, c)
        await _instruments(run, c, tmp_path, proxy.base_url)
        await _experiments(run, c, file_id)
        await _dashboards(run, c, tmp_path)
        await _notifications(run, c)
        await _agent(run, c)
        await _ml_models(run, c)
        await _images(run, c, instrument)
        for name, method in methods.items():
            scanner.add_repr(name.rsplit(".", 1)[0], method.__self__)
            if name not in run.deliberate:
                await run.call_generically(name, method)
        scanner.add_repr("client.stats", c.stats)
    await _failures(run, parts_server, proxy, file_id, tmp_path, bad_key)
    # In a thread: the proxy and the server answer from this test's event loop.
    await asyncio.to_thread(
        _sync_run, run, proxy.base_url, parts_server.admin_key, file_id, tmp_path
    )

    generic_only = sorted(set(methods) - run.deliberate)
    request.node.user_properties.append(("deliberate", sorted(run.deliberate & set(methods))))
    request.node.user_properties.append(("placeholders only", generic_only))
    silent = sorted(set(methods) - run.deliberate - run.reached)
    assert not silent, (
        f"these methods sent no request in the secrets scan: {silent}; call them on purpose in "
        "tests/reliability/test_secret_coverage.py"
    )

    storage = proxy.storage_requests()
    assert {r.method for r in storage} >= {"PUT", "GET"}
    assert [r.raw_path for r in storage if "Authorization" in r.headers] == []
    api = [r for r in proxy.requests if r.path.startswith("/api/")]
    assert all("Authorization" in r.headers for r in api)
    scanner.add_secret(*proxy.signatures())
    scanner.add_logs(debug_logs.records)
    scanner.add("caplog.text", debug_logs.text)
    assert any(
        r.name.startswith("labric") and r.levelno == logging.DEBUG for r in debug_logs.records
    )
    assert not scanner.findings(), "\n".join(scanner.findings())


def test_the_enumeration_sees_every_resource_and_method() -> None:
    """The enumeration itself: nested resources are found, and so are all their methods."""
    c = AsyncLabric("lbk_abcd1234_" + "k" * 40, base_url="http://127.0.0.1:1/api")
    resources, strange = client_resources(c)
    assert strange == []
    assert set(resources) >= {"files", "jobs", "jobs.executions", "datasets"}
    methods = resource_methods(resources)
    assert {"files.upload_many", "jobs.executions.start", "datasets.transact"} <= set(methods)
    # Every method of a resource class is found, whatever the module that defines it.
    for prefix, resource in resources.items():
        own = {n for n in dir(type(resource)) if not n.startswith("_")}
        callables = {n for n in own if callable(getattr(type(resource), n))}
        assert {m.split(".")[-1] for m in methods if m.rsplit(".", 1)[0] == prefix} == callables


def test_a_new_resource_or_attribute_is_reported() -> None:
    c = AsyncLabric("lbk_abcd1234_" + "k" * 40, base_url="http://127.0.0.1:1/api")
    c.widgets = AsyncResource(c._transport)  # type: ignore[attr-defined]
    c.helper = object()  # type: ignore[attr-defined]
    resources, strange = client_resources(c)
    assert set(resources) - KNOWN_RESOURCES == {"widgets"}
    assert strange == ["helper (object)"]
