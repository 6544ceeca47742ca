"""A stub of the files API on its own thread, for the sync facade's lifecycle tests.

It serves the files routes with canned data and one route that never answers, and records when
that request arrives and when it is cancelled (the Ctrl-C test needs to see that).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from aiohttp import web

KEY = "lbk_sync_0123456789abcdef"
N_FILES = 250
SLOW_ID = "slow"


def file_body(file_id: str) -> dict[str, Any]:
    """A file as the API returns it (the fields of labric.models.files.FileInfo)."""
    return {
        "file_id": file_id,
        "original_path": f"runs/{file_id}.csv",
        "source_type": "instrument",
        "source_instrument_id": "inst-1",
        "size_kilobytes": 1,
        "crc32c_hash": "AAAAAA==",
        "file_created_at": "2025-01-02T03:04:05Z",
        "file_name": f"{file_id}.csv",
        "size_bytes": 42,
        "content_type": "text/csv",
        "job_execution_id": None,
    }


class StubAPI:
    """The files routes over real HTTP on 127.0.0.1, in a daemon thread with its own loop."""

    def __init__(self) -> None:
        self.ids = [f"f{i:04d}" for i in range(N_FILES)]
        self.deleted: set[str] = set()
        self.slow_arrived = threading.Event()
        self.slow_cancelled = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def reset(self) -> None:
        self.deleted.clear()
        self.slow_arrived.clear()
        self.slow_cancelled.clear()

    # -- handlers -----------------------------------------------------------------------------

    def _authorised(self, request: web.Request) -> None:
        if request.headers.get("Authorization") != f"Bearer {KEY}":
            raise web.HTTPUnauthorized(
                text='{"detail": "Invalid API key"}', content_type="application/json"
            )

    async def list_files(self, request: web.Request) -> web.Response:
        self._authorised(request)
        # Pages of page_size, as the local server does (the client always sends one; a caller's
        # limit is enforced by the pager here).
        size = int(request.query.get("page_size", "100"))
        start = int(request.query.get("cursor", "0"))
        live = [i for i in self.ids if i not in self.deleted]
        page = live[start : start + size]
        headers = {}
        if start + size < len(live):
            headers["Link"] = f'</api/v1/files?page_size={size}&cursor={start + size}>; rel="next"'
        return web.json_response([file_body(i) for i in page], headers=headers)

    def _known(self, request: web.Request) -> str:
        self._authorised(request)
        file_id = request.match_info["file_id"]
        if file_id not in self.ids or file_id in self.deleted:
            raise web.HTTPNotFound(
                text='{"detail": "File not found"}',
                content_type="application/json",
                headers={"X-Request-ID": "req-404"},
            )
        return file_id

    async def get_file(self, request: web.Request) -> web.Response:
        if request.match_info["file_id"] == SLOW_ID:
            return await self._never(request)
        return web.json_response(file_body(self._known(request)))

    async def _never(self, request: web.Request) -> web.Response:
        self._authorised(request)
        self.slow_arrived.set()
        try:
            await asyncio.Event().wait()  # until the client goes away
        except asyncio.CancelledError:
            self.slow_cancelled.set()
            raise
        raise AssertionError("unreachable")

    async def file_content(self, request: web.Request) -> web.Response:
        file_id = self._known(request)
        return web.json_response(
            {
                "file_id": file_id,
                "download_url": f"http://127.0.0.1:{self.port}/storage/{file_id}?sig=x",
                "preview_truncated": False,
                "file_name": f"{file_id}.csv",
                "size_kilobytes": 1,
                "text_preview": "a,b\n1,2\n",
                "preview_skipped_reason": None,
                "size_bytes": 42,
                "crc32c_hash": "AAAAAA==",
            }
        )

    async def delete_file(self, request: web.Request) -> web.Response:
        self.deleted.add(self._known(request))
        return web.json_response({"detail": "deleted"})

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        ready = threading.Event()

        async def main() -> None:
            app = web.Application()
            app.router.add_get("/api/v1/files", self.list_files)
            app.router.add_get("/api/v1/files/{file_id}", self.get_file)
            app.router.add_get("/api/v1/files/{file_id}/content", self.file_content)
            app.router.add_delete("/api/v1/files/{file_id}", self.delete_file)
            # Cancel a handler when its client disconnects, so the tests can see it happen.
            runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.port = int(runner.addresses[0][1])
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            ready.set()
            try:
                await self._stop.wait()
            finally:
                await runner.cleanup()

        self._thread = threading.Thread(
            target=asyncio.run, args=(main(),), name="stub-api", daemon=True
        )
        self._thread.start()
        ready.wait(10)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)
