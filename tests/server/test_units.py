"""Pure pieces of the server: signing, ranges, content types, previews, sniffing, schema, blobs."""

from __future__ import annotations

import sqlite3
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from labric.server.core import records
from labric.server.core.auth import expand_scopes, parse_key, parse_scopes
from labric.server.core.blobs import BlobStore, crc32c_b64, decode_crc32c, native_executable_kind
from labric.server.core.db import MIGRATIONS, Database, DatabaseError, connect, from_iso, iso
from labric.server.core.signing import SignatureError, URLSigner
from labric.server.files.common import plan_parts, safe_content_type
from labric.server.files.routes import text_preview
from labric.server.files.storage import Unsatisfiable, byte_range

from ._support import FakeClock, crc_b64

SECRET = b"k" * 32

# -- signing --------------------------------------------------------------------------------


def _query(qs: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in qs.split("&"))


def test_signed_url_verifies_with_its_headers() -> None:
    clock = FakeClock()
    signer = URLSigner(SECRET, clock)
    headers = {"Content-Type": "text/csv", "x-goog-if-generation-match": "0"}
    qs, expires = signer.sign("PUT", "/storage/v1/objects/a", ttl=60, headers=headers)
    query = _query(qs)
    assert query["X-Labric-Expires"] == str(expires)
    assert query["X-Labric-SignedHeaders"] == "content-type;x-goog-if-generation-match"
    signer.verify("PUT", "/storage/v1/objects/a", query, CIMultiDict(headers))


@pytest.mark.parametrize(
    ("method", "path", "change", "message"),
    [
        ("PUT", "/storage/v1/objects/b", {}, "does not match"),
        ("GET", "/storage/v1/objects/a", {}, "does not match"),
        ("PUT", "/storage/v1/objects/a", {"X-Labric-Expires": "9999999999"}, "does not match"),
        ("PUT", "/storage/v1/objects/a", {"X-Labric-Signature": "0" * 64}, "does not match"),
        ("PUT", "/storage/v1/objects/a", {"X-Labric-SignedHeaders": "content-type"}, "match"),
        ("PUT", "/storage/v1/objects/a", {"X-Labric-Expires": "soon"}, "malformed"),
        ("PUT", "/storage/v1/objects/a", {"X-Labric-Signature": ""}, "not signed"),
    ],
)
def test_tampered_urls_fail(method: str, path: str, change: dict[str, str], message: str) -> None:
    signer = URLSigner(SECRET, FakeClock())
    headers = {"Content-Type": "text/csv", "x-goog-if-generation-match": "0"}
    qs, _ = signer.sign("PUT", "/storage/v1/objects/a", ttl=60, headers=headers)
    query = {**_query(qs), **change}
    with pytest.raises(SignatureError, match=message):
        signer.verify(method, path, query, CIMultiDict(headers))


def test_constrained_header_must_match_and_be_present() -> None:
    signer = URLSigner(SECRET, FakeClock())
    qs, _ = signer.sign("PUT", "/p", ttl=60, headers={"Content-Type": "text/csv"})
    with pytest.raises(SignatureError, match="does not match"):
        signer.verify("PUT", "/p", _query(qs), CIMultiDict({"Content-Type": "text/html"}))
    with pytest.raises(SignatureError, match="missing"):
        signer.verify("PUT", "/p", _query(qs), CIMultiDict())


def test_expiry_uses_the_clock_and_head_uses_get_signatures() -> None:
    clock = FakeClock()
    signer = URLSigner(SECRET, clock)
    qs, _ = signer.sign("GET", "/p", ttl=10)
    signer.verify("HEAD", "/p", _query(qs), CIMultiDict())
    clock.advance(11)
    with pytest.raises(SignatureError, match="expired"):
        signer.verify("GET", "/p", _query(qs), CIMultiDict())


def test_another_secret_rejects() -> None:
    qs, _ = URLSigner(SECRET, FakeClock()).sign("GET", "/p", ttl=10)
    with pytest.raises(SignatureError):
        URLSigner(b"x" * 32, FakeClock()).verify("GET", "/p", _query(qs), CIMultiDict())
    with pytest.raises(ValueError, match="32 bytes"):
        URLSigner(b"short", FakeClock())


