"""The Python SDK for the Labric API.

``AsyncLabric`` is the implementation (asyncio + aiohttp); ``Labric`` is its blocking twin,
generated from it, which runs the async client on a private event-loop thread.
"""

from labric import errors, models
from labric._blocking.pager import SyncPager
from labric._client import AsyncLabric
from labric._core.config import ClientConfig, RetryPolicy, Timeout, TransferConfig
from labric._core.pagination import AsyncPager, Page
from labric._core.transport import TransportStats
from labric._core.types import NOT_GIVEN, NotGiven
from labric._sync import Labric
from labric._version import __version__
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
