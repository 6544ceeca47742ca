"""``AsyncLabric``: the SDK's one implementation. ``Labric`` is generated from it."""

from __future__ import annotations

import os
from types import TracebackType
from typing import Any

from labric._core.config import ClientConfig, RetryPolicy, Timeout, TransferConfig
from labric._core.transport import Transport, TransportStats
from labric._transfer.engine import TransferEngine
from labric.errors import ClientClosedError
from labric.resources.agent import AsyncAgent
from labric.resources.dashboards import AsyncDashboards
from labric.resources.datasets import AsyncDatasets
from labric.resources.experiments import AsyncExperiments
from labric.resources.files import AsyncFiles
from labric.resources.images import AsyncImages
from labric.resources.instruments import AsyncInstruments
from labric.resources.jobs import AsyncJobs
from labric.resources.ml_models import AsyncMlModels
from labric.resources.notifications import AsyncNotifications

__all__ = ["AsyncLabric"]


def _rebuild(cls: type[Any], config: ClientConfig) -> Any:
    """A new client of ``cls`` from a resolved configuration (what a pickle holds)."""
    return cls(
        config.api_key,
        base_url=config.base_url,
        timeout=config.timeout,
        retry=config.retry,
        transfer=config.transfer,
        max_connections=config.max_connections,
        # The URL passed its checks when the configuration was resolved.
        allow_insecure=True,
        max_response_bytes=config.max_response_bytes,
    )


class AsyncLabric:
    """An asynchronous client of the Labric API.

    Use it as an async context manager (or call :meth:`aclose`) so its connections are released::

        async with AsyncLabric() as client:
            async for f in client.files.list(limit=10):
                print(f.file_id)

    Args:
        api_key: An API key ``lbk_<prefix>_<secret>``; default: ``LABRIC_API_KEY``, read now.
        base_url: The API's base URL; default: ``LABRIC_API_BASE_URL``, else
            ``https://platform.labric.co/api``. Requests go to ``{base_url}/v1/...``.
        timeout: Seconds a socket may stay silent (a number), or a :class:`Timeout`.
        max_retries: Retries after a failed attempt (connection errors, timeouts, 408, 409, 429,
            5xx except 501/505); default 2, or ``retry.max_retries`` when ``retry`` is given.
        retry: A full :class:`RetryPolicy`; an explicit ``max_retries`` overrides its count.
        transfer: Settings of the transfer engine (part size, concurrency, memory budget).
        max_connections: Size of the connection pool.
        allow_insecure: Allow plain ``http://`` to a host that is not loopback.
        max_response_bytes: The largest API (JSON) response body read, counted as received and
            after decompression; default 64 MiB. A bigger answer raises
            :class:`~labric.errors.ResponseTooLargeError`. File downloads are not limited by it.
        env_file: A file of ``KEY=value`` lines (such as ``.env``) to read ``LABRIC_API_KEY`` and
            ``LABRIC_API_BASE_URL`` from where the environment does not set them; default:
            ``LABRIC_ENV_FILE``, else none (a ``.env`` is never read unless named).

    Raises:
        ConfigurationError: the key is missing or malformed, or the URL is refused.

    A closed client raises :class:`~labric.errors.ClientClosedError` when used. The client belongs
    to the event loop that first uses it; using it from another loop raises
    :class:`~labric.errors.UsageError`.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float | Timeout | None = None,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
        transfer: TransferConfig | None = None,
        max_connections: int = 64,
        allow_insecure: bool = False,
        max_response_bytes: int | None = None,
        env_file: str | os.PathLike[str] | None = None,
    ) -> None:
        self._config = ClientConfig.resolve(
            api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            retry=retry,
            transfer=transfer,
            max_connections=max_connections,
            allow_insecure=allow_insecure,
            max_response_bytes=max_response_bytes,
            env_file=env_file,
        )
        self._transport = Transport(self._config)
        self._engine = TransferEngine(self._transport, self._config.transfer)
        self.files = AsyncFiles(self._transport, self._engine)
        self.datasets = AsyncDatasets(self._transport)
        self.jobs = AsyncJobs(self._transport)
        self.instruments = AsyncInstruments(self._transport)
        self.experiments = AsyncExperiments(self._transport)
        self.dashboards = AsyncDashboards(self._transport)
        self.notifications = AsyncNotifications(self._transport)
        self.agent = AsyncAgent(self._transport)
        self.ml_models = AsyncMlModels(self._transport)
        self.images = AsyncImages(self._transport)

    def __repr__(self) -> str:
        state = "closed" if self._transport.closed else "open"
        return (
            f"<AsyncLabric base_url={self._config.base_url!r} "
            f"key={self._config.key_prefix!r} {state}>"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle the resolved configuration, never the connections.

        The copy (in a Dask worker, say) is a new, unopened client that opens its own session
        on first use. The pickle holds the API key, as the copy needs it; reprs never show it.
        """
        return _rebuild, (type(self), self._config)

    @property
    def base_url(self) -> str:
        """The API base URL requests go to."""
        return self._config.base_url

    @property
    def config(self) -> ClientConfig:
        """The resolved configuration (its ``repr`` hides the key)."""
        return self._config

    @property
    def stats(self) -> TransportStats:
        """Live counters of this client's requests and retries (see :class:`TransportStats`).

        The object is the client's own and keeps counting; call ``stats.snapshot()`` for a copy.
        """
        return self._transport.stats

    @property
    def is_closed(self) -> bool:
        """Whether :meth:`aclose` has been called."""
        return self._transport.closed

    async def aclose(self) -> None:
        """Close the client's connections. Calling it again does nothing."""
        await self._transport.aclose()
        self._engine.close()

    async def __aenter__(self) -> AsyncLabric:
        if self._transport.closed:
            raise ClientClosedError("This client has been closed; create a new one.")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
