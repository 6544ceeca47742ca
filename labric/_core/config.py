"""Client configuration: frozen, validated attrs classes.

Precedence for every setting is: constructor argument, then environment variable, then a
``KEY=value`` line of an env file (only when one is named, with ``env_file=`` or
``LABRIC_ENV_FILE``; real environment variables always win), then default.
The API key is read when a client is constructed (never at import time) and is never shown in a
``repr``: :func:`redact_key` keeps at most ``lbk_<prefix>_…``.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs

from labric.errors import ConfigurationError

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "ENV_API_KEY",
    "ENV_BASE_URL",
    "ENV_FILE",
    "ClientConfig",
    "RetryPolicy",
    "Timeout",
    "TransferConfig",
    "read_env_file",
    "redact_key",
]

DEFAULT_BASE_URL = "https://platform.labric.co/api"
ENV_API_KEY = "LABRIC_API_KEY"
ENV_BASE_URL = "LABRIC_API_BASE_URL"
ENV_FILE = "LABRIC_ENV_FILE"

# The prefix is alphanumeric; the secret may also hold ``-`` and ``_`` (URL-safe base64).
_KEY_RE = re.compile(r"^lbk_([A-Za-z0-9]+)_([A-Za-z0-9_-]+)$")
MiB = 1024 * 1024
#: The default cap on an API response body (after decompression): room for the largest legitimate
#: answers (a ``tools/read`` of many rows, a full listing page) with a wide margin.
DEFAULT_MAX_RESPONSE_BYTES = 64 * MiB


def redact_key(key: str) -> str:
    """Return a display form of an API key that never reveals its secret."""
    match = _KEY_RE.match(key) if isinstance(key, str) else None
    if match:
        return f"lbk_{match.group(1)}_…"
    return "lbk_…"


_ENV_LINE_RE = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


def read_env_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read ``KEY=value`` lines from an env file (such as ``.env``).

    A small, strict reader: blank lines and ``#`` comments are skipped, ``export`` before a name
    is allowed, and a value may be wrapped whole in single or double quotes (taken literally: no
    escapes, no ``$VAR`` expansion). Any other line is an error naming its line number, never its
    text, which may hold a key.

    Args:
        path: The file.

    Returns:
        The names and values, in file order (a later line wins).

    Raises:
        ConfigurationError: the file cannot be read or a line is not ``KEY=value``.
    """
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigurationError(
            f"Cannot read the env file {os.fspath(path)!r}: {reason}"
        ) from None
    values: dict[str, str] = {}
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _ENV_LINE_RE.match(line)
        if match is None:
            raise ConfigurationError(
                f"The env file {os.fspath(path)!r} line {number} is not KEY=value"
            )
        name, value = match.group(1), match.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif value[:1] in ("'", '"'):
            raise ConfigurationError(
                f"The env file {os.fspath(path)!r} line {number} has an unclosed quote"
            )
        values[name] = value
    return values


def _with_env_file(
    environ: Mapping[str, str], env_file: str | os.PathLike[str] | None
) -> tuple[Mapping[str, str], str | None]:
    """The environment, completed (never overridden) by the named env file's values."""
    if env_file is not None and not isinstance(env_file, str | os.PathLike):
        raise ConfigurationError(
            f"env_file must be a path (str or os.PathLike), got {type(env_file).__name__}"
        )
    named = os.fspath(env_file) if env_file is not None else environ.get(ENV_FILE) or None
    if named is None:
        return environ, None
    return {**read_env_file(named), **environ}, named


def _missing_key_message(env_file: str | None) -> str:
    if env_file is not None:
        return (
            f"No API key: set {ENV_API_KEY} in the environment or in the env file {env_file!r}, "
            "or pass api_key=..."
        )
    message = (
        f"No API key: set the {ENV_API_KEY} environment variable (or name a .env file holding "
        f"it with env_file=... or {ENV_FILE}), or pass api_key=..."
    )
    # The commonest first-hour slip: the key is in ./.env, which is read only when asked.
    try:
        if ENV_API_KEY in read_env_file(".env"):
            message += f"; ./.env holds {ENV_API_KEY} but is not read unless named"
    except ConfigurationError:
        pass
    return message


