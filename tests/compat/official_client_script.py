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

    @contextmanager
    def check(self, name: str, *, required: bool = True) -> Iterator[dict[str, Any]]:
        """Run one check; record it as passed unless the block raises."""
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

    with report.check("jobs.start (job_name) opens a running execution") as c:
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
    with report.check("files.upload (signed URL, bytes) with job_execution_id") as c:
        expect(execution_id is not None, "needs an execution")
        uploaded = client.files.upload(
            file=("compat-results.csv", big, "text/csv"), job_execution_id=execution_id
        )
        c["detail"] = uploaded.model_dump(mode="json")
        expect(bool(uploaded.file_id), "no file_id")
        expect(uploaded.file_name == "compat-results.csv", f"file_name {uploaded.file_name!r}")
        state["big"] = uploaded

    with report.check("files.confirm_upload again is idempotent") as c:
        expect("big" in state, "needs the upload")
        confirmed = client.files.confirm_upload(file_id=state["big"].file_id)
        c["detail"] = confirmed.model_dump(mode="json")
        expect(confirmed.file_id == state["big"].file_id, "a different file_id")
        expect(confirmed.file_name == state["big"].file_name, "a different file_name")

    with report.check("files.get_content: preview and download_url round-trip") as c:
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
    with report.check("files.list contains the uploads, newest first") as c:
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
    with report.check("jobs.close completes the execution") as c:
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

    return report


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
        "checks": report.checks,
    }
    print(json.dumps(summary, indent=2, default=str))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
