"""Transfers under faults, process kills and objects that change mid-download."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp import web

from labric import AsyncLabric, RetryPolicy, TransferConfig
from labric._transfer.checksum import crc32c, crc32c_to_b64
from labric.errors import IntegrityError
from labric.server import LocalServer
from labric.server.core.faults import FaultConfig

from .conftest import PART, make_client

CHILD = textwrap.dedent(
    """
    import asyncio, os, sys
    from labric import AsyncLabric, TransferConfig

    async def main():
        transfer = TransferConfig(
            part_size=int(os.environ["PART"]), multipart_threshold=int(os.environ["PART"]) * 2,
            concurrency=2, state_dir=os.environ["STATE"],
        )
        async with AsyncLabric(
            os.environ["KEY"], base_url=os.environ["URL"], transfer=transfer
        ) as client:
            await client.files.upload(sys.argv[1])

    asyncio.run(main())
    """
)


async def _wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll a condition the server's counters will satisfy (bounded; not a fixed sleep)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def test_killed_upload_resumes_sending_only_missing_parts(
    parts_server: LocalServer, make_file: Callable[..., Path], tmp_path: Path
) -> None:
    size = 24 * PART
    path = make_file("run.raw", size)
    parts_server.faults.update(FaultConfig(bandwidth=1_000_000, scope="storage"))
    env = {
        **os.environ,
        "PART": str(PART),
        "STATE": str(tmp_path / "state"),
        "KEY": parts_server.admin_key,
        "URL": parts_server.base_url,
    }
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", CHILD, str(path), env=env)
    try:

        def parts_stored() -> int:
            by_file = parts_server.stats["storage"]["part_puts_by_file"]
            return max((len(v) for v in by_file.values()), default=0)

        await _wait_for(lambda: parts_stored() >= 4)
        child.send_signal(signal.SIGKILL)
    finally:
        await child.wait()
    assert child.returncode == -signal.SIGKILL
    parts_server.faults.update(FaultConfig())
    (file_id,) = parts_server.stats["storage"]["part_puts_by_file"]

    async with make_client(parts_server, tmp_path / "state") as client:
        status = await client.files.upload_status(file_id)
        stored = sum(p.size for p in status.parts)
        assert 0 < stored < size
        parts_server.reset_stats()
        upload = await client.files.upload(path)
    assert upload.file_id == file_id
    storage = parts_server.stats["storage"]
    assert storage["bytes_received_by_file"][file_id] == size - stored
    assert upload.crc32c_hash == crc32c_to_b64(crc32c(path.read_bytes()))


async def test_bulk_transfers_survive_injected_faults(
    parts_server: LocalServer, make_file: Callable[..., Path], tmp_path: Path
) -> None:
    sources = [make_file(f"w{i:03d}.csv", 3000 + i) for i in range(60)]
    sources.append(make_file("big.raw", 9 * PART + 7))
    parts_server.faults.update(FaultConfig(error=0.1, throttle=0.03, reset=0.05, seed=11))
    async with make_client(parts_server, tmp_path / "state") as client:
        uploads = await client.files.upload_many(sources)
        assert all(o.ok for o in uploads), [o.error for o in uploads if not o.ok]
        ids = [o.file.file_id for o in uploads if o.file]
        downloads = await client.files.download_many(ids, tmp_path / "back")
        assert all(d.ok for d in downloads), [d.error for d in downloads if not d.ok]
        retries = client._transport.retries
    faults = parts_server.faults.counters
    parts_server.faults.update(FaultConfig())
    assert faults["errors_500"] + faults["errors_503"] + faults["resets"] > 5
    assert retries > 5
    for src, down in zip(sources, downloads, strict=True):
        assert down.path is not None
        assert Path(down.path).read_bytes() == src.read_bytes()
    # Retried writes were applied once: one listed file per source, no duplicates.
    async with make_client(parts_server, tmp_path / "state") as client:
        listed = [f async for f in client.files.list(page_size=1000)]
    assert sorted(f.file_id for f in listed) == sorted(ids)


# -- an object that changes under a download --------------------------------------------------


class _ChangingObject:
    """A stand-in API + storage whose object is replaced right after serving a first range.

    Each download attempt starts with one range without ``If-Match`` (it learns the ETag from
    it); while ``changes`` remain, the object changes version just after that range is served.
    """

    def __init__(self, versions: list[bytes], *, changes: int) -> None:
        self.versions = versions
        self.version = 0
        self.changes_left = changes

    @property
    def data(self) -> bytes:
        return self.versions[self.version]

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v1/files/f1/content", self.content)
        app.router.add_get("/api/v1/files/f1", self.meta)
        app.router.add_get("/storage/f1", self.storage)
        return app

    async def meta(self, request: web.Request) -> web.Response:
        return web.json_response({"file_id": "f1", "original_path": "obj.bin"})

    async def content(self, request: web.Request) -> web.Response:
        base = f"{request.scheme}://{request.host}"
        return web.json_response(
            {
                "file_id": "f1",
                "file_name": "obj.bin",
                "download_url": f"{base}/storage/f1?sig=x",
                "preview_truncated": True,
                "size_bytes": len(self.data),
                "crc32c_hash": crc32c_to_b64(crc32c(self.data)),
            }
        )

    async def storage(self, request: web.Request) -> web.Response:
        etag = f'"v{self.version}"'
        if_match = request.headers.get("If-Match")
        if if_match is not None and if_match != etag:
            return web.json_response({"detail": "precondition failed"}, status=412)
        start, _, end = request.headers["Range"].removeprefix("bytes=").partition("-")
        body = self.data[int(start) : int(end) + 1]
        content_range = f"bytes {start}-{int(start) + len(body) - 1}/{len(self.data)}"
        response = web.Response(
            body=body, status=206, headers={"ETag": etag, "Content-Range": content_range}
        )
        if if_match is None and self.changes_left:
            self.changes_left -= 1
            self.version += 1
        return response


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}/api"


@pytest.mark.parametrize("changes", [1, 10])
async def test_object_changing_mid_download_is_detected(changes: int, tmp_path: Path) -> None:
    size = 6 * PART
    versions = [os.urandom(size) for _ in range(12)]
    obj = _ChangingObject(versions, changes=changes)
    runner, base_url = await _serve(obj.app())
    transfer = TransferConfig(
        part_size=PART, multipart_threshold=PART, concurrency=4, state_dir=str(tmp_path / "s")
    )
    retry = RetryPolicy(max_retries=2, initial_delay=0.001, max_delay=0.01)
    dest = tmp_path / "obj.bin"
    try:
        async with AsyncLabric(
            "lbk_test_secret", base_url=base_url, transfer=transfer, retry=retry
        ) as client:
            if changes == 1:
                await client.files.download("f1", dest)
                # The restart fetched the new version whole, never a mix of the two.
                assert dest.read_bytes() == versions[1]
            else:
                with pytest.raises(IntegrityError, match="kept changing"):
                    await client.files.download("f1", dest)
                assert not dest.exists()
                assert sorted(p.name for p in dest.parent.iterdir() if "obj.bin" in p.name) == []
    finally:
        await runner.cleanup()
