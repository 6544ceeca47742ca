"""``client.files``: list, inspect, upload, download and delete instrument files."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

from labric._pagination import AsyncPager
from labric.models.files import FileContent, FileInfo
from labric.resources._base import AsyncResource

__all__ = ["AsyncFiles"]


def _file_path(file_id: str, suffix: str = "") -> str:
    if not file_id or not isinstance(file_id, str):
        raise ValueError("file_id must be a non-empty string")
    return f"/v1/files/{quote(file_id, safe='')}{suffix}"


class AsyncFiles(AsyncResource):
    """Files: the instrument files and other blobs an organisation keeps on Labric."""

    def list(
        self,
        *,
        instrument_id: str | None = None,
        extensions: Sequence[str] | str | None = None,
        query: str | None = None,
        limit: int | None = None,
        page_size: int | None = None,
    ) -> AsyncPager[FileInfo]:
        """List files, newest first.

        Args:
            instrument_id: Only files from this instrument.
            extensions: Only these extensions, e.g. ``["csv", "txt"]`` or ``"csv,txt"``.
            query: Space-separated terms that must all appear in the file's path (any case).
            limit: The most files to yield in total.
            page_size: Files fetched per request (the server's default when unset).

        Returns:
            A pager: ``await`` it for the first page, ``async for`` over it for every file.

        Example::

            async for f in client.files.list(extensions=["csv"], query="plate 7"):
                print(f.file_id, f.original_path)
        """
        if isinstance(extensions, str):
            ext: str | None = extensions
        elif extensions is not None:
            ext = ",".join(e.lstrip(".") for e in extensions)
        else:
            ext = None
        params = {"instrument_id": instrument_id, "extensions": ext, "query": query}
        return self._pager("/v1/files", FileInfo, params=params, limit=limit, page_size=page_size)

    async def get(self, file_id: str) -> FileInfo:
        """Get one file's metadata.

        Raises:
            NotFoundError: no such file in your organisation.
        """
        response = await self._transport.request("GET", _file_path(file_id))
        return self._parse(response, FileInfo)

    async def content(self, file_id: str) -> FileContent:
        """Get a signed download URL and a text preview of the first 64 KiB.

        Returns:
            The signed ``download_url`` (valid for a limited time; it needs no API key), the
            ``text_preview``, and ``size_bytes`` / ``crc32c_hash`` where the server knows them.
        """
        response = await self._transport.request("GET", _file_path(file_id, "/content"))
        return self._parse(response, FileContent)

    async def delete(self, file_id: str) -> None:
        """Delete a file and its bytes.

        Raises:
            NotFoundError: no such file in your organisation.
        """
        await self._transport.request("DELETE", _file_path(file_id))
