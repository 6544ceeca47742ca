"""A deliberately misbehaving Labric server, whose every answer is chosen by the test.

The local server is honest; this one is not. A test registers handlers for the routes it cares
about and the client under test talks to it over a real socket on 127.0.0.1::

    async def test_lying_size(hostile: HostileServer) -> None:
        @hostile.route("GET", "/api/v1/files/{file_id}/content")
        async def content(request: web.Request) -> web.StreamResponse:
            return web.json_response(file_content("f1", hostile.url("/blob/f1"), size=2**40))

        async with hostile.client() as client:
            ...

Routes are matched in registration order; ``{name}`` matches one path segment and lands in
``request.match_info``. A request no route matches gets a 404 with the hosted error shape, and
every request is recorded in :attr:`HostileServer.requests` (method, path, query, headers, body
size) so a test can assert what went over the wire.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import attrs
from aiohttp import web

from labric import AsyncLabric, TransferConfig
from labric._transfer.checksum import crc32c, crc32c_to_b64

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: A well-formed key: the client checks the shape, the hostile server never checks it.
KEY = "lbk_hostile_" + "s" * 32


@attrs.define
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


def _compile(pattern: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[a-zA-Z_]+\})", pattern)
    rx = "".join(
        f"(?P<{p[1:-1]}>[^/]+)" if p.startswith("{") and p.endswith("}") else re.escape(p)
        for p in parts
    )
    return re.compile(f"^{rx}$")


class HostileServer:
    """An aiohttp server on an ephemeral loopback port with per-test handlers."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.requests: list[Seen] = []
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._runner: web.AppRunner | None = None
        self.port = 0
        #: Read request bodies into :attr:`requests` (turn off for multi-GB uploads).
        self.record_bodies = True

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        app = web.Application(client_max_size=1024**4)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- configuration -------------------------------------------------------------------------
    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.origin}/api"

    def url(self, path: str) -> str:
        """An absolute URL on this server (for download and upload URLs it hands out)."""
        return self.origin + path

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        """Register ``handler`` for ``method`` (or ``*``) and a path pattern."""

        def register(handler: Handler) -> Handler:
            self._routes.append((method.upper(), _compile(pattern), handler))
            return handler

        return register

    def client(self, **overrides: Any) -> AsyncLabric:
        """An AsyncLabric pointed at this server, with its own journal directory."""
        transfer = overrides.pop("transfer", None) or TransferConfig(
            state_dir=str(self.state_dir / "transfer-state")
        )
        return AsyncLabric(KEY, base_url=self.base_url, transfer=transfer, **overrides)

    def seen(self, method: str, path_prefix: str = "") -> list[Seen]:
        """The recorded requests with this method whose path starts with ``path_prefix``."""
        return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)]

    # -- dispatch ------------------------------------------------------------------------------
    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        for method, rx, handler in self._routes:
            if method not in ("*", request.method):
                continue
            m = rx.match(request.path)
            if m is None:
                continue
            body = await request.read() if self.record_bodies else b""
            self.requests.append(
                Seen(request.method, request.path, dict(request.query), dict(request.headers), body)
            )
            request.match_info.update(m.groupdict())
            return await handler(request)
        self.requests.append(
            Seen(request.method, request.path, dict(request.query), dict(request.headers), b"")
        )
        return web.json_response(
            {"detail": f"no route for {request.method} {request.path}"}, status=404
        )


# -- answers in the hosted shapes ------------------------------------------------------------------
def file_info(
    file_id: str, name: str, *, size: int | None = None, crc32c: str | None = None
) -> dict[str, Any]:
    """A ``FileInfo`` answer (listing item / metadata)."""
    return {
        "file_id": file_id,
        "original_path": name,
        "file_name": name.rsplit("/", 1)[-1],
        "source_type": "api",
        "size_bytes": size,
        "size_kilobytes": None if size is None else (size + 1023) // 1024,
        "crc32c_hash": crc32c,
        "file_created_at": "2026-01-01T00:00:00Z",
    }


