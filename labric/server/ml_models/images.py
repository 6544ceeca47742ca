"""An organisation's images and vetted masks, read from the training and prediction threads.

The file records and the masks are read on the server's event loop (the database and the blob
store are driven from there); a thread calls in with :func:`asyncio.run_coroutine_threadsafe`
and waits. The image itself is decoded on the calling thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from labric.server.core import records
from labric.server.core.state import ServerState
from labric.server.images import pixels, store

__all__ = ["OrgImages"]

#: How long a thread waits for the loop to read a file's record or masks.
READ_TIMEOUT = 60.0


class OrgImages:
    """:class:`~labric.server.ml_models.trainers.ImageSource` for one organisation.

    Args:
        state: The server's shared state.
        org_id: The organisation whose files are read (another's are "not found").
        loop: The server's event loop.
    """

    def __init__(self, state: ServerState, org_id: str, loop: asyncio.AbstractEventLoop) -> None:
        self._state = state
        self._org_id = org_id
        self._loop = loop

    def __repr__(self) -> str:
        return f"<OrgImages {self._org_id}>"

    def _wait(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(READ_TIMEOUT)

    async def _path(self, file_id: str) -> Path:
        row = await self._state.db.run(records.file_get, file_id, self._org_id)
        if row is None:
            raise LookupError(f"File {file_id} not found")
        if row.status != "confirmed" or row.generation == 0:
            raise LookupError(f"File {file_id} is not processed yet (its upload is unconfirmed)")
        return self._state.blobs.object_path(file_id, row.generation)

    def image(self, file_id: str) -> Any:
        """The image as a Pillow RGB image.

        Raises:
            LookupError: no such file of the organisation, unconfirmed, or not an image.
            pixels.PillowMissing: Pillow is not installed.
        """
        path: Path = self._wait(self._path(file_id))
        try:
            return pixels.load_rgb(path)
        except FileNotFoundError:
            raise LookupError(f"File {file_id} not found") from None
        except pixels.NotAnImage as exc:
            raise LookupError(f"File {file_id} is not an image: {exc}") from None

    def vetted_masks(self, file_id: str) -> Sequence[store.VettedMask]:
        """The file's human-vetted masks, oldest first (none for another's file)."""
        found: list[store.VettedMask] = self._wait(
            store.vetted_masks(self._state, self._org_id, file_id)
        )
        return found