# -- ranges ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 10, None),
        ("bytes=0-0", 10, (0, 0)),
        ("bytes=2-5", 10, (2, 5)),
        ("bytes=2-", 10, (2, 9)),
        ("bytes=5-100", 10, (5, 9)),
        ("bytes=-3", 10, (7, 9)),
        ("bytes=-30", 10, (0, 9)),
        ("bytes=9-9", 10, (9, 9)),
        ("bytes=5-2", 10, None),  # invalid: ignored
        ("bytes=0-1,4-5", 10, None),  # several ranges: whole object
        ("items=0-1", 10, None),
        ("bytes=-", 10, None),
        ("bytes=abc", 10, None),
    ],
)
def test_byte_range(header: str | None, size: int, expected: tuple[int, int] | None) -> None:
    assert byte_range(header, size) == expected


@pytest.mark.parametrize(
    ("header", "size"), [("bytes=10-", 10), ("bytes=10-20", 10), ("bytes=-0", 10), ("bytes=0-", 0)]
)
def test_unsatisfiable_ranges(header: str, size: int) -> None:
    with pytest.raises(Unsatisfiable):
        byte_range(header, size)


@given(st.integers(0, 10_000), st.integers(1, 4096))
def test_part_plan_covers_the_file(size: int, part_size: int) -> None:
    plan = plan_parts(size, part_size)
    assert [n for n, _, _ in plan] == list(range(1, len(plan) + 1))
    offset = 0
    for _, start, length in plan:
        assert start == offset
        assert 0 < length <= part_size
        offset += length
    assert offset == size


# -- content types, previews, executables ---------------------------------------------------


@pytest.mark.parametrize(
    ("given_type", "stored"),
    [
        (None, "application/octet-stream"),
        ("", "application/octet-stream"),
        ("text/csv", "text/csv"),
        ("text/plain; charset=utf-8", "text/plain; charset=utf-8"),
        ("image/png", "image/png"),
        ("application/json", "application/json"),
        ("text/html", "application/octet-stream"),
        ("TEXT/HTML; charset=utf-8", "application/octet-stream"),
        ("application/xhtml+xml", "application/octet-stream"),
        ("image/svg+xml", "application/octet-stream"),
        ("text/javascript", "application/octet-stream"),
        ("application/x-javascript", "application/octet-stream"),
        ("application/xml", "application/octet-stream"),
        ("text/xml", "application/octet-stream"),
        ("application/atom+xml", "application/octet-stream"),
        ("not a type", "application/octet-stream"),
        ("text/csv\r\nX-Evil: 1", "application/octet-stream"),
    ],
)
def test_safe_content_type(given_type: str | None, stored: str) -> None:
    assert safe_content_type(given_type) == stored


def test_text_preview() -> None:
    assert text_preview(b"a,b\n1,2\n", 8) == ("a,b\n1,2\n", None)
    assert text_preview(b"", 0) == ("", None)
    # A multi-byte character cut by the preview limit is dropped, not called binary.
    euro = "€".encode()
    assert text_preview(b"ab" + euro[:2], 100) == ("ab", None)
    # ...but a file that really ends mid-character is not UTF-8.
    assert text_preview(b"ab" + euro[:2], 4)[0] is None
    text, reason = text_preview(b"\x89PNG\r\n\x1a\n\x00\x00", 10)
    assert text is None
    assert reason is not None
    assert "NUL" in reason
    assert text_preview(b"\xff\xfe\xfa", 3)[1] == "binary content: the file is not UTF-8 text"


def _pe(offset: int) -> bytes:
    head = bytearray(b"MZ" + b"\0" * 62)
    struct.pack_into("<I", head, 0x3C, offset)
    head += b"\0" * max(0, offset - len(head))
    return bytes(head[:offset]) + b"PE\0\0" + b"\0" * 16


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\x7fELF\x02\x01\x01" + b"\0" * 60, "ELF"),
        (b"\xcf\xfa\xed\xfe" + b"\0" * 60, "Mach-O"),
        (b"\xfe\xed\xfa\xce" + b"\0" * 60, "Mach-O"),
        (b"\xca\xfe\xba\xbe\x00\x00\x00\x02" + b"\0" * 60, "Mach-O"),
        (b"\xca\xfe\xba\xbe\x00\x00\x00\x34" + b"\0" * 60, None),  # a Java class file
        (_pe(128), "PE"),
        (b"MZ" + b"\0" * 62, None),  # MZ without a PE header
        (b"MZ-1234,plate 7\n" * 8, None),  # a CSV that happens to start with MZ
        (b"#!/bin/sh\necho hi\n", None),
        (b"a,b\n1,2\n", None),
    ],
)
def test_native_executable_kind(head: bytes, kind: str | None) -> None:
    assert native_executable_kind(head) == kind


def test_crc32c_wire_form() -> None:
    digest = bytes.fromhex("e3069283")  # CRC32C of b"123456789"
    assert crc32c_b64(digest) == crc_b64(b"123456789") == "4waSgw=="
    assert decode_crc32c("4waSgw==") == digest
    assert decode_crc32c("nope") is None
    assert decode_crc32c("AAAAAAA=") is None


