"""The CLI never lets a server-provided string act on the terminal: escapes are shown, not run."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web

from labric.cli._common import printable
from tests.cli._support import Done, call

from ._server import KEY, HostileServer, file_info

#: Set the clipboard (OSC 52), clear the screen (CSI 2J), return the carriage, reverse the text,
#: an isolate, a one-byte CSI (C1) and a DEL.
HOSTILE = "a\x1b]52;c;cm0gLXJmIH4=\x07b\x1b[2Jc\rd\u202eevil.exe\u2066x\u2069\x9b31m\x7fz"
ESCAPED = (
    "a\\x1b]52;c;cm0gLXJmIH4=\\x07b\\x1b[2Jc\\x0dd\\u202eevil.exe\\u2066x\\u2069\\x9b31m\\x7fz"
)
#: As one-line outputs (table cells, error lines) show it: a whitespace run, \r too, is one space.
IN_LINE = ESCAPED.replace("\\x0d", " ")
UNSAFE = ("\x1b", "\x07", "\r", "\u202e", "\u2066", "\u2069", "\x9b", "\x7f")


@pytest.fixture
def cli_env(hostile: HostileServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABRIC_API_KEY", KEY)
    monkeypatch.setenv("LABRIC_API_BASE_URL", hostile.base_url)


async def _labric(capsys: pytest.CaptureFixture[str], *args: str) -> Done:
    # The command runs its own event loop; the hostile server runs in this one.
    return await asyncio.to_thread(call, capsys, *args)


def _clean(done: Done) -> None:
    for text in (done.out, done.err):
        assert not any(c in text for c in UNSAFE), repr(text)


def test_printable_escapes_controls_and_bidi_but_not_text() -> None:
    assert printable(HOSTILE) == ESCAPED
    assert printable("plate 7/µ-ß 数据.csv") == "plate 7/µ-ß 数据.csv"
    assert printable("line 1\n\tline 2\r\n", text=True) == "line 1\n\tline 2\\x0d\n"
    assert printable("line 1\nline 2") == "line 1\\x0aline 2"


@pytest.mark.usefixtures("cli_env")
async def test_ls_shows_hostile_names_escaped(
    hostile: HostileServer, capsys: pytest.CaptureFixture[str]
) -> None:
    @hostile.route("GET", "/api/v1/files")
    async def files(request: web.Request) -> web.StreamResponse:
        return web.json_response([file_info("f1", f"runs/{HOSTILE}", size=3)])

    done = await _labric(capsys, "files", "ls")
    assert done.code == 0, done.err
    _clean(done)
    assert IN_LINE in done.out
    # --json stays JSON: the names come back exactly, JSON-escaped.
    done = await _labric(capsys, "files", "ls", "--json")
    assert done.json()[0]["original_path"] == f"runs/{HOSTILE}"
    _clean(done)


@pytest.mark.usefixtures("cli_env")
async def test_info_shows_hostile_fields_escaped(
    hostile: HostileServer, capsys: pytest.CaptureFixture[str]
) -> None:
    @hostile.route("GET", "/api/v1/files/{file_id}")
    async def get(request: web.Request) -> web.StreamResponse:
        return web.json_response(file_info("f1", f"runs/{HOSTILE}", size=3))

    done = await _labric(capsys, "files", "info", "f1")
    assert done.code == 0, done.err
    _clean(done)
    assert ESCAPED in done.out


@pytest.mark.usefixtures("cli_env")
async def test_error_details_are_shown_escaped(
    hostile: HostileServer, capsys: pytest.CaptureFixture[str]
) -> None:
    @hostile.route("*", "/api/v1/files/{file_id}")
    async def get(request: web.Request) -> web.StreamResponse:
        return web.json_response({"detail": f"no file {HOSTILE}"}, status=404)

    for args in (("files", "info", "f1"), ("files", "rm", "f1", "f2")):
        done = await _labric(capsys, *args)
        assert done.code == 4, done.err
        _clean(done)
        assert IN_LINE in done.err


@pytest.mark.usefixtures("cli_env")
async def test_job_logs_are_escaped_unless_raw_is_asked_for(
    hostile: HostileServer, capsys: pytest.CaptureFixture[str]
) -> None:
    text = f"step 1\n\tok\nname: {HOSTILE}\n"

    @hostile.route("GET", "/api/v1/job-executions/{execution_id}/logs")
    async def logs(request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {"job_execution_id": request.match_info["execution_id"], "text": text}
        )

    done = await _labric(capsys, "jobs", "logs", "e1")
    assert done.code == 0, done.err
    _clean(done)
    assert done.out == f"step 1\n\tok\nname: {ESCAPED}\n"
    done = await _labric(capsys, "jobs", "logs", "e1", "--raw")
    assert done.out == text
    done = await _labric(capsys, "jobs", "logs", "e1", "--json")
    assert json.loads(done.out)["text"] == text
