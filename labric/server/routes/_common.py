"""Helpers the files and storage routes share: wire shapes, part plans, storage URLs."""

from __future__ import annotations

import math
from typing import Any

from aiohttp import web

from labric.server.auth import PRINCIPAL, Principal
from labric.server.db import iso
from labric.server.records import FileRow
from labric.server.state import ServerState

__all__ = [
    "STORAGE_PREFIX",
    "file_info",
    "object_path",
    "origin",
    "part_path",
    "plan_parts",
    "principal",
    "sign_url",
    "size_kilobytes",
    "upload_result",
]

STORAGE_PREFIX = "/storage/v1/objects"


def principal(request: web.Request) -> Principal:
    """The authenticated caller of an API route."""
    return request[PRINCIPAL]


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
