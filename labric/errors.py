"""The errors `labric` raises.

Every error the SDK raises is a :class:`LabricError`. Third-party exceptions (aiohttp,
asyncio timeouts, OS errors during a transfer) are mapped once, at the transport and transfer
boundaries, to the most specific class below, and chained (``raise ... from exc``) so the original
cause is still inspectable.

::

    LabricError
    ├── ConfigurationError            bad or missing configuration (names the variable to set)
    ├── UsageError                    programmer misuse, never an I/O failure
    │   ├── ClientClosedError         the client was closed (or not opened where that matters)
    │   └── PortalUsageError          the sync facade called from its own event-loop thread
    ├── APIError                      talking to the API or storage failed
    │   ├── APIConnectionError        no usable HTTP response (refused, reset, DNS, TLS, truncated)
    │   │   ├── APITimeoutError       a connect, read or pool timeout
    │   │   └── StreamInterruptedError    an event stream ended before its final event
    │   ├── APIStatusError            the server answered with a non-2xx status
    │   │   ├── BadRequestError               400
    │   │   ├── AuthenticationError           401
    │   │   ├── PermissionDeniedError         403
    │   │   ├── NotFoundError                 404
    │   │   ├── ConflictError                 409
    │   │   ├── PayloadTooLargeError          413
    │   │   ├── UnprocessableEntityError      422
    │   │   ├── RateLimitError                429
    │   │   └── InternalServerError           >= 500
    │   └── APIResponseValidationError    an answer the client cannot use (wrong shape, not JSON,
    │       │                             a malformed or looping Link, a refused URL)
    │       ├── ResponseTooLargeError     an API body over ``ClientConfig.max_response_bytes``
    │       └── EventStreamError          a streamed answer that is not a usable event stream
    ├── WaitTimeoutError              jobs.wait() / ml_models.wait() gave up before the end
    └── TransferError                 a file transfer could not be completed safely
        ├── IntegrityError            bytes do not match their checksum or the object changed
        └── UnsafeNameError           a server-supplied file name that could escape or deceive

Every API error carries what a person needs to act on it: the HTTP method and the URL path (never a
query string, so never a signed URL's signature), the status, the server's ``detail``, and the
``X-Request-ID`` the server gave the response. No error message ever contains an API key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ClientClosedError",
    "ConfigurationError",
    "ConflictError",
    "EventStreamError",
    "IntegrityError",
    "InternalServerError",
    "LabricError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "PortalUsageError",
    "RateLimitError",
    "ResponseTooLargeError",
    "StreamInterruptedError",
    "TransferError",
    "UnprocessableEntityError",
    "UnsafeNameError",
    "UsageError",
    "WaitTimeoutError",
    "status_error_class",
]


class LabricError(Exception):
    """Base class of every error raised by `labric`.

    Every one pickles with its attributes (a Dask worker's errors travel back this way), though
    most take keyword-only arguments, which ``Exception``'s own pickling cannot pass.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        return _unpickle, (type(self), self.args), self.__dict__


def _unpickle(cls: type[LabricError], args: tuple[Any, ...]) -> LabricError:
    """An error of ``cls`` built without ``__init__``; pickle then restores its attributes."""
    error = cls.__new__(cls, *args)
    error.args = args  # OSError subclasses (TimeoutError) set their args in __init__
    return error


class ConfigurationError(LabricError):
    """The client's configuration is missing or invalid.

    The message names the argument or environment variable to set.
    """


class UsageError(LabricError):
    """The SDK was used in a way it does not support (a programming error, not an I/O failure)."""


class ClientClosedError(UsageError):
    """The client has been closed; create a new one."""


class PortalUsageError(UsageError):
    """The sync facade was called from the event-loop thread that runs it (it would deadlock)."""


class APIError(LabricError):
    """A request to the Labric API or its storage failed.

    Attributes:
        method: The HTTP method of the failed request.
        path: The URL path of the failed request, without its query string.
        request_id: The server's ``X-Request-ID`` for the response, when one arrived.
    """

    def __init__(
        self,
        message: str,
        *,
        method: str | None = None,
        path: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.method = method
        self.path = path
        self.request_id = request_id

    def __str__(self) -> str:
        where = f"{self.method} {self.path}" if self.method and self.path else None
        parts = [self.message]
        if where:
            parts.append(f"({where})")
        if self.request_id:
            parts.append(f"[request id {self.request_id}]")
        return " ".join(parts)


class APIConnectionError(APIError):
    """No usable HTTP response: connection refused or reset, DNS or TLS failure, truncated body."""


class APITimeoutError(APIConnectionError):
    """A connect, socket-read or connection-pool timeout expired."""


class StreamInterruptedError(APIConnectionError):
    """An event stream (``client.agent.stream``) ended before its final event.

    The connection closed, was reset or went silent past the read timeout after some events had
    perhaps arrived. Streams are never retried (the run may have done work, as on the hosted
    platform): start a new one if that is safe. The cause is chained when there is one.
    """


class APIStatusError(APIError):
    """The server answered with a non-success status.

    Attributes:
        status_code: The HTTP status.
        detail: The server's ``detail`` (a string, or the list of problems of a 422), else the
            body text, else ``None``.
        body: The decoded JSON body, or the text when the body is not JSON.
        headers: The response headers (case-insensitive when built by the transport).
    """

    status_code: int

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        detail: Any = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        method: str | None = None,
        path: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, method=method, path=path, request_id=request_id)
        self.status_code = status_code
        self.detail = detail
        self.body = body
        # Kept as given (the transport passes a case-insensitive copy), so
        # ``err.headers["retry-after"]`` works whatever case the server used.
        self.headers: Mapping[str, str] = headers if headers is not None else {}

    def __str__(self) -> str:
        return f"{self.status_code} {super().__str__()}"

    def __reduce__(self) -> tuple[Any, ...]:
        rebuild, args, state = super().__reduce__()
        # The transport's read-only view of the headers does not pickle; its copy does (and
        # stays case-insensitive).
        state = (
            {**state, "headers": self.headers.copy()} if hasattr(self.headers, "copy") else state
        )
        return rebuild, args, state


class BadRequestError(APIStatusError):
    """400: the request was rejected (its body may be ``{"errors": [...]}``)."""


class AuthenticationError(APIStatusError):
    """401: the API key is missing, malformed, unknown or expired."""


class PermissionDeniedError(APIStatusError):
    """403: the key lacks the scope, or a signed URL is expired or was tampered with."""


class NotFoundError(APIStatusError):
    """404: no such object in the key's organisation."""


class ConflictError(APIStatusError):
    """409: the request conflicts with current state (a duplicate name, say)."""


class PayloadTooLargeError(APIStatusError):
    """413: the request body is over the route's limit (``detail`` names the limit)."""


class UnprocessableEntityError(APIStatusError):
    """422: the request failed validation; ``detail`` is the list of problems."""


class RateLimitError(APIStatusError):
    """429: too many requests, or lock contention; retried automatically before it is raised."""


class InternalServerError(APIStatusError):
    """5xx: the server failed; retried automatically (except 501 and 505) before it is raised."""


class APIResponseValidationError(APIError):
    """An answer the client cannot use.

    A success body that does not fit the expected model (not JSON, not UTF-8, a wrong JSON type, a
    missing field), a malformed or looping ``Link`` header, endless empty pages, or a URL the client
    refuses to follow (another origin for a next page, a storage URL that is not http(s)).
    """


class ResponseTooLargeError(APIResponseValidationError):
    """An API response body is over the client's limit (``max_response_bytes``).

    The limit counts the bytes as received and after decompression; reading stops as soon as it is
    passed, so a huge or decompression-bomb answer never reaches memory. File downloads are not
    limited by it (they stream to disk).

    Attributes:
        limit: The limit, in bytes.
    """

    def __init__(
        self,
        message: str,
        *,
        limit: int,
        method: str | None = None,
        path: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, method=method, path=path, request_id=request_id)
        self.limit = limit


class EventStreamError(APIResponseValidationError):
    """A streamed answer that is not a usable ``text/event-stream``: another content type or
    encoding, a line longer than 1 MiB, an event over the size limit, or an event that does not
    fit its model."""


class WaitTimeoutError(LabricError, TimeoutError):
    """Waiting for a job execution to end (or a model's training) took longer than the caller
    allowed.

    The execution (or training) itself goes on; wait again, or look at it with
    ``jobs.executions.get`` (``ml_models.get``).

    Attributes:
        execution_id: The execution waited for (``None`` when waiting for a model).
        status: Its status when the wait gave up.
        ml_model_id: The model whose training was waited for (``None`` for an execution).
    """

    def __init__(
        self,
        message: str,
        *,
        execution_id: str | None = None,
        status: str | None,
        ml_model_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.execution_id = execution_id
        self.status = status
        self.ml_model_id = ml_model_id


class TransferError(LabricError):
    """A file transfer could not be completed safely; no partial file was left under its name."""


class IntegrityError(TransferError):
    """The transferred bytes do not match their checksum, or the object changed mid-transfer."""


class UnsafeNameError(TransferError):
    """A server-supplied file name was refused: it could leave the destination or disguise itself.

    Attributes:
        file_id: The file whose name was refused, when known.
        name: The name as the server gave it (the message shows it escaped).
    """

    def __init__(self, message: str, *, file_id: str | None, name: str) -> None:
        super().__init__(message)
        self.file_id = file_id
        self.name = name


_STATUS_CLASSES: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def status_error_class(status: int) -> type[APIStatusError]:
    """Return the most specific :class:`APIStatusError` subclass for an HTTP status."""
    if status >= 500:
        return InternalServerError
    return _STATUS_CLASSES.get(status, APIStatusError)
