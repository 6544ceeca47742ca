"""Signed storage URLs under attack: every signed field tampered with, expiry (on an injected
clock), and replay against another file, another part, another method or another server.

A storage URL's signature is its whole authorisation, so each of these must be a 403 with a JSON
``detail``, store nothing and serve nothing; the genuine URL keeps working afterwards.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp
import attrs
import pytest
from yarl import URL

from labric.server import LocalServer

from ._support import KiB

EXPIRES = "X-Labric-Expires"
SIGNED = "X-Labric-SignedHeaders"
SIGNATURE = "X-Labric-Signature"
PART_SIZE = KiB


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@attrs.frozen
class Reply:
    status: int
    body: bytes
    headers: Mapping[str, str]

    @property
    def detail(self) -> Any:
        return json.loads(self.body)["detail"]


def _query(url: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(url).query, keep_blank_values=True)


def _rebuild(
    url: str, *, path: str | None = None, query: list[tuple[str, str]] | None = None
) -> str:
    parts = urlsplit(url)
    if path is not None:
        parts = parts._replace(path=path)
    if query is not None:
        parts = parts._replace(query=urlencode(query, safe=";"))
    return urlunsplit(parts)


def _replace(url: str, name: str, value: str) -> str:
    return _rebuild(url, query=[(k, value if k == name else v) for k, v in _query(url)])


def _drop(url: str, name: str) -> str:
    return _rebuild(url, query=[(k, v) for k, v in _query(url) if k != name])


def _flip(hex_text: str, at: int = -1) -> str:
    chars = list(hex_text)
    chars[at] = "0" if chars[at] != "0" else "1"
    return "".join(chars)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def signed_server(tmp_path: Path, clock: Clock) -> AsyncIterator[LocalServer]:
    async with LocalServer(tmp_path / "signed", part_size=PART_SIZE, clock=clock) as srv:
        yield srv


class Api:
    def __init__(self, session: aiohttp.ClientSession, server: LocalServer) -> None:
        self.session, self.server = session, server
        self.instrument = server.create_instrument("Plate reader")

    async def raw(
        self,
        method: str,
        url: str,
        *,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        # Sent as written: the tampering is in the exact bytes of the URL.
        async with self.session.request(
            method, URL(url, encoded=True), data=data, headers=dict(headers or {})
        ) as resp:
            return Reply(resp.status, await resp.read(), dict(resp.headers))

    async def api(self, method: str, path: str, body: Any = None) -> Any:
        async with self.session.request(
            method,
            self.server.base_url + path,
            json=body,
            headers={"Authorization": f"Bearer {self.server.admin_key}"},
        ) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    async def ticket(self, name: str, **extra: Any) -> dict[str, Any]:
        return await self.api(  # type: ignore[no-any-return]
            "POST",
            "/v1/files/upload-url",
            {"file_name": name, "instrument_id": self.instrument, **extra},
        )

    async def stored(self, name: str, data: bytes) -> tuple[str, str]:
        """Upload ``data``; return its file id and a download URL."""
        ticket = await self.ticket(name, content_type="text/csv")
        put = await self.raw("PUT", ticket["upload_url"], data=data, headers=ticket["headers"])
        assert put.status == 200, put
        await self.api("POST", f"/v1/files/{ticket['file_id']}/confirm-upload")
        content = await self.api("GET", f"/v1/files/{ticket['file_id']}/content")
        return ticket["file_id"], content["download_url"]

    async def status(self, file_id: str) -> Any:
        return await self.api("GET", f"/v1/files/{file_id}/upload-status")


@pytest.fixture
async def api(signed_server: LocalServer) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, signed_server)


def _refused(reply: Reply, what: str) -> None:
    assert reply.status == 403, f"{what}: {reply.status} {reply.body[:200]!r}"
    assert isinstance(reply.detail, str), what
    assert SIGNATURE not in reply.detail


# -- uploads: each signed field ---------------------------------------------------------------

#: (what, how the URL and the headers are changed). Every one must be refused.
UPLOAD_TAMPERING: dict[str, Callable[[str, dict[str, str], str], tuple[str, dict[str, str]]]] = {
    "signature: last hex digit": lambda u, h, o: (
        _replace(u, SIGNATURE, _flip(dict(_query(u))[SIGNATURE])),
        h,
    ),
    "signature: first hex digit": lambda u, h, o: (
        _replace(u, SIGNATURE, _flip(dict(_query(u))[SIGNATURE], 0)),
        h,
    ),
    "signature: upper case": lambda u, h, o: (
        _replace(u, SIGNATURE, dict(_query(u))[SIGNATURE].upper()),
        h,
    ),
    "signature: truncated": lambda u, h, o: (
        _replace(u, SIGNATURE, dict(_query(u))[SIGNATURE][:-2]),
        h,
    ),
    "signature: empty": lambda u, h, o: (_replace(u, SIGNATURE, ""), h),
    "signature: missing": lambda u, h, o: (_drop(u, SIGNATURE), h),
    "signature: another URL's": lambda u, h, o: (
        _replace(u, SIGNATURE, dict(_query(o))[SIGNATURE]),
        h,
    ),
    "expiry: one second later": lambda u, h, o: (
        _replace(u, EXPIRES, str(int(dict(_query(u))[EXPIRES]) + 1)),
        h,
    ),
    "expiry: far future": lambda u, h, o: (_replace(u, EXPIRES, "99999999999"), h),
    "expiry: not a number": lambda u, h, o: (_replace(u, EXPIRES, "soon"), h),
    "expiry: missing": lambda u, h, o: (_drop(u, EXPIRES), h),
    "expiry: 5,000 digits": lambda u, h, o: (_replace(u, EXPIRES, "9" * 5000), h),
    "expiry: plus sign": lambda u, h, o: (_replace(u, EXPIRES, "+" + dict(_query(u))[EXPIRES]), h),
    "expiry: digit groups": lambda u, h, o: (
        _replace(u, EXPIRES, dict(_query(u))[EXPIRES][:4] + "_" + dict(_query(u))[EXPIRES][4:]),
        h,
    ),
    "expiry: with a leading zero": lambda u, h, o: (
        _replace(u, EXPIRES, "0" + dict(_query(u))[EXPIRES]),
        h,
    ),
    "signed headers: one dropped from the list": lambda u, h, o: (
        _replace(u, SIGNED, "content-type;x-goog-if-generation-match"),
        h,
    ),
    "signed headers: list missing": lambda u, h, o: (_drop(u, SIGNED), h),
    "signed headers: upper case": lambda u, h, o: (
        _replace(u, SIGNED, dict(_query(u))[SIGNED].upper()),
        h,
    ),
    "signed headers: a name twice": lambda u, h, o: (
        _replace(u, SIGNED, "content-type;" + dict(_query(u))[SIGNED]),
        h,
    ),
    "signed headers: list reordered": lambda u, h, o: (
        _replace(u, SIGNED, ";".join(reversed(dict(_query(u))[SIGNED].split(";")))),
        h,
    ),
    "header: another Content-Type": lambda u, h, o: (u, {**h, "Content-Type": "text/html"}),
    "header: Content-Type missing": lambda u, h, o: (
        u,
        {k: v for k, v in h.items() if k != "Content-Type"},
    ),
    "header: a wider length range": lambda u, h, o: (
        u,
        {**h, "x-goog-content-length-range": "0,999999999999"},
    ),
    "header: length range missing": lambda u, h, o: (
        u,
        {k: v for k, v in h.items() if k != "x-goog-content-length-range"},
    ),
    "header: overwrite instead of create": lambda u, h, o: (
        u,
        {**h, "x-goog-if-generation-match": "1"},
    ),
    "header: generation condition missing": lambda u, h, o: (
        u,
        {k: v for k, v in h.items() if k != "x-goog-if-generation-match"},
    ),
    "path: another file": lambda u, h, o: (_rebuild(u, path=urlsplit(o).path), h),
    "path: a part of this file": lambda u, h, o: (
        _rebuild(u, path=urlsplit(u).path + "/parts/1"),
        h,
    ),
    "path: trailing slash": lambda u, h, o: (_rebuild(u, path=urlsplit(u).path + "/"), h),
    "path: percent-encoded id": lambda u, h, o: (
        _rebuild(u, path=urlsplit(u).path.replace("-", "%2D", 1)),
        h,
    ),
    "path: dot segment": lambda u, h, o: (
        _rebuild(u, path=urlsplit(u).path.replace("/objects/", "/objects/./")),
        h,
    ),
}


@pytest.mark.parametrize("case", list(UPLOAD_TAMPERING))
async def test_a_tampered_upload_url_is_refused(api: Api, case: str) -> None:
    ticket = await api.ticket("target.csv", content_type="text/csv")
    other = await api.ticket("other.csv", content_type="text/csv")
    url, headers = UPLOAD_TAMPERING[case](
        ticket["upload_url"], ticket["headers"], other["upload_url"]
    )
    reply = await api.raw("PUT", url, data=b"forged", headers=headers)
    if case.startswith("path: ") and reply.status == 404:
        pass  # a path no route serves never reaches the signature check: as good
    else:
        _refused(reply, case)
    # Nothing was stored for either file, and the genuine URL still works.
    for t in (ticket, other):
        assert (await api.status(t["file_id"]))["status"] == "pending", case
    genuine = await api.raw("PUT", ticket["upload_url"], data=b"real", headers=ticket["headers"])
    assert genuine.status == 200, genuine


# -- downloads --------------------------------------------------------------------------------


async def test_a_tampered_download_url_is_refused(api: Api) -> None:
    file_a, url_a = await api.stored("a.csv", b"aaaa")
    file_b, url_b = await api.stored("b.csv", b"bbbb")
    signature = dict(_query(url_a))[SIGNATURE]
    expires = dict(_query(url_a))[EXPIRES]
    cases = {
        "signature flipped": _replace(url_a, SIGNATURE, _flip(signature)),
        "signature of another file": _replace(url_a, SIGNATURE, dict(_query(url_b))[SIGNATURE]),
        "expiry later": _replace(url_a, EXPIRES, str(int(expires) + 3600)),
        "expiry missing": _drop(url_a, EXPIRES),
        "unsigned": url_a.split("?")[0],
        "replayed on another file": _rebuild(url_a, path=urlsplit(url_b).path),
        "headers list added": _rebuild(url_a, query=[*_query(url_a), (SIGNED, "range")]),
        "two signatures, a forged one first": _rebuild(
            url_a, query=[(SIGNATURE, _flip(signature)), *_query(url_a)]
        ),
        "two expiries, a later one first": _rebuild(
            url_a, query=[(EXPIRES, str(int(expires) + 3600)), *_query(url_a)]
        ),
    }
    for what, url in cases.items():
        for method in ("GET", "HEAD"):
            reply = await api.raw(method, url)
            assert reply.status == 403, (what, method, reply.status)
            assert b"aaaa" not in reply.body, what
            assert b"bbbb" not in reply.body, what
    # Methods: a download URL never writes, deletes or overwrites.
    for method in ("PUT", "POST", "DELETE", "PATCH"):
        reply = await api.raw(method, url_a, data=b"evil", headers={"Content-Type": "text/csv"})
        assert reply.status in (403, 405), (method, reply.status)
    assert (await api.raw("GET", url_a)).body == b"aaaa"
    assert (await api.raw("GET", url_b)).body == b"bbbb"
    assert file_a != file_b


async def test_an_upload_url_does_not_download_and_a_download_url_does_not_upload(api: Api) -> None:
    ticket = await api.ticket("up.csv", content_type="text/csv")
    assert (await api.raw("GET", ticket["upload_url"])).status == 403
    assert (await api.raw("HEAD", ticket["upload_url"])).status == 403
    _, url = await api.stored("down.csv", b"down")
    reply = await api.raw("PUT", url, data=b"x", headers={"Content-Type": "text/csv"})
    assert reply.status == 403


# -- expiry on the injected clock -------------------------------------------------------------


async def test_urls_expire_on_the_servers_clock(api: Api, clock: Clock) -> None:
    ticket = await api.ticket("late.csv", content_type="text/csv")
    _, download = await api.stored("early.csv", b"early")
    expires_up = int(dict(_query(ticket["upload_url"]))[EXPIRES])
    expires_down = int(dict(_query(download))[EXPIRES])
    clock.now = expires_up  # the last valid second
    assert (await api.raw("HEAD", download)).status == 200
    clock.now = expires_up + 1
    late = await api.raw("PUT", ticket["upload_url"], data=b"late", headers=ticket["headers"])
    _refused(late, "expired upload URL")
    assert "expired" in late.detail
    assert (await api.status(ticket["file_id"]))["status"] == "pending"
    clock.now = expires_down + 1
    gone = await api.raw("GET", download)
    _refused(gone, "expired download URL")
    assert b"early" not in gone.body
    # Moving the expiry forward by hand is a forgery, not a renewal.
    renewed = _replace(download, EXPIRES, str(int(clock.now) + 60))
    reply = await api.raw("GET", renewed)
    _refused(reply, "renewed by hand")
    assert "expired" not in reply.detail


# -- parts --------------------------------------------------------------------------------------


async def test_part_urls_are_bound_to_their_file_and_number(api: Api) -> None:
    size = 3 * PART_SIZE
    first = await api.ticket("big.bin", size_bytes=size)
    second = await api.ticket("big2.bin", size_bytes=size)
    parts = {p["number"]: p for p in first["parts"]}
    others = {p["number"]: p for p in second["parts"]}
    assert len(parts) == 3
    one, two = parts[1], parts[2]
    data = b"p" * PART_SIZE
    cases = {
        "part 1's URL used for part 2": _rebuild(one["url"], path=urlsplit(two["url"]).path),
        "part 1 of another file": _rebuild(one["url"], path=urlsplit(others[1]["url"]).path),
        "part 1's signature on part 2": _replace(
            two["url"], SIGNATURE, dict(_query(one["url"]))[SIGNATURE]
        ),
        "part URL used as the whole object": _rebuild(
            one["url"],
            path=urlsplit(first["upload_url"]).path
            if "upload_url" in first
            else urlsplit(one["url"]).path.rsplit("/parts/", 1)[0],
        ),
        "part number with a leading zero": _rebuild(
            one["url"], path=urlsplit(one["url"]).path.replace("/parts/1", "/parts/01")
        ),
    }
    for what, url in cases.items():
        reply = await api.raw("PUT", url, data=data, headers=one.get("headers") or {})
        assert reply.status in (403, 404), (what, reply.status, reply.body[:200])
        if reply.status == 403:
            _refused(reply, what)
    for ticket in (first, second):
        assert (await api.status(ticket["file_id"]))["parts"] == [], "a forged part was stored"
    # The genuine part URL still works.
    reply = await api.raw("PUT", one["url"], data=data, headers=one.get("headers") or {})
    assert reply.status == 200, reply


# -- another server -----------------------------------------------------------------------------


async def test_urls_of_one_data_directory_do_not_work_on_another(api: Api, tmp_path: Path) -> None:
    """Each data directory has its own secret: the same URL against another server is refused,
    and so is a URL for a file id that server does hold."""
    _, url = await api.stored("mine.csv", b"mine")
    async with LocalServer(tmp_path / "elsewhere") as other, aiohttp.ClientSession() as s:
        elsewhere = Api(s, other)
        _refused(await elsewhere.raw("GET", url.replace(api.server.origin, other.origin)), "moved")
        their_file, their_url = await elsewhere.stored("theirs.csv", b"theirs")
        forged = _rebuild(url, path=urlsplit(their_url).path).replace(
            api.server.origin, other.origin
        )
        reply = await elsewhere.raw("GET", forged)
        _refused(reply, "another server's file with this server's signature")
        assert b"theirs" not in reply.body
        assert their_file in forged
