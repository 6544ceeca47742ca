"""What every API subcommand of ``labric`` shares: exit codes, error lines, the client, output.

Exit codes (also listed in :mod:`labric.cli`)::

    0    success
    1    the operation failed (a transfer, a job run, a server error, a refused request)
    2    usage: bad arguments (argparse's own code)
    3    auth or configuration: no or malformed LABRIC_API_KEY, bad LABRIC_API_BASE_URL, 401, 403
    4    not found: a file, table, job or execution (404), or a local path that does not exist
    5    network: the server could not be reached or timed out
    130  interrupted (Ctrl-C)

A bulk operation in which some items failed exits with the code of its failures when they all
share one, else 1.

Strings from the server (file names, paths, error details, job output) are untrusted: a name holding
``ESC ]52;...`` could set the clipboard, ``ESC [2J`` clear the screen, ``U+202E`` reverse the text
around it. Every such string is passed through :func:`printable` before it reaches the terminal;
``--json`` output is JSON-escaped already.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from labric._core.config import DEFAULT_BASE_URL, ENV_API_KEY, ENV_BASE_URL
from labric.cli.progress import ProgressBar
from labric.errors import (
    APIConnectionError,
    AuthenticationError,
    ConfigurationError,
    LabricError,
    NotFoundError,
    PermissionDeniedError,
)

if TYPE_CHECKING:
    from labric._client import AsyncLabric

__all__ = [
    "CLIENT_OPTIONS",
    "ENV_ALLOW_INSECURE",
    "EXIT_CONFIG",
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_NETWORK",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_USAGE",
    "CLIError",
    "add_common",
    "bulk_exit_code",
    "emit_json",
    "error_line",
    "exit_code",
    "parse_value",
    "positive_int",
    "print_table",
    "printable",
    "progress_bar",
    "run_with_client",
    "to_json",
]

T = TypeVar("T")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_NOT_FOUND = 4
EXIT_NETWORK = 5
EXIT_INTERRUPTED = 130

#: Said once, at the end of ``labric --help``: where the API subcommands get their credentials.
CREDENTIALS_HELP = (
    "The API subcommands (files, sync, datasets, jobs) read LABRIC_API_KEY and "
    "LABRIC_API_BASE_URL (default https://platform.labric.co/api) from the environment, or from "
    "a KEY=value file named by LABRIC_ENV_FILE, like the SDK; `labric env --data-dir DIR` prints "
    "them for a local server. There is deliberately no --api-key option: a key typed on the "
    "command line is kept in shell history and shown in process listings."
)


class CLIError(Exception):
    """A failure to report as one line on stderr, with an exit code (default 1)."""

    def __init__(self, message: str, *, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


def exit_code(exc: BaseException) -> int:
    """The exit code for an error (see the module docstring)."""
    if isinstance(exc, CLIError):
        return exc.code
    if isinstance(exc, ConfigurationError | AuthenticationError | PermissionDeniedError):
        return EXIT_CONFIG
    if isinstance(exc, NotFoundError | FileNotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(exc, APIConnectionError):
        return EXIT_NETWORK
    return EXIT_FAILURE


# C0 controls, DEL, C1 controls (CSI and OSC have one-byte forms there), bidi embeddings, overrides
# and isolates, and the Unicode line and paragraph separators.
_OTHER_UNSAFE = "\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029"
_UNSAFE_RE = re.compile(f"[\x00-\x1f{_OTHER_UNSAFE}]")
# The same, but tab and newline pass (a log's lines).
_UNSAFE_IN_TEXT_RE = re.compile(f"[\x00-\x08\x0b-\x1f{_OTHER_UNSAFE}]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: object, *, text: bool = False) -> str:
    """``str(value)`` safe to print on a terminal: control and bidi characters escaped.

    ``ESC`` becomes ``\\x1b``, ``U+202E`` becomes ``\\u202e``, and so on, so a hostile name shows
    what it holds instead of acting on the terminal.

    Args:
        value: Anything; usually a string from the server.
        text: Keep newlines and tabs (for multi-line output such as a job's log).
    """
    return (_UNSAFE_IN_TEXT_RE if text else _UNSAFE_RE).sub(_escaped, str(value))


def _where() -> str:
    return os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL


def error_line(exc: BaseException) -> str:
    """One line that says what failed and, where it helps, what to check."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, AuthenticationError):
        text += "; check LABRIC_API_KEY"
    elif isinstance(exc, PermissionDeniedError):
        text += "; the key in LABRIC_API_KEY lacks the scope for this"
    elif isinstance(exc, APIConnectionError):
        text += f"; is the server at {_where()} running (LABRIC_API_BASE_URL)?"
    elif isinstance(exc, OSError) and not isinstance(exc, LabricError) and exc.strerror:
        # OSErrors stringify as "[Errno 2] No such file or directory: 'x'": keep the useful part.
        text = exc.strerror + (f": {exc.filename}" if exc.filename else "")
    return printable(text)


def bulk_exit_code(errors: Iterable[BaseException]) -> int:
    """The code of a bulk call's failures: theirs when they agree, else 1 (0 when none)."""
    codes = {exit_code(e) for e in errors}
    if not codes:
        return EXIT_OK
    return codes.pop() if len(codes) == 1 else EXIT_FAILURE


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def add_common(parser: argparse.ArgumentParser, *, json_help: str) -> None:
    """Add ``--json`` and ``--debug`` to an API subcommand."""
    parser.add_argument("--json", action="store_true", help=json_help)
    # SUPPRESS keeps `labric --debug files ls` working: the subparser's default would
    # otherwise overwrite the top-level flag.
    parser.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the traceback of a failure",
    )
    parser.add_argument(
        "--allow-insecure",
        action="store_true",
        default=argparse.SUPPRESS,
        help=f"allow plain http:// to a host that is not loopback (or set {ENV_ALLOW_INSECURE}=1)",
    )


