"""The web console: the local server's state in a browser, on the API's port.

Pages live under ``/console`` (``/`` signs in with ``?token=`` or sends the browser on); they
are registered with :meth:`~labric.server.core.routing.Router.add_pages`, so they are neither
API routes nor in the OpenAPI document, and take a session cookie, never an API key (see
:mod:`.session`). They read through the server's own stores, as the API handlers do, for the
organisation the session acts as. Every page is HTML built by :mod:`.html` (all text escaped),
under a Content-Security-Policy that allows only the console's own scripts; the scripts and the
chart library (Chart.js, with its licence) are shipped in the package under ``static/``.

Modules: :mod:`.session` (token, sessions, CSRF), :mod:`.html` (escaping builder),
:mod:`.layout` (shell and navigation), :mod:`.signin`, :mod:`.static`, and one module of pages per
section (:mod:`.files`, :mod:`.datasets`, :mod:`.jobs`, :mod:`.instruments`,
:mod:`.experiments`, :mod:`.dashboards`, :mod:`.notifications`).
"""

from __future__ import annotations

from labric.server.console import (
    dashboards,
    datasets,
    experiments,
    files,
    instruments,
    jobs,
    notifications,
    signin,
    static,
)
from labric.server.console.session import CONSOLE, Console
from labric.server.core.routing import Router

__all__ = ["CONSOLE", "Console", "register"]


def register(router: Router) -> None:
    """Add the console's pages, with a new token (one per server run)."""
    router.app[CONSOLE] = Console()
    for module in (
        signin,
        static,
        files,
        datasets,
        jobs,
        instruments,
        experiments,
        dashboards,
        notifications,
    ):
        router.add_pages(module.PAGES)
