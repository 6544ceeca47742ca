"""Files: newest first, searched and filtered; one file's details, preview and download."""

from __future__ import annotations

import contextlib
import csv
import io
from typing import Any
from urllib.parse import quote

from aiohttp import web

from labric.server.console.html import Markup, el, fragment
from labric.server.console.layout import (
    PREFIX,
    definition_list,
    error_page,
    human_size,
    link,
    page,
    pager,
    table,
    url,
)
from labric.server.console.session import SESSION, require_session, security_headers
from labric.server.core import records
from labric.server.core.http import HTTPError
from labric.server.core.paging import decode_cursor, encode_cursor
from labric.server.core.routing import Pages
from labric.server.core.state import STATE
from labric.server.files.routes import text_preview
from labric.server.instruments import store as instruments

__all__ = ["PAGES", "file_rows"]

PAGES = Pages()

#: Files per page.
PAGE_SIZE = 50
#: Rows of a CSV preview shown.
PREVIEW_ROWS = 50
#: Image types shown inline (never SVG, which can carry script).
IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}


def _extension(name: str) -> str:
    dot = name.rfind(".")
    return name[dot:].casefold() if dot > 0 else ""


def file_rows(rows: list[records.FileRow]) -> list[list[Any]]:
    """Table rows for a list of files (name, size, checksum, instrument, execution, created)."""
    return [
        [
            link(row.original_path, f"{PREFIX}/files/{quote(row.id)}"),
            human_size(row.size_bytes),
            el("code", row.crc32c or ""),
            row.instrument_id or "",
            link(row.job_execution_id, f"{PREFIX}/runs/{quote(row.job_execution_id)}")
            if row.job_execution_id
            else "",
            row.created_at,
        ]
        for row in rows
    ]


FILE_HEADERS = ("Path", "Size", "CRC32C", "Instrument", "Job execution", "Created")


@PAGES.page("GET", PREFIX + "/files")
@require_session
async def list_files(request: web.Request) -> web.StreamResponse:
    """Files, newest first: search, instrument and extension filters, pages."""
    state = request.app[STATE]
    org_id = request[SESSION].org_id
    query = request.query.get("q", "")[:2048]
    instrument_id = request.query.get("instrument") or None
    extensions = request.query.get("ext", "")[:2048]
    cursor = request.query.get("cursor")
    try:
        after = decode_cursor(cursor) if cursor else None
    except HTTPError:
        return error_page(request, 400, "That page link is not valid any more.")
    exts = sorted(
        {"." + e.strip().lstrip(".").casefold() for e in extensions.split(",") if e.strip(" .")}
    )
    terms = [t.casefold() for t in query.split()]
    now = state.clock()

    def read(conn: Any) -> tuple[list[records.FileRow], list[instruments.InstrumentRecord]]:
        rows = records.list_files(
            conn,
            org_id,
            instrument_id=instrument_id,
            extensions=exts,
            terms=terms,
            after=after,
            limit=PAGE_SIZE + 1,
        )
        known = instruments.list_instruments(conn, org_id, after=None, limit=500, now=now)
        return rows, known

    rows, known = await state.db.run(read)
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    filters = {"q": query, "instrument": instrument_id, "ext": extensions}
    following = (
        url(PREFIX + "/files", **filters, cursor=encode_cursor(rows[-1].created_at, rows[-1].seq))
        if more
        else None
    )
    first = url(PREFIX + "/files", **filters) if cursor else None
    form = el(
        "form",
        el("label", "Search ", el("input", type="search", name="q", value=query)),
        el(
            "label",
            "Instrument ",
            el(
                "select",
                el("option", "any", value=""),
                [
                    el(
                        "option",
                        i.name,
                        value=i.id,
                        selected=i.id == instrument_id,
                    )
                    for i in known
                ],
                name="instrument",
            ),
        ),
        el(
            "label",
            "Extensions ",
            el("input", type="text", name="ext", value=extensions, placeholder="csv,txt"),
        ),
        el("button", "Filter", type="submit"),
        method="get",
        class_="filters",
    )
    return page(
        request,
        "Files",
        form,
        table(FILE_HEADERS, file_rows(rows), empty="No files match."),
        pager(first, following),
        active="files",
    )


