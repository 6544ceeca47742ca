"""API keys and the authentication middleware.

Keys look like ``lbk_<prefix>_<secret>``: an 8-character public prefix (the lookup index) and a
40-character random alphanumeric secret (about 238 bits). Only ``sha256(secret)`` is stored; a
fast hash is enough because the secret is high-entropy, never a password. The stored hash is
compared with :func:`hmac.compare_digest`.

Scopes are ``read``, ``write`` and ``admin``, and they nest: ``admin`` implies ``write``, which
implies ``read``. Each API route declares the one scope it needs; a key without it gets 403.
Missing, malformed, unknown, revoked or expired keys get 401 (``WWW-Authenticate: Bearer``). A
job execution's ephemeral key is valid only while its execution is running.

Organisation isolation is enforced by the handlers, which always look objects up together with
the key's organisation: another organisation's ids answer 404, never 403. Storage routes take no
key at all; their signed URLs are checked by :mod:`labric.server.core.signing`.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import sqlite3
import string
from collections.abc import Iterable

import attrs
from aiohttp import web

from labric.server.core import records
from labric.server.core.db import iso
from labric.server.core.http import HTTPError

__all__ = [
    "LAST_USED_RESOLUTION",
    "PRINCIPAL",
    "SCOPES",
    "Principal",
    "authenticate",
    "create_key",
    "expand_scopes",
    "hash_secret",
    "parse_key",
    "parse_scopes",
    "principal",
]

#: Every scope, weakest first.
SCOPES = ("read", "write", "admin")
_IMPLIED = {"read": {"read"}, "write": {"read", "write"}, "admin": {"read", "write", "admin"}}
_KEY_RE = re.compile(r"^lbk_([A-Za-z0-9]+)_([A-Za-z0-9]+)$")
_ALPHABET = string.ascii_letters + string.digits
#: Seconds within which a key's ``last_used_at`` is not rewritten.
LAST_USED_RESOLUTION = 60.0
# When this process last recorded each key's use (key id -> Unix time), and how many it keeps.
_touched: dict[str, float] = {}
_TOUCHED_KEPT = 10_000


@attrs.frozen(kw_only=True)
class Principal:
    """Who a request acts as: the key, its organisation and its (expanded) scopes."""

    key_id: str
    org_id: str
    scopes: frozenset[str]
    job_execution_id: str | None = None
    #: Set for a paired device's key: its uploads default to this instrument.
    instrument_id: str | None = None

    def allows(self, scope: str) -> bool:
        """Whether the key holds ``scope`` (directly or through a stronger scope)."""
        return scope in self.scopes


PRINCIPAL = web.RequestKey("labric_principal", Principal)


def principal(request: web.Request) -> Principal:
    """The authenticated caller of an API route."""
    return request[PRINCIPAL]


def parse_scopes(text: str | Iterable[str]) -> frozenset[str]:
    """Parse ``"read,write"`` (or a list of names) into a validated set of scopes.

    Raises:
        ValueError: an unknown scope, or none at all.
    """
    names = text.split(",") if isinstance(text, str) else list(text)
    scopes = frozenset(n.strip().lower() for n in names if n.strip())
    unknown = sorted(scopes - set(SCOPES))
    if unknown:
        raise ValueError(f"unknown scope {unknown[0]!r}; use read, write or admin")
    if not scopes:
        raise ValueError("at least one scope is needed (read, write or admin)")
    return scopes


def expand_scopes(scopes: Iterable[str]) -> frozenset[str]:
    """The scopes a key holds, including those its scopes imply."""
    held: set[str] = set()
    for scope in scopes:
        held |= _IMPLIED.get(scope, set())
    return frozenset(held)


def hash_secret(secret: str) -> str:
    """The stored form of a key's secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_key(key: str) -> tuple[str, str] | None:
    """``(prefix, secret)`` of a well-formed key, else ``None``."""
    match = _KEY_RE.match(key)
    return (match.group(1), match.group(2)) if match else None


def create_key(
    conn: sqlite3.Connection,
    *,
    org_id: str,
    scopes: Iterable[str],
    now: float,
    expires_at: float | None = None,
    job_execution_id: str | None = None,
    instrument_id: str | None = None,
    name: str | None = None,
) -> str:
    """Create and store a new key for an organisation; return it (the only time it is shown).

    Runs on the database thread (``conn`` is inside a transaction). ``instrument_id`` makes it a
    paired device's key; ``name`` is what ``labric keys list`` shows it as.
    """
    scope_set = parse_scopes(list(scopes))
    while True:
        prefix = secrets.token_hex(4)
        if records.key_by_prefix(conn, prefix) is None:
            break
    secret = "".join(secrets.choice(_ALPHABET) for _ in range(40))
    records.insert_key(
        conn,
        prefix=prefix,
        secret_hash=hash_secret(secret),
        org_id=org_id,
        scopes=scope_set,
        now=iso(now),
        expires_at=iso(expires_at) if expires_at is not None else None,
        job_execution_id=job_execution_id,
        instrument_id=instrument_id,
        name=name,
    )
    return f"lbk_{prefix}_{secret}"


def _unauthorized(detail: str) -> HTTPError:
    return HTTPError(401, detail, headers={"WWW-Authenticate": "Bearer"})


def authenticate(
    conn: sqlite3.Connection, header: str | None, now: float, *, touch: bool = True
) -> Principal:
    """Resolve an ``Authorization`` header to a :class:`Principal` (on the database thread).

    A request's key is marked as used (``touch``); a check that is not a use (the server's own
    start-up check of its admin key) passes ``touch=False``.

    Raises:
        HTTPError: 401 with the reason.
    """
    if not header:
        raise _unauthorized(
            "Missing API key: send the header 'Authorization: Bearer lbk_<prefix>_<secret>'"
        )
    scheme, _, token = header.strip().partition(" ")
    parsed = parse_key(token.strip()) if scheme.lower() == "bearer" else None
    if parsed is None:
        raise _unauthorized(
            "Malformed Authorization header: expected 'Bearer lbk_<prefix>_<secret>'"
        )
    prefix, secret = parsed
    row = records.key_by_prefix(conn, prefix)
    # Hash and compare even for an unknown prefix, so timing does not tell the two apart.
    expected = row.secret_hash if row is not None else hash_secret("")
    if not hmac.compare_digest(expected.encode(), hash_secret(secret).encode()) or row is None:
        raise _unauthorized("Invalid API key")
    if row.revoked:
        raise _unauthorized("This API key has been revoked")
    if row.expires_at is not None and row.expires_at <= iso(now):
        raise _unauthorized("This API key has expired")
    if row.job_execution_id is not None:
        records.expire_executions(conn, iso(now))
        if records.execution_status(conn, row.job_execution_id) != "running":
            raise _unauthorized("This job key expired when its job execution ended")
    # At most one write a minute per key: enough for "last used", without a write per request
    # (nor a statement: the keys touched lately are remembered; authenticate runs on the one
    # database thread of its server).
    if touch and now - _touched.get(row.id, -math.inf) >= LAST_USED_RESOLUTION:
        records.touch_key(conn, row.id, iso(now), iso(now - LAST_USED_RESOLUTION))
        if len(_touched) >= _TOUCHED_KEPT:
            _touched.clear()
        _touched[row.id] = now
    return Principal(
        key_id=row.id,
        org_id=row.org_id,
        scopes=expand_scopes(row.scopes),
        job_execution_id=row.job_execution_id,
        instrument_id=row.instrument_id,
    )
