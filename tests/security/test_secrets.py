"""Secrets: a full run of the client leaks no API key and no signed-URL signature (storage
URLs, and the masks' URLs of image annotations).

Every public method of every resource is run (the known ones with meaningful arguments, any
other one found by reflection with placeholder arguments), successful and failing alike, with
``labric``, ``aiohttp`` and the root logger at DEBUG. Every log record, ``repr``, message and
formatted traceback (causes and notes included) is then scanned for the keys' secrets and for
every signature the server handed out, as a recording proxy in front of the server saw them.
The same proxy shows that no storage request carried ``Authorization``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import secrets
import string
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest
from _masks import image_png, mask_b64
from aiohttp import web

from labric import AsyncLabric, Labric, RetryPolicy, Timeout, TransferConfig
from labric._core.pagination import Page
from labric.errors import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    InternalServerError,
    LabricError,
    NotFoundError,
    PermissionDeniedError,
    UnprocessableEntityError,
)
from labric.models import Annotation, FileContent, SaveAnnotation, UploadPart, UploadURL
from labric.resources._base import AsyncResource
from labric.server import FaultConfig, LocalServer

from ._support import KiB, RecordingProxy, SecretScanner, StandIn, key_secret

PART = 64 * KiB
FAST = RetryPolicy(max_retries=1, initial_delay=0.001, max_delay=0.005, max_server_delay=0.01)
JOB_CODE = "print('hello from the job')\n"


def _random_key() -> str:
    alphabet = string.ascii_letters + string.digits
    return "lbk_nottaken_" + "".join(secrets.choice(alphabet) for _ in range(40))


def _client(base_url: str, key: str, state: Path, **overrides: Any) -> AsyncLabric:
    transfer = TransferConfig(
        part_size=PART,
        multipart_threshold=2 * PART,
        chunk_size=16 * KiB,
        state_dir=str(state),
    )
    options: dict[str, Any] = {"retry": FAST, "transfer": transfer, **overrides}
    return AsyncLabric(key, base_url=base_url, **options)


@pytest.fixture
async def parts_server(tmp_path: Path) -> AsyncIterator[LocalServer]:
    async with LocalServer(tmp_path / "server", part_size=PART) as srv:
        yield srv


@pytest.fixture
async def proxy(parts_server: LocalServer) -> AsyncIterator[RecordingProxy]:
    async with RecordingProxy(parts_server) as p:
        yield p


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    for name in ("labric", "labric.server", "aiohttp", "asyncio"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


# -- running every method -------------------------------------------------------------------


def public_methods(client: AsyncLabric) -> dict[str, Callable[..., Any]]:
    """``"files.upload"`` -> bound method, for every public method of every resource (nested
    resources such as ``jobs.executions`` included), found by reflection."""
    found: dict[str, Callable[..., Any]] = {}

    def walk(obj: object, prefix: str) -> None:
        for name, value in vars(obj).items():
            if name.startswith("_") or not isinstance(value, AsyncResource):
                continue
            for method, _ in inspect.getmembers(type(value), inspect.isfunction):
                if not method.startswith("_"):
                    found[f"{prefix}{name}.{method}"] = getattr(value, method)
            walk(value, f"{prefix}{name}.")

    walk(client, "")
    return found


def _placeholder(annotation: Any) -> Any:
    """A value of the outermost type an annotation names (its first alternative)."""
    head = str(annotation).split("|")[0].split("[")[0].strip().rsplit(".", 1)[-1]
    if head in ("Mapping", "dict", "MutableMapping"):
        return {}
    if head in ("Sequence", "list", "Iterable", "tuple", "RowsType") or "Rows" in head:
        return []
    if head == "int":
        return 1
    if head == "float":
        return 1.0
    if head == "bool":
        return False
    return f"missing-{secrets.token_hex(4)}"


async def _call_generically(method: Callable[..., Any]) -> Any:
    """Call a method with placeholder values for its required arguments (unknown ids, empty
    collections), then await, page or enter what it returns."""
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for param in inspect.signature(method).parameters.values():
        if param.default is not param.empty or param.kind in (
            param.VAR_POSITIONAL,
            param.VAR_KEYWORD,
        ):
            continue
        if param.kind is param.KEYWORD_ONLY:
            kwargs[param.name] = _placeholder(param.annotation)
        else:
            args.append(_placeholder(param.annotation))
    result = method(*args, **kwargs)
    if inspect.isawaitable(result):
        return await result
    if hasattr(result, "__aenter__"):
        async with result as inner:
            return inner
    return result


@attrs.define
class Run:
    """Calls methods, recording what each returned or raised, for the scanner."""

    scanner: SecretScanner
    called: set[str] = attrs.field(factory=set)
    notes: list[str] = attrs.field(factory=list)
    raised: list[tuple[str, BaseException]] = attrs.field(factory=list)

    async def call(
        self,
        name: str,
        call: Callable[[], Awaitable[Any]],
        *,
        expect: type[BaseException] | tuple[type[BaseException], ...] | None = None,
    ) -> Any:
        self.called.add(name)
        try:
            result = await call()
        except LabricError as exc:
            self.scanner.add_exception(name, exc)
            self.raised.append((name, exc))
            if expect is None or not isinstance(exc, expect):
                raise
            return None
        if expect is not None:
            raise AssertionError(f"{name} should have raised {expect}")
        self.scanner.add_repr(name, result)
        return result

    async def call_generically(self, name: str, method: Callable[..., Any]) -> None:
        self.called.add(name)
        try:
            result = await _call_generically(method)
        except LabricError as exc:
            self.scanner.add_exception(name, exc)
            self.raised.append((name, exc))
        except (TypeError, ValueError) as exc:
            self.notes.append(f"{name}: not callable with placeholders ({exc})")
            self.scanner.add_exception(name, exc)
        else:
            self.scanner.add_repr(name, result)


async def _files(run: Run, c: AsyncLabric, instrument: str, tmp: Path) -> str:
    small = b"plate,od\nA1,0.5\n" * 64
    big = bytes(range(256)) * (5 * PART // 256)  # five parts, fetched as ranges
    source = tmp / "run.csv"
    source.write_bytes(small)
    up = await run.call(
        "files.upload", lambda: c.files.upload(small, name="a.csv", instrument_id=instrument)
    )
    await run.call("files.upload", lambda: c.files.upload(source, instrument_id=instrument))
    big_up = await run.call(
        "files.upload", lambda: c.files.upload(big, name="big.bin", instrument_id=instrument)
    )
    many = await run.call(
        "files.upload_many",
        lambda: c.files.upload_many(
            [("m/b.csv", b"b"), ("m/c.csv", b"c")], instrument_id=instrument
        ),
    )
    assert all(o.ok for o in many)
    await run.call("files.list", lambda: c.files.list())
    await run.call("files.list", lambda: c.files.list(page_size=1, limit=3).to_list())
    await run.call("files.get", lambda: c.files.get(up.file_id))
    await run.call("files.get", lambda: c.files.get("no-such-file"), expect=NotFoundError)
    content = await run.call("files.content", lambda: c.files.content(up.file_id))
    assert "X-Labric-Signature=" in content.download_url
    await run.call("files.upload_status", lambda: c.files.upload_status(big_up.file_id))
    await run.call("files.download", lambda: c.files.download(up.file_id, tmp / "one.csv"))
    await run.call("files.download", lambda: c.files.download(big_up.file_id, tmp / "big.bin"))
    outcomes = await run.call(
        "files.download_many",
        lambda: c.files.download_many([up.file_id, big_up.file_id, "no-such-file"], tmp / "many"),
    )
    assert [o.ok for o in outcomes] == [True, True, False]
    for outcome in outcomes:
        if outcome.error is not None:
            run.scanner.add_exception("files.download_many[error]", outcome.error)
    assert await run.call("files.read_bytes", lambda: c.files.read_bytes(up.file_id)) == small
    await run.call(
        "files.read_bytes", lambda: c.files.read_bytes("no-such-file"), expect=NotFoundError
    )
    await run.call("files.delete", lambda: c.files.delete(many[0].file.file_id))
    await run.call("files.delete", lambda: c.files.delete("no-such-file"), expect=NotFoundError)
    return str(up.file_id)


async def _jobs(run: Run, c: AsyncLabric, file_id: str) -> None:
    job = await run.call("jobs.create", lambda: c.jobs.create(name="secrets-job", code=JOB_CODE))
    await run.call("jobs.get", lambda: c.jobs.get(job.id))
    await run.call("jobs.list", lambda: c.jobs.list().to_list())
    await run.call("jobs.update", lambda: c.jobs.update(job.id, description="scanned"))
    execution = await run.call("jobs.run", lambda: c.jobs.run(job.id, file_ids=[file_id]))
    finished = await run.call("jobs.wait", lambda: c.jobs.wait(execution.id, timeout=60))
    assert finished.status == "completed"
    ex = c.jobs.executions
    await run.call("jobs.executions.list", lambda: ex.list(job_id=job.id).to_list())
    await run.call("jobs.executions.get", lambda: ex.get(execution.id))
    logs = await run.call("jobs.executions.logs", lambda: ex.logs(execution.id))
    assert logs is not None
    opened = await run.call("jobs.executions.start", lambda: ex.start(job_name="off-platform"))
    await run.call(
        "jobs.executions.close", lambda: ex.close(opened.job_execution_id, status="completed")
    )
    await run.call("jobs.executions.revert", lambda: ex.revert(opened.job_execution_id))
    await run.call("jobs.executions.get", lambda: ex.get("no-such-execution"), expect=NotFoundError)

    async def tracked() -> Any:
        async with c.jobs.track(job_name="tracked") as execution:
            return execution

    await run.call("jobs.track", tracked)
    await run.call("jobs.archive", lambda: c.jobs.archive(job.id))


async def _datasets(run: Run, c: AsyncLabric) -> None:
    ds = c.datasets
    columns = [{"name": "sample", "type": "text"}, {"name": "od600", "type": "float"}]
    await run.call("datasets.create", lambda: ds.create("readings", columns=columns))
    await run.call("datasets.list", lambda: ds.list())
    await run.call("datasets.get", lambda: ds.get("readings"))
    rows = [{"sample": f"S-{i}", "od600": i / 10} for i in range(5)]
    await run.call("datasets.write", lambda: ds.write("readings", rows))
    await run.call("datasets.rows", lambda: ds.rows("readings").to_list())
    await run.call("datasets.query", lambda: ds.query("SELECT count(*) AS n FROM readings"))
    await run.call("datasets.get", lambda: ds.get("no_such_table"), expect=NotFoundError)
    # The deprecated twins warn each time (the suite makes warnings errors).
    with pytest.warns(DeprecationWarning, match="tools/write"):
        await run.call("datasets.tools_write", lambda: ds.tools_write("readings", rows))
    with pytest.warns(DeprecationWarning, match="tools/batch-write"):
        await run.call(
            "datasets.batch_write", lambda: ds.batch_write({"readings": rows}, return_records=True)
        )
    with pytest.warns(DeprecationWarning, match="tools/write"):
        await run.call(
            "datasets.tools_write",
            lambda: ds.tools_write("core_user", [{"name": "x"}]),
            expect=PermissionDeniedError,
        )


async def _ml_models(run: Run, c: AsyncLabric) -> None:
    """Train, wait, predict, retrain and cancel: the model's answers and errors are scanned."""
    m = c.ml_models
    columns = [{"name": "od600", "type": "float"}, {"name": "grew", "type": "boolean"}]
    table = await c.datasets.create("growth", columns=columns)
    await c.datasets.write("growth", [{"od600": i / 10, "grew": i >= 10} for i in range(20)])
    model = await run.call(
        "ml_models.train",
        lambda: m.train(dataset_id=table.id or 0, target_column="grew", name="growth"),
    )
    await run.call("ml_models.wait", lambda: m.wait(model.id))
    await run.call("ml_models.get", lambda: m.get(model.id))
    await run.call("ml_models.list", lambda: m.list().to_list())
    await run.call("ml_models.predict", lambda: m.predict([{"od600": 1.5}], ml_model_id=model.id))
    await run.call(
        "ml_models.predict",
        lambda: m.predict([{"od600": "x"}], ml_model_name="growth"),
        expect=UnprocessableEntityError,
    )
    await run.call(
        "ml_models.cancel_training", lambda: m.cancel_training(model.id), expect=BadRequestError
    )


