"""Response bodies: read whole, decompressed, and never past a bound.

API responses are read whole and decompressed, but never past ``ClientConfig.max_response_bytes``:
the body is streamed and decompressed here (:func:`read_bounded`), counting both the bytes
received and the bytes they inflate to, and reading stops (with
:class:`~labric.errors.ResponseTooLargeError`) the moment either passes the limit, so neither a
huge body nor a decompression bomb reaches memory; a ``Content-Length`` over it is refused before
reading. The session never decompresses on its own, and only the encodings decoded here are asked
for (``_ACCEPT_ENCODING``). Error bodies are read up to a small limit and cut there (``cut``).

A body that does not decompress, or a compressed stream that ends early, fails like a body cut
short (:class:`~labric.errors.APIConnectionError`, possibly transient); an encoding the client
never asked for is a :class:`~labric.errors.APIResponseValidationError`. A body not read to its
end closes its connection, so it is never handed out again.
"""

from __future__ import annotations

import json as jsonlib
import zlib
from typing import Any, NoReturn

import aiohttp

from labric._core.urls import _safe_path
from labric.errors import APIConnectionError, APIResponseValidationError, ResponseTooLargeError

__all__ = ["read_bounded"]

_READ_CHUNK = 64 * 1024
_INFLATE_STEP = 1024 * 1024
#: The encodings the transport can decode (within its limit) and so the only ones it asks for.
_ACCEPT_ENCODING = "gzip, deflate"
#: The most of an error (non-2xx) or redirect body kept: enough for any ``detail``; the rest is cut.
_ERROR_BODY_LIMIT = 1024 * 1024


def _loads(content: bytes) -> Any:
    """``json.loads`` whose every failure is a ``ValueError``."""
    try:
        return jsonlib.loads(content)
    except RecursionError:
        # The decoder recurses once per nesting level: a hostile body ("[[[[...") exhausts the
        # stack, which is malformed input like any other, not a crash.
        raise ValueError("the JSON nests too deeply to decode") from None


class _Inflater:
    """Incremental gzip/deflate decoding whose output per call is bounded (``max_length``)."""

    def __init__(self, encoding: str) -> None:
        self._gzip = encoding in ("gzip", "x-gzip")
        self._wbits: int | None = 16 + zlib.MAX_WBITS if self._gzip else None
        self._obj: Any = None

    def feed(self, data: bytes, max_length: int) -> bytes:
        """Inflate ``data``; at most ``max_length`` bytes come out (``max_length`` >= 1)."""
        if self._obj is None:
            if self._wbits is None:
                # "deflate" is meant to be zlib-wrapped, but some servers send a raw stream.
                zlib_header = (
                    len(data) >= 2 and data[0] & 0x0F == 8 and ((data[0] << 8) | data[1]) % 31 == 0
                )
                self._wbits = zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS
            self._obj = zlib.decompressobj(self._wbits)
        elif self._gzip and self._obj.eof and self._obj.unused_data:
            # A concatenated gzip stream: the next member starts where this one ended.
            data = self._obj.unused_data + data
            self._obj = zlib.decompressobj(16 + zlib.MAX_WBITS)
        return bytes(self._obj.decompress(self._obj.unconsumed_tail + data, max_length))

    @property
    def pending(self) -> bool:
        """Whether input fed earlier still waits to be inflated (call :meth:`feed` with ``b""``)."""
        obj = self._obj
        if obj is None:
            return False
        return bool(obj.unconsumed_tail) or (self._gzip and obj.eof and bool(obj.unused_data))

    @property
    def complete(self) -> bool:
        return self._obj is None or bool(self._obj.eof) or self._wbits == -zlib.MAX_WBITS


def _too_large(limit: int, what: str, *, method: str, url: str, request_id: str | None) -> NoReturn:
    raise ResponseTooLargeError(
        f"The response body {what} the client's limit of {limit:,} bytes "
        f"(max_response_bytes); reading stopped there. If such large answers are expected, "
        f"raise it: AsyncLabric(..., max_response_bytes=N)",
        limit=limit,
        method=method,
        path=_safe_path(url),
        request_id=request_id,
    )