def file_content(
    file_id: str,
    download_url: str,
    *,
    name: str = "data.bin",
    size: int | None = None,
    crc32c: str | None = None,
) -> dict[str, Any]:
    """A ``GET /v1/files/{id}/content`` answer."""
    return {
        "file_id": file_id,
        "file_name": name,
        "download_url": download_url,
        "preview_truncated": False,
        "size_bytes": size,
        "crc32c_hash": crc32c,
    }


# -- generic misbehaviours -------------------------------------------------------------------------
async def stream_chunks(
    request: web.Request,
    chunks: Iterable[bytes],
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> web.StreamResponse:
    """Send ``chunks`` as one body (chunked unless ``headers`` sets ``Content-Length``).

    A client that hangs up part way (as one refusing an oversized body does) ends the handler
    quietly.
    """
    response = web.StreamResponse(status=status, headers=headers)
    try:
        await response.prepare(request)
        for chunk in chunks:
            await response.write(chunk)
        await response.write_eof()
    except (ConnectionError, RuntimeError):
        pass  # the client closed the connection (RuntimeError: aiohttp's "transport is closing")
    return response


def gzip_of_zeros(size: int) -> bytes:
    """A gzip stream of ``size`` zero bytes: a decompression bomb (about 1000:1)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1024 * 1024)
    parts = [packer.compress(block) for _ in range(size // len(block))]
    parts.append(packer.compress(bytes(size % len(block))))
    parts.append(packer.flush())
    return b"".join(parts)


class SinglePutUploads:
    """Honest routes for the single-``PUT`` upload flow, to build a hostile test around.

    ``POST upload-url`` hands out a fresh file id and a PUT URL on this server, the PUT stores
    the body (and answers its CRC32C in ``x-goog-hash``), ``confirm-upload`` answers the stored
    size and CRC32C. Register the routes a test means to break *before* calling
    :meth:`install`: routes match in registration order.
    """

    def __init__(self, server: HostileServer) -> None:
        self.server = server
        self.objects: dict[str, bytes] = {}
        self.names: dict[str, str] = {}
        self.confirmed: list[str] = []
        #: Statuses the next object PUTs answer (one each, in order) before storing anything.
        self.put_failures: list[int] = []

    def install(self) -> SinglePutUploads:
        server = self.server

        @server.route("POST", "/api/v1/files/upload-url")
        async def upload_url(request: web.Request) -> web.StreamResponse:
            body = await request.json()
            file_id = f"f-{len(self.names) + 1}"
            self.names[file_id] = body["file_name"]
            return web.json_response(
                {
                    "file_id": file_id,
                    "upload_url": server.url(f"/put/{file_id}"),
                    "headers": {},
                    "expires_at": "2026-01-01T00:15:00Z",
                }
            )

        @server.route("PUT", "/put/{file_id}")
        async def put(request: web.Request) -> web.StreamResponse:
            data = await request.read()
            if self.put_failures:
                status = self.put_failures.pop(0)
                return web.json_response({"detail": f"injected {status}"}, status=status)
            self.objects[request.match_info["file_id"]] = data
            return web.json_response(
                {}, headers={"x-goog-hash": f"crc32c={crc32c_to_b64(crc32c(data))}"}
            )

        @server.route("POST", "/api/v1/files/{file_id}/confirm-upload")
        async def confirm(request: web.Request) -> web.StreamResponse:
            file_id = request.match_info["file_id"]
            data = self.objects[file_id]
            self.confirmed.append(file_id)
            return web.json_response(
                {
                    "file_id": file_id,
                    "file_name": self.names[file_id],
                    "size_bytes": len(data),
                    "crc32c_hash": crc32c_to_b64(crc32c(data)),
                }
            )

        return self


# -- a stored object, served with chosen headers ---------------------------------------------------

_UNSET: Any = object()


@attrs.define
class StoredFile:
    """A file the hostile server hands out: its API answers and its storage route, each adjustable.

    ``size`` is what the API claims (default: the body's length); ``served`` what storage sends
    (default: ``body``). Storage answers single ``Range`` requests with a ``206`` whose
    ``Content-Range`` is ``content_range(start, end, total)`` (default: the honest one; return
    ``None`` to leave the header out); ``etag=None`` leaves out the ``ETag``; ``chunked`` leaves
    out ``Content-Length``; ``goog_crc`` sends ``x-goog-hash`` with this CRC32C. ``before_body`` is
    awaited once the status line is out, before the first byte of a body; ``refuse`` may answer a
    storage request with an error status instead.
    """

    file_id: str
    body: bytes
    name: str = "data.bin"
    path: str | None = None
    size: int | None = _UNSET
    content_crc: str | None = None
    meta_crc: str | None = None
    served: bytes | None = None
    etag: str | None = '"v1"'
    goog_crc: str | None = None
    ranges: bool = True
    chunked: bool = False
    chunk: int = 64 * 1024
    content_range: Callable[[int, int, int], str | None] | None = None
    before_body: Callable[[web.Request], Awaitable[None]] | None = None
    on_chunk: Callable[[int], None] | None = None
    refuse: Callable[[web.Request], int | None] | None = None


def serve_file(server: HostileServer, f: StoredFile) -> StoredFile:
    """Register ``f``'s metadata, content ticket and storage routes on ``server``.

    Every answer reads ``f`` when it is made, so a test may change the file between requests.
    """

    @server.route("GET", f"/api/v1/files/{f.file_id}")
    async def meta(request: web.Request) -> web.StreamResponse:
        size = len(f.body) if f.size is _UNSET else f.size
        return web.json_response(
            file_info(f.file_id, f.path or f.name, size=size, crc32c=f.meta_crc)
        )

    @server.route("GET", f"/api/v1/files/{f.file_id}/content")
    async def content(request: web.Request) -> web.StreamResponse:
        size = len(f.body) if f.size is _UNSET else f.size
        url = server.url(f"/blob/{f.file_id}")
        answer = file_content(f.file_id, url, name=f.name, size=size, crc32c=f.content_crc)
        return web.json_response(answer)

    @server.route("GET", f"/blob/{f.file_id}")
    async def storage(request: web.Request) -> web.StreamResponse:
        status_instead = f.refuse(request) if f.refuse is not None else None
        if status_instead is not None:
            return web.json_response({"detail": "refused by the test"}, status=status_instead)
        data = f.body if f.served is None else f.served
        headers: dict[str, str] = {}
        if f.etag is not None:
            headers["ETag"] = f.etag
        if f.goog_crc is not None:
            headers["x-goog-hash"] = f"crc32c={f.goog_crc}"
        status, piece = 200, data
        asked = request.headers.get("Range")
        if asked and f.ranges:
            first, _, last = asked.removeprefix("bytes=").partition("-")
            start, end = int(first), min(int(last), len(data) - 1)
            piece = data[start : end + 1]
            status = 206
            make = f.content_range or (lambda a, b, total: f"bytes {a}-{b}/{total}")
            value = make(start, end, len(data))
            if value is not None:
                headers["Content-Range"] = value
        response = web.StreamResponse(status=status, headers=headers)
        if f.chunked:
            response.enable_chunked_encoding()
        else:
            response.content_length = len(piece)
        await response.prepare(request)
        if f.before_body is not None:
            await f.before_body(request)
        try:
            for offset in range(0, len(piece), f.chunk):
                await response.write(piece[offset : offset + f.chunk])
                if f.on_chunk is not None:
                    f.on_chunk(offset + f.chunk)
            await response.write_eof()
        except ConnectionError:
            pass  # the client stopped reading, as it should when the body is too long
        return response

    return f
