"""A data directory: what the server keeps on disk, and how a fresh one is initialised.

Layout::

    labric.db      SQLite metadata (WAL: also labric.db-wal, labric.db-shm)
    signing.key    32 random bytes signing storage URLs                    (mode 0600)
    admin.key      the default organisation's admin API key, in clear text  (mode 0600)
    objects/ uploads/ tmp/                                                  see blobs.py

The first start creates the directory (mode 0700), the signing secret, the ``default``
organisation and an admin key (scopes read, write, admin). Only the key's hash is in the
database, so the key itself is kept in ``admin.key`` for later starts (and for ``labric serve``
to print). Restarts reuse all of it; if ``admin.key`` is missing or names a key the database no
longer accepts, a new admin key is created and written.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
from pathlib import Path

import attrs

from labric.server.core import auth, records
from labric.server.core.db import Database, iso
from labric.server.core.http import HTTPError

__all__ = ["DEFAULT_ORG", "DataDir", "Identity"]

#: The name of the organisation a fresh data directory starts with.
DEFAULT_ORG = "default"


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600, atomically."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


@attrs.frozen(kw_only=True)
class Identity:
    """What an initialised data directory provides: the signing secret, org and admin key."""

    secret: bytes = attrs.field(repr=False)
    default_org_id: str
    admin_key: str = attrs.field(repr=False)


class DataDir:
    """The paths of one data directory.

    Args:
        root: The directory (created on :meth:`initialise` if missing).
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser().resolve()
        self.db_path = self.root / "labric.db"
        self.secret_path = self.root / "signing.key"
        self.admin_key_path = self.root / "admin.key"

    def __repr__(self) -> str:
        return f"<DataDir {self.root}>"

    def create(self) -> None:
        """Create the directory (mode 0700) if it does not exist."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)

    def load_secret(self) -> bytes:
        """The signing secret, created on first use."""
        try:
            secret = self.secret_path.read_bytes()
        except FileNotFoundError:
            secret = b""
        if len(secret) < 32:
            secret = secrets.token_bytes(32)
            _write_private(self.secret_path, secret)
        return secret

    def initialise(self, db: Database, now: float) -> Identity:
        """Make sure the secret, the default organisation and the admin key exist.

        Blocks; call it from a thread other than the database's (``db`` must be open).
        """
        secret = self.load_secret()

        def default_org(conn: sqlite3.Connection) -> str:
            org_id = records.meta_get(conn, "default_org_id")
            if org_id is None:
                org_id = records.get_or_create_org(conn, DEFAULT_ORG, iso(now))
                records.meta_set(conn, "default_org_id", org_id)
            return org_id

        org_id = db.run_sync(default_org)
        admin_key = self._read_admin_key()

        def still_valid(conn: sqlite3.Connection, key: str) -> bool:
            try:
                principal = auth.authenticate(conn, f"Bearer {key}", now)
            except HTTPError:
                return False
            return principal.allows("admin") and principal.org_id == org_id

        if admin_key is None or not db.run_sync(still_valid, admin_key):
            admin_key = db.run_sync(
                lambda conn: auth.create_key(
                    conn, org_id=org_id, scopes=("read", "write", "admin"), now=now
                )
            )
            _write_private(self.admin_key_path, admin_key.encode())
        return Identity(secret=secret, default_org_id=org_id, admin_key=admin_key)

    def _read_admin_key(self) -> str | None:
        try:
            text = self.admin_key_path.read_text().strip()
        except FileNotFoundError:
            return None
        return text if auth.parse_key(text) else None
