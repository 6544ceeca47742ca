"""Storage routes over the wire: signatures, expiry, ranged downloads, and the multipart flow."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp
import pytest

from labric.server import LocalServer

from ._support import FakeClock, KiB, Wire, crc_b64

DATA = bytes(range(256)) * 10  # 2,560 bytes: three parts of 1 KiB on the small server


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query, safe=";")))


def _with_path(url: str, path: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=path))


async def _stored(wire: Wire, instrument: str, data: bytes = DATA) -> tuple[str, str]:
    uploaded = await wire.upload(data, "blob.bin", instrument_id=instrument)
    content = (await wire.get(f"/v1/files/{uploaded['file_id']}/content")).json()
    return uploaded["file_id"], content["download_url"]


# -- signatures -----------------------------------------------------------------------------


async def test_tampered_upload_urls_are_403(wire: Wire, instrument: str) -> None:
    ticket = await wire.ticket(instrument_id=instrument, content_type="text/csv")
    other = await wire.ticket("other.csv", instrument_id=instrument)
    url, headers = ticket["upload_url"], ticket["headers"]
    query = dict(parse_qsl(urlsplit(url).query))
    tampered = [
        _with_path(url, urlsplit(other["upload_url"]).path),  # another file's path
        _with_query(url, **{"X-Labric-Expires": str(int(query["X-Labric-Expires"]) + 3600)}),
        _with_query(url, **{"X-Labric-Signature": "f" * 64}),
        _with_query(url, **{"X-Labric-SignedHeaders": "content-type"}),
        url.split("?")[0],  # unsigned
    ]
    for bad in tampered:
        reply = await wire.put(bad, data=b"x", headers=headers)
        assert reply.status == 403, bad
        assert isinstance(reply.detail, str)
    # A constrained header with another value, or missing.
    changed = await wire.put(url, data=b"x", headers={**headers, "x-goog-if-generation-match": "1"})
    assert changed.status == 403
    missing = {k: v for k, v in headers.items() if k != "x-goog-content-length-range"}
    assert (await wire.put(url, data=b"x", headers=missing)).status == 403
    # A download URL cannot upload, an upload URL cannot download.
    assert (await wire.get(url)).status == 403
    # None of this stored anything: the real PUT still works.
    assert (await wire.put(url, data=b"x", headers=headers)).status == 200


async def test_download_url_is_bound_to_its_file(wire: Wire, instrument: str) -> None:
    _, url_a = await _stored(wire, instrument, b"aaa")
    file_b, _ = await _stored(wire, instrument, b"bbb")
    forged = _with_path(url_a, f"/storage/v1/objects/{file_b}")
    assert (await wire.get(forged)).status == 403
    assert (await wire.put(url_a, data=b"x")).status == 403
    assert (await wire.get(url_a)).body == b"aaa"


async def test_urls_expire(swire: Wire, sinstrument: str, clock: FakeClock) -> None:
    ticket = await swire.ticket(instrument_id=sinstrument)
    clock.advance(15 * 60 + 1)
    expired = await swire.put(ticket["upload_url"], data=b"x", headers=ticket["headers"])
    assert expired.status == 403
    assert "expired" in expired.detail
    fresh = await swire.ticket(instrument_id=sinstrument)  # same file, fresh URL
    assert fresh["file_id"] == ticket["file_id"]
    assert (await swire.put(fresh["upload_url"], data=b"x", headers=fresh["headers"])).status == 200
    await swire.post(f"/v1/files/{ticket['file_id']}/confirm-upload")
    url = (await swire.get(f"/v1/files/{ticket['file_id']}/content")).json()["download_url"]
    clock.advance(3599)
    assert (await swire.get(url)).status == 200
    clock.advance(2)
    assert (await swire.get(url)).status == 403


async def test_urls_survive_a_restart(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    async with LocalServer(tmp_path / "d", port=0) as first:
        wire = Wire(session, first)
        file_id, _ = await _stored(wire, first.create_instrument("i"), b"kept")
        url = (await wire.get(f"/v1/files/{file_id}/content")).json()["download_url"]
        port = first.port
    async with LocalServer(tmp_path / "d", port=port) as second:
        assert (await Wire(session, second).get(url)).body == b"kept"


# -- downloads ------------------------------------------------------------------------------


async def test_ranged_downloads(wire: Wire, instrument: str) -> None:
    _, url = await _stored(wire, instrument)
    whole = await wire.get(url)
    assert whole.status == 200
    assert whole.body == DATA
    assert whole.headers["Accept-Ranges"] == "bytes"
    assert whole.headers["Content-Length"] == str(len(DATA))
    assert whole.headers["x-goog-hash"] == f"crc32c={crc_b64(DATA)}"
    etag = whole.headers["ETag"]
    assert etag.startswith('"')
    assert not etag.startswith("W/")

    cases = {
        "bytes=0-9": (0, 9),
        "bytes=100-": (100, len(DATA) - 1),
        "bytes=-16": (len(DATA) - 16, len(DATA) - 1),
        "bytes=2550-99999": (2550, len(DATA) - 1),
        f"bytes={len(DATA) - 1}-{len(DATA) - 1}": (len(DATA) - 1, len(DATA) - 1),
    }
    for header, (first, last) in cases.items():
        part = await wire.get(url, headers={"Range": header})
        assert part.status == 206, header
        assert part.body == DATA[first : last + 1]
        assert part.headers["Content-Range"] == f"bytes {first}-{last}/{len(DATA)}"
        assert part.headers["ETag"] == etag
        assert part.headers["x-goog-hash"] == f"crc32c={crc_b64(DATA)}"  # whole object's

    for header in (f"bytes={len(DATA)}-", "bytes=99999-100000", "bytes=-0"):
        reply = await wire.get(url, headers={"Range": header})
        assert reply.status == 416, header
        assert reply.headers["Content-Range"] == f"bytes */{len(DATA)}"
    for header in ("bytes=5-1", "bytes=0-1,5-6", "lines=1-2"):
        reply = await wire.get(url, headers={"Range": header})
        assert reply.status == 200, header
        assert reply.body == DATA


async def test_conditional_downloads(wire: Wire, instrument: str) -> None:
    _, url = await _stored(wire, instrument)
    etag = (await wire.get(url, headers={"Range": "bytes=0-0"})).headers["ETag"]
    pinned = await wire.get(url, headers={"Range": "bytes=0-3", "If-Match": etag})
    assert pinned.status == 206
    assert (await wire.get(url, headers={"If-Match": '"other", ' + etag})).status == 200
    assert (await wire.get(url, headers={"If-Match": "*"})).status == 200
    stale = await wire.get(url, headers={"Range": "bytes=0-3", "If-Match": '"stale"'})
    assert stale.status == 412
    assert "If-Match" in stale.detail
    assert (await wire.get(url, headers={"If-Match": f"W/{etag}"})).status == 412
    assert (await wire.get(url, headers={"If-None-Match": etag})).status == 304
    assert (await wire.get(url, headers={"If-None-Match": '"other"'})).status == 200
    if_range = await wire.get(url, headers={"Range": "bytes=0-3", "If-Range": '"stale"'})
    assert if_range.status == 200
    assert if_range.body == DATA
    head = await wire.call("HEAD", url)
    assert head.status == 200
    assert head.body == b""
    assert head.headers["Content-Length"] == str(len(DATA))
    assert head.headers["ETag"] == etag


async def test_etag_changes_with_the_bytes(wire: Wire, instrument: str) -> None:
    ticket = await wire.ticket("tool.bin", instrument_id=instrument)
    elf = b"\x7fELF" + b"\0" * 60
    first = await wire.put(ticket["upload_url"], data=elf, headers=ticket["headers"])
    # Confirm discards the executable; the same file id then takes other bytes.
    assert (await wire.post(f"/v1/files/{ticket['file_id']}/confirm-upload")).status == 400
    again = await wire.ticket("tool.bin", instrument_id=instrument)
    assert again["file_id"] == ticket["file_id"]
    second = await wire.put(again["upload_url"], data=b"plain text", headers=again["headers"])
    assert second.status == 200
    assert second.headers["ETag"] != first.headers["ETag"]
    await wire.post(f"/v1/files/{ticket['file_id']}/confirm-upload")
    url = (await wire.get(f"/v1/files/{ticket['file_id']}/content")).json()["download_url"]
    served = await wire.get(url)
    assert served.headers["ETag"] == second.headers["ETag"]
    assert (await wire.get(url)).headers["ETag"] == served.headers["ETag"]  # stable
    assert (await wire.get(url, headers={"If-Match": first.headers["ETag"]})).status == 412


# -- multipart uploads ----------------------------------------------------------------------


async def test_parts_flow(swire: Wire, sinstrument: str, small: LocalServer) -> None:
    ticket = await swire.ticket(
        "big.bin", instrument_id=sinstrument, size_bytes=len(DATA), crc32c=crc_b64(DATA)
    )
    assert ticket["part_size"] == KiB
    assert [(p["number"], p["offset"], p["size"]) for p in ticket["parts"]] == [
        (1, 0, 1024),
        (2, 1024, 1024),
        (3, 2048, 512),
    ]
    assert all(p["url"].startswith(small.origin + "/storage/") for p in ticket["parts"])
    # Parts may arrive in any order.
    manifest = await swire.put_parts({**ticket, "parts": list(reversed(ticket["parts"]))}, DATA)
    manifest.sort(key=lambda m: m["number"])
    status = (await swire.get(f"/v1/files/{ticket['file_id']}/upload-status")).json()
    assert status == {
        "file_id": ticket["file_id"],
        "status": "pending",
        "part_size": KiB,
        "parts": [
            {"number": m["number"], "size": s, "crc32c": m["crc32c"]}
            for m, s in zip(manifest, (1024, 1024, 512), strict=True)
        ],
        "missing_parts": [],
    }
    confirm = await swire.post(
        f"/v1/files/{ticket['file_id']}/confirm-upload", json={"parts": manifest}
    )
    assert confirm.status == 200, confirm.body
    assert confirm.json()["crc32c_hash"] == crc_b64(DATA)
    assert confirm.json()["size_bytes"] == len(DATA)
    url = (await swire.get(f"/v1/files/{ticket['file_id']}/content")).json()["download_url"]
    assert (await swire.get(url)).body == DATA
    status = (await swire.get(f"/v1/files/{ticket['file_id']}/upload-status")).json()
    assert status["status"] == "confirmed"
    assert status["parts"] == []
    assert not (small.data_dir.root / "parts" / ticket["file_id"]).exists()
    # Parts cannot be sent to a confirmed upload.
    late = await swire.put(ticket["parts"][0]["url"], data=DATA[:KiB])
    assert late.status == 409


async def test_part_checks(swire: Wire, sinstrument: str) -> None:
    ticket = await swire.ticket("big.bin", instrument_id=sinstrument, size_bytes=len(DATA))
    first = ticket["parts"][0]
    chunk = DATA[:KiB]
    bad_crc = await swire.put(
        first["url"], data=chunk, headers={"x-goog-hash": f"crc32c={crc_b64(b'x')}"}
    )
    assert bad_crc.status == 400
    assert "does not match" in bad_crc.detail
    short = await swire.put(first["url"], data=chunk[:-1])
    assert short.status == 400
    assert "exactly 1024 bytes" in short.detail
    status = (await swire.get(f"/v1/files/{ticket['file_id']}/upload-status")).json()
    assert status["parts"] == []
    assert [p["number"] for p in status["missing_parts"]] == [1, 2, 3]
    # Re-sending a part replaces the earlier copy.
    assert (await swire.put(first["url"], data=b"\0" * KiB)).status == 200
    assert (await swire.put(first["url"], data=chunk)).status == 200
    status = (await swire.get(f"/v1/files/{ticket['file_id']}/upload-status")).json()
    assert status["parts"] == [{"number": 1, "size": KiB, "crc32c": crc_b64(chunk)}]
    assert [p["number"] for p in status["missing_parts"]] == [2, 3]


async def test_confirm_parts_errors(swire: Wire, sinstrument: str) -> None:
    ticket = await swire.ticket("big.bin", instrument_id=sinstrument, size_bytes=len(DATA))
    confirm = f"/v1/files/{ticket['file_id']}/confirm-upload"
    manifest = await swire.put_parts({**ticket, "parts": ticket["parts"][:2]}, DATA)
    full = [*manifest, {"number": 3, "crc32c": crc_b64(DATA[2048:])}]

    missing_upload = await swire.post(confirm, json={"parts": full})
    assert missing_upload.status == 400
    assert "Part(s) 3 were not uploaded" in missing_upload.detail
    await swire.put(ticket["parts"][2]["url"], data=DATA[2048:])
    unlisted = await swire.post(confirm, json={"parts": full[:2]})
    assert unlisted.status == 400
    assert "does not list part(s) 3" in unlisted.detail
    wrong_crc = await swire.post(
        confirm, json={"parts": [*full[:2], {"number": 3, "crc32c": crc_b64(b"nope")}]}
    )
    assert wrong_crc.status == 400
    assert "re-send the part" in wrong_crc.detail
    extra = await swire.post(confirm, json={"parts": [*full, {"number": 4, "crc32c": "AAAAAA=="}]})
    assert extra.status == 400
    twice = await swire.post(confirm, json={"parts": [*full, full[0]]})
    assert twice.status == 400
    malformed = await swire.post(confirm, json={"parts": [{"number": "one"}, 7]})
    assert malformed.status == 422
    assert {tuple(p["loc"]) for p in malformed.detail} == {
        ("body", "parts", 0, "number"),
        ("body", "parts", 0, "crc32c"),
        ("body", "parts", 1),
    }
    assert (await swire.post(confirm, json={"parts": full})).status == 200


async def test_whole_crc_given_up_front_is_checked(swire: Wire, sinstrument: str) -> None:
    ticket = await swire.ticket(
        "big.bin", instrument_id=sinstrument, size_bytes=len(DATA), crc32c=crc_b64(b"else")
    )
    manifest = await swire.put_parts(ticket, DATA)
    reply = await swire.post(
        f"/v1/files/{ticket['file_id']}/confirm-upload", json={"parts": manifest}
    )
    assert reply.status == 400
    assert "parts were kept" in reply.detail
    status = (await swire.get(f"/v1/files/{ticket['file_id']}/upload-status")).json()
    assert len(status["parts"]) == 3


async def test_parts_without_a_plan(swire: Wire, sinstrument: str) -> None:
    ticket = await swire.ticket(instrument_id=sinstrument, size_bytes=10)
    assert "parts" not in ticket
    reply = await swire.post(
        f"/v1/files/{ticket['file_id']}/confirm-upload",
        json={"parts": [{"number": 1, "crc32c": crc_b64(b"x")}]},
    )
    assert reply.status == 400
    assert "no part plan" in reply.detail


async def test_resume_sends_only_missing_parts(
    swire: Wire, sinstrument: str, small: LocalServer, clock: FakeClock
) -> None:
    ticket = await swire.ticket("big.bin", instrument_id=sinstrument, size_bytes=len(DATA))
    file_id = ticket["file_id"]
    await swire.put_parts({**ticket, "parts": ticket["parts"][:1]}, DATA)  # then "crash"
    clock.advance(16 * 60)  # the original part URLs have expired
    assert (await swire.put(ticket["parts"][1]["url"], data=DATA[KiB : 2 * KiB])).status == 403
    small.reset_stats()
    status = (await swire.get(f"/v1/files/{file_id}/upload-status")).json()
    held = {p["number"]: p["crc32c"] for p in status["parts"]}
    assert list(held) == [1]
    manifest = await swire.put_parts({"parts": status["missing_parts"]}, DATA)
    manifest.append({"number": 1, "crc32c": held[1]})
    reply = await swire.post(f"/v1/files/{file_id}/confirm-upload", json={"parts": manifest})
    assert reply.status == 200
    stats = (await swire.get("/v1/admin/stats")).json()["storage"]
    assert stats["bytes_received_by_file"] == {file_id: len(DATA) - KiB}
    assert stats["part_puts_by_file"] == {file_id: {"2": 1, "3": 1}}


async def test_reasking_keeps_parts_when_the_plan_is_unchanged(
    swire: Wire, sinstrument: str
) -> None:
    ticket = await swire.ticket("big.bin", instrument_id=sinstrument, size_bytes=len(DATA))
    await swire.put_parts({**ticket, "parts": ticket["parts"][:2]}, DATA)
    again = await swire.ticket("big.bin", instrument_id=sinstrument, size_bytes=len(DATA))
    assert again["file_id"] == ticket["file_id"]
    status = (await swire.get(f"/v1/files/{ticket['file_id']}/upload-status")).json()
    assert [p["number"] for p in status["parts"]] == [1, 2]
    # A different size is a different plan: the stored parts no longer fit and are dropped.
    resized = await swire.ticket("big.bin", instrument_id=sinstrument, size_bytes=3 * KiB)
    assert resized["file_id"] == ticket["file_id"]
    status = (await swire.get(f"/v1/files/{ticket['file_id']}/upload-status")).json()
    assert status["parts"] == []
    assert [p["size"] for p in resized["parts"]] == [KiB, KiB, KiB]


@pytest.mark.parametrize("number", ["0", "4"])
async def test_part_numbers_outside_the_plan(swire: Wire, sinstrument: str, number: str) -> None:
    ticket = await swire.ticket("big.bin", instrument_id=sinstrument, size_bytes=len(DATA))
    url = ticket["parts"][0]["url"]
    forged = _with_path(url, urlsplit(url).path.rsplit("/", 1)[0] + "/" + number)
    assert (await swire.put(forged, data=b"x")).status == 403  # the number is signed too
