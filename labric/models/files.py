"""Models of the files resource, with the hosted platform's field names."""

from __future__ import annotations

from datetime import datetime

import attrs

from labric.models._base import bounded_repr

__all__ = [
    "FileContent",
    "FileInfo",
    "FileUpload",
    "UploadPart",
    "UploadStatus",
    "UploadURL",
    "UploadedPart",
]


@attrs.frozen(kw_only=True)
class FileInfo:
    """A file as listed by ``GET /v1/files`` (the hosted ``FileInfoSchema``).

    ``file_name``, ``size_bytes``, ``content_type`` and ``job_execution_id`` are sent by the local
    server (and by ``GET /v1/files/{id}``); the hosted listing may leave them out.
    """

    file_id: str
    original_path: str | None = None
    source_type: str | None = None
    source_instrument_id: str | None = None
    size_kilobytes: int | None = None
    crc32c_hash: str | None = None
    file_created_at: datetime | None = None
    file_name: str | None = None
    size_bytes: int | None = None
    content_type: str | None = None
    job_execution_id: str | None = None


@attrs.frozen(kw_only=True)
class FileUpload:
    """A confirmed upload (the hosted ``FileUploadSchema``)."""

    file_id: str
    file_name: str
    size_kilobytes: int | None = None
    size_bytes: int | None = None
    crc32c_hash: str | None = None


@attrs.frozen(kw_only=True)
class UploadPart:
    """One part of a multipart upload: PUT ``size`` bytes from ``offset`` to ``url``."""

    __repr__ = bounded_repr

    number: int
    offset: int
    size: int
    url: str = attrs.field(repr=False)
    headers: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class UploadURL:
    """The answer of ``POST /v1/files/upload-url`` (hosted ``FileUploadUrlSchema`` + parts)."""

    __repr__ = bounded_repr

    file_id: str
    upload_url: str = attrs.field(repr=False)
    headers: dict[str, str] = attrs.field(factory=dict)
    expires_at: str
    part_size: int | None = None
    parts: list[UploadPart] | None = None


@attrs.frozen(kw_only=True)
class UploadedPart:
    """A part the server already holds, from ``GET /v1/files/{id}/upload-status``."""

    number: int
    size: int
    crc32c: str


@attrs.frozen(kw_only=True)
class UploadStatus:
    """Where an upload stands: ``pending`` or ``confirmed``, and the parts already stored.

    For a pending multipart upload, ``missing_parts`` carries freshly signed URLs for the parts the
    server does not hold yet, so an interrupted upload resumes by sending only those.
    """

    __repr__ = bounded_repr

    file_id: str
    status: str
    part_size: int | None = None
    parts: list[UploadedPart] = attrs.field(factory=list)
    missing_parts: list[UploadPart] = attrs.field(factory=list)


@attrs.frozen(kw_only=True)
class FileContent:
    """The answer of ``GET /v1/files/{id}/content`` (hosted ``FileContentSchema`` + size, crc)."""

    file_id: str
    download_url: str = attrs.field(repr=False)
    preview_truncated: bool
    file_name: str | None = None
    size_kilobytes: int | None = None
    text_preview: str | None = None
    preview_skipped_reason: str | None = None
    size_bytes: int | None = None
    crc32c_hash: str | None = None