async def _images(run: Run, c: AsyncLabric, instrument: str) -> None:
    """Masks: their signed URLs come back in every answer and are fetched without the key."""
    image = await run.call(
        "files.upload",
        lambda: c.files.upload(image_png(8, 6), name="cells.png", instrument_id=instrument),
    )
    entry = SaveAnnotation(mask=mask_b64(8, 6, [(1, 1, 3, 2)]), label="cell")
    saved = await run.call("images.annotate", lambda: c.images.annotate(image.file_id, [entry]))
    listed = await run.call("images.annotations", lambda: c.images.annotations(image.file_id))
    await run.call(
        "images.annotate",
        lambda: c.images.annotate(image.file_id, [{"mask": "eA==", "label": "x"}]),
        expect=BadRequestError,
    )
    await run.call(
        "images.annotations", lambda: c.images.annotations("no-such-file"), expect=NotFoundError
    )
    for annotation in (*saved, *listed):
        assert "X-Labric-Signature=" in annotation.mask_url
        async with aiohttp.ClientSession() as plain, plain.get(annotation.mask_url) as resp:
            assert resp.status == 200
            assert resp.content_type == "image/png"


async def _failures(
    run: Run, server: LocalServer, proxy: RecordingProxy, file_id: str, tmp: Path, bad_key: str
) -> None:
    async with _client(proxy.base_url, bad_key, tmp / "bad") as bad:
        await run.call("files.list", lambda: bad.files.list(), expect=AuthenticationError)
        await run.call(
            "files.upload", lambda: bad.files.upload(b"x", name="x.csv"), expect=AuthenticationError
        )
    async with _client(proxy.base_url, server.admin_key, tmp / "faulty", max_retries=0) as c:
        server.faults.update(FaultConfig(error=1.0, scope="api", seed=1))
        await run.call("files.get", lambda: c.files.get(file_id), expect=InternalServerError)
        server.faults.update(FaultConfig(error=1.0, scope="storage", seed=1))
        await run.call(
            "files.read_bytes", lambda: c.files.read_bytes(file_id), expect=InternalServerError
        )
        await run.call(
            "files.download",
            lambda: c.files.download(file_id, tmp / "faulty.csv"),
            expect=InternalServerError,
        )
        server.faults.update(FaultConfig())
    # Connection refused: a port nobody listens on (the proxy's, once it is gone, is not known
    # to be free, so bind one and close it).
    async with StandIn() as gone:
        port = gone.port
    async with _client(f"http://127.0.0.1:{port}/api", server.admin_key, tmp / "refused") as c:
        await run.call("files.list", lambda: c.files.list(), expect=APIConnectionError)


