"""One :class:`~labric.AsyncLabric` per event loop, and closing them, at exit if need be.

An ``AsyncLabric`` (and its aiohttp session) belongs to the loop it was opened on. fsspec runs
a blocking filesystem's coroutines on its own IO-loop thread and an ``asynchronous=True`` one on
the caller's loop, so a :class:`ClientPool` keeps one client per loop, opened there on first use
and again after a close. Engines such as pandas and Dask never close the filesystems they
create, so the pools with clients open are registered here and, at interpreter exit, their
clients are closed with the public ``aclose()``: on fsspec's IO loop, still running then (its
thread is a daemon), or, for a loop that has ended, from a loop of its own, which detaches the
session. There is no ``__del__`` or finalizer poking at aiohttp's internals.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import threading
import weakref
from typing import Any

from labric._client import AsyncLabric
from labric._core.config import ClientConfig

__all__ = ["ClientPool", "close_open_pools"]

#: Seconds the exit hook waits for one pool's clients to close.
_EXIT_CLOSE_TIMEOUT = 10.0


class ClientPool:
    """The clients of one filesystem, one per event loop it is used on.

    Args:
        config: The resolved configuration every client is opened with.
        client_options: The other arguments of :class:`~labric.AsyncLabric`.
    """

    def __init__(self, config: ClientConfig, client_options: dict[str, Any]) -> None:
        self.config = config
        self._options = client_options
        #: Open clients by the loop they belong to.
        self.clients: dict[asyncio.AbstractEventLoop, AsyncLabric] = {}
        self._lock = threading.Lock()

    async def client(self) -> AsyncLabric:
        """The client of the running loop, opened on first use (and again after a close)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self.clients.get(loop)
            if client is None or client.is_closed:
                client = AsyncLabric(
                    self.config.api_key, base_url=self.config.base_url, **self._options
                )
                self.clients[loop] = client
                _open_pools[id(self)] = self
            dead = [other for other in self.clients if other.is_closed()]
            orphans = [self.clients.pop(other) for other in dead]
        for orphan in orphans:
            # Its loop is closed: aclose() detaches the session without touching that loop.
            await orphan.aclose()
        return client

    async def aclose(self) -> None:
        """Close every client; each session in its own loop (or dropped, when that is gone)."""
        with self._lock:
            clients = list(self.clients.values())
            self.clients.clear()
            _open_pools.pop(id(self), None)
        for client in clients:
            await client.aclose()

    def close_at_exit(self) -> None:
        """Close the clients whose loops still run (fsspec's IO loop, at interpreter exit)."""
        with self._lock:
            clients = list(self.clients.items())
            self.clients.clear()
        for loop, client in clients:
            with contextlib.suppress(Exception):
                if loop.is_running():
                    future = asyncio.run_coroutine_threadsafe(client.aclose(), loop)
                    future.result(_EXIT_CLOSE_TIMEOUT)
                else:
                    # Its loop is over: closing from a loop of our own detaches the session.
                    asyncio.run(client.aclose())


#: Pools with clients open, by ``id()``: weakly, so a filesystem nobody holds (and its pool)
#: can still be collected; by id, as pools have no meaningful equality.
_open_pools: weakref.WeakValueDictionary[int, ClientPool] = weakref.WeakValueDictionary()


@atexit.register
def close_open_pools() -> None:
    """Close the clients every filesystem left open (run by ``atexit``)."""
    for pool in list(_open_pools.values()):
        pool.close_at_exit()
