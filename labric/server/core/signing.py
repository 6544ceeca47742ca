"""Signed storage URLs: HMAC-SHA256 over the method, the path, the expiry and constrained headers.

Storage routes take no API key; a URL's signature is the whole authorisation, so it binds
everything that matters:

* the **method** (a download URL cannot be used to upload; ``HEAD`` is accepted with a ``GET``
  signature),
* the **path**, which names the file (and the part): a URL for one file never works for another,
* the **expiry** (Unix seconds),
* the **signed headers** and their values, as GCS does with ``X-Goog-SignedHeaders``: the URL
  lists the header names, and the signature is computed over the values the request *actually
  carries*. Sending another ``Content-Type`` than the one signed, or dropping
  ``x-goog-if-generation-match``, changes the string to sign and fails verification.

URL format (query parameters)::

    /storage/v1/objects/<file_id>[/parts/<n>]
        ?X-Labric-Expires=<unix seconds>
        &X-Labric-SignedHeaders=<lower-case names joined by ';'>   (only when headers are signed)
        &X-Labric-Signature=<hex HMAC-SHA256>

String to sign (lines joined with ``\\n``)::

    LABRIC-HMAC-SHA256
    <METHOD>
    <path>
    <expires>
    <name>:<value>      one line per signed header, names lower-case and sorted

The secret is per data directory (32 random bytes in a 0600 file), so URLs survive a restart of
the same data directory and never work against another one. Verification uses
``hmac.compare_digest``; every failure is a :class:`SignatureError` (answered 403).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from urllib.parse import urlencode

__all__ = [
    "EXPIRES_PARAM",
    "SIGNATURE_PARAM",
    "SIGNED_HEADERS_PARAM",
    "SignatureError",
    "URLSigner",
]

EXPIRES_PARAM = "X-Labric-Expires"
SIGNED_HEADERS_PARAM = "X-Labric-SignedHeaders"
SIGNATURE_PARAM = "X-Labric-Signature"
_ALGORITHM = "LABRIC-HMAC-SHA256"


class SignatureError(Exception):
    """A signed URL is malformed, expired, tampered with or used with the wrong headers."""


class URLSigner:
    """Signs and verifies storage URLs with one secret.

    Args:
        secret: The HMAC key (at least 32 random bytes).
        clock: Returns the current Unix time; injectable so tests can expire URLs without waiting.
    """

    def __init__(self, secret: bytes, clock: Callable[[], float]) -> None:
        if len(secret) < 32:
            raise ValueError("the signing secret must be at least 32 bytes")
        self._secret = secret
        self._clock = clock

    def __repr__(self) -> str:
        return "<URLSigner>"

    def _signature(self, method: str, path: str, expires: int, headers: Mapping[str, str]) -> str:
        lines = [_ALGORITHM, method.upper(), path, str(expires)]
        lines += [f"{name}:{headers[name].strip()}" for name in sorted(headers)]
        message = "\n".join(lines).encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def sign(
        self,
        method: str,
        path: str,
        *,
        ttl: float,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[str, int]:
        """Sign a request.

        Args:
            method: The HTTP method the URL is for.
            path: The URL path (as it will appear on the wire).
            ttl: Seconds from now until the URL expires.
            headers: Headers the request must carry with exactly these values.

        Returns:
            The query string to append after ``?``, and the expiry (Unix seconds).
        """
        expires = int(self._clock() + ttl)
        signed = {name.lower(): value for name, value in (headers or {}).items()}
        query: list[tuple[str, str]] = [(EXPIRES_PARAM, str(expires))]
        if signed:
            query.append((SIGNED_HEADERS_PARAM, ";".join(sorted(signed))))
        query.append((SIGNATURE_PARAM, self._signature(method, path, expires, signed)))
        return urlencode(query, safe=";"), expires

    def verify(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
    ) -> None:
        """Check a signed request.

        Args:
            method: The request's method (``HEAD`` is checked as ``GET``).
            path: The request's raw path.
            query: The request's query parameters.
            headers: The request's headers (case-insensitive mapping).

        Raises:
            SignatureError: what is wrong, in a sentence fit for a 403 ``detail``.
        """
        signature = query.get(SIGNATURE_PARAM)
        expires_text = query.get(EXPIRES_PARAM)
        if not signature or not expires_text:
            raise SignatureError("This storage URL is not signed")
        if not (expires_text.isascii() and expires_text.isdigit() and len(expires_text) <= 16):
            raise SignatureError("This storage URL's expiry is malformed")
        expires = int(expires_text)
        listed = query.get(SIGNED_HEADERS_PARAM, "")
        names = listed.split(";") if listed else []
        # Only the spelling the server wrote is accepted, so a signed URL has exactly one:
        # ``int`` also reads "017", and the header list would match in any order or case.
        canonical = str(expires) == expires_text and names == sorted({n.lower() for n in names})
        values: dict[str, str] = {}
        for name in names:
            value = headers.get(name)
            if value is None:
                raise SignatureError(f"The signed header {name!r} is missing from the request")
            values[name] = value
        verb = "GET" if method.upper() == "HEAD" else method
        expected = self._signature(verb, path, expires, values)
        if not canonical or not hmac.compare_digest(expected.encode(), signature.encode()):
            raise SignatureError(
                "The signature does not match this request (URL, method or signed headers "
                "differ from what was signed)"
            )
        # Checked after the signature, so a forged expiry is reported as a bad signature.
        if self._clock() > expires:
            raise SignatureError("This storage URL has expired; ask for a new one")