async def test_a_full_run_leaks_no_secret(
    parts_server: LocalServer,
    proxy: RecordingProxy,
    tmp_path: Path,
    debug_logs: pytest.LogCaptureFixture,
    request: pytest.FixtureRequest,
) -> None:
    bad_key = _random_key()
    scanner = SecretScanner([key_secret(parts_server.admin_key), key_secret(bad_key)])
    run = Run(scanner)
    instrument = parts_server.create_instrument("Plate reader")
    async with _client(proxy.base_url, parts_server.admin_key, tmp_path / "state") as c:
        for where, obj in [("client", c), ("config", c.config), ("transport", c._transport)]:
            scanner.add_repr(where, obj)
        file_id = await _files(run, c, instrument, tmp_path)
        await _jobs(run, c, file_id)
        if hasattr(c, "datasets"):
            await _datasets(run, c)
        await _ml_models(run, c)
        await _images(run, c, instrument)
        methods = public_methods(c)
        for name, method in methods.items():
            scanner.add_repr(name.rsplit(".", 1)[0], method.__self__)
            if name not in run.called:
                await run.call_generically(name, method)
    await _failures(run, parts_server, proxy, file_id, tmp_path, bad_key)
    await run.call("jobs.wait", _wait_times_out(parts_server, proxy, tmp_path), expect=LabricError)
    sync = Labric(parts_server.admin_key, base_url=proxy.base_url)
    scanner.add_repr("Labric", sync)
    sync.close()

    request.node.user_properties.append(("methods", sorted(methods)))
    request.node.user_properties.append(("notes", run.notes))
    assert run.called >= set(methods)
    # Every method named here was called on purpose, not only by reflection.
    for name in [
        "files.list",
        "files.get",
        "files.content",
        "files.upload",
        "files.upload_many",
        "files.download",
        "files.download_many",
        "files.read_bytes",
        "files.delete",
        "files.upload_status",
        "jobs.executions.start",
        "jobs.executions.close",
        "images.annotate",
        "images.annotations",
    ]:
        assert name in run.called, name

    # The proxy saw every request: storage never got the key, the API always did.
    storage = proxy.storage_requests()
    assert {r.method for r in storage} >= {"PUT", "GET"}
    assert not [r.raw_path for r in storage if "Authorization" in r.headers]
    api = [r for r in proxy.requests if r.path.startswith("/api/")]
    assert all("Authorization" in r.headers for r in api)
    signatures = proxy.signatures()
    assert len(signatures) >= 8  # uploads, parts, downloads, ranges
    scanner.add_secret(*signatures)
    scanner.add_logs(debug_logs.records)
    scanner.add("caplog.text", debug_logs.text)
    assert any(r.name.startswith("labric") for r in debug_logs.records)
    assert not scanner.findings(), "\n".join(scanner.findings())


