"""The Python SDK for the Labric API.

``AsyncLabric`` is the implementation (asyncio + aiohttp); ``Labric`` is its blocking twin,
generated from it, which runs the async client on a private event-loop thread.

Every public name is imported on first use (a module ``__getattr__``), so ``import labric`` and
the ``labric`` command's ``--version`` and ``--help`` do not pay for aiohttp, the transfer engine
or the server; ``from labric import Labric`` imports what the client needs, once.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from labric._version import __version__

if TYPE_CHECKING:
    from labric import errors, models
    from labric._blocking.pager import SyncPager
    from labric._blocking.stream import SyncEventStream
    from labric._client import AsyncLabric
    from labric._core.config import ClientConfig, RetryPolicy, Timeout, TransferConfig
    from labric._core.eventstream import AsyncEventStream
    from labric._core.pagination import AsyncPager, Page
    from labric._core.transport import TransportStats
    from labric._core.types import NOT_GIVEN, NotGiven
    from labric._sync import Labric
    from labric.errors import (
        APIConnectionError,
        APIError,
        APIStatusError,
        APITimeoutError,
        ConfigurationError,
        LabricError,
        NotFoundError,
        UsageError,
    )
    from labric.resources._batching import WriteBatchError

__all__ = [
    "NOT_GIVEN",
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncEventStream",
    "AsyncLabric",
    "AsyncPager",
    "ClientConfig",
    "ConfigurationError",
    "Labric",
    "LabricError",
    "NotFoundError",
    "NotGiven",
    "Page",
    "RetryPolicy",
    "SyncEventStream",
    "SyncPager",
    "Timeout",
    "TransferConfig",
    "TransportStats",
    "UsageError",
    "WriteBatchError",
    "__version__",
    "errors",
    "models",
]

#: Where each lazily imported public name lives (a submodule when the name is the module's own).
_LAZY: dict[str, str] = {
    "errors": "labric.errors",
    "models": "labric.models",
    "SyncPager": "labric._blocking.pager",
    "SyncEventStream": "labric._blocking.stream",
    "AsyncEventStream": "labric._core.eventstream",
    "AsyncLabric": "labric._client",
    "ClientConfig": "labric._core.config",
    "RetryPolicy": "labric._core.config",
    "Timeout": "labric._core.config",
    "TransferConfig": "labric._core.config",
    "AsyncPager": "labric._core.pagination",
    "Page": "labric._core.pagination",
    "TransportStats": "labric._core.transport",
    "NOT_GIVEN": "labric._core.types",
    "NotGiven": "labric._core.types",
    "Labric": "labric._sync",
    "APIConnectionError": "labric.errors",
    "APIError": "labric.errors",
    "APIStatusError": "labric.errors",
    "APITimeoutError": "labric.errors",
    "ConfigurationError": "labric.errors",
    "LabricError": "labric.errors",
    "NotFoundError": "labric.errors",
    "UsageError": "labric.errors",
    "WriteBatchError": "labric.resources._batching",
}


def __getattr__(name: str) -> Any:
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module 'labric' has no attribute {name!r}")
    module = importlib.import_module(where)
    value = module if where == f"labric.{name}" else getattr(module, name)
    # Cached as a real attribute: later lookups do not come back here.
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
