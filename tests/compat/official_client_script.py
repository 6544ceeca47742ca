"""Drive the official ``labric`` client (PyPI 0.14.17) against a Labric server and report.

This script runs in a separate virtualenv that holds the official package, never ours: both are
imported as ``labric``. Run it with that venv's interpreter in isolated mode, so the repository
is not on ``sys.path``::

    .venv-official/bin/python -I tests/compat/official_client_script.py http://127.0.0.1:8765

The key comes from ``LABRIC_API_KEY`` (or a second argument). The origin is the server's scheme,
host and port: the official client appends ``api/v1/...`` itself.

Every call the official client makes is checked against what the hosted platform documents. The
report is one JSON object on stdout (``{"ok": ..., "checks": [...]}``); a line per check goes to
stderr. The exit status is 1 when a required check fails, 2 when the script cannot start. Checks
marked advisory record behaviour the official client does not depend on; they never fail the run.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from typing import Any

import httpx

EXPECTED_VERSION = "0.14.17"
PREVIEW_BYTES = 64 * 1024
JOB_NAME = "compat-check"
DEFAULT_JOB_NAME = "Off-Platform Manual Job"


# --- reporting ---------------------------------------------------------------------------------


class CheckFailed(Exception):
    """A check's expectation did not hold."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def describe_error(exc: BaseException) -> str:
    """A one-line account of an exception; the official errors carry status and body."""
    status = getattr(exc, "status_code", None)
    body = getattr(exc, "body", None)
    if status is not None or body is not None:
        cause = getattr(exc, "cause", None)
        extra = f", cause={cause!r}" if cause is not None else ""
        return f"{type(exc).__name__}: status={status}, body={body!r}{extra}"
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTPStatusError: {exc.response.status_code} {exc.response.text[:500]!r}"
    return f"{type(exc).__name__}: {exc}"


class Report:
    def __init__(self) -> None:
        self.checks: list[dict[str, Any]] = []
        self.covered: set[str] = set()

    @contextmanager
    def check(
        self, name: str, *, required: bool = True, covers: tuple[str, ...] = ()
    ) -> Iterator[dict[str, Any]]:
        """Run one check; record it as passed unless the block raises.

        ``covers`` names the official client's methods the check calls (as :func:`surface`
        names them), so the test can tell which methods no check exercises.
        """
        self.covered.update(covers)
        entry: dict[str, Any] = {"name": name, "required": required, "ok": True}
        started = time.monotonic()
        try:
            yield entry
        except CheckFailed as exc:
            entry.update(ok=False, error=str(exc))
        except Exception as exc:
            entry.update(ok=False, error=describe_error(exc))
            if os.environ.get("COMPAT_TRACEBACK"):
                entry["traceback"] = traceback.format_exc()
        entry["seconds"] = round(time.monotonic() - started, 3)
        self.checks.append(entry)
        mark = "ok  " if entry["ok"] else ("FAIL" if required else "note")
        detail = entry.get("error") or entry.get("detail") or ""
        print(f"[{mark}] {name}{': ' + str(detail) if detail else ''}", file=sys.stderr)

    @property
    def ok(self) -> bool:
        return all(c["ok"] for c in self.checks if c["required"])


# --- helpers -----------------------------------------------------------------------------------


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C = _crc32c_table()