#: The command-line twin of the SDK's ``allow_insecure=True``.
ENV_ALLOW_INSECURE = "LABRIC_ALLOW_INSECURE"


def _allow_insecure(flag: bool) -> bool:
    return flag or os.environ.get(ENV_ALLOW_INSECURE, "").strip().lower() in ("1", "true", "yes")


def run_with_client(
    work: Callable[[AsyncLabric], Awaitable[T]], *, allow_insecure: bool | None = None
) -> T:
    """Build a client from the environment, run ``work`` with it on a new event loop, close it.

    The environment may name an env file (``LABRIC_ENV_FILE``) holding the key and URL. Plain
    ``http://`` to a host that is not loopback needs ``--allow-insecure`` (which
    :func:`labric.cli.main` passes on through :data:`CLIENT_OPTIONS`) or
    ``LABRIC_ALLOW_INSECURE=1``.

    Ctrl-C cancels ``work`` (asyncio.run's handler), so transfers stop promptly and the
    ``KeyboardInterrupt`` reaches :func:`labric.cli.main`.
    """

    # Imported here, not at the top: `labric --version` and `--help` never need a client.
    import asyncio

    from labric._client import AsyncLabric
    from labric._core.config import ENV_FILE, InsecureURLError, read_env_file

    env_file = os.environ.get(ENV_FILE) or None
    settings = {**(read_env_file(env_file) if env_file else {}), **os.environ}
    if not settings.get(ENV_API_KEY, "").strip():
        # The SDK's own message speaks of its api_key argument, which the command does not have.
        where = f" or in {env_file}" if env_file else f" (or in a file named by {ENV_FILE})"
        raise CLIError(
            f"No API key: set the {ENV_API_KEY} environment variable{where}; for a local "
            "server, `labric serve` prints one and `labric env --data-dir DIR` prints it again",
            code=EXIT_CONFIG,
        )
    insecure = _allow_insecure(
        CLIENT_OPTIONS.get("allow_insecure", False) if allow_insecure is None else allow_insecure
    )
    try:
        client = AsyncLabric(allow_insecure=insecure)
    except InsecureURLError as exc:
        raise CLIError(
            f"refusing plain http:// to {exc.host} (from {exc.source}): the API key would travel "
            f"in clear text; use https://, or pass --allow-insecure (or set "
            f"{ENV_ALLOW_INSECURE}=1) if you really mean it",
            code=EXIT_CONFIG,
        ) from None

    async def go() -> T:
        async with client:
            return await work(client)

    return asyncio.run(go())


#: Options of the whole command that shape the client, set by :func:`labric.cli.main`.
CLIENT_OPTIONS: dict[str, bool] = {}


def progress_bar(quiet: bool) -> ProgressBar | None:
    """A progress display on stderr (a bar on a terminal, plain lines when piped), or None."""
    return None if quiet else ProgressBar(sys.stderr)


def to_json(value: Any) -> Any:
    """A model (or list of models) as JSON-ready data, with the API's field names."""
    from labric._core.converter import unstructure

    return unstructure(value)


def emit_json(data: Any) -> None:
    """Write one JSON document to stdout."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def parse_value(text: str) -> Any:
    """A value given on the command line: JSON when it parses (``3``, ``true``, ``null``,
    ``"3"``), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _cell(value: Any, width: int) -> str:
    text = "" if value is None else str(value)
    text = printable(" ".join(text.split()))
    return text if len(text) <= width else text[: width - 1] + "…"


def print_table(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], *, max_width: int = 48
) -> None:
    """Print rows as aligned columns under ``headers`` (cells cut at ``max_width``)."""
    cells = [[_cell(v, max_width) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, text in enumerate(row):
            widths[i] = max(widths[i], len(text))
    out = sys.stdout
    out.write("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip() + "\n")
    for row in cells:
        out.write("  ".join(t.ljust(w) for t, w in zip(row, widths, strict=True)).rstrip() + "\n")
    out.flush()
