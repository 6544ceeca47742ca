"""The local Labric server: a faithful emulator of the hosted API, for development and tests.

It serves the hosted routes (and the additions of ``design.md``) over real HTTP with aiohttp,
keeps metadata in SQLite and file bytes in a blob directory, signs storage URLs, enforces key
scopes and organisation isolation, and can inject faults::

    from labric.server import LocalServer

    async with LocalServer("./labric-data") as server:
        print(server.base_url, server.admin_key)

From the shell: ``labric serve --data-dir ./labric-data``.
"""

from labric.server.core.faults import FaultConfig, FaultInjector, parse_faults
from labric.server.core.state import DEFAULT_PART_SIZE, MAX_MULTIPART_BODY, MAX_SINGLE_PUT
from labric.server.local import LocalServer, ThreadedServer

__all__ = [
    "DEFAULT_PART_SIZE",
    "MAX_MULTIPART_BODY",
    "MAX_SINGLE_PUT",
    "FaultConfig",
    "FaultInjector",
    "LocalServer",
    "ThreadedServer",
    "parse_faults",
]
