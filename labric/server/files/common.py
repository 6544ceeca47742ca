"""Helpers the files and storage routes share: wire shapes, names, attribution, part plans,
storage URLs."""

from __future__ import annotations

import math
import re
from typing import Any

from aiohttp import web

from labric.server.core import records
from labric.server.core.auth import Principal
from labric.server.core.db import iso
from labric.server.core.http import Fields, HTTPError
from labric.server.core.records import FileRow
from labric.server.core.state import ServerState

__all__ = [
    "MAX_FILE_SIZE",
    "MAX_PARTS",
    "OCTET_STREAM",
    "STORAGE_PREFIX",
    "file_info",
    "not_found",
    "object_path",
    "origin",
    "part_path",
    "plan_parts",
    "resolve_attribution",
    "safe_content_type",
    "sign_url",
    "size_kilobytes",
    "source_type",
    "split_name",
    "upload_result",
]

STORAGE_PREFIX = "/storage/v1/objects"


def origin(request: web.Request) -> str:
    """``scheme://host:port`` the client used to reach us (storage URLs point there too)."""
    return f"{request.scheme}://{request.host}"


def size_kilobytes(size: int | None) -> int | None:
    """Size in kilobytes (1024 bytes), rounded up so that a non-empty file is never 0 KB."""
    return None if size is None else math.ceil(size / 1024)


def file_info(row: FileRow) -> dict[str, Any]:
    """A file as ``GET /v1/files`` lists it (the hosted FileInfoSchema plus local extras)."""
    return {
        "file_id": row.id,
        "original_path": row.original_path,
        "source_type": row.source_type,
        "source_instrument_id": row.instrument_id,
        "size_kilobytes": size_kilobytes(row.size_bytes),
        "crc32c_hash": row.crc32c,
        "file_created_at": row.created_at,  # stored form is the wire form
        "file_name": row.file_name,
        "size_bytes": row.size_bytes,
        "content_type": row.content_type,
        "job_execution_id": row.job_execution_id,
    }


def upload_result(row: FileRow) -> dict[str, Any]:
    """A confirmed upload (the hosted FileUploadSchema plus size and checksum)."""
    return {
        "file_id": row.id,
        "file_name": row.file_name,
        "size_kilobytes": size_kilobytes(row.size_bytes),
        "size_bytes": row.size_bytes,
        "crc32c_hash": row.crc32c,
    }


def plan_parts(size: int, part_size: int) -> list[tuple[int, int, int]]:
    """``(number, offset, size)`` of each part of a ``size``-byte upload, numbered from 1."""
    return [
        (index + 1, offset, min(part_size, size - offset))
        for index, offset in enumerate(range(0, size, part_size))
    ]


def object_path(file_id: str) -> str:
    """The storage path of a file's object."""
    return f"{STORAGE_PREFIX}/{file_id}"


def part_path(file_id: str, number: int) -> str:
    """The storage path of one part of a file's multipart upload."""
    return f"{STORAGE_PREFIX}/{file_id}/parts/{number}"


def sign_url(
    state: ServerState,
    request: web.Request,
    method: str,
    path: str,
    *,
    ttl: float,
    headers: dict[str, str] | None = None,
) -> tuple[str, str]:
    """An absolute signed storage URL, and its expiry as an ISO 8601 string."""
    query, expires = state.signer.sign(method, path, ttl=ttl, headers=headers)
    return f"{origin(request)}{path}?{query}", iso(expires)


OCTET_STREAM = "application/octet-stream"


#: Media types a browser could render as a page (so could run script in the storage origin).
_RENDERABLE = frozenset(
    {
        "text/html",
        "application/xhtml+xml",
        "image/svg+xml",
        "text/xml",
        "application/xml",
        "text/xsl",
        "application/xslt+xml",
        "multipart/x-mixed-replace",
    }
)


_MEDIA_TYPE = re.compile(r"^[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+$")


#: The longest file name (with its folders) a file may have.
_MAX_NAME = 4096


#: The largest file an upload may announce (5 TiB, as a cloud storage object).
MAX_FILE_SIZE = 5 * 1024**4


#: The most parts an upload may be planned in (its answer signs a URL for each).
MAX_PARTS = 10_000


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def safe_content_type(value: str | None) -> str:
    """The content type to store: the given one, unless a browser could render it as a page
    (HTML, XHTML, SVG, XML, JavaScript) or it is malformed; then ``application/octet-stream``."""
    if not value or not value.strip():
        return OCTET_STREAM
    value = value.strip()
    if len(value) > 255 or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return OCTET_STREAM
    media = value.split(";", 1)[0].strip().lower()
    if not _MEDIA_TYPE.match(media):
        return OCTET_STREAM
    subtype = media.partition("/")[2]
    if (
        media in _RENDERABLE
        or "javascript" in subtype
        or "ecmascript" in subtype
        or subtype in ("html", "xhtml", "xml")
        or subtype.endswith("+xml")
    ):
        return OCTET_STREAM
    return value


def split_name(raw: str, fields: Fields, field: str) -> tuple[str, str]:
    """``(original_path, file_name)`` of a given name, which may carry folders.

    Names are data, never paths on the server's disk (blobs are named by file id). A name is
    refused when a client could not write it back as a file: one that is not text (a multipart
    filename that is not UTF-8), holds control characters, is too long, or does not end with a
    file name (``a/``, ``.``, ``..``).
    """
    path = raw.strip()
    name = re.split(r"[\\/]", path)[-1]
    if len(path) > _MAX_NAME:
        fields.add([field], f"String should have at most {_MAX_NAME} characters", "string_too_long")
    elif not _is_text(path):
        fields.add([field], "The name must be UTF-8 text", "value_error")
    elif _CONTROL.search(path):
        fields.add([field], "The name must not contain control characters", "value_error")
    elif name in ("", ".", ".."):
        fields.add([field], "The name must end with a file name", "value_error")
    return path, name


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # surrogates: undecodable bytes, or a lone "\ud800" escape
        return False
    return True


def not_found(file_id: str) -> HTTPError:
    return HTTPError(404, f"File {file_id} not found")


def resolve_attribution(
    conn: Any,
    who: Principal,
    instrument_id: str | None,
    job_execution_id: str | None,
    now: str,
) -> tuple[str | None, str | None]:
    """Check the ids a file is attributed to (on the database thread); apply the defaults of
    job keys (the running execution) and paired device keys (their instrument)."""
    if instrument_id is None:
        instrument_id = who.instrument_id
    if instrument_id is not None and not records.instrument_exists(conn, who.org_id, instrument_id):
        raise HTTPError(404, f"Instrument {instrument_id} not found")
    if job_execution_id is not None:
        records.expire_executions(conn, now)
        if records.execution_get(conn, who.org_id, job_execution_id) is None:
            raise HTTPError(404, f"Job execution {job_execution_id} not found")
    if instrument_id is None and job_execution_id is None and who.job_execution_id is None:
        raise HTTPError(
            400,
            "Say where the file comes from: give instrument_id or job_execution_id "
            "(inside a job script, uploads default to the running execution)",
        )
    if job_execution_id is None:
        # A running job's uploads record it as their provenance, instrument or not.
        job_execution_id = who.job_execution_id
    return instrument_id, job_execution_id


def source_type(instrument_id: str | None) -> str:
    return "instrument" if instrument_id is not None else "job"
