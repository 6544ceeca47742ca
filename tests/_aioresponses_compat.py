"""Compatibility shim: aioresponses 0.7.9 on aiohttp 3.14 and later.

aiohttp 3.14 added a required keyword-only argument, ``stream_writer``, to
``ClientResponse.__init__``. aioresponses 0.7.9 (its latest release) builds its fake responses
without it, so every mocked request fails with::

    TypeError: ClientResponse.__init__() missing 1 required keyword-only argument: 'stream_writer'

The bug is aioresponses issue #289; the fix is merged upstream but not released. Rather than pin
aiohttp below 3.14, this module supplies the argument:

* :class:`CompatClientResponse` is a ``ClientResponse`` that fills in ``stream_writer`` with a
  stand-in for a request whose body has already been sent (the only state a mocked response is
  ever in; aiohttp then reads just its ``output_size``).
* :class:`aioresponses` is the upstream class with one change: while it is active, the response
  class aioresponses falls back to is :class:`CompatClientResponse`. That covers responses
  registered with ``add``/``get``/``post``/... and those returned by callbacks alike.

Use it exactly like upstream (``from _aioresponses_compat import aioresponses``). On an aiohttp that
does not need the argument the shim changes nothing.

Delete this module, and import ``aioresponses`` directly again, once an aioresponses release
fixes issue #289 (``tests/core/test_aioresponses_shim.py`` skips its canary test to say so).
"""

from __future__ import annotations

import inspect
from typing import Any
from unittest import mock

import aioresponses.core as _core
from aiohttp import ClientResponse

__all__ = ["NEEDS_SHIM", "CompatClientResponse", "aioresponses"]

#: Whether this aiohttp's ClientResponse requires ``stream_writer`` (3.14 and later).
NEEDS_SHIM = "stream_writer" in inspect.signature(ClientResponse.__init__).parameters


class _SentBodyWriter:
    """Stands in for the stream writer of a request that has been fully sent (and had no body)."""

    buffer_size = 0
    output_size = 0


class CompatClientResponse(ClientResponse):
    """A ``ClientResponse`` that aioresponses 0.7.9 can construct on aiohttp 3.14+."""

    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        if NEEDS_SHIM:
            kwargs.setdefault("stream_writer", _SentBodyWriter())
        super().__init__(method, url, **kwargs)


class aioresponses(_core.aioresponses):
    """Upstream ``aioresponses``, building its responses with :class:`CompatClientResponse`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._class_patch = mock.patch.object(_core, "ClientResponse", CompatClientResponse)

    def start(self) -> None:
        self._class_patch.start()
        super().start()

    def stop(self) -> None:
        super().stop()
        self._class_patch.stop()
