"""Signing in and out, and the console's front door.

``GET /?token=...`` (the ``LABRIC_CONSOLE_URL`` that ``labric serve`` prints) opens a session
and redirects to ``/console/`` without the token; ``/`` without one goes to the console (which
asks a browser without a session to sign in). The sign-in page asks for the token.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

from labric.server.console.html import el
from labric.server.console.layout import NAV, PREFIX, page
from labric.server.console.session import (
    CONSOLE,
    SESSION,
    csrf_ok,
    require_session,
    same_origin,
    security_headers,
)
from labric.server.core.routing import Pages
from labric.server.core.state import STATE

__all__ = ["PAGES"]

PAGES = Pages()


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _safe_next(value: str | None) -> str:
    """Where to go after signing in: a console path only (never another site)."""
    if not value:
        return PREFIX + "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not parts.path.startswith(PREFIX + "/"):
        return PREFIX + "/"
    if "\\" in value or any(ord(c) < 0x20 for c in value):
        return PREFIX + "/"
    return value


def _signed_in(request: web.Request, location: str) -> web.StreamResponse:
    state = request.app[STATE]
    console = request.app[CONSOLE]
    org_id = state.operator_org_id
    assert org_id is not None, "the server's organisation is set when it starts"
    response = _redirect(location)
    console.set_cookie(response, console.open(org_id))
    return security_headers(response)


@PAGES.page("GET", "/")
async def front_door(request: web.Request) -> web.StreamResponse:
    """``/?token=...`` signs in; ``/`` alone goes to the console."""
    token = request.query.get("token")
    if token is None:
        return security_headers(_redirect(PREFIX + "/"))
    if not request.app[CONSOLE].token_matches(token):
        return security_headers(
            _sign_in_form(request, "That link's token is not this server run's.", status=401)
        )
    return _signed_in(request, PREFIX + "/")


def _sign_in_form(
    request: web.Request,
    problem: str | None = None,
    *,
    status: int = 200,
    next_value: str | None = None,
) -> web.Response:
    return page(
        request,
        "Sign in",
        el(
            "p",
            "Open the LABRIC_CONSOLE_URL that labric serve printed, or paste its token "
            "(the part after token=) here. The token changes every time the server starts.",
        ),
        el("p", problem, class_="error") if problem else None,
        el(
            "form",
            el("label", "Token ", el("input", type="password", name="token", required=True)),
            el(
                "input",
                type="hidden",
                name="next",
                value=_safe_next(next_value or request.query.get("next")),
            ),
            el("button", "Sign in", type="submit"),
            method="post",
            action=PREFIX + "/sign-in",
            class_="sign-in",
        ),
        status=status,
    )


@PAGES.page("GET", PREFIX + "/sign-in")
async def sign_in_page(request: web.Request) -> web.StreamResponse:
    """The sign-in form."""
    return security_headers(_sign_in_form(request))


@PAGES.page("POST", PREFIX + "/sign-in")
async def sign_in(request: web.Request) -> web.StreamResponse:
    """Exchange the typed token for a session."""
    form = await request.post()
    token = form.get("token")
    given_next = form.get("next")
    next_value = _safe_next(given_next if isinstance(given_next, str) else None)
    if not same_origin(request) or not isinstance(token, str):
        return security_headers(
            _sign_in_form(request, "Sign in from this page.", status=403, next_value=next_value)
        )
    if not request.app[CONSOLE].token_matches(token.strip()):
        return security_headers(
            _sign_in_form(
                request, "That is not this server run's token.", status=401, next_value=next_value
            )
        )
    return _signed_in(request, next_value)


@PAGES.page("POST", PREFIX + "/sign-out")
@require_session
async def sign_out(request: web.Request) -> web.StreamResponse:
    """End the session."""
    form = await request.post()
    session = request[SESSION]
    if csrf_ok(request, session, form.get("csrf")):
        request.app[CONSOLE].close(request)
    return _redirect(PREFIX + "/sign-in")


@PAGES.page("GET", PREFIX + "/")
@require_session
async def home(request: web.Request) -> web.StreamResponse:
    """The console's first page: the sections."""
    return page(
        request,
        "Console",
        el("p", "What your scripts did on this local server, section by section."),
        el("ul", [el("li", el("a", entry.label, href=entry.path)) for entry in NAV], class_="home"),
        el(
            "form",
            el("input", type="hidden", name="csrf", value=request[SESSION].csrf),
            el("button", "Sign out", type="submit"),
            method="post",
            action=PREFIX + "/sign-out",
        ),
    )