def _wait_times_out(
    server: LocalServer, proxy: RecordingProxy, tmp: Path
) -> Callable[[], Awaitable[Any]]:
    async def wait() -> Any:
        async with _client(proxy.base_url, server.admin_key, tmp / "wait") as c:
            job = await c.jobs.create(name="slow", code="import time\ntime.sleep(30)\n")
            execution = await c.jobs.run(job.id)
            try:
                return await c.jobs.wait(execution.id, timeout=0.05, poll_interval=0.01)
            finally:
                await c.jobs.update(job.id, archived=True)

    return wait


# -- signed URLs in models and pages ----------------------------------------------------------


def test_signed_url_fields_are_left_out_of_reprs() -> None:
    assert attrs.fields(FileContent).download_url.repr is False
    assert attrs.fields(UploadURL).upload_url.repr is False
    assert attrs.fields(UploadPart).url.repr is False
    assert attrs.fields(Page).next_url.repr is False
    assert attrs.fields(Annotation).mask_url.repr is False
    assert attrs.fields(SaveAnnotation).mask.repr is False
    url = (
        "http://127.0.0.1:1/storage/v1/objects/f?X-Labric-Expires=1&X-Labric-Signature=" + "ab" * 32
    )
    content = FileContent(file_id="f", download_url=url, preview_truncated=False)
    ticket = UploadURL(file_id="f", upload_url=url, expires_at="2030-01-01T00:00:00Z")
    part = UploadPart(number=1, offset=0, size=1, url=url)
    mask = Annotation(id="a", label="cell", mask_url=url)
    for model in (content, ticket, part, Page([1], url), mask):
        assert "Signature" not in repr(model)
        assert "ab" * 32 not in repr(model)


