"""Signing in to the console: the server run's token, browser sessions, and request checks.

Each server run makes a new random token (``labric serve`` prints it in ``LABRIC_CONSOLE_URL``).
Opening ``/?token=...`` (or typing the token into the sign-in page) exchanges it for a session:
a random id kept in this process's memory only, sent back as an ``HttpOnly``,
``SameSite=Strict`` cookie, and a redirect to a URL without the token. Nothing survives a
restart: the next run has another token and no sessions, so every browser signs in again.

A session acts as the server's own organisation (the operator's, which ``LABRIC_API_KEY`` of
``labric serve`` belongs to) and never holds or shows an API key; the API keeps requiring keys.

The cookie's name carries a digest of the token, so two servers on one host (cookies ignore the
port) never read each other's cookie. The one write action (running a job) and the sign-in form
also need the session's CSRF token in the form and, when the browser sends one, an ``Origin``
naming this server.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

import attrs
from aiohttp import web

__all__ = [
    "CONSOLE",
    "SESSION",
    "Console",
    "Session",
    "csrf_ok",
    "require_session",
    "same_origin",
    "security_headers",
]

#: Seconds a session lasts without use (it also ends with the server).
IDLE_LIFETIME = 12 * 60 * 60.0
#: The most sessions kept at once (the oldest go first).
MAX_SESSIONS = 1000

_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


@attrs.define(kw_only=True)
class Session:
    """A signed-in browser: the organisation it sees and its CSRF token."""

    id: str
    org_id: str
    csrf: str
    last_used: float


@attrs.define
class Console:
    """One server run's console: its token and its sessions."""

    token: str = attrs.field(factory=lambda: secrets.token_urlsafe(32), repr=False)
    sessions: dict[str, Session] = attrs.field(factory=dict, repr=False)
    clock: Callable[[], float] = time.monotonic

    @property
    def cookie_name(self) -> str:
        """The session cookie's name (distinct per server run)."""
        return "labric_console_" + hashlib.sha256(self.token.encode()).hexdigest()[:12]

    def token_matches(self, given: str) -> bool:
        """Whether ``given`` is this run's token (compared in constant time)."""
        return hmac.compare_digest(given.encode(), self.token.encode())

    def open(self, org_id: str) -> Session:
        """A new session for ``org_id``."""
        now = self.clock()
        self._prune(now)
        session = Session(
            id=secrets.token_urlsafe(32),
            org_id=org_id,
            csrf=secrets.token_urlsafe(32),
            last_used=now,
        )
        self.sessions[session.id] = session
        return session

    def find(self, request: web.Request) -> Session | None:
        """The session the request's cookie names, if it is current."""
        session_id = request.cookies.get(self.cookie_name)
        if not session_id:
            return None
        session = self.sessions.get(session_id)
        now = self.clock()
        if session is None or now - session.last_used > IDLE_LIFETIME:
            self.sessions.pop(session_id, None)
            return None
        session.last_used = now
        return session

    def close(self, request: web.Request) -> None:
        """End the request's session, if any."""
        session_id = request.cookies.get(self.cookie_name)
        if session_id:
            self.sessions.pop(session_id, None)

    def set_cookie(self, response: web.StreamResponse, session: Session) -> None:
        """Send the session cookie."""
        response.set_cookie(
            self.cookie_name, session.id, path="/", httponly=True, samesite="Strict"
        )

    def _prune(self, now: float) -> None:
        for key, session in list(self.sessions.items()):
            if now - session.last_used > IDLE_LIFETIME:
                del self.sessions[key]
        while len(self.sessions) >= MAX_SESSIONS:
            del self.sessions[min(self.sessions, key=lambda k: self.sessions[k].last_used)]


CONSOLE = web.AppKey("labric_console", Console)
SESSION = web.RequestKey("labric_console_session", Session)

Page = Callable[[web.Request], Awaitable[web.StreamResponse]]


def security_headers(response: web.StreamResponse) -> web.StreamResponse:
    """Add the console's headers: no inline script, no framing, no caching, and no referrer
    sent to other sites (a same-origin one keeps the browser's Origin header on form posts)."""
    response.headers["Content-Security-Policy"] = _CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def require_session(handler: Page) -> Page:
    """Serve ``handler`` to signed-in browsers; send others to the sign-in page."""

    async def page(request: web.Request) -> web.StreamResponse:
        session = request.app[CONSOLE].find(request)
        if session is None:
            wanted = request.path_qs if request.method == "GET" else "/console/"
            location = "/console/sign-in?" + urlencode({"next": wanted})
            return security_headers(web.Response(status=303, headers={"Location": location}))
        request[SESSION] = session
        return security_headers(await handler(request))

    page.__name__ = handler.__name__
    page.__doc__ = handler.__doc__
    return page


def same_origin(request: web.Request) -> bool:
    """Whether a form post comes from this server's own pages.

    The ``Origin`` header (sent by browsers with every POST) must name this server; a request
    without one (not a browser) passes on its CSRF token alone.
    """
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return origin == f"{request.scheme}://{request.host}"


def csrf_ok(request: web.Request, session: Session, given: object) -> bool:
    """Whether a form post carries the session's CSRF token and comes from this server."""
    return (
        isinstance(given, str)
        and hmac.compare_digest(given.encode(), session.csrf.encode())
        and same_origin(request)
    )
