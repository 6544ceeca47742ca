"""The files API over the wire: listing, metadata, deletion, uploads (all flows), content."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from labric.server import LocalServer
from labric.server.core.blobs import BlobStore, UploadFile

from ._support import KiB, Wire, crc_b64

FILE_INFO_KEYS = {
    "file_id",
    "original_path",
    "source_type",
    "source_instrument_id",
    "size_kilobytes",
    "crc32c_hash",
    "file_created_at",
    "file_name",
    "size_bytes",
    "content_type",
    "job_execution_id",
}
ELF = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 120


# -- the hosted single-object flow ----------------------------------------------------------


async def test_signed_upload_round_trip(wire: Wire, instrument: str) -> None:
    ticket = await wire.ticket(
        "runs/plate 7.csv", instrument_id=instrument, content_type="text/csv"
    )
    assert set(ticket) == {"file_id", "upload_url", "headers", "expires_at"}
    assert ticket["headers"] == {
        "Content-Type": "text/csv",
        "x-goog-if-generation-match": "0",
        "x-goog-content-length-range": "0,524288000",
    }
    assert ticket["upload_url"].startswith(wire.server.origin + "/storage/v1/objects/")
    # Not listed before it is confirmed.
    assert (await wire.get("/v1/files")).json() == []
    assert (await wire.get(f"/v1/files/{ticket['file_id']}")).status == 404

    data = b"a,b\n1,2\n"
    put = await wire.put(ticket["upload_url"], data=data, headers=ticket["headers"])
    assert put.status == 200
    assert put.headers["x-goog-hash"] == f"crc32c={crc_b64(data)}"
    confirm = await wire.post(f"/v1/files/{ticket['file_id']}/confirm-upload")
    assert confirm.status == 200
    assert confirm.json() == {
        "file_id": ticket["file_id"],
        "file_name": "plate 7.csv",
        "size_kilobytes": 1,
        "size_bytes": 8,
        "crc32c_hash": crc_b64(data),
    }
    info = (await wire.get(f"/v1/files/{ticket['file_id']}")).json()
    assert set(info) == FILE_INFO_KEYS
    assert info["original_path"] == "runs/plate 7.csv"
    assert info["source_type"] == "instrument"
    assert info["source_instrument_id"] == instrument
    assert info["content_type"] == "text/csv"
    assert info["file_created_at"].endswith("Z")
    assert (await wire.get("/v1/files")).json() == [info]


async def test_confirm_is_idempotent(wire: Wire, instrument: str) -> None:
    first = await wire.upload(b"x" * 3000, instrument_id=instrument)
    again = await wire.post(f"/v1/files/{first['file_id']}/confirm-upload")
    assert again.status == 200
    assert again.json() == first
    assert len((await wire.get("/v1/files")).json()) == 1


async def test_confirm_before_put_is_400(wire: Wire, instrument: str) -> None:
    ticket = await wire.ticket(instrument_id=instrument)
    reply = await wire.post(f"/v1/files/{ticket['file_id']}/confirm-upload")
    assert reply.status == 400
    assert "Nothing was uploaded" in reply.detail


async def test_upload_url_is_create_only(wire: Wire, instrument: str) -> None:
    ticket = await wire.ticket(instrument_id=instrument)
    assert (
        await wire.put(ticket["upload_url"], data=b"one", headers=ticket["headers"])
    ).status == 200
    again = await wire.put(ticket["upload_url"], data=b"two", headers=ticket["headers"])
    assert again.status == 412
    await wire.post(f"/v1/files/{ticket['file_id']}/confirm-upload")
    late = await wire.put(ticket["upload_url"], data=b"three", headers=ticket["headers"])
    assert late.status == 412
    url = (await wire.get(f"/v1/files/{ticket['file_id']}/content")).json()["download_url"]
    assert (await wire.get(url)).body == b"one"


async def test_single_put_checks_x_goog_hash(wire: Wire, instrument: str) -> None:
    ticket = await wire.ticket(instrument_id=instrument)
    bad = await wire.put(
        ticket["upload_url"],
        data=b"payload",
        headers={**ticket["headers"], "x-goog-hash": f"crc32c={crc_b64(b'other')}"},
    )
    assert bad.status == 400
    assert "does not match" in bad.detail
    malformed = await wire.put(
        ticket["upload_url"],
        data=b"payload",
        headers={**ticket["headers"], "x-goog-hash": "crc32c=zz"},
    )
    assert malformed.status == 400
    good = await wire.put(
        ticket["upload_url"],
        data=b"payload",
        headers={**ticket["headers"], "x-goog-hash": f"md5=abc=,crc32c={crc_b64(b'payload')}"},
    )
    assert good.status == 200


async def test_single_put_cap(swire: Wire, sinstrument: str) -> None:
    ticket = await swire.ticket(instrument_id=sinstrument)
    # Declared up front...
    reply = await swire.put(
        ticket["upload_url"], data=b"x" * (64 * KiB + 1), headers=ticket["headers"]
    )
    assert reply.status == 413
    assert "65536-byte limit" in reply.detail

    # ...and counted while streaming when no length is declared.
    async def chunks() -> Any:
        for _ in range(80):
            yield b"y" * KiB

    reply = await swire.put(ticket["upload_url"], data=chunks(), headers=ticket["headers"])
    assert reply.status == 413
    assert (
        await swire.put(ticket["upload_url"], data=b"z" * (64 * KiB), headers=ticket["headers"])
    ).status == 200
    assert (await swire.post(f"/v1/files/{ticket['file_id']}/confirm-upload")).status == 200


async def test_confirm_discards_native_executables(wire: Wire, instrument: str) -> None:
    ticket = await wire.ticket("tool", instrument_id=instrument)
    await wire.put(ticket["upload_url"], data=ELF, headers=ticket["headers"])
    reply = await wire.post(f"/v1/files/{ticket['file_id']}/confirm-upload")
    assert reply.status == 400
    assert "ELF" in reply.detail
    status = (await wire.get(f"/v1/files/{ticket['file_id']}/upload-status")).json()
    assert status["status"] == "pending"
    # The bytes are gone: confirming again finds nothing uploaded.
    assert (await wire.post(f"/v1/files/{ticket['file_id']}/confirm-upload")).status == 400


async def test_confirm_checks_declared_size_and_crc(wire: Wire, instrument: str) -> None:
    ticket = await wire.ticket(instrument_id=instrument, size_bytes=5, crc32c=crc_b64(b"12345"))
    await wire.put(ticket["upload_url"], data=b"54321", headers=ticket["headers"])
    reply = await wire.post(f"/v1/files/{ticket['file_id']}/confirm-upload")
    assert reply.status == 400
    assert "crc32c" in reply.detail
    ticket = await wire.ticket("b.csv", instrument_id=instrument, size_bytes=4)
    await wire.put(ticket["upload_url"], data=b"12345", headers=ticket["headers"])
    reply = await wire.post(f"/v1/files/{ticket['file_id']}/confirm-upload")
    assert reply.status == 400
    assert "size_bytes was 4" in reply.detail


async def test_content_type_replacement(wire: Wire, instrument: str) -> None:
    ticket = await wire.ticket("page.html", instrument_id=instrument, content_type="text/html")
    assert ticket["headers"]["Content-Type"] == "application/octet-stream"
    # The PUT must carry exactly the signed type.
    sneaky = await wire.put(
        ticket["upload_url"],
        data=b"<script>",
        headers={**ticket["headers"], "Content-Type": "text/html"},
    )
    assert sneaky.status == 403
    assert (
        await wire.put(ticket["upload_url"], data=b"<p>", headers=ticket["headers"])
    ).status == 200
    await wire.post(f"/v1/files/{ticket['file_id']}/confirm-upload")
    url = (await wire.get(f"/v1/files/{ticket['file_id']}/content")).json()["download_url"]
    served = await wire.get(url)
    assert served.headers["Content-Type"] == "application/octet-stream"
    assert served.headers["X-Content-Type-Options"] == "nosniff"
    default = await wire.ticket("x.bin", instrument_id=instrument)
    assert default["headers"]["Content-Type"] == "application/octet-stream"


# -- attribution ----------------------------------------------------------------------------


async def test_attribution_is_required(wire: Wire) -> None:
    reply = await wire.post(
        "/v1/files/upload-url",
        json={"file_name": "a.csv", "instrument_id": None, "job_execution_id": None},
    )
    assert reply.status == 400
    assert "instrument_id or job_execution_id" in reply.detail


async def test_unknown_attribution_ids_are_404(wire: Wire, server: LocalServer) -> None:
    other_org_instrument = server.create_instrument("theirs", org="other")
    for body in (
        {"instrument_id": "nope"},
        {"instrument_id": other_org_instrument},
        {"job_execution_id": "nope"},
    ):
        reply = await wire.post("/v1/files/upload-url", json={"file_name": "a.csv", **body})
        assert reply.status == 404, body


async def test_job_execution_attribution_and_job_key_default(
    wire: Wire, server: LocalServer
) -> None:
    execution = (await wire.post("/v1/job-executions")).json()["job_execution_id"]
    ticket = await wire.ticket("out.csv", job_execution_id=execution)
    await wire.put(ticket["upload_url"], data=b"1", headers=ticket["headers"])
    await wire.post(f"/v1/files/{ticket['file_id']}/confirm-upload")
    info = (await wire.get(f"/v1/files/{ticket['file_id']}")).json()
    assert info["job_execution_id"] == execution
    assert info["source_type"] == "job"
    assert info["source_instrument_id"] is None

    # A running execution's ephemeral key needs no attribution: it defaults to its execution.
    job_key = server.create_key("read,write", job_execution_id=execution)
    reply = await wire.post("/v1/files/upload-url", key=job_key, json={"file_name": "log.txt"})
    assert reply.status == 200
    file_id = reply.json()["file_id"]
    status = await wire.get(f"/v1/files/{file_id}/upload-status", key=job_key)
    assert status.status == 200
    # Once the execution ends, its key stops working.
    await wire.patch(f"/v1/job-executions/{execution}", json={"status": "completed"})
    assert (await wire.get("/v1/files", key=job_key)).status == 401


async def test_reasking_returns_the_same_file_id(wire: Wire, instrument: str) -> None:
    first = await wire.ticket("scans/run1.csv", instrument_id=instrument)
    second = await wire.ticket("scans/run1.csv", instrument_id=instrument)
    assert second["file_id"] == first["file_id"]
    assert (
        second["upload_url"] != first["upload_url"] or second["expires_at"] == first["expires_at"]
    )
    other_path = await wire.ticket("scans/run2.csv", instrument_id=instrument)
    assert other_path["file_id"] != first["file_id"]
    await wire.put(second["upload_url"], data=b"v1", headers=second["headers"])
    await wire.post(f"/v1/files/{first['file_id']}/confirm-upload")
    # Once confirmed, the same path starts a new file.
    third = await wire.ticket("scans/run1.csv", instrument_id=instrument)
    assert third["file_id"] != first["file_id"]


# -- validation -----------------------------------------------------------------------------


async def test_upload_url_validation(wire: Wire, instrument: str) -> None:
    missing = await wire.post("/v1/files/upload-url", json={"instrument_id": instrument})
    assert missing.status == 422
    assert missing.detail == [
        {"loc": ["body", "file_name"], "msg": "Field required", "type": "missing"}
    ]
    wrong = await wire.post(
        "/v1/files/upload-url",
        json={"file_name": 5, "size_bytes": "big", "crc32c": "nope", "instrument_id": instrument},
    )
    assert wrong.status == 422
    assert {tuple(p["loc"]) for p in wrong.detail} == {
        ("body", "file_name"),
        ("body", "size_bytes"),
        ("body", "crc32c"),
    }
    not_json = await wire.post(
        "/v1/files/upload-url", data=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert not_json.status == 400
    assert "not valid JSON" in not_json.detail
    not_object = await wire.post("/v1/files/upload-url", json=[1, 2])
    assert not_object.status == 422
    empty = await wire.post("/v1/files/upload-url")
    assert empty.status == 422
    extra = await wire.post(
        "/v1/files/upload-url",
        json={"file_name": "a.csv", "instrument_id": instrument, "surprise": {"x": 1}},
    )
    assert extra.status == 200
    folder = await wire.post(
        "/v1/files/upload-url", json={"file_name": "dir/", "instrument_id": instrument}
    )
    assert folder.status == 422


# -- multipart POST /v1/files ---------------------------------------------------------------


def _form(
    data: bytes, name: str = "notes.txt", content_type: str = "text/plain", **fields: str
) -> aiohttp.FormData:
    form = aiohttp.FormData(quote_fields=False)
    for key, value in fields.items():
        form.add_field(key, value)
    form.add_field("file", data, filename=name, content_type=content_type)
    return form


async def test_multipart_upload(wire: Wire, instrument: str) -> None:
    reply = await wire.post("/v1/files", data=_form(b"hello", instrument_id=instrument))
    assert reply.status == 200
    body = reply.json()
    assert body == {
        "file_id": body["file_id"],
        "file_name": "notes.txt",
        "size_kilobytes": 1,
        "size_bytes": 5,
        "crc32c_hash": crc_b64(b"hello"),
    }
    info = (await wire.get(f"/v1/files/{body['file_id']}")).json()
    assert info["content_type"] == "text/plain"
    assert info["source_instrument_id"] == instrument
    # Fields may come after the file part, too.
    form = aiohttp.FormData(quote_fields=False)
    form.add_field("file", b"svg", filename="x.svg", content_type="image/svg+xml")
    form.add_field("instrument_id", instrument)
    later = await wire.post("/v1/files", data=form)
    assert later.status == 200
    info = (await wire.get(f"/v1/files/{later.json()['file_id']}")).json()
    assert info["content_type"] == "application/octet-stream"


async def test_multipart_limits_and_rules(swire: Wire, sinstrument: str) -> None:
    over = await swire.post("/v1/files", data=_form(b"x" * (9 * KiB), instrument_id=sinstrument))
    assert over.status == 413
    assert "8192 bytes" in over.detail

    async def chunked() -> Any:
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n\r\n'
        for _ in range(10):
            yield b"z" * KiB
        yield b"\r\n--b--\r\n"

    streamed = await swire.post(
        "/v1/files", data=chunked(), headers={"Content-Type": "multipart/form-data; boundary=b"}
    )
    assert streamed.status == 413
    no_file = aiohttp.FormData(default_to_multipart=True, quote_fields=False)
    no_file.add_field("instrument_id", sinstrument)
    no_file.add_field("other", "x")
    reply = await swire.post("/v1/files", data=no_file)
    assert reply.status == 422
    assert reply.detail[0]["loc"] == ["body", "file"]
    assert (await swire.post("/v1/files", data=_form(b"x"))).status == 400
    assert (await swire.post("/v1/files", data=_form(ELF, instrument_id=sinstrument))).status == 400
    not_multipart = await swire.post("/v1/files", json={"file": "x"})
    assert not_multipart.status == 422
    truncated = await swire.post(
        "/v1/files",
        data=b'--b\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nabc',
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )
    assert truncated.status == 400
    assert "Malformed multipart" in truncated.detail
    assert (await swire.get("/v1/files")).json() == []


# -- listing --------------------------------------------------------------------------------


async def _seed(wire: Wire, instrument: str, names: list[str]) -> list[str]:
    ids = []
    for name in names:
        reply = await wire.post(
            "/v1/files", data=_form(name.encode(), name=name, instrument_id=instrument)
        )
        assert reply.status == 200, reply.body
        ids.append(reply.json()["file_id"])
    return ids


async def test_listing_filters_and_order(wire: Wire, instrument: str, server: LocalServer) -> None:
    other = server.create_instrument("Other")
    ids = await _seed(
        wire, instrument, ["Plate 7 run.CSV", "plate8.txt", "notes.md", "archive.tar.gz"]
    )
    other_id = (await _seed(wire, other, ["plate 7 elsewhere.csv"]))[0]
    listed = [f["file_id"] for f in (await wire.get("/v1/files")).json()]
    assert listed == [other_id, *reversed(ids)]  # newest first

    async def names(**params: str) -> list[str]:
        reply = await wire.get("/v1/files", params=params)
        assert reply.status == 200
        return [f["file_name"] for f in reply.json()]

    assert await names(instrument_id=other) == ["plate 7 elsewhere.csv"]
    assert await names(extensions="csv", instrument_id=instrument) == ["Plate 7 run.CSV"]
    assert await names(extensions=".TXT, md") == ["notes.md", "plate8.txt"]
    assert await names(extensions="tar.gz") == ["archive.tar.gz"]
    assert await names(query="PLATE 7") == ["plate 7 elsewhere.csv", "Plate 7 run.CSV"]
    assert await names(query="plate run 7") == ["Plate 7 run.CSV"]
    assert await names(query="plate", extensions="txt") == ["plate8.txt"]
    assert await names(query="zzz") == []
    bad = await wire.get("/v1/files", params={"limit": "0"})
    assert bad.status == 422
    assert bad.detail[0]["loc"] == ["query", "limit"]
    assert (await wire.get("/v1/files", params={"limit": "many"})).status == 422


async def test_listing_pages_follow_link_headers(swire: Wire, sinstrument: str) -> None:
    ids = await _seed(swire, sinstrument, [f"f{i}.csv" for i in range(8)])
    expected = list(reversed(ids))
    # A cursor-less page_size-less request is answered whole (see test_unpaged_listings); an
    # empty cursor asks for pages of the server's default size (3 on this server).
    seen: list[str] = []
    url: str | None = "/v1/files?cursor="
    pages = 0
    while url is not None:
        reply = await swire.get(url)
        assert reply.status == 200
        seen += [f["file_id"] for f in reply.json()]
        pages += 1
        link = reply.headers.get("Link")
        url = link[1 : link.index(">")] if link else None
        if url is not None:
            assert url.startswith(swire.server.base_url + "/v1/files?")
    assert seen == expected
    assert pages == 3
    # page_size sets the page; filters carry over to the next page.
    first = await swire.get("/v1/files", params={"page_size": "5", "extensions": "csv"})
    assert [f["file_id"] for f in first.json()] == expected[:5]
    link = first.headers["Link"]
    assert link.endswith('>; rel="next"')
    assert "extensions=csv" in link
    rest = await swire.get(link[1 : link.index(">")])
    assert [f["file_id"] for f in rest.json()] == expected[5:]
    assert "Link" not in rest.headers
    assert (await swire.get("/v1/files", params={"cursor": "garbage"})).status == 400


# -- metadata, deletion ---------------------------------------------------------------------


async def test_delete_removes_record_and_bytes(
    wire: Wire, instrument: str, server: LocalServer
) -> None:
    uploaded = await wire.upload(b"bytes", instrument_id=instrument)
    file_id = uploaded["file_id"]
    url = (await wire.get(f"/v1/files/{file_id}/content")).json()["download_url"]
    assert (await wire.delete(f"/v1/files/{file_id}")).status == 204
    assert (await wire.get(f"/v1/files/{file_id}")).status == 404
    assert (await wire.delete(f"/v1/files/{file_id}")).status == 404
    assert (await wire.get(url)).status == 404
    objects = server.data_dir.root / "objects"
    assert [p for p in objects.rglob("*") if p.is_file()] == []


# -- content and previews -------------------------------------------------------------------


async def test_content_preview_and_download_url(wire: Wire, instrument: str) -> None:
    small = await wire.upload("héllo\n".encode(), "a.txt", instrument_id=instrument)
    content = (await wire.get(f"/v1/files/{small['file_id']}/content")).json()
    assert content["text_preview"] == "héllo\n"
    assert content["preview_truncated"] is False
    assert content["preview_skipped_reason"] is None
    assert content["size_bytes"] == 7
    assert content["crc32c_hash"] == small["crc32c_hash"]
    assert (await wire.get(content["download_url"])).body == "héllo\n".encode()

    big_text = ("€" * 30_000).encode()  # 90,000 bytes; the 64 KiB cut falls inside a character
    big = await wire.upload(big_text, "big.txt", instrument_id=instrument)
    content = (await wire.get(f"/v1/files/{big['file_id']}/content")).json()
    assert content["preview_truncated"] is True
    assert content["text_preview"] == "€" * (65536 // 3)

    binary = await wire.upload(b"\x89PNG\r\n\x1a\n\x00\x00\x00", "p.png", instrument_id=instrument)
    content = (await wire.get(f"/v1/files/{binary['file_id']}/content")).json()
    assert content["text_preview"] is None
    assert "binary" in content["preview_skipped_reason"]
    assert (await wire.get("/v1/files/nope/content")).status == 404


async def test_every_response_has_a_request_id(wire: Wire, session: aiohttp.ClientSession) -> None:
    replies = [
        await wire.get("/v1/files"),
        await wire.get("/v1/files", key=None),
        await wire.get("/v1/nowhere"),
        await wire.call("PATCH", "/v1/files"),
        await wire.get(wire.server.origin + "/storage/v1/objects/x"),
    ]
    ids = [r.headers["X-Request-ID"] for r in replies]
    assert len(set(ids)) == len(ids)
    assert [r.status for r in replies] == [200, 401, 404, 405, 403]
    assert replies[2].detail.startswith("Not found")
    assert replies[3].headers["Allow"]


async def test_concurrent_confirms_assemble_once(
    swire: Wire, sinstrument: str, small: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = bytes(range(256)) * 20
    ticket = await swire.ticket("big.bin", instrument_id=sinstrument, size_bytes=len(data))
    file_id = ticket["file_id"]
    manifest = await swire.put_parts(ticket, data)
    # Assembling is renaming the upload file into place as the object: count the renames.
    published: list[str] = []
    publish = BlobStore.publish_upload

    async def counting(self: BlobStore, upload: UploadFile, dest: Path, size: int) -> None:
        published.append(dest.name)
        await publish(self, upload, dest, size)

    monkeypatch.setattr(BlobStore, "publish_upload", counting)
    replies = await asyncio.gather(
        *(
            swire.post(f"/v1/files/{file_id}/confirm-upload", json={"parts": manifest})
            for _ in range(4)
        )
    )
    assert {r.status for r in replies} == {200}
    assert len({r.body for r in replies}) == 1
    assert len(published) == 1, published
    # And on disk: one object of the file, no upload file left behind.
    root = small.data_dir.root
    [stored] = (root / "objects").rglob(f"{file_id}.*")
    assert stored.name == published[0]
    assert stored.read_bytes() == data
    assert not list((root / "uploads").glob(f"{file_id}.*"))


@pytest.mark.parametrize("size", [0, 1])
async def test_tiny_files(wire: Wire, instrument: str, size: int) -> None:
    uploaded = await wire.upload(b"x" * size, instrument_id=instrument)
    assert uploaded["size_bytes"] == size
    assert uploaded["size_kilobytes"] == size
    content = (await wire.get(f"/v1/files/{uploaded['file_id']}/content")).json()
    served = await wire.get(content["download_url"])
    assert served.status == 200
    assert served.body == b"x" * size