async def read_bounded(
    resp: aiohttp.ClientResponse,
    *,
    limit: int,
    method: str,
    url: str,
    decode: bool = True,
    cut: bool = False,
) -> bytes:
    """Read a response body, never holding more than ``limit`` bytes of it.

    Both the bytes received and (with ``decode``) the bytes they decompress to are counted while
    streaming; the session never decompresses on its own, so a bomb is inflated here, a bounded
    amount at a time.

    Args:
        resp: A response whose body has not been read.
        limit: The most bytes to keep.
        method: The request's method, for errors.
        url: The request's URL, for errors (only its path is shown).
        decode: Undo ``Content-Encoding`` (gzip, deflate); else keep the bytes as received.
        cut: Stop quietly at the limit and return what was read (for error bodies) instead of
            raising :class:`~labric.errors.ResponseTooLargeError`.

    Raises:
        ResponseTooLargeError: the body (received or decompressed) is over ``limit``.
        APIResponseValidationError: the body uses an encoding the client does not support.
        APIConnectionError: the compressed body ends early or does not decompress.
    """
    try:
        return await _read_bounded(
            resp, limit=limit, method=method, url=url, decode=decode, cut=cut
        )
    finally:
        if not resp.content.at_eof():
            # The rest of the body was not read: never hand this connection out again.
            resp.close()


async def _read_bounded(
    resp: aiohttp.ClientResponse, *, limit: int, method: str, url: str, decode: bool, cut: bool
) -> bytes:
    request_id = resp.headers.get("X-Request-ID")
    length = resp.content_length
    if not cut and length is not None and length > limit:
        _too_large(
            limit,
            f"announced by Content-Length ({length:,} bytes) is over",
            method=method,
            url=url,
            request_id=request_id,
        )
    encoding = resp.headers.get("Content-Encoding", "").strip().lower() if decode else ""
    inflater: _Inflater | None = None
    if encoding in ("gzip", "x-gzip", "deflate"):
        inflater = _Inflater(encoding)
    elif encoding not in ("", "identity"):
        if cut:
            decode = False
        else:
            raise APIResponseValidationError(
                f"The response uses Content-Encoding {encoding!r}, which the client never asks for",
                method=method,
                path=_safe_path(url),
                request_id=request_id,
            )
    out = bytearray()
    received = 0
    try:
        async for chunk in resp.content.iter_chunked(_READ_CHUNK):
            received += len(chunk)
            if received > limit:
                if cut:
                    out += chunk[: max(0, limit - len(out))] if inflater is None else b""
                    break
                _too_large(
                    limit, "as received is over", method=method, url=url, request_id=request_id
                )
            if inflater is None:
                out += chunk
            else:
                # Inflated a step at a time, so one small chunk of a bomb never expands at once.
                out += inflater.feed(chunk, min(limit - len(out) + 1, _INFLATE_STEP))
                while inflater.pending and len(out) <= limit:
                    out += inflater.feed(b"", min(limit - len(out) + 1, _INFLATE_STEP))
            if len(out) > limit:
                if cut:
                    del out[limit:]
                    break
                _too_large(
                    limit,
                    "decompresses to more than",
                    method=method,
                    url=url,
                    request_id=request_id,
                )
    except zlib.error:
        if cut:
            return bytes(out)
        # Like a body cut short (aiohttp's payload errors): possibly a transient fault, retried.
        raise APIConnectionError(
            f"The response body was cut short or malformed (it does not decompress as {encoding})",
            method=method,
            path=_safe_path(url),
        ) from None
    if inflater is not None and not inflater.complete and not cut:
        raise APIConnectionError(
            "The response body was cut short or malformed", method=method, path=_safe_path(url)
        )
    return bytes(out)