class InsecureURLError(ConfigurationError):
    """Plain ``http://`` to a host that is not loopback, without the caller allowing it.

    Attributes:
        host: The host the URL names.
        source: Where the URL came from (``base_url`` or the environment variable).
    """

    def __init__(self, message: str, *, host: str, source: str) -> None:
        super().__init__(message)
        self.host = host
        self.source = source


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _positive(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not (_is_number(value) and value > 0):
        raise ConfigurationError(f"{attribute.name} must be a positive number, got {value!r}")


def _positive_int(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        raise ConfigurationError(
            f"{attribute.name} must be a whole number above zero, got {value!r}"
        )


def _optional_dir(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not isinstance(value, str | os.PathLike):
        raise ConfigurationError(
            f"{attribute.name} must be a directory path (str or os.PathLike) or None, "
            f"got {type(value).__name__}"
        )


def _non_negative(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not (_is_number(value) and value >= 0):
        raise ConfigurationError(f"{attribute.name} must be zero or more, got {value!r}")


def _non_negative_int(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        raise ConfigurationError(
            f"{attribute.name} must be a whole number, zero or more, got {value!r}"
        )


@attrs.frozen(kw_only=True)
class Timeout:
    """Per-request timeouts, in seconds; ``None`` disables one.

    There is deliberately no whole-request limit by default: a multi-GB body may take minutes, but
    a socket silent for ``read`` seconds is a stalled transfer and is failed (and retried).

    Attributes:
        connect: Time to get a connection, including waiting for a free slot in the pool.
        read: The longest gap between two reads of the response (and between writes of a body).
        total: A limit on the whole request, off by default.
    """

    connect: float | None = attrs.field(default=10.0, validator=_positive)
    read: float | None = attrs.field(default=60.0, validator=_positive)
    total: float | None = attrs.field(default=None, validator=_positive)


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How failed requests are retried.

    Retried: connection errors, timeouts, 408, 409, 429 and 5xx except 501 and 505. The delay is
    the server's (``retry-after-ms``, ``Retry-After`` seconds or HTTP-date, ``X-RateLimit-Reset``)
    when it gives one (capped at ``max_server_delay``), else capped exponential backoff with jitter:
    retry ``n`` (0-based) waits between a quarter of and the whole of
    ``min(max_delay, initial_delay * 2**n)``.

    Attributes:
        max_retries: Retries after the first attempt (2 means at most 3 attempts).
        initial_delay: Backoff before the first retry, before jitter.
        max_delay: Cap on the computed backoff.
        max_server_delay: Cap on a delay the server asks for.
    """

    max_retries: int = attrs.field(default=2, validator=_non_negative_int)
    initial_delay: float = attrs.field(default=0.5, validator=_non_negative)
    max_delay: float = attrs.field(default=8.0, validator=_non_negative)
    max_server_delay: float = attrs.field(default=60.0, validator=_non_negative)


@attrs.frozen(kw_only=True)
class TransferConfig:
    """Settings of the transfer engine.

    Attributes:
        part_size: Preferred part size for ranged downloads (uploads use the server's part size).
        concurrency: Most storage requests in flight at once (never above the connection pool).
        memory_budget: Most bytes buffered across all files and parts at once.
        chunk_size: Size of each read or write of a streamed body.
        multipart_threshold: Downloads at least this large are fetched as concurrent ranges.
        state_dir: Where resume journals are kept (default: ``~/.cache/labric/transfers``).
        retry_deadline: Seconds a request of a file's transfer (upload URL, part or single
            ``PUT``, confirm, download ranges) keeps retrying transient failures (connection
            errors, timeouts, 408, 409, 429, 5xx but 501/505), counted from its first attempt,
            with the client's backoff. It takes over where ``RetryPolicy.max_retries`` stops, as
            object-store SDKs do, so a flaky network slows a transfer down instead of failing
            it; other errors fail at once. ``0`` limits transfers to ``max_retries`` like any
            other request, and ``max_retries=0`` turns their retries off too.
    """

    part_size: int = attrs.field(default=16 * MiB, validator=_positive_int)
    concurrency: int = attrs.field(default=16, validator=_positive_int)
    memory_budget: int = attrs.field(default=256 * MiB, validator=_positive_int)
    chunk_size: int = attrs.field(default=1 * MiB, validator=_positive_int)
    multipart_threshold: int = attrs.field(default=64 * MiB, validator=_positive_int)
    state_dir: str | None = attrs.field(default=None, validator=_optional_dir)
    retry_deadline: float = attrs.field(default=120.0, validator=_non_negative)


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_base_url(url: str, *, source: str, insecure: bool) -> str:
    """Validate a base URL and return it without a trailing slash."""
    if not isinstance(url, str):
        raise ConfigurationError(f"base_url must be a str, got {type(url).__name__}")
    url = url.strip().rstrip("/")
    example = f"an http(s) URL such as {DEFAULT_BASE_URL!r}"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ConfigurationError(f"{source} must be {example} (it does not parse)") from None
    if parts.username or parts.password:
        # Checked first, and the URL is not echoed, so a password in it is never shown.
        raise ConfigurationError(f"{source} must not carry credentials (user:password@).")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"{source} must be {example}, got {url!r}.")
    if parts.query or parts.fragment:
        raise ConfigurationError(f"{source} must not carry a query or a fragment, got {url!r}.")
    if parts.scheme == "http" and not insecure and not _is_loopback(parts.hostname):
        raise InsecureURLError(
            f"Refusing plain http:// to {parts.hostname} (from {source}): the API key would "
            "travel in clear text. Use https://, or pass allow_insecure=True if you really "
            "mean it.",
            host=parts.hostname,
            source=source,
        )
    return url


@attrs.frozen(kw_only=True, repr=False)
class ClientConfig:
    """Everything a client needs to talk to one Labric API.

    Build it with :meth:`resolve`, which applies the argument > environment > default precedence
    and validates the key and URL.

    Attributes:
        max_response_bytes: The largest API (JSON) response body the client reads, counted both as
            received and after decompression (default 64 MiB). A bigger answer raises
            :class:`~labric.errors.ResponseTooLargeError` as soon as the limit is passed, so a huge
            or decompression-bomb body never reaches memory. File downloads are not limited by it.
    """

    api_key: str
    base_url: str
    timeout: Timeout = Timeout()
    retry: RetryPolicy = RetryPolicy()
    transfer: TransferConfig = TransferConfig()
    max_connections: int = 64
    default_headers: Mapping[str, str] = attrs.field(factory=dict)
    max_response_bytes: int = attrs.field(
        default=DEFAULT_MAX_RESPONSE_BYTES, validator=_positive_int
    )

    def __repr__(self) -> str:
        return (
            f"ClientConfig(api_key={redact_key(self.api_key)!r}, base_url={self.base_url!r}, "
            f"timeout={self.timeout!r}, retry={self.retry!r}, transfer={self.transfer!r}, "
            f"max_connections={self.max_connections!r}, "
            f"max_response_bytes={self.max_response_bytes!r})"
        )

    @property
    def key_prefix(self) -> str:
        """The public prefix of the key (``lbk_<prefix>_…``), safe to log."""
        return redact_key(self.api_key)

    @classmethod
    def resolve(
        cls,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float | Timeout | None = None,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
        transfer: TransferConfig | None = None,
        max_connections: int = 64,
        allow_insecure: bool = False,
        env: Mapping[str, str] | None = None,
        max_response_bytes: int | None = None,
        env_file: str | os.PathLike[str] | None = None,
    ) -> ClientConfig:
        """Apply argument > environment variable > env file > default, and validate the result.

        ``env_file`` (default: ``LABRIC_ENV_FILE``, else none) names a file of ``KEY=value``
        lines (see :func:`read_env_file`) whose ``LABRIC_*`` settings apply where the
        environment has none.

        Raises:
            ConfigurationError: the key is missing or malformed, the URL is invalid, the env file
                cannot be read or has a line that is not ``KEY=value``, or the URL is plain
                ``http://`` to a non-loopback host without ``allow_insecure=True``, or another
                setting has the wrong type or an impossible value.
        """
        environ, named_file = _with_env_file(os.environ if env is None else env, env_file)
        if api_key is not None and not isinstance(api_key, str):
            raise ConfigurationError(
                f"api_key must be a str, got {type(api_key).__name__}; "
                f"pass a key lbk_<prefix>_<secret> or set {ENV_API_KEY}."
            )
        key = api_key if api_key is not None else environ.get(ENV_API_KEY)
        if not key or not key.strip():
            raise ConfigurationError(_missing_key_message(named_file))
        key = key.strip()
        if not _KEY_RE.match(key):
            source = "api_key" if api_key is not None else f"the {ENV_API_KEY} environment variable"
            raise ConfigurationError(
                f"The API key in {source} is not of the form lbk_<prefix>_<secret> "
                f"(got {redact_key(key)!r}); set {ENV_API_KEY} to a key from your organisation."
            )
        url = base_url if base_url is not None else environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL
        url = _check_base_url(
            url,
            source="base_url" if base_url is not None else ENV_BASE_URL,
            insecure=allow_insecure,
        )
        if isinstance(timeout, Timeout):
            timeouts = timeout
        elif timeout is None:
            timeouts = Timeout()
        elif _is_number(timeout) and timeout > 0:
            timeouts = Timeout(connect=min(float(timeout), 10.0), read=float(timeout))
        else:
            raise ConfigurationError(
                f"timeout must be a positive number of seconds or a Timeout, got {timeout!r}"
            )
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigurationError(f"retry must be a RetryPolicy, got {type(retry).__name__}")
        if transfer is not None and not isinstance(transfer, TransferConfig):
            raise ConfigurationError(
                f"transfer must be a TransferConfig, got {type(transfer).__name__}"
            )
        policy = retry or RetryPolicy()
        if max_retries is not None:
            policy = attrs.evolve(policy, max_retries=max_retries)
        transfer = transfer or TransferConfig()
        if not isinstance(max_connections, int) or isinstance(max_connections, bool):
            raise ConfigurationError(f"max_connections must be an int, got {max_connections!r}")
        if max_connections < 1:
            raise ConfigurationError("max_connections must be at least 1")
        return cls(
            api_key=key,
            base_url=url,
            timeout=timeouts,
            retry=policy,
            transfer=transfer,
            max_connections=max_connections,
            max_response_bytes=(
                DEFAULT_MAX_RESPONSE_BYTES if max_response_bytes is None else max_response_bytes
            ),
        )
