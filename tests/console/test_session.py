"""The console over plain HTTP: signing in, the cookie, the headers, CSRF, and escaping."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import aiohttp
import pytest

from labric import AsyncLabric
from labric.server import LocalServer
from labric.server.console.html import Markup, el, json_data

JOB = "print('hello from the console', flush=True)\n"


@pytest.fixture
async def browser_session(server: LocalServer) -> aiohttp.ClientSession:
    """An HTTP session that opened the console link (it holds the session cookie)."""
    jar = aiohttp.CookieJar(unsafe=True)  # 127.0.0.1 is an IP address
    session = aiohttp.ClientSession(cookie_jar=jar)
    async with session.get(server.console_url, allow_redirects=False) as resp:
        assert resp.status == 303
    return session


def test_the_builder_escapes_text_and_attributes() -> None:
    hostile = '<img src=x onerror=alert(1)>"&'
    assert el("td", hostile) == "<td>&lt;img src=x onerror=alert(1)&gt;&quot;&amp;</td>"
    assert el("a", "x", href=hostile) == (
        '<a href="&lt;img src=x onerror=alert(1)&gt;&quot;&amp;">x</a>'
    )
    assert el("p", el("b", "ok")) == "<p><b>ok</b></p>"  # markup is kept, text is not
    assert el("p", [hostile, None, Markup("<br>")]).count("<") == 3
    script = json_data({"title": "</script><script>alert(1)</script>"})
    assert script.count("</script>") == 1
    assert "\\u003c/script\\u003e" in script


async def test_the_link_signs_in_and_drops_the_token(server: LocalServer) -> None:
    token = server.console_url.partition("token=")[2]
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.console_url, allow_redirects=False) as resp,
    ):
        assert resp.status == 303
        assert resp.headers["Location"] == "/console/"
        cookie = resp.headers["Set-Cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        assert token not in cookie  # the session id is not the token
        assert resp.headers["Referrer-Policy"] == "same-origin"


async def test_pages_need_a_session_and_a_wrong_token_none(server: LocalServer) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.origin}/console/files?q=x", allow_redirects=False) as resp:
            assert resp.status == 303
            location = resp.headers["Location"]
            assert urlsplit(location).path == "/console/sign-in"
        async with session.get(f"{server.origin}/?token=wrong", allow_redirects=False) as resp:
            assert resp.status == 401
            assert "Set-Cookie" not in resp.headers
        async with session.post(
            f"{server.origin}/console/sign-in", data={"token": "wrong"}, allow_redirects=False
        ) as resp:
            assert resp.status == 401
        token = server.console_url.partition("token=")[2]
        async with session.post(
            f"{server.origin}/console/sign-in",
            data={"token": token, "next": "https://evil.example/"},
            allow_redirects=False,
        ) as resp:
            assert resp.status == 303
            assert resp.headers["Location"] == "/console/"  # never off the console


async def test_every_page_has_the_csp_and_no_key(
    server: LocalServer, browser_session: aiohttp.ClientSession
) -> None:
    async with browser_session:
        for path in (
            "/console/",
            "/console/files",
            "/console/datasets",
            "/console/sql?sql=select+1",
            "/console/jobs",
            "/console/instruments",
            "/console/experiments",
            "/console/dashboards",
            "/console/notifications",
        ):
            async with browser_session.get(server.origin + path) as resp:
                body = await resp.text()
                assert resp.status == 200, path
                csp = resp.headers["Content-Security-Policy"]
                assert "script-src 'self'" in csp
                assert "unsafe-inline" not in csp
                assert server.admin_key not in body
                assert "lbk_" not in body
                # no inline script: every <script> is a src or JSON data
                for tag in re.findall(r"<script[^>]*>", body):
                    assert "src=" in tag or 'type="application/json"' in tag, (path, tag)


async def test_the_api_still_needs_a_key_with_a_console_cookie(
    server: LocalServer, browser_session: aiohttp.ClientSession
) -> None:
    async with browser_session, browser_session.get(f"{server.base_url}/v1/files") as resp:
        assert resp.status == 401


async def test_running_a_job_needs_the_csrf_token_and_this_origin(
    server: LocalServer, client: AsyncLabric, browser_session: aiohttp.ClientSession
) -> None:
    job = await client.jobs.create(name="hello", code=JOB)
    run_url = f"{server.origin}/console/jobs/{job.id}/run"
    async with browser_session:
        async with browser_session.get(f"{server.origin}/console/jobs/{job.id}") as resp:
            page = await resp.text()
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf is not None
        async with browser_session.post(run_url, data={}, allow_redirects=False) as resp:
            assert resp.status == 403
        async with browser_session.post(
            run_url,
            data={"csrf": csrf[1]},
            headers={"Origin": "https://evil.example"},
            allow_redirects=False,
        ) as resp:
            assert resp.status == 403
        assert len(await client.jobs.executions.list(job_id=job.id)) == 0
        async with browser_session.post(
            run_url,
            data={"csrf": csrf[1]},
            headers={"Origin": server.origin},
            allow_redirects=False,
        ) as resp:
            assert resp.status == 303
            run_page = resp.headers["Location"]
        execution_id = run_page.rsplit("/", 1)[1]
        done = await client.jobs.wait(execution_id)
        assert done.status == "completed"
        async with browser_session.get(f"{server.origin}{run_page}/log") as resp:
            log = await resp.json()
        assert log["finished"] is True
        assert "hello from the console" in log["text"]


async def test_a_new_server_run_has_a_new_token(tmp_path: object) -> None:
    from pathlib import Path

    data = Path(str(tmp_path)) / "d"
    async with LocalServer(data) as first:
        first_url = first.console_url
    async with LocalServer(data) as second:
        assert second.console_url != first_url
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"{second.origin}/?token={first_url.partition('token=')[2]}",
                allow_redirects=False,
            ) as resp,
        ):
            assert resp.status == 401


def test_attributes_keep_zero_and_drop_none_and_false() -> None:
    assert el("div", data_x=0, hidden=False, title=None, open=True) == '<div data-x="0" open></div>'


async def test_the_assets_are_served_from_the_package_and_nothing_else(
    server: LocalServer,
) -> None:
    from labric.server.console.static import ASSETS

    async with aiohttp.ClientSession() as session:  # assets need no session
        for name, media_type in ASSETS.items():
            async with session.get(f"{server.origin}/console/static/{name}") as resp:
                assert resp.status == 200, name
                assert resp.content_type == media_type
                assert resp.headers["X-Content-Type-Options"] == "nosniff"
                assert len(await resp.read()) > 100
        for name in ("../session.py", "%2e%2e/session.py", "console.py", "vendor/"):
            async with session.get(f"{server.origin}/console/static/{name}") as resp:
                assert resp.status == 404, name


async def test_download_and_image_serve_the_bytes(
    server: LocalServer,
    client: AsyncLabric,
    browser_session: aiohttp.ClientSession,
    tmp_path: object,
) -> None:
    from pathlib import Path

    folder = Path(str(tmp_path))
    (folder / 'weird "name".csv').write_bytes(b"a,b\n1,2\n")
    (folder / "pic.svg").write_bytes(b"<svg xmlns='http://www.w3.org/2000/svg'/>")
    csv_id = (await client.files.upload(folder / 'weird "name".csv')).file_id
    svg_id = (await client.files.upload(folder / "pic.svg")).file_id
    async with browser_session:
        base = f"{server.origin}/console/files"
        async with browser_session.get(f"{base}/{csv_id}/download") as resp:
            assert resp.status == 200
            assert await resp.read() == b"a,b\n1,2\n"
            assert resp.headers["Content-Type"] == "application/octet-stream"
            assert resp.headers["Content-Disposition"].startswith("attachment;")
            assert '"name"' not in resp.headers["Content-Disposition"]  # quotes never break out
        async with browser_session.get(f"{base}/{svg_id}/image") as resp:
            assert resp.status == 404  # SVG can carry script: never shown inline
        async with browser_session.get(f"{base}/{svg_id}") as resp:
            assert resp.status == 200
            assert "&lt;svg" in await resp.text()  # previewed as text
        async with browser_session.get(f"{base}/missing") as resp:
            assert resp.status == 404


def test_json_data_turns_non_finite_numbers_into_null() -> None:
    assert json_data([1.5, float("inf"), {"x": float("nan")}]) == (
        '<script type="application/json">[1.5,null,{"x":null}]</script>'
    )


async def test_injected_faults_leave_the_console_alone(tmp_path: object) -> None:
    from pathlib import Path

    async with (
        LocalServer(Path(str(tmp_path)) / "d", faults="error=1,seed=1") as server,
        aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session,
    ):
        async with session.get(server.console_url) as resp:
            assert resp.status == 200  # the link, the redirect and the page
        async with session.get(f"{server.origin}/console/files") as resp:
            assert resp.status == 200
        headers = {"Authorization": f"Bearer {server.admin_key}"}
        async with session.get(f"{server.base_url}/v1/files", headers=headers) as resp:
            assert resp.status in (500, 503)  # the API still gets them
            assert "X-Labric-Fault" in resp.headers