# -- storage errors whose aiohttp text holds the signed URL -----------------------------------

SIGNATURE = "5e" * 32


def _content_answer(download_url: str, size: int = 1) -> web.Response:
    return web.json_response(
        {
            "file_id": "f1",
            "file_name": "a.csv",
            "download_url": download_url,
            "preview_truncated": False,
            "size_bytes": size,
            "crc32c_hash": None,
        }
    )


def _signed(origin: str) -> str:
    query = f"X-Labric-Expires=99999999999&X-Labric-Signature={SIGNATURE}"
    return f"{origin}/storage/v1/objects/f1?{query}"


async def _scan_failure(exc: BaseException, caplog: pytest.LogCaptureFixture) -> list[str]:
    scanner = SecretScanner([SIGNATURE])
    scanner.add_exception("error", exc)
    scanner.add_logs(caplog.records)
    return scanner.findings()


@pytest.mark.parametrize("failure", ["invalid-url", "refused", "read-timeout", "pool-timeout"])
async def test_storage_failures_never_show_the_signature(
    failure: str, tmp_path: Path, debug_logs: pytest.LogCaptureFixture
) -> None:
    """aiohttp puts the whole URL in some messages (an invalid URL, a connect timeout): the
    mapped error must not chain such an exception, nor repeat its text."""
    async with StandIn() as api, StandIn() as storage:
        if failure == "invalid-url":
            url = f"http://127.0.0.1:{api.port}:99/storage?X-Labric-Signature={SIGNATURE}"
        elif failure == "refused":
            async with StandIn() as gone:
                port = gone.port
            url = _signed(f"http://127.0.0.1:{port}")
        else:
            url = _signed(storage.origin)
        api.on("GET", "/api/v1/files/f1/content", _content_answer(url))
        storage.on("GET", "/storage/v1/objects/f1", storage.hang)
        api.on("GET", "/api/v1/hang", api.hang)
        timeout = Timeout(connect=0.2, read=0.2)
        options: dict[str, Any] = {"timeout": timeout, "max_retries": 0}
        if failure == "pool-timeout":
            # The wait for a pool slot counts against the connect timeout; give the first,
            # real request room to connect on a loaded machine.
            options["timeout"] = Timeout(connect=2.0, read=2.0)
            options["max_connections"] = 1
        async with _client(api.base_url, "lbk_abcd1234_" + "s" * 40, tmp_path, **options) as c:
            if failure == "pool-timeout":
                # The only connection is held by a request that never ends; the storage request
                # times out waiting for a slot, and aiohttp's message names the full URL.
                info = await c.files.content("f1")
                holder = asyncio.ensure_future(
                    c._transport.request("GET", "/v1/hang", timeout=Timeout(read=30))
                )
                await api.hanging.wait()
                with pytest.raises(APITimeoutError) as caught:
                    async with c._transport.stream("GET", info.download_url) as resp:
                        await resp.read()
                holder.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await holder
            else:
                expected: type[APIError] = (
                    APITimeoutError if failure == "read-timeout" else APIConnectionError
                )
                if failure == "invalid-url":
                    # A storage URL that does not parse is refused at once, not tried and retried.
                    expected = APIResponseValidationError
                with pytest.raises(expected) as caught:
                    await c.files.read_bytes("f1")
    assert caught.value.path == "/storage/v1/objects/f1" or failure == "invalid-url"
    assert await _scan_failure(caught.value, debug_logs) == []