async def _file(request: web.Request) -> records.FileRow | None:
    state = request.app[STATE]
    row = await state.db.run(
        records.file_get, request.match_info["file_id"], request[SESSION].org_id
    )
    if row is None or row.status != "confirmed" or row.size_bytes is None:
        return None
    return row


def _csv_table(text: str) -> Markup:
    try:
        dialect: Any = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    try:
        rows = [row for _, row in zip(range(PREVIEW_ROWS + 1), reader, strict=False)]
    except csv.Error as exc:
        return el("p", f"Not readable as CSV: {exc}", class_="error")
    if not rows:
        return el("p", "The file is empty.", class_="empty")
    header, body = rows[0], rows[1:]
    return table(header, body, empty="Only a header row.")


@PAGES.page("GET", PREFIX + "/files/{file_id}")
@require_session
async def file_page(request: web.Request) -> web.StreamResponse:
    """One file: metadata, download, and a CSV, text or image preview."""
    state = request.app[STATE]
    row = await _file(request)
    if row is None:
        return error_page(request, 404, "No such file.")
    base = f"{PREFIX}/files/{quote(row.id)}"
    ext = _extension(row.file_name)
    preview: Markup
    if ext in IMAGE_TYPES:
        preview = el("img", src=base + "/image", alt=row.file_name, class_="preview")
    else:
        limit = state.settings.preview_bytes
        text: str | None = None
        reason: str | None = "reading the stored bytes failed"
        with contextlib.suppress(OSError):
            head = await state.blobs.read_head(
                state.blobs.object_path(row.id, row.generation), limit
            )
            text, reason = text_preview(head, row.size_bytes or 0)
        if text is None:
            preview = el("p", f"No preview: {reason}.", class_="empty")
        elif ext in (".csv", ".tsv"):
            preview = _csv_table(text)
        else:
            preview = el("pre", text, class_="text-preview")
        if (row.size_bytes or 0) > limit:
            preview = fragment(preview, el("p", f"Preview of the first {limit} bytes."))
    details = definition_list(
        {
            "File id": el("code", row.id),
            "Path": row.original_path,
            "Size": f"{human_size(row.size_bytes)} ({row.size_bytes} bytes)",
            "CRC32C": el("code", row.crc32c or ""),
            "Content type": row.content_type,
            "Instrument": row.instrument_id or "none",
            "Job execution": link(
                row.job_execution_id, f"{PREFIX}/runs/{quote(row.job_execution_id)}"
            )
            if row.job_execution_id
            else "none",
            "Created": row.created_at,
        }
    )
    return page(
        request,
        row.file_name,
        details,
        el("p", link("Download", base + "/download", class_="button", download=True)),
        el("h2", "Preview"),
        preview,
        active="files",
    )


def _disposition(kind: str, name: str) -> str:
    fallback = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:200] or "file"
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


@PAGES.page("GET", PREFIX + "/files/{file_id}/download")
@require_session
async def download(request: web.Request) -> web.StreamResponse:
    """The file's bytes, as an attachment."""
    row = await _file(request)
    if row is None:
        return error_page(request, 404, "No such file.")
    path = request.app[STATE].blobs.object_path(row.id, row.generation)
    response = web.FileResponse(
        path,
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Disposition": _disposition("attachment", row.file_name),
        },
    )
    return response


@PAGES.page("GET", PREFIX + "/files/{file_id}/image")
@require_session
async def image(request: web.Request) -> web.StreamResponse:
    """An image file's bytes, inline, with its image type (other files: 404)."""
    row = await _file(request)
    media_type = IMAGE_TYPES.get(_extension(row.file_name)) if row else None
    if row is None or media_type is None:
        return security_headers(web.Response(status=404, text="Not an image"))
    path = request.app[STATE].blobs.object_path(row.id, row.generation)
    return web.FileResponse(
        path,
        headers={
            "Content-Type": media_type,
            "Content-Disposition": _disposition("inline", row.file_name),
        },
    )