def crc32c_b64(data: bytes) -> str:
    """CRC32C in the form Cloud Storage reports it: base64 of the big-endian 4 bytes."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return base64.b64encode((crc ^ 0xFFFFFFFF).to_bytes(4, "big")).decode()


def csv_bytes(rows: int) -> bytes:
    lines = ["sample,temperature_c,pressure_kpa,note"]
    lines += [f"S-{i:05d},{20 + i % 7}.{i % 10},{101 + i % 3}.3,run {i}" for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def fetch(url: str) -> bytes:
    """GET a signed URL the way a user would: plain httpx, no Authorization."""
    expect(url.startswith(("http://", "https://")), f"download_url is not absolute: {url!r}")
    response = httpx.get(url, timeout=60)
    expect(response.status_code == 200, f"GET download_url -> {response.status_code}")
    return response.content


def listed(files: list[Any], file_id: str) -> Any:
    return next((f for f in files if f.file_id == file_id), None)


# --- the run -----------------------------------------------------------------------------------


def run(origin: str, api_key: str) -> Report:
    """Run every check in order; later checks skip what an earlier failure left missing."""
    # The official package's names (this runs in its venv, not ours).
    from labric.core.api_error import ApiError

    from labric import AsyncLabric, Labric, StartJobExecutionSchema

    report = Report()
    client = Labric(base_url=origin, api_key=api_key, max_retries=0, timeout=60)
    state: dict[str, Any] = {}

    with report.check(
        "jobs.start (job_name) opens a running execution", covers=("jobs.start",)
    ) as c:
        execution = client.jobs.start(request=StartJobExecutionSchema(job_name=JOB_NAME))
        c["detail"] = execution.model_dump(mode="json")
        expect(bool(execution.job_execution_id), "no job_execution_id")
        expect(bool(execution.job_id), "no job_id")
        expect(execution.job_name == JOB_NAME, f"job_name {execution.job_name!r} != {JOB_NAME!r}")
        expect(execution.status == "running", f"status {execution.status!r} != 'running'")
        expect(execution.completed_at is None, "completed_at set on a running execution")
        state["execution"] = execution
    execution_id = state["execution"].job_execution_id if "execution" in state else None

    with report.check("jobs.start (no body) uses the default off-platform job") as c:
        bare = client.jobs.start()
        c["detail"] = bare.model_dump(mode="json")
        expect(bare.status == "running", f"status {bare.status!r} != 'running'")
        expect(bare.job_name == DEFAULT_JOB_NAME, f"job_name {bare.job_name!r}")
        state["bare"] = bare

    with report.check("jobs.start (job_id) reuses the job") as c:
        expect("execution" in state, "needs the first execution")
        again = client.jobs.start(
            request=StartJobExecutionSchema(job_id=state["execution"].job_id, timeout_minutes=30)
        )
        c["detail"] = again.model_dump(mode="json")
        expect(again.job_id == state["execution"].job_id, "a different job")
        expect(again.job_execution_id != execution_id, "the same execution id again")
        client.jobs.close(again.job_execution_id, status="failed")

    # 1. The signed-URL upload (create_upload_url, PUT, confirm_upload) from bytes.
    big = csv_bytes(3000)  # ~80 KB, so the 64 KiB preview is truncated
    with report.check(
        "files.upload (signed URL, bytes) with job_execution_id", covers=("files.upload",)
    ) as c:
        expect(execution_id is not None, "needs an execution")
        uploaded = client.files.upload(
            file=("compat-results.csv", big, "text/csv"), job_execution_id=execution_id
        )
        c["detail"] = uploaded.model_dump(mode="json")
        expect(bool(uploaded.file_id), "no file_id")
        expect(uploaded.file_name == "compat-results.csv", f"file_name {uploaded.file_name!r}")
        state["big"] = uploaded

    with report.check(
        "files.confirm_upload again is idempotent", covers=("files.confirm_upload",)
    ) as c:
        expect("big" in state, "needs the upload")
        confirmed = client.files.confirm_upload(file_id=state["big"].file_id)
        c["detail"] = confirmed.model_dump(mode="json")
        expect(confirmed.file_id == state["big"].file_id, "a different file_id")
        expect(confirmed.file_name == state["big"].file_name, "a different file_name")

    with report.check(
        "files.get_content: preview and download_url round-trip", covers=("files.get_content",)
    ) as c:
        expect("big" in state, "needs the upload")
        content = client.files.get_content(state["big"].file_id)
        c["detail"] = {
            k: v for k, v in content.model_dump(mode="json").items() if k != "text_preview"
        }
        expect(content.file_id == state["big"].file_id, "a different file_id")
        expect(content.preview_truncated is True, "preview_truncated is not true for 80 KB")
        expected_preview = big[:PREVIEW_BYTES].decode()
        expect(
            content.text_preview == expected_preview,
            f"text_preview differs (len {len(content.text_preview or '')} vs "
            f"{len(expected_preview)})",
        )
        expect(fetch(content.download_url) == big, "downloaded bytes differ from the upload")

    # 2. The signed-URL upload from a seekable file: streamed in chunks with a Content-Length.
    notes = b"first line\nsecond line, with \xc3\xa9 in it\n"
    with report.check("files.upload (signed URL, seekable file, name from .name)") as c:
        with tempfile.NamedTemporaryFile("wb", suffix="-compat-notes.txt", delete=False) as fh:
            fh.write(notes)
        try:
            with open(fh.name, "rb") as readable:
                small = client.files.upload(file=readable, job_execution_id=execution_id)
        finally:
            os.unlink(fh.name)
        c["detail"] = small.model_dump(mode="json")
        expect(small.file_name == os.path.basename(fh.name), f"file_name {small.file_name!r}")
        content = client.files.get_content(small.file_id)
        expect(content.text_preview == notes.decode(), f"preview {content.text_preview!r}")
        expect(content.preview_truncated is False, "preview_truncated is true for a small file")
        expect(fetch(content.download_url) == notes, "downloaded bytes differ")
        state["small"] = small

    # 3. The generated multipart route, POST /api/v1/files.
    multi = b"multipart body\n" * 100
    with report.check("files.with_raw_response.upload (multipart POST /api/v1/files)") as c:
        raw = client.files.with_raw_response.upload(
            file=("compat-multipart.txt", multi, "text/plain"), job_execution_id=execution_id
        )
        c["detail"] = {"status": raw.status_code, "data": raw.data.model_dump(mode="json")}
        expect(200 <= raw.status_code < 300, f"status {raw.status_code}")
        expect(raw.data.file_name == "compat-multipart.txt", f"file_name {raw.data.file_name!r}")
        content = client.files.get_content(raw.data.file_id)
        expect(content.text_preview == multi.decode(), "preview differs")
        expect(fetch(content.download_url) == multi, "downloaded bytes differ")
        state["multi"] = raw.data

    with report.check("files.upload of an empty file (Content-Length: 0)") as c:
        empty = client.files.upload(file=("compat-empty.txt", b""), job_execution_id=execution_id)
        c["detail"] = empty.model_dump(mode="json")
        content = client.files.get_content(empty.file_id)
        expect(content.text_preview in ("", None), f"preview {content.text_preview!r}")
        expect(content.preview_truncated is False, "preview_truncated is true")
        expect(fetch(content.download_url) == b"", "downloaded bytes are not empty")

    unicode_name = "compat résumé data (v2).txt"
    with report.check("non-ASCII file name with spaces, both upload routes") as c:
        signed = client.files.upload(file=(unicode_name, b"abc"), job_execution_id=execution_id)
        raw = client.files.with_raw_response.upload(
            file=(unicode_name, b"def", "text/plain"), job_execution_id=execution_id
        )
        c["detail"] = {"signed": signed.file_name, "multipart": raw.data.file_name}
        expect(signed.file_name == unicode_name, f"signed URL: file_name {signed.file_name!r}")
        expect(raw.data.file_name == unicode_name, f"multipart: file_name {raw.data.file_name!r}")
        found = [f.file_id for f in client.files.list(query="résumé")]
        expect({signed.file_id, raw.data.file_id} <= set(found), "query 'résumé' misses them")
        expect(fetch(client.files.get_content(raw.data.file_id).download_url) == b"def", "bytes")

    # 4. The async client's signed-URL upload (reads in worker threads, async chunk iterator).
    payload = bytes(range(256)) * 800  # ~200 KB of binary
    with report.check("AsyncLabric files.upload (signed URL, streamed) and get_content") as c:

        async def async_upload() -> Any:
            aclient = AsyncLabric(base_url=origin, api_key=api_key, max_retries=0, timeout=60)
            result = await aclient.files.upload(
                file=("compat-async.bin", io.BytesIO(payload)), job_execution_id=execution_id
            )
            return result, await aclient.files.get_content(result.file_id)

        result, content = asyncio.run(async_upload())
        c["detail"] = result.model_dump(mode="json")
        expect(result.file_name == "compat-async.bin", f"file_name {result.file_name!r}")
        expect(fetch(content.download_url) == payload, "downloaded bytes differ")
        state["async"] = result

    # 5. Listing and its filters.
    with report.check("files.list contains the uploads, newest first", covers=("files.list",)) as c:
        files = client.files.list()
        ids = [f.file_id for f in files]
        c["detail"] = {"count": len(files)}
        for key in ("big", "small", "multi", "async"):
            if key in state:
                expect(state[key].file_id in ids, f"{key} upload missing from the listing")
        order = [state[k].file_id for k in ("async", "multi", "small", "big") if k in state]
        positions = [ids.index(i) for i in order if i in ids]
        expect(positions == sorted(positions), f"not newest first: {positions}")
        state["files"] = files

    with report.check("files.list(query=, extensions=, limit=) filter") as c:
        by_query = [f.file_id for f in client.files.list(query="COMPAT results")]
        by_ext = [f.file_id for f in client.files.list(extensions="csv,bin")]
        limited = client.files.list(limit=1)
        c["detail"] = {"query": by_query, "extensions": by_ext, "limit": len(limited)}
        if "big" in state:
            expect(state["big"].file_id in by_query, "query 'COMPAT results' misses the csv")
            expect(state["big"].file_id in by_ext, "extensions=csv,bin misses the csv")
        if "small" in state:
            expect(state["small"].file_id not in by_query, "query matched the notes file")
            expect(state["small"].file_id not in by_ext, "extensions matched a .txt file")
        if "async" in state:
            expect(state["async"].file_id in by_ext, "extensions=csv,bin misses the .bin")
        expect(len(limited) == 1, f"limit=1 gave {len(limited)} files")

    with report.check("FileInfoSchema fields: path, size, crc32c", required=False) as c:
        info = listed(state.get("files", []), state["big"].file_id) if "big" in state else None
        expect(info is not None, "no listing entry")
        c["detail"] = info.model_dump(mode="json")
        expect((info.original_path or "").endswith("compat-results.csv"), "original_path")
        expect(
            info.size_kilobytes is not None and abs(info.size_kilobytes - len(big) / 1024) <= 1,
            f"size_kilobytes {info.size_kilobytes} for {len(big)} bytes",
        )
        expect(info.crc32c_hash == crc32c_b64(big), f"crc32c_hash {info.crc32c_hash!r}")
        expect(info.file_created_at is not None, "no file_created_at")

    # 6. Attribution: the uploads are recorded under the execution from jobs.start.
    with report.check("uploads attributed to the execution (GET /api/v1/files/{id})") as c:
        expect("big" in state and execution_id is not None, "needs the upload")
        seen = {}
        for key in ("big", "small", "multi", "async"):
            if key in state:
                response = httpx.get(
                    f"{origin.rstrip('/')}/api/v1/files/{state[key].file_id}",
                    headers={"Authorization": f"Bearer {api_key}"},
                    timeout=30,
                )
                expect(response.status_code == 200, f"GET file -> {response.status_code}")
                seen[key] = response.json().get("job_execution_id")
        c["detail"] = seen
        expect(set(seen.values()) == {execution_id}, f"job_execution_id values {seen}")

    with report.check("upload without job_execution_id or instrument_id", required=False) as c:
        try:
            orphan = client.files.create_upload_url(file_name="orphan.txt")
            c["detail"] = f"accepted: {orphan.file_id} (the hosted API asks for an id)"
            raise CheckFailed(c["detail"])
        except ApiError as exc:
            c["detail"] = f"rejected with {exc.status_code}"
            expect(exc.status_code in (400, 422), f"rejected with {exc.status_code}")

    # 7. Closing the execution.
    with report.check("jobs.close completes the execution", covers=("jobs.close",)) as c:
        expect(execution_id is not None, "needs an execution")
        closed = client.jobs.close(execution_id, status="completed")
        c["detail"] = closed.model_dump(mode="json")
        expect(closed.job_execution_id == execution_id, "a different execution")
        expect(closed.status == "completed", f"status {closed.status!r}")
        expect(closed.completed_at is not None, "completed_at not set")

    with report.check("jobs.close with the same status again is a no-op") as c:
        expect(execution_id is not None, "needs an execution")
        again = client.jobs.close(execution_id, status="completed")
        c["detail"] = again.model_dump(mode="json")
        expect(again.status == "completed", f"status {again.status!r}")

    with report.check("jobs.close with a different status is rejected") as c:
        expect(execution_id is not None, "needs an execution")
        try:
            changed = client.jobs.close(execution_id, status="failed")
        except ApiError as exc:
            c["detail"] = f"rejected with {exc.status_code}"
            expect(400 <= (exc.status_code or 0) < 500, f"status {exc.status_code}")
        else:
            raise CheckFailed(f"accepted: {changed.model_dump(mode='json')}")

    with report.check("jobs.close of the bare execution as failed") as c:
        expect("bare" in state, "needs the bare execution")
        failed = client.jobs.close(state["bare"].job_execution_id, status="failed")
        expect(failed.status == "failed", f"status {failed.status!r}")

    with report.check("unknown file id gives 404 (NotFoundError)") as c:
        try:
            client.files.get_content("00000000-0000-0000-0000-000000000000")
        except ApiError as exc:
            c["detail"] = f"{type(exc).__name__} {exc.status_code} {exc.body!r}"
            expect(exc.status_code == 404, f"status {exc.status_code}")
        else:
            raise CheckFailed("no error")

    local = Local(origin, api_key)
    check_tables(report, client, local)
    check_jobs_instruments_notifications(report, client, local)
    check_long_lists(report, client)
    check_legacy_aliases(report, client)
    asyncio.run(check_async(report, AsyncLabric(base_url=origin, api_key=api_key, max_retries=0)))
    check_agent(report, client, AsyncLabric(base_url=origin, api_key=api_key, max_retries=0))
    check_images(report, client, AsyncLabric(base_url=origin, api_key=api_key, max_retries=0))
    check_models(
        report, client, AsyncLabric(base_url=origin, api_key=api_key, max_retries=0), local
    )
    return report


# --- the rest of the surface ---------------------------------------------------------------


class Local:
    """The local server's own routes (table definitions, instruments), which the official
    client has no methods for: the setup a check needs."""

    def __init__(self, origin: str, api_key: str) -> None:
        self.base = f"{origin.rstrip('/')}/api/v1"
        self.headers = {"Authorization": f"Bearer {api_key}"}

    def post(self, path: str, body: dict[str, Any]) -> Any:
        response = httpx.post(f"{self.base}{path}", json=body, headers=self.headers, timeout=60)
        expect(response.status_code < 300, f"POST {path} -> {response.status_code}")
        return response.json()

    def get(self, path: str) -> Any:
        response = httpx.get(f"{self.base}{path}", headers=self.headers, timeout=60)
        expect(response.status_code == 200, f"GET {path} -> {response.status_code}")
        return response.json()


#: More rows, jobs and files than one page of the server under test (the test starts it with
#: pages of at most this many items; the official client never pages).
LONG = int(os.environ.get("LABRIC_COMPAT_LONG", "120"))
SAMPLES_TABLE = {
    "name": "compat_samples",
    "columns": [
        {"name": "name", "type": "text", "nullable": False},
        {"name": "od600", "type": "float"},
        {"name": "batch", "type": "integer"},
        {"name": "note", "type": "text"},
        {"name": "operation", "foreign_key": "operation"},
    ],
}
RUNS_TABLE = {
    "name": "compat_runs",
    "columns": [{"name": "code", "type": "text", "nullable": False, "unique": True}],
}
POINTS_TABLE = {
    "name": "compat_points",
    "columns": [
        {"name": "run", "foreign_key": "compat_runs", "nullable": False},
        {"name": "value", "type": "float"},
    ],
}


def check_tables(report: Report, client: Any, local: Local) -> None:
    """tools.*, data.write and the write, read and step-recording helpers."""
    from labric.core.api_error import ApiError

    from labric import BatchWriteOptions, TableWrite

    state: dict[str, Any] = {}
    with report.check("setup: tables created through the local datasets route") as c:
        for definition in (SAMPLES_TABLE, RUNS_TABLE, POINTS_TABLE):
            local.post("/datasets", definition)
        c["detail"] = [d["name"] for d in (SAMPLES_TABLE, RUNS_TABLE, POINTS_TABLE)]

    with report.check(
        "tools.get_schema: own tables first, core_user last", covers=("tools.get_schema",)
    ) as c:
        schema = client.tools.get_schema()
        names = [t.name for t in schema]
        c["detail"] = names
        expect(names[:3] == ["compat_samples", "compat_runs", "compat_points"], "own tables")
        expect(names[-1] == "core_user" and schema[-1].id is None, "core_user is not last")
        expect(all(t.id is not None for t in schema[:3]), "own tables have no id")
        expect({"core_procedurestep", "core_operation", "core_table"} <= set(names), "platform")
        operation = next(c for c in schema[0].columns if c.name == "operation")
        expect(operation.sql_column_name == "operation_id", "the foreign key's SQL name")
        state["table_id"] = schema[0].id

    with report.check("get_table_id_by_name", covers=("client.get_table_id_by_name",)) as c:
        table_id = client.get_table_id_by_name("compat_samples")
        c["detail"] = table_id
        expect(table_id == state.get("table_id"), f"{table_id} != {state.get('table_id')}")
        try:
            client.get_table_id_by_name("no_such_table")
        except ValueError:
            pass
        else:
            raise CheckFailed("no ValueError for an unknown table")

    with report.check(
        "tools.execute_sql: the organisation's id", covers=("tools.execute_sql",)
    ) as c:
        result = client.tools.execute_sql(
            query="SELECT id, name FROM core_organization WHERE id <> %s", params=["x"]
        )
        c["detail"] = result.model_dump(mode="json")
        expect(result.columns == ["id", "name"] and len(result.data) == 1, "one organisation")
        state["org"] = result.data[0][0]

    rows = [{"name": f"S-{i:04d}", "od600": i / 100, "batch": i % 3} for i in range(LONG)]
    with report.check(
        f"tools.write {LONG} rows (create, collect_output)", covers=("tools.write",)
    ) as c:
        written = client.tools.write(
            target_name="compat_samples",
            target_type="table",
            data=rows,
            mode="create",
            collect_output=True,
        )
        c["detail"] = {"rows": len(written)}
        expect([r["name"] for r in written] == [r["name"] for r in rows], "records differ")
        expect(all(r["id"] for r in written), "a record without id")
        state["written"] = written

    with report.check(
        f"tools.read returns all {LONG} rows (more than a page)", covers=("tools.read",)
    ) as c:
        read = client.tools.read(target_name="compat_samples", target_type="table")
        c["detail"] = {"rows": len(read)}
        expect(len(read) == LONG, f"{len(read)} rows, not {LONG}")
        expect([r["name"] for r in read] == [r["name"] for r in rows], "rows differ")
        one = client.tools.read(
            target_name="compat_samples",
            target_type="table",
            filters={"name": "S-0007"},
            mode="single",
        )
        expect(len(one) == 1 and one[0]["od600"] == 0.07, f"single: {one}")
        by_batch = client.tools.read(
            target_name="compat_samples", target_type="table", filters={"batch": 1}
        )
        expect(len(by_batch) == len([r for r in rows if r["batch"] == 1]), "filter by batch")

    with report.check("tools.write dry_run commits nothing") as c:
        dry = client.tools.write(
            target_name="compat_samples",
            target_type="table",
            data=[{"name": "dry"}],
            mode="create",
            dry_run=True,
            collect_output=True,
        )
        count = client.tools.execute_sql(
            query="SELECT count(*) FROM compat_samples WHERE name = %s", params=["dry"]
        )
        c["detail"] = {"answer": dry, "count": count.data}
        expect(count.data == [[0]], "the dry run wrote a row")

    progress: list[tuple[int, int]] = []
    with report.check(
        "write_labric_table: batches, on_progress, fill_missing update",
        covers=("client.write_labric_table",),
    ) as c:
        update = [{"name": r["name"], "note": f"n{i}", "od600": -1.0} for i, r in enumerate(rows)]
        records = client.write_labric_table(
            "compat_samples",
            data=update,
            params_to_match_for_update=["name"],
            rows_per_batch=LONG // 3 + 1,
            on_progress=lambda done, total: progress.append((done, total)),
        )
        c["detail"] = {"records": len(records), "progress": progress}
        expect(len(records) == LONG, f"{len(records)} records")
        expect(progress[-1] == (LONG, LONG) and len(progress) == 3, f"progress {progress}")
        # fill_missing: note was null and is set; od600 was set and is kept.
        expect(records[5]["note"] == "n5" and records[5]["od600"] == 0.05, f"{records[5]}")
        expect(records[5]["id"] == state["written"][5]["id"], "the match made a new row")

    with report.check(
        "write_core_table: a process step with default functions",
        covers=("client.write_core_table",),
    ) as c:
        step = client.write_core_table(
            "procedurestep",
            data=[
                {
                    "name": "compat mix",
                    "parameters": {"rpm": 300},
                    "organization_id": state.get("org"),
                    "table_id": state.get("table_id"),
                    "has_effect": True,
                }
            ],
            params_to_match_for_update=["name", "table_id"],
            defaults={
                "id": "UUID4",
                "date_created": "DATETIME_NOW",
                "date_updated": "DATETIME_NOW",
            },
        )
        c["detail"] = step
        expect(len(step) == 1 and len(step[0]["id"]) == 36, "no generated id")
        expect(step[0]["date_created"] is not None, "no date_created")
        try:
            client.write_core_table("organizationmember", data=[{"role": "x"}])
        except ApiError as exc:
            expect(exc.status_code == 403, f"organizationmember: {exc.status_code}")
        else:
            raise CheckFailed("organizationmember was writable")

    start = "2026-01-02T03:04:05Z"
    with report.check(
        "get_or_create_operation: created once, then found",
        covers=("client.get_or_create_operation",),
    ) as c:
        first = client.get_or_create_operation(
            "compat anneal", {"temperature": 450}, state.get("org"), state.get("table_id"), start
        )
        again = client.get_or_create_operation(
            "compat anneal", {"temperature": 450}, state.get("org"), state.get("table_id"), start
        )
        c["detail"] = first
        expect(first["id"] == again["id"], "a second operation for the same step and time")
        expect(first["status"] == "completed" and first["is_atomic"] is True, f"{first}")
        state["operation"] = first

    with report.check(
        "record_process_step / record_measurement_step",
        covers=("client.record_process_step", "client.record_measurement_step"),
    ) as c:
        processed = client.record_process_step(
            "compat_samples",
            "compat dilute",
            {"factor": 2},
            [{"name": "P-1", "od600": 0.2}],
            state.get("org"),
            state.get("table_id"),
            start,
        )
        measured = client.record_measurement_step(
            "compat_samples",
            "compat read",
            {"nm": 600},
            [{"name": "M-1", "od600": 0.3}],
            state.get("org"),
            state.get("table_id"),
            start,
        )
        expect(
            client.record_process_step("compat_samples", "x", {}, [], "o", 1, start) == [], "empty"
        )
        c["detail"] = {"process": processed, "measurement": measured}
        expect(processed[0]["operation"] and measured[0]["operation"], "no operation_id")
        steps = client.tools.read(
            target_name="procedurestep",
            target_type="core-table",
            filters={"name": "compat read"},
        )
        expect(len(steps) == 1 and steps[0]["has_effect"] is False, f"steps {steps}")
        operations = client.tools.read(
            target_name="operation",
            target_type="core-table",
            filters={"step__name": "compat dilute"},
        )
        expect([o["id"] for o in operations] == [processed[0]["operation"]], "operation link")

    with report.check(
        "tools.batch_write: foreign-key order, _ref, natural keys", covers=("tools.batch_write",)
    ) as c:
        result = client.tools.batch_write(
            tables={
                "compat_points": [
                    {"run": "@r1", "value": 1.0},
                    {"run": "R-2", "value": 2.0},
                ],
                "compat_runs": [{"_ref": "r1", "code": "R-1"}, {"code": "R-2"}],
            },
            options=BatchWriteOptions(return_records=True),
        )
        c["detail"] = result.model_dump(mode="json")
        expect(result.success is True and result.job_execution_id, "no execution")
        expect(result.summary["compat_runs"].created == 2, "runs not created")
        expect(result.summary["compat_points"].created == 2, "points not created")
        expect(set(result.refs) == {"r1"}, f"refs {result.refs}")
        runs = {r["code"]: r["id"] for r in result.records["compat_runs"]}
        expect(
            [p["run"] for p in result.records["compat_points"]] == [runs["R-1"], runs["R-2"]],
            "links",
        )
        plan = client.tools.batch_write(
            tables={"compat_runs": [{"code": "R-1"}, {"code": "R-3"}]},
            options=BatchWriteOptions(
                mode="upsert", match_on={"compat_runs": ["code"]}, dry_run=True
            ),
        )
        expect(plan.plan is not None and plan.plan.insert_order == ["compat_runs"], "plan")
        expect(plan.summary["compat_runs"].updated == 1 and plan.job_execution_id is None, "dry")
        state["batch_execution"] = result.job_execution_id

    with report.check("data.write: rows in one transaction, dry run", covers=("data.write",)) as c:
        wrote = client.data.write(
            tables=[TableWrite(table="compat_runs", rows=[{"_ref": "r", "code": "R-9"}])],
            return_rows=True,
        )
        c["detail"] = wrote.model_dump(mode="json")
        expect(wrote.tables[0].created == 1 and "r" in wrote.refs, "not created")
        dry_write = client.data.write(
            tables=[TableWrite(table="compat_runs", rows=[{"code": "R-10"}])], dry_run=True
        )
        expect(dry_write.job_execution_id is None, "a dry run has no execution")

    with report.check("jobs.revert undoes a batch write", covers=("jobs.revert",)) as c:
        expect("batch_execution" in state, "needs the batch write")
        reverted = client.jobs.revert(state["batch_execution"])
        c["detail"] = reverted.model_dump(mode="json")
        expect(reverted.deleted_count == 4, f"deleted {reverted.deleted_count}")
        left = client.tools.read(target_name="compat_runs", target_type="table")
        expect([r["code"] for r in left] == ["R-9"], f"left {left}")


def check_jobs_instruments_notifications(report: Report, client: Any, local: Local) -> None:
    """jobs.create / list / update, instruments.get_device_status_history, notifications.send."""
    state: dict[str, Any] = {}
    with report.check("jobs.create and jobs.list(name=)", covers=("jobs.create", "jobs.list")) as c:
        job = client.jobs.create(name="compat-parse", code="print('hello')\n", description="d")
        c["detail"] = job.model_dump(mode="json")
        expect(job.publish_status == "draft" and job.archived is False, "a new job is a draft")
        found = client.jobs.list(name="compat-parse")
        expect([j.id for j in found] == [job.id], f"list(name=) {found}")
        state["job"] = job

    with report.check("jobs.update: description, archive", covers=("jobs.update",)) as c:
        expect("job" in state, "needs the job")
        updated = client.jobs.update(state["job"].id, description="parses", archived=True)
        c["detail"] = updated.model_dump(mode="json")
        expect(updated.description == "parses" and updated.archived is True, "not updated")
        expect(state["job"].id not in [j.id for j in client.jobs.list()], "archived is listed")
        expect(state["job"].id in [j.id for j in client.jobs.list(archived=True)], "archived")

    with report.check(
        "files.create_upload_url, PUT, confirm_upload", covers=("files.create_upload_url",)
    ) as c:
        execution = client.jobs.start()
        url = client.files.create_upload_url(
            file_name="compat-steps.csv",
            content_type="text/csv",
            job_execution_id=execution.job_execution_id,
        )
        c["detail"] = {"file_id": url.file_id, "expires_at": url.expires_at}
        response = httpx.put(url.upload_url, content=b"a,b\n1,2\n", headers=url.headers)
        expect(response.status_code < 300, f"PUT -> {response.status_code}")
        confirmed = client.files.confirm_upload(url.file_id)
        expect(confirmed.file_name == "compat-steps.csv", f"file_name {confirmed.file_name!r}")
        expect(client.files.get_content(url.file_id).text_preview == "a,b\n1,2\n", "preview")

    with report.check(
        "instruments.get_device_status_history",
        covers=("instruments.get_device_status_history",),
    ) as c:
        made = local.post("/instruments", {"name": "compat reader"})
        instrument_id = made["instrument"]["id"]
        history = client.instruments.get_device_status_history(instrument_id)
        c["detail"] = history.model_dump(mode="json")
        expect(history.instrument.id == instrument_id, "another instrument")
        expect(history.instrument.name == "compat reader", "name")
        expect(history.statuses == [] and history.current_status is None, "never reported")

    with report.check(
        "notifications.send: delivered, then deduplicated", covers=("notifications.send",)
    ) as c:
        sent = client.notifications.send(title="compat", dedupe_key="compat-1", body="b")
        again = client.notifications.send(title="compat", dedupe_key="compat-1")
        c["detail"] = [sent.model_dump(mode="json"), again.model_dump(mode="json")]
        expect(sent.status == "delivered" and sent.id, f"{sent}")
        expect(again.status == "deduplicated" and again.id is None, f"{again}")


def check_long_lists(report: Report, client: Any) -> None:
    """Listings longer than one page of the server come back whole (the hosted answer)."""
    with report.check(f"files.list and jobs.list return more than a page ({LONG}+)") as c:
        before = len(client.files.list())
        execution = client.jobs.start().job_execution_id
        for i in range(LONG):
            client.files.with_raw_response.upload(
                file=(f"compat-many-{i:04d}.txt", b"x"), job_execution_id=execution
            )
        for i in range(LONG):
            client.jobs.create(name=f"compat-many-{i:04d}", code="pass\n")
        files = client.files.list()
        jobs = client.jobs.list()
        c["detail"] = {"files": len(files), "jobs": len(jobs)}
        expect(len(files) == before + LONG, f"{len(files)} files, not {before + LONG}")
        expect(len({f.file_id for f in files}) == len(files), "a file listed twice")
        expect(len(jobs) >= LONG, f"{len(jobs)} jobs")
        expect(len(client.files.list(query="compat-many", limit=LONG - 1)) == LONG - 1, "limit")


def check_legacy_aliases(report: Report, client: Any) -> None:
    """The deprecated client.tools aliases forward to the new methods, with a warning."""
    import warnings

    names = (
        "start_job_execution",
        "update_job_execution_status",
        "revert_job_execution",
        "upload_file",
        "list_files",
        "get_file_content",
    )
    with report.check("legacy tools aliases", covers=tuple(f"tools.{n}" for n in names)) as c:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            execution = client.tools.start_job_execution()
            uploaded = client.tools.upload_file(
                file=("compat-legacy.txt", b"legacy"), job_execution_id=execution.job_execution_id
            )
            listed = client.tools.list_files(query="compat-legacy")
            content = client.tools.get_file_content(uploaded.file_id)
            closed = client.tools.update_job_execution_status(
                execution.job_execution_id, status="completed"
            )
            reverted = client.tools.revert_job_execution(execution.job_execution_id)
        c["detail"] = {"warnings": len(caught), "reverted": reverted.model_dump(mode="json")}
        expect(
            sum(issubclass(w.category, DeprecationWarning) for w in caught) >= len(names),
            "not every alias warned",
        )
        expect([f.file_id for f in listed] == [uploaded.file_id], "list_files")
        expect(content.text_preview == "legacy", "get_file_content")
        expect(closed.status == "completed", "update_job_execution_status")
        expect(reverted.deleted_count == 1, "revert_job_execution removes the upload")


async def check_async(report: Report, client: Any) -> None:
    """The async client's jobs, files, tools, data, instruments and notifications methods
    once each, checked (the agent's, images' and models' are checked with their groups)."""
    import warnings

    from labric import BatchWriteOptions, StartJobExecutionSchema, TableWrite

    def covers(*names: str) -> tuple[str, ...]:
        return tuple(f"async {n}" for n in names)

    with report.check(
        "async jobs and files",
        covers=covers(
            "jobs.start",
            "jobs.close",
            "jobs.create",
            "jobs.list",
            "jobs.update",
            "jobs.revert",
            "files.create_upload_url",
            "files.confirm_upload",
            "files.upload",
            "files.list",
            "files.get_content",
        ),
    ) as c:
        execution = await client.jobs.start(
            request=StartJobExecutionSchema(job_name="compat-async")
        )
        url = await client.files.create_upload_url(
            file_name="compat-async-url.txt", job_execution_id=execution.job_execution_id
        )
        response = httpx.put(url.upload_url, content=b"async", headers=url.headers, timeout=60)
        expect(response.status_code < 300, f"PUT -> {response.status_code}")
        confirmed = await client.files.confirm_upload(url.file_id)
        expect(confirmed.file_name == "compat-async-url.txt", "file_name")
        uploaded = await client.files.upload(
            file=("compat-async-2.txt", b"two"), job_execution_id=execution.job_execution_id
        )
        listed = await client.files.list(query="compat-async")
        expect({url.file_id, uploaded.file_id} <= {f.file_id for f in listed}, "listing")
        content = await client.files.get_content(url.file_id)
        expect(content.text_preview == "async", "preview")
        closed = await client.jobs.close(execution.job_execution_id, status="completed")
        expect(closed.status == "completed", "close")
        reverted = await client.jobs.revert(execution.job_execution_id)
        expect(reverted.deleted_count == 2, f"revert {reverted.deleted_count}")
        job = await client.jobs.create(name="compat-async-job", code="pass\n")
        updated = await client.jobs.update(job.id, publish_status="in_review")
        expect(updated.publish_status == "in_review", "update")
        expect([j.id for j in await client.jobs.list(name="compat-async-job")] == [job.id], "list")
        c["detail"] = {"files": len(listed)}

    with report.check(
        "async tools and data",
        covers=covers(
            "tools.get_schema",
            "tools.read",
            "tools.write",
            "tools.execute_sql",
            "tools.batch_write",
            "data.write",
        ),
    ) as c:
        schema = await client.tools.get_schema()
        expect(schema[-1].name == "core_user", "schema order")
        written = await client.tools.write(
            target_name="compat_runs",
            target_type="table",
            data=[{"code": "A-1"}],
            mode="create",
            collect_output=True,
        )
        read = await client.tools.read(
            target_name="compat_runs", target_type="table", filters={"code": "A-1"}
        )
        expect([r["id"] for r in read] == [written[0]["id"]], "read back")
        result = await client.tools.execute_sql(query="SELECT count(*) FROM compat_runs")
        expect(result.data[0][0] >= 1, "count")
        batch = await client.tools.batch_write(
            tables={"compat_points": [{"run": "A-1", "value": 3.0}]},
            options=BatchWriteOptions(return_records=True),
        )
        expect(batch.records["compat_points"][0]["run"] == written[0]["id"], "natural key")
        data = await client.data.write(
            tables=[TableWrite(table="compat_runs", rows=[{"code": "A-2"}])]
        )
        expect(data.tables[0].created == 1, "data.write")
        c["detail"] = {"tables": len(schema)}

    with report.check(
        "async instruments and notifications",
        covers=covers("instruments.get_device_status_history", "notifications.send"),
    ) as c:
        sent = await client.notifications.send(title="compat async", dedupe_key="compat-async")
        expect(sent.status == "delivered", f"{sent}")
        try:
            await client.instruments.get_device_status_history(
                "00000000-0000-0000-0000-000000000000"
            )
        except Exception as exc:
            expect(getattr(exc, "status_code", None) == 404, describe_error(exc))
        else:
            raise CheckFailed("an unknown instrument answered")

    names = (
        "start_job_execution",
        "update_job_execution_status",
        "revert_job_execution",
        "upload_file",
        "list_files",
        "get_file_content",
    )
    with report.check(
        "async legacy tools aliases", covers=covers(*(f"tools.{n}" for n in names))
    ) as c:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            execution = await client.tools.start_job_execution()
            uploaded = await client.tools.upload_file(
                file=("compat-async-legacy.txt", b"x"), job_execution_id=execution.job_execution_id
            )
            listed = await client.tools.list_files(query="compat-async-legacy")
            content = await client.tools.get_file_content(uploaded.file_id)
            await client.tools.update_job_execution_status(
                execution.job_execution_id, status="failed"
            )
            reverted = await client.tools.revert_job_execution(execution.job_execution_id)
        c["detail"] = {"warnings": len(caught)}
        expect([f.file_id for f in listed] == [uploaded.file_id], "list_files")
        expect(content.text_preview == "x" and reverted.deleted_count == 1, "content, revert")
        expect(sum(issubclass(w.category, DeprecationWarning) for w in caught) >= 6, "warnings")


def check_agent(report: Report, client: Any, async_client: Any) -> None:
    """agent.run and agent.run_stream, sync and async: real tool results, saved chats, the
    stream's framing (chosen by the body flag, not by ``Accept``) and its terminal event."""
    truth = client.tools.execute_sql(query="SELECT count(*) FROM compat_runs").data[0][0]
    expected = f"Table compat_runs has {truth} rows."

    with report.check("agent.run counts a table's rows with a tool", covers=("agent.run",)) as c:
        answer = client.agent.run(prompt="How many rows does compat_runs have?", save=True)
        c["detail"] = answer.output
        expect(answer.output == expected, f"output {answer.output!r}")
        (call,) = answer.tool_calls
        expect(call.tool_name == "count_rows", f"tool {call.tool_name!r}")
        expect(call.output == {"table": "compat_runs", "rows": truth}, f"{call.output!r}")
        expect(bool(answer.chat_id), "save=True gives a chat id")
        follow = client.agent.run(prompt="How many rows does it have?", chat_id=answer.chat_id)
        expect(follow.chat_id == answer.chat_id, "the chat continues")
        expect(follow.output == expected, f"follow-up {follow.output!r}")

    with report.check("agent.run_stream events in order", covers=("agent.run_stream",)) as c:
        events = list(client.agent.run_stream(prompt="How many rows does compat_runs have?"))
        kinds = [e.type for e in events]
        c["detail"] = kinds
        expect(
            kinds == ["reasoning_delta", "tool_call", "tool_result", "text_delta", "result"],
            f"kinds {kinds}",
        )
        call, result = events[1], events[2]
        expect(call.tool_call_id == result.tool_call_id, "tool call ids")
        expect(result.output == {"table": "compat_runs", "rows": truth}, f"{result.output!r}")
        expect(events[3].delta == expected, f"delta {events[3].delta!r}")
        expect(events[-1].result.output == expected, "the terminal result")

    async def run_async() -> tuple[Any, list[Any]]:
        whole = await async_client.agent.run(prompt="Describe compat_runs and count its rows")
        streamed = [
            e
            async for e in async_client.agent.run_stream(
                prompt="Describe compat_runs and count its rows"
            )
        ]
        return whole, streamed

    with report.check(
        "async agent.run and agent.run_stream agree",
        covers=("async agent.run", "async agent.run_stream"),
    ) as c:
        whole, streamed = asyncio.run(run_async())
        names = [t.tool_name for t in whole.tool_calls]
        c["detail"] = names
        expect(names == ["describe_table", "count_rows"], f"tools {names}")
        columns = {col["name"] for col in whole.tool_calls[0].output["columns"]}
        expect({"id", "code"} <= columns, f"columns {columns}")
        expect(streamed[-1].type == "result", f"last event {streamed[-1].type!r}")
        expect(streamed[-1].result.output == whole.output, "streamed result equals the whole one")


def png(width: int, height: int, pixel: Any, *, alpha: bool = False) -> bytes:
    """A PNG drawn without an imaging library (this venv has none): ``pixel(x, y)`` gives each
    pixel's channels, RGB or (``alpha``) RGBA, 8 bits each."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(
        b"\x00" + b"".join(bytes(pixel(x, y)) for x in range(width)) for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 6 if alpha else 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def png_size(data: bytes) -> tuple[int, int]:
    """A PNG's width and height, from its header."""
    expect(data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def box_mask(width: int, height: int, box: tuple[int, int, int, int]) -> str:
    """A white-on-transparent mask of one box ``(x, y, w, h)``, base64 as the API takes it."""
    bx, by, bw, bh = box

    def pixel(x: int, y: int) -> tuple[int, ...]:
        inside = bx <= x < bx + bw and by <= y < by + bh
        return (255, 255, 255, 255) if inside else (0, 0, 0, 0)

    return base64.b64encode(png(width, height, pixel, alpha=True)).decode()


#: The annotated image's size, and the boxes of its two masks.
IMAGE_W, IMAGE_H = 24, 16
CELL_BOX = (3, 2, 6, 4)
NUCLEUS_BOX = (10, 5, 8, 10)


def check_images(report: Report, client: Any, async_client: Any) -> None:
    """images.annotate and images.list_annotations (sync and async): bbox and fraction of
    known masks, oldest first, a mask_url that serves the PNG, all-or-nothing."""
    from labric.core.api_error import ApiError

    from labric import SaveAnnotationSchema

    state: dict[str, Any] = {}
    with report.check("setup: an image uploaded") as c:
        image = png(IMAGE_W, IMAGE_H, lambda x, y: (20 * (x % 8), 10 * y, 90))
        execution = client.jobs.start().job_execution_id
        uploaded = client.files.upload(
            file=("compat-plate.png", image, "image/png"), job_execution_id=execution
        )
        state["file_id"] = uploaded.file_id
        c["detail"] = uploaded.file_id

    with report.check(
        "images.annotate: bbox and foreground_fraction of known masks",
        covers=("images.annotate",),
    ) as c:
        expect("file_id" in state, "needs the image")
        saved = client.images.annotate(
            state["file_id"],
            annotations=[
                SaveAnnotationSchema(
                    mask=box_mask(IMAGE_W, IMAGE_H, CELL_BOX), label="cell", is_human_vetted=True
                ),
                SaveAnnotationSchema(
                    mask=box_mask(IMAGE_W, IMAGE_H, NUCLEUS_BOX),
                    label="nucleus",
                    width=IMAGE_W,
                    height=IMAGE_H,
                ),
            ],
        )
        c["detail"] = [a.model_dump(mode="json", exclude={"mask_url"}) for a in saved]
        expect([a.label for a in saved] == ["cell", "nucleus"], "labels in order")
        for annotation, box in zip(saved, (CELL_BOX, NUCLEUS_BOX), strict=True):
            bbox = annotation.bbox
            expect(bbox is not None, "no bbox")
            got = (bbox.x, bbox.y, bbox.width, bbox.height)
            expect(got == box, f"{annotation.label} bbox {got} != {box}")
            fraction = box[2] * box[3] / (IMAGE_W * IMAGE_H)
            expect(
                abs((annotation.foreground_fraction or 0) - fraction) < 1e-6,
                f"{annotation.label} fraction {annotation.foreground_fraction} != {fraction}",
            )
            expect((annotation.width, annotation.height) == (IMAGE_W, IMAGE_H), "size")
        expect([a.is_human_vetted for a in saved] == [True, False], "is_human_vetted")
        state["saved"] = [a.id for a in saved]

    with report.check("images.annotate is all-or-nothing (a mask of another size)") as c:
        expect("file_id" in state, "needs the image")
        try:
            client.images.annotate(
                state["file_id"],
                annotations=[
                    SaveAnnotationSchema(mask=box_mask(IMAGE_W, IMAGE_H, CELL_BOX), label="ok"),
                    SaveAnnotationSchema(mask=box_mask(4, 4, (0, 0, 2, 2)), label="bad"),
                ],
            )
        except ApiError as exc:
            c["detail"] = exc.status_code
            expect(exc.status_code == 400, f"status {exc.status_code}")
        else:
            raise CheckFailed("a mask of another size was accepted")

    with report.check(
        "images.list_annotations: oldest first, mask_url serves the PNG",
        covers=("images.list_annotations",),
    ) as c:
        expect("saved" in state, "needs the saved masks")
        listed = client.images.list_annotations(state["file_id"])
        c["detail"] = [a.label for a in listed]
        expect([a.id for a in listed] == state["saved"], "the two saved masks, oldest first")
        for annotation in listed:
            expect(annotation.mask_url is not None, "no mask_url")
            expect(png_size(fetch(annotation.mask_url)) == (IMAGE_W, IMAGE_H), "mask size")

    async def run_async() -> tuple[list[Any], list[Any]]:
        saved = await async_client.images.annotate(
            state["file_id"],
            annotations=[
                SaveAnnotationSchema(mask=box_mask(IMAGE_W, IMAGE_H, (0, 0, 2, 3)), label="cell")
            ],
        )
        return saved, await async_client.images.list_annotations(state["file_id"])

    with report.check(
        "async images.annotate and images.list_annotations",
        covers=("async images.annotate", "async images.list_annotations"),
    ) as c:
        expect("saved" in state, "needs the saved masks")
        saved, listed = asyncio.run(run_async())
        c["detail"] = [a.label for a in listed]
        (one,) = saved
        expect(one.bbox is not None and one.bbox.width == 2 and one.bbox.height == 3, "bbox")
        expect([a.id for a in listed] == [*state["saved"], one.id], "additive, oldest first")


#: Separable rows: ``grade`` is ``high`` exactly when ``score >= 50``; ``noise`` is noise.
def grade_rows(n: int) -> list[dict[str, Any]]:
    scores = [i * 100 // n for i in range(n)]
    return [
        {"score": float(s), "noise": float((i * 37) % 11), "grade": "high" if s >= 50 else "low"}
        for i, s in enumerate(scores)
    ]


GRADES_TABLE = {
    "name": "compat_grades",
    "columns": [
        {"name": "score", "type": "float"},
        {"name": "noise", "type": "float"},
        {"name": "grade", "type": "text"},
    ],
}
#: Training is in the background: the local server's ``wait`` (a held GET, at most 30 s)
#: bounds each wait.
TRAINING_WAIT = 30


def check_models(report: Report, client: Any, async_client: Any, local: Local) -> None:
    """models.train, list, get, predict and cancel_training (sync and async): a tabular model
    trained to ready, right on separable data, retrained as a new version, a cancel."""
    from labric.core.api_error import ApiError

    from labric import TableWrite

    def settled(model_id: str) -> Any:
        # The local server holds this GET until no version is in flight (bounded); then the
        # official client reads the result. Not ready within the bound is a clear failure.
        local.get(f"/ml-models/{model_id}?wait={TRAINING_WAIT}")
        model = client.models.get(model_id)
        expect(
            model.status not in ("pending", "training"),
            f"training still {model.status} after {TRAINING_WAIT} s",
        )
        return model

    state: dict[str, Any] = {}
    with report.check("setup: a table of separable rows") as c:
        local.post("/datasets", GRADES_TABLE)
        client.data.write(tables=[TableWrite(table="compat_grades", rows=grade_rows(60))])
        state["dataset"] = client.get_table_id_by_name("compat_grades")
        c["detail"] = state["dataset"]

    with report.check(
        "models.train to ready; models.get", covers=("models.train", "models.get")
    ) as c:
        expect("dataset" in state, "needs the table")
        started = client.models.train(
            target_column="grade",
            dataset_id=state["dataset"],
            name="compat-grades",
            feature_columns=["score", "noise"],
        )
        expect(started.status in ("pending", "training", "ready"), f"status {started.status}")
        expect(started.version_number == 1, f"version {started.version_number}")
        model = settled(started.id)
        c["detail"] = model.model_dump(mode="json")
        expect(model.status == "ready", f"status {model.status}: {model.error_message}")
        expect(model.currently_active is True, "not currently_active")
        expect(model.problem_type == "binary", f"problem_type {model.problem_type}")
        metrics = model.evaluation_metrics or {}
        expect("accuracy" in metrics, f"metrics {metrics}")
        state["model"] = model

    with report.check(
        "models.predict by id and by name: right on separable data", covers=("models.predict",)
    ) as c:
        expect("model" in state, "needs the model")
        rows = [{"score": 5.0, "noise": 3.0}, {"score": 95.0, "noise": 3.0}]
        by_id = client.models.predict(data=rows, ml_model_id=state["model"].id)
        by_name = client.models.predict(data=rows, ml_model_name="compat-grades")
        c["detail"] = by_id.model_dump(mode="json")
        expect(by_id.predictions == ["low", "high"], f"predictions {by_id.predictions}")
        expect(by_name.predictions == by_id.predictions, "by name differs")
        expect(by_id.model_id == state["model"].id, "model_id")
        expect(by_id.probabilities is not None and len(by_id.probabilities) == 2, "probabilities")

    with report.check("models.train (ml_model_id) retrains as a new version") as c:
        expect("model" in state, "needs the model")
        again = client.models.train(
            target_column="grade", dataset_id=state["dataset"], ml_model_id=state["model"].id
        )
        model = settled(again.id)
        c["detail"] = {"version": model.version_number, "status": model.status}
        expect(again.id == state["model"].id, "a retrain made another model")
        expect(model.version_number == 2 and model.status == "ready", f"{model.status}")

    with report.check("models.list", covers=("models.list",)) as c:
        expect("model" in state, "needs the model")
        listed = client.models.list()
        c["detail"] = [(m.name, m.version_number) for m in listed]
        (mine,) = [m for m in listed if m.id == state["model"].id]
        expect(mine.version_number == 2, "list shows the newest version")

    with report.check(
        "models.cancel_training cancels the versions in flight",
        covers=("models.cancel_training",),
    ) as c:
        expect("model" in state, "needs the model")
        model_id = state["model"].id
        # Two retrains queue on the server's one training thread; the cancel that follows at
        # once finds at least the second still pending.
        for _ in range(2):
            client.models.train(
                target_column="grade",
                dataset_id=state["dataset"],
                ml_model_id=model_id,
                quality_preset="best_quality",
            )
        cancelled = client.models.cancel_training(model_id)
        c["detail"] = {"status": cancelled.status, "version": cancelled.version_number}
        expect(cancelled.status == "cancelled", f"status {cancelled.status}")
        expect(cancelled.version_number == 4, f"version {cancelled.version_number}")
        model = settled(model_id)
        expect(model.currently_active is True, "the ready version no longer serves")
        answer = client.models.predict(data=[{"score": 90.0, "noise": 1.0}], ml_model_id=model_id)
        expect(answer.predictions == ["high"], "predictions after the cancel")
        try:
            client.models.cancel_training(model_id)
        except ApiError as exc:
            expect(exc.status_code == 400, f"status {exc.status_code}")
        else:
            raise CheckFailed("a cancel with nothing in flight was accepted")

    with report.check(
        "models.train a segmentation model; predict's annotations go to images.annotate as is"
    ) as c:
        check_segmentation(client, local, c)

    async def run_async() -> dict[str, Any]:
        started = await async_client.models.train(
            target_column="grade", dataset_id=state["dataset"], name="compat-grades-async"
        )
        local.get(f"/ml-models/{started.id}?wait={TRAINING_WAIT}")
        got = await async_client.models.get(started.id)
        listed = await async_client.models.list()
        predicted = await async_client.models.predict(
            data=[{"score": 10.0, "noise": 0.0}, {"score": 80.0, "noise": 0.0}],
            ml_model_name="compat-grades-async",
        )
        await async_client.models.train(
            target_column="grade",
            dataset_id=state["dataset"],
            ml_model_id=started.id,
            quality_preset="best_quality",
        )
        await async_client.models.train(
            target_column="grade", dataset_id=state["dataset"], ml_model_id=started.id
        )
        cancelled = await async_client.models.cancel_training(started.id)
        return {"got": got, "listed": listed, "predicted": predicted, "cancelled": cancelled}

    with report.check(
        "async models.train, get, list, predict and cancel_training",
        covers=tuple(
            f"async models.{n}" for n in ("train", "get", "list", "predict", "cancel_training")
        ),
    ) as c:
        expect("dataset" in state, "needs the table")
        found = asyncio.run(run_async())
        got = found["got"]
        c["detail"] = {"status": got.status, "predictions": found["predicted"].predictions}
        expect(got.status == "ready", f"status {got.status}: {got.error_message}")
        expect(got.id in {m.id for m in found["listed"]}, "not listed")
        expect(found["predicted"].predictions == ["low", "high"], "predictions")
        expect(found["cancelled"].status == "cancelled", f"{found['cancelled'].status}")
        expect(found["cancelled"].version_number == 3, "cancelled version")


def disc_png(size: int, cx: int, cy: int, r: int, *, mask: bool = False) -> bytes:
    """A bright disc on a dark ground (or, with ``mask``, its white-on-transparent mask)."""

    def pixel(x: int, y: int) -> tuple[int, ...]:
        inside = (x - cx) ** 2 + (y - cy) ** 2 <= r * r
        if mask:
            return (255, 255, 255, 255) if inside else (0, 0, 0, 0)
        return (220, 210, 180) if inside else (30, 35, 50)

    return png(size, size, pixel, alpha=mask)


def check_segmentation(client: Any, local: Local, c: dict[str, Any]) -> None:
    from labric import SaveAnnotationSchema, TableWrite

    size, ids = 32, []
    execution = client.jobs.start().job_execution_id
    for i, (x, y, r) in enumerate([(10, 10, 6), (20, 18, 8), (12, 22, 5), (22, 9, 7)]):
        up = client.files.upload(
            file=(f"compat-disc-{i}.png", disc_png(size, x, y, r), "image/png"),
            job_execution_id=execution,
        )
        mask = base64.b64encode(disc_png(size, x, y, r, mask=True)).decode()
        client.images.annotate(
            up.file_id,
            annotations=[SaveAnnotationSchema(mask=mask, label="disc", is_human_vetted=True)],
        )
        ids.append(up.file_id)
    local.post(
        "/datasets", {"name": "compat_plates", "columns": [{"name": "image", "type": "text"}]}
    )
    client.data.write(tables=[TableWrite(table="compat_plates", rows=[{"image": i} for i in ids])])
    started = client.models.train(
        target_column="image",
        dataset_id=client.get_table_id_by_name("compat_plates"),
        name="compat-discs",
        task_type="segmentation",
        image_columns=["image"],
    )
    local.get(f"/ml-models/{started.id}?wait={TRAINING_WAIT}")
    model = client.models.get(started.id)
    expect(model.status == "ready", f"status {model.status}: {model.error_message}")
    expect(model.problem_type == "semantic_segmentation", f"{model.problem_type}")
    new = client.files.upload(
        file=("compat-disc-new.png", disc_png(size, 16, 15, 7), "image/png"),
        job_execution_id=execution,
    ).file_id
    answer = client.models.predict(
        data=[{"image": new}], ml_model_id=started.id, min_region_pixels=10, max_hole_pixels=None
    )
    c["detail"] = {"metrics": model.evaluation_metrics, "predictions": answer.predictions}
    expect(answer.annotations is not None and len(answer.annotations) == 1, "one region")
    (predicted,) = answer.annotations
    truth = sum((x - 16) ** 2 + (y - 15) ** 2 <= 49 for x in range(size) for y in range(size))
    fraction = truth / size**2
    expect(abs(predicted.foreground_fraction - fraction) < 0.2 * fraction, "fraction")
    saved = client.images.annotate(new, annotations=answer.annotations)
    bbox = saved[0].bbox
    expect(bbox is not None, "no bbox")
    expect(
        abs(bbox.x - 9) <= 1 and abs(bbox.y - 8) <= 1 and abs(bbox.width - 15) <= 2,
        f"bbox {bbox}",
    )
    expect(saved[0].is_human_vetted is False, "a prediction is saved unvetted")


def surface() -> list[str]:
    """Every public method and helper of the official client, as ``group.method`` (sync),
    ``async group.method`` and ``client.helper`` (the sync client's own methods)."""
    from labric import AsyncLabric, Labric

    names: list[str] = []
    for prefix, cls in (("", Labric), ("async ", AsyncLabric)):
        instance = cls(base_url="http://127.0.0.1:9", api_key="lbk_x_y")
        for attr in sorted(dir(instance)):
            if attr.startswith("_") or attr == "with_raw_response":
                continue
            value = getattr(instance, attr)
            if callable(value):
                names.append(f"{prefix}client.{attr}")
                continue
            for method in sorted(dir(value)):
                if method.startswith("_") or method == "with_raw_response":
                    continue
                if callable(getattr(value, method)):
                    names.append(f"{prefix}{attr}.{method}")
    return names


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    origin = argv[1]
    api_key = argv[2] if len(argv) > 2 else os.environ.get("LABRIC_API_KEY", "")
    if not api_key:
        print("set LABRIC_API_KEY (or pass the key as the second argument)", file=sys.stderr)
        return 2
    try:
        version = metadata.version("labric")
        import labric
    except Exception as exc:
        print(f"the official labric package is not importable: {exc}", file=sys.stderr)
        return 2
    if not hasattr(labric, "StartJobExecutionSchema"):
        print(f"{labric.__file__} is not the official client (run with -I)", file=sys.stderr)
        return 2
    report = run(origin, api_key)
    summary: dict[str, Any] = {
        "ok": report.ok,
        "package": f"labric {version}",
        "expected_package": f"labric {EXPECTED_VERSION}",
        "origin": origin,
        "surface": surface(),
        "covered": sorted(report.covered),
        "checks": report.checks,
    }
    print(json.dumps(summary, indent=2, default=str))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