# -- where the key may go -------------------------------------------------------------------

KEY = "lbk_abcd1234_" + "k" * 40


@pytest.mark.parametrize(
    "base_url",
    [
        "http://example.com/api",
        "http://10.0.0.7:8765/api",
        "http://127.0.0.1.example.com/api",
        "http://[2001:db8::1]/api",
        "HTTP://Example.COM/api",
    ],
)
def test_plain_http_to_another_host_is_refused(
    base_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigurationError, match="http://") as caught:
        AsyncLabric(KEY, base_url=base_url)
    assert "k" * 40 not in str(caught.value)
    monkeypatch.setenv("LABRIC_API_BASE_URL", base_url)
    with pytest.raises(ConfigurationError, match="LABRIC_API_BASE_URL"):
        AsyncLabric(KEY)
    # Loopback, https, or an explicit opt-in are accepted.
    for accepted in ("http://127.0.0.1:1/api", "http://[::1]:1/api", "http://localhost:1/api"):
        assert AsyncLabric(KEY, base_url=accepted).base_url == accepted
    assert AsyncLabric(KEY, base_url=base_url.replace("http", "https", 1).replace("HTTP", "https"))
    assert AsyncLabric(KEY, base_url=base_url, allow_insecure=True)


def _file_json(file_id: str = "f1") -> dict[str, Any]:
    return {"file_id": file_id, "original_path": "a.csv"}


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_to_another_host_never_carries_the_key(status: int) -> None:
    async with StandIn() as api, StandIn() as other:
        target = f"{other.origin}/api/v1/files/f1?from=redirect"
        api.on("GET", "/api/v1/files/f1", web.Response(status=status, headers={"Location": target}))
        other.on("GET", "/api/v1/files/f1", web.json_response(_file_json()))
        async with AsyncLabric(KEY, base_url=api.base_url) as c:
            assert (await c.files.get("f1")).file_id == "f1"
    assert api.requests[0].headers["Authorization"] == f"Bearer {KEY}"
    assert [r.path for r in other.requests] == ["/api/v1/files/f1"]
    assert "Authorization" not in other.requests[0].headers


