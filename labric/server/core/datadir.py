"""A data directory: what the server keeps on disk, and how a fresh one is initialised.

Layout::

    labric.db      SQLite metadata (WAL: also labric.db-wal, labric.db-shm)
    signing.key    32 random bytes signing storage URLs                    (mode 0600)
    admin.key      the default organisation's admin API key, in clear text  (mode 0600)
    server.lock    held (flock) by the one server using the directory; names its address
    objects/ uploads/ tmp/                                                  see blobs.py

The first start creates the directory (mode 0700), the signing secret, the ``default``
organisation and an admin key (scopes read, write, admin). Only the key's hash is in the
database, so the key itself is kept in ``admin.key`` for later starts (and for ``labric serve``
to print). Restarts reuse all of it; if ``admin.key`` is missing or names a key the database no
longer accepts, a new admin key is created and written.

One server at a time
    A server takes an exclusive ``flock`` on ``server.lock`` before it touches anything else and
    holds it for its lifetime; the OS releases it when the process exits, however it exits, so a
    killed server leaves no stale lock (the file itself stays: unlinking a lock file while another
    process may have it open would let two holders lock two different files). The holder writes
    its pid, then its address once listening, so a second server can say who is in the way.
    ``labric keys create`` takes no lock: it only inserts a key row, which SQLite (WAL, busy
    timeout) serialises with a running server's writes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import sqlite3
from pathlib import Path

import attrs

from labric.errors import LabricError
from labric.server.core import auth, records
from labric.server.core.db import Database, iso
from labric.server.core.http import HTTPError

__all__ = [
    "DEFAULT_ORG",
    "DataDir",
    "DataDirError",
    "DataDirInUse",
    "DataDirLock",
    "DataDirNotInitialised",
    "Identity",
]

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


class DataDirError(LabricError):
    """A data directory cannot be used."""


class DataDirInUse(DataDirError):
    """Another server holds the data directory (the message names its address and pid)."""


class DataDirNotInitialised(DataDirError):
    """The directory is not an initialised data directory, and initialising it was not asked."""


class DataDirLock:
    """The exclusive lock of one data directory's server (see the module docstring).

    Args:
        path: The lock file (created if missing, never removed).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock without waiting.

        Raises:
            DataDirInUse: another process holds it.
            OSError: the lock file cannot be opened.
        """
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe_holder(os.pread(fd, 4096, 0))
            os.close(fd)
            raise DataDirInUse(
                f"The data directory {self.path.parent} is in use by {holder}; stop it first "
                "or use another --data-dir"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self.record(None)

    def record(self, address: str | None) -> None:
        """Write the holder's pid and address (``host:port``, once listening) into the file."""
        if self._fd is None:
            return
        # Rewritten in place: replacing the file would move the lock to a new inode.
        data = json.dumps({"pid": os.getpid(), "address": address}).encode() + b"\n"
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def release(self) -> None:
        """Clear the holder's details and release the lock; idempotent."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # releases the flock


def _describe_holder(raw: bytes) -> str:
    try:
        holder = json.loads(raw)
        pid, address = int(holder["pid"]), holder["address"]
    except (ValueError, TypeError, KeyError):
        return "another process"
    if address:
        return f"another labric server at {address} (pid {pid})"
    return f"another labric server, still starting (pid {pid})"


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

    def lock(self) -> DataDirLock:
        """The directory's server lock (not yet acquired)."""
        return DataDirLock(self.root / "server.lock")

    def is_initialised(self) -> bool:
        """Whether the directory holds a server's database (a server has started on it)."""
        return self.db_path.is_file()

    def is_empty(self) -> bool:
        """Whether the directory is missing or holds nothing but a lock file."""
        try:
            return set(os.listdir(self.root)) <= {"server.lock"}
        except FileNotFoundError:
            return True

    def entries(self) -> set[str] | None:
        """The names in the directory, or ``None`` if it does not exist."""
        try:
            return set(os.listdir(self.root))
        except FileNotFoundError:
            return None

    def discard_new(self, before: set[str] | None) -> None:
        """Remove what was added since :meth:`entries` returned ``before`` (the whole directory
        if it did not exist): undoes the initialisation of a start that failed."""
        if before is None:
            shutil.rmtree(self.root, ignore_errors=True)
            return
        for name in self.entries() or set():
            if name not in before:
                path = self.root / name
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()

    def default_org_id(self, db: Database) -> str | None:
        """The default organisation's id, if the directory has been initialised."""
        return db.run_sync(records.meta_get, "default_org_id")

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
                principal = auth.authenticate(conn, f"Bearer {key}", now, touch=False)
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