# -- keys -----------------------------------------------------------------------------------


def test_scopes_and_key_format() -> None:
    assert parse_scopes("read, WRITE") == {"read", "write"}
    assert expand_scopes({"admin"}) == {"read", "write", "admin"}
    assert expand_scopes({"write"}) == {"read", "write"}
    with pytest.raises(ValueError, match="unknown scope 'owner'"):
        parse_scopes("read,owner")
    with pytest.raises(ValueError, match="at least one"):
        parse_scopes(" , ")
    assert parse_key("lbk_abc123_S3cret") == ("abc123", "S3cret")
    assert parse_key("lbk_abc_") is None
    assert parse_key("Bearer lbk_abc_def") is None


# -- schema ---------------------------------------------------------------------------------


def test_migrations_are_ordered_and_applied_once(tmp_path: Path) -> None:
    # Numbered 1..N, each once and in order: a gap or a swap would skip or reorder a step.
    versions = [m.version for m in MIGRATIONS]
    assert versions == list(range(1, len(MIGRATIONS) + 1))
    conn = connect(tmp_path / "a.db")
    try:
        version = conn.execute("SELECT version FROM schema_version").fetchone()[0]
        assert version == MIGRATIONS[-1].version
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()
    connect(tmp_path / "a.db").close()  # reopening migrates nothing and fails nothing


def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    connect(tmp_path / "a.db").close()
    raw = sqlite3.connect(tmp_path / "a.db")
    raw.execute("UPDATE schema_version SET version = 999")
    raw.commit()
    raw.close()
    with pytest.raises(DatabaseError, match="newer"):
        connect(tmp_path / "a.db")


def test_iso_round_trips() -> None:
    ts = 1_700_000_000.123456
    assert iso(ts) == "2023-11-14T22:13:20.123456Z"
    assert from_iso(iso(ts)) == pytest.approx(ts)


async def test_database_transactions_roll_back(tmp_path: Path) -> None:
    db = Database(tmp_path / "a.db")
    await db.open()
    try:

        def boom(conn: sqlite3.Connection) -> None:
            records.get_or_create_org(conn, "acme", iso(0))
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            await db.run(boom)
        assert await db.run(records.org_by_name, "acme") is None
    finally:
        await db.close()
    with pytest.raises(DatabaseError, match="not open"):
        await db.run(records.org_by_name, "acme")


# -- blobs ----------------------------------------------------------------------------------


async def test_temp_blob_installs_atomically_and_aborts_cleanly(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    try:
        store.prepare_sync()
        blob = store.writer()
        await blob.write(b"hello ")
        await blob.write(b"world")
        size, digest = await blob.finish()
        assert (size, crc32c_b64(digest)) == (11, crc_b64(b"hello world"))
        dest = store.object_path("abcdef", store.new_generation())
        assert not dest.exists()
        await blob.install(dest)
        assert dest.read_bytes() == b"hello world"
        aborted = store.writer()
        await aborted.write(b"x" * 1000)  # may still be running when abort() is called
        aborted.abort()
        aborted.abort()
    finally:
        store.close()  # waits for the disk threads, hence for the chained cleanup
    assert list(store.tmp_dir.iterdir()) == []


async def test_sweep_removes_unreferenced_blobs(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    try:
        store.prepare_sync()
        keep = store.object_path("f1", 5)
        drop = store.object_path("f1", 4)
        upload = store.upload_path("f2", 7)
        stale_upload = store.upload_path("f3", 7)
        legacy_part = tmp_path / "parts" / "f4" / "1.7"  # the one-file-per-part layout
        for path in (keep, drop, upload, stale_upload, legacy_part):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x")
        (store.tmp_dir / "leftover.tmp").write_bytes(b"x")
        store.prepare_sync()
        assert store.sweep_sync({("f1", 5)}, {("f2", 7)}) == 3
        assert keep.exists()
        assert upload.exists()
        assert not drop.exists()
        assert not stale_upload.exists()
        assert not (tmp_path / "parts").exists()
        assert list(store.tmp_dir.iterdir()) == []
        assert store.new_generation() < store.new_generation()
        # An upload file named by a row but missing, or not of its planned size, is lost.
        assert store.lost_uploads_sync({("f2", 7): 1}) == []
        assert store.lost_uploads_sync({("f2", 7): 2, ("f5", 1): 1}) == ["f2", "f5"]
        assert not upload.exists()
    finally:
        store.close()