async def test_a_redirected_write_does_not_carry_the_key_either() -> None:
    async with StandIn() as api, StandIn() as other:
        target = f"{other.origin}/api/v1/job-executions"
        api.on(
            "POST", "/api/v1/job-executions", web.Response(status=307, headers={"Location": target})
        )
        other.on("POST", "/api/v1/job-executions", web.json_response({"detail": "no"}, status=401))
        async with AsyncLabric(KEY, base_url=api.base_url, max_retries=0) as c:
            with pytest.raises(AuthenticationError) as caught:
                await c.jobs.executions.start(job_name="x")
    assert other.requests[0].method == "POST"  # 307 keeps the method (and body)
    assert "Authorization" not in other.requests[0].headers
    assert "k" * 40 not in "".join(traceback.format_exception(caught.value))


async def test_a_redirect_within_the_api_origin_keeps_the_key() -> None:
    async with StandIn() as api, StandIn() as other:
        api.on(
            "GET",
            "/api/v1/files/f1",
            web.Response(status=307, headers={"Location": "/api/v1/files/moved"}),
        )
        api.on(
            "GET",
            "/api/v1/files/moved",
            web.Response(status=302, headers={"Location": f"{other.origin}/x"}),
        )
        other.on("GET", "/x", web.Response(status=307, headers={"Location": f"{api.origin}/api/y"}))
        api.on("GET", "/api/y", web.json_response(_file_json()))
        async with AsyncLabric(KEY, base_url=api.base_url) as c:
            await c.files.get("f1")
    # The key went to every request on the API's origin, and never to the other host.
    assert [r.path for r in api.requests] == ["/api/v1/files/f1", "/api/v1/files/moved", "/api/y"]
    assert all(r.headers.get("Authorization") == f"Bearer {KEY}" for r in api.requests)
    assert "Authorization" not in other.requests[0].headers


async def test_a_same_host_on_another_port_or_scheme_is_another_origin() -> None:
    async with StandIn() as api, AsyncLabric(KEY, base_url=api.base_url) as c:
        transport = c._transport
        assert transport.is_api_origin(f"{api.origin}/api/v1/files")
        assert transport.is_api_origin(f"http://127.0.0.1:{api.port}/elsewhere")
        assert not transport.is_api_origin(f"http://127.0.0.1:{api.port + 1}/api/v1/files")
        assert not transport.is_api_origin(f"https://127.0.0.1:{api.port}/api/v1/files")
        assert not transport.is_api_origin(f"http://localhost:{api.port}/api/v1/files")


async def test_storage_on_another_host_never_gets_the_key() -> None:
    """The hosted layout: signed URLs on a storage host. Uploads, downloads and ranges."""
    data = b"x" * 300
    crc = (
        __import__("base64").b64encode(__import__("google_crc32c").Checksum(data).digest()).decode()
    )
    async with StandIn() as api, StandIn() as storage:
        url = _signed(storage.origin)
        api.on("GET", "/api/v1/files/f1/content", _content_answer(url, size=len(data)))
        storage.on("GET", "/storage/v1/objects/f1", web.Response(body=data))
        api.on(
            "POST",
            "/api/v1/files/upload-url",
            web.json_response(
                {"file_id": "f2", "upload_url": url, "headers": {}, "expires_at": "2030-01-01"}
            ),
        )
        storage.on("PUT", "/storage/v1/objects/f1", web.Response())
        api.on(
            "POST",
            "/api/v1/files/f2/confirm-upload",
            web.json_response({"file_id": "f2", "file_name": "u.csv", "crc32c_hash": crc}),
        )
        async with AsyncLabric(KEY, base_url=api.base_url, max_retries=0) as c:
            await c.files.upload(data, name="u.csv", job_execution_id="e1")
            got = await c.files.read_bytes("f1")
    assert got == data
    assert {r.method for r in storage.requests} == {"GET", "PUT"}
    assert not [r for r in storage.requests if "Authorization" in r.headers]
    assert all("Authorization" in r.headers for r in api.requests)
