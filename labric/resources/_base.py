"""What every resource shares: the transport, and turning responses into models."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from labric._core.converter import structure
from labric._core.pagination import DEFAULT_PAGE_SIZE, AsyncPager, Page
from labric._core.transport import Response, Transport
from labric.errors import APIResponseValidationError

__all__ = ["AsyncResource"]

T = TypeVar("T")


class AsyncResource:
    """Base of the async resource classes (``AsyncFiles``, ...)."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"

    def _parse(self, response: Response, cls: type[T]) -> T:
        """Structure a response's JSON body into ``cls``.

        Raises:
            APIResponseValidationError: the body is not JSON or does not fit ``cls``; it carries
                the request's method, path and request id.
        """
        return self._structure(response, self._json(response), cls)

    @staticmethod
    def _json(response: Response) -> Any:
        """The decoded JSON body, or :class:`APIResponseValidationError` naming the request."""
        try:
            return response.json()
        except ValueError as exc:  # includes UnicodeDecodeError
            raise APIResponseValidationError(
                "Response body is not JSON",
                method=response.method,
                path=response.path,
                request_id=response.request_id,
            ) from exc

    @staticmethod
    def _structure(response: Response, data: Any, cls: type[T]) -> T:
        try:
            return structure(data, cls, what=f"{response.method} {response.path}")
        except APIResponseValidationError as exc:
            exc.method, exc.path, exc.request_id = (
                response.method,
                response.path,
                response.request_id,
            )
            raise

    def _pager(
        self,
        path: str,
        item: type[T],
        *,
        params: Mapping[str, Any] | None = None,
        limit: int | None = None,
        page_size: int | None = None,
        method: str = "GET",
        json: Any = None,
        extract: Callable[[Any], Any] | None = None,
    ) -> AsyncPager[T]:
        """A pager over a list route that answers a bare JSON array and a ``Link`` header.

        ``limit`` is the most items yielded in total; ``page_size`` the items per request
        (:data:`DEFAULT_PAGE_SIZE` when unset). Every request carries ``page_size`` (at most
        ``limit``), which asks our server for pages, and ``limit`` when set, which a server that
        does not page (the hosted platform) honours as the total (design.md 3.1). A POST listing
        sends both in its JSON body.
        """
        for n in (limit, page_size):
            if n is not None and n < 1:
                raise ValueError("limit and page_size must be at least 1")
        paging: dict[str, int] = {"page_size": min(page_size or DEFAULT_PAGE_SIZE, limit or 2**31)}
        if limit is not None:
            paging["limit"] = limit
        query = dict(params or {})
        body = dict(json) if isinstance(json, Mapping) else json
        if body is not None:
            body.update(paging)
        else:
            query.update(paging)

        async def fetch(next_url: str | None) -> Page[T]:
            if next_url is not None and not self._transport.is_api_origin(next_url):
                # Following it would send the API key to whoever the link names.
                raise APIResponseValidationError(
                    "The server's next-page link points to another origin; refusing to follow it",
                    method=method,
                    path=path,
                )
            if next_url is None:
                response = await self._transport.request(method, path, params=query, json=body)
            elif method == "GET":
                response = await self._transport.request("GET", next_url)
            else:
                response = await self._transport.request(method, next_url, json=body)
            data = self._json(response)
            if extract is not None:
                data = extract(data)
            items: list[T] = self._structure(response, data, list[item])  # type: ignore[valid-type]
            return Page(items, response.next_url)

        return AsyncPager(fetch, limit=limit, route=f"{method} {path}")
