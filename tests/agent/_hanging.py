"""A raw HTTP server whose event stream never ends, to see when the client lets go of it.

It runs on its own thread and event loop (so sync and async clients can both talk to it), answers
every request with ``200 text/event-stream``, one event, and then waits for the client to close
the connection: :attr:`HangingStream.closed` is set when it does. No timer is involved: the
server learns of the close from the socket reaching EOF.
"""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType

_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
    b"X-Request-ID: req_hanging\r\n\r\n"
)
_EVENT = b'data: {"type":"text_delta","delta":"first"}\n\n'


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


class HangingStream:
    """Serves never-ending event streams on 127.0.0.1 from a thread of its own."""

    def __init__(self) -> None:
        self.closed = threading.Event()
        self.requests = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="hanging-stream", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def __enter__(self) -> HangingStream:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stop = self._stop
        assert stop is not None
        self._loop.call_soon_threadsafe(stop.set)
        self._thread.join(10)

    def wait_closed(self) -> bool:
        """Whether the client closed its connection within 10 seconds."""
        return self.closed.wait(10)

    def _main(self) -> None:
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()
            server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.requests += 1
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await reader.readexactly(length)
        writer.write(_HEAD + _chunk(_EVENT))
        await writer.drain()
        try:
            while await reader.read(1024):  # nothing more comes until the client closes
                pass
        except ConnectionError:
            pass
        self.closed.set()
        writer.close()
