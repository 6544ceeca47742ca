"""The ``labric`` command.

Subcommands::

    labric demo [--data-dir DIR] [--plates N] [--reads N] [--big-mib N] [--keep]
    labric files ls [--instrument ID] [--ext csv,txt] [--query TEXT] [--limit N]
    labric files upload PATH... [--instrument ID] [--skip-existing] [--concurrency N]
    labric files download FILE_ID... [-o DIR] [--overwrite] [--concurrency N]
    labric files rm FILE_ID...
    labric files info FILE_ID
    labric sync up|down LOCAL_DIR [--instrument ID] [--concurrency N]
    labric datasets ls
    labric datasets query SQL [--param VALUE]...
    labric datasets rows TABLE [--where COLUMN=VALUE]... [--limit N]
    labric jobs ls [--archived]
    labric jobs run JOB [--file FILE_ID]... [--param NAME=VALUE]... [--timeout S] [--wait]
    labric jobs runs JOB [--status STATUS] [--limit N]
    labric jobs logs EXECUTION_ID
    labric serve --data-dir DIR [--init] [--host 127.0.0.1] [--port 8765] [--part-size N]
                 [--max-single-put N] [--faults SPEC]
                 [--notifications-per-hour N] [--notifications-per-day N]
    labric env --data-dir DIR
    labric keys create --data-dir DIR --name NAME [--org NAME] --scopes read,write
                       [--expires-in SECONDS]
    labric keys list --data-dir DIR [--json]
    labric keys revoke --data-dir DIR PREFIX

The API subcommands (``files``, ``sync``, ``datasets``, ``jobs``) read ``LABRIC_API_KEY`` and
``LABRIC_API_BASE_URL`` like the SDK (or from the ``KEY=value`` file ``LABRIC_ENV_FILE`` names);
there is no ``--api-key`` option, because a key typed on the command line ends up in shell
history. That is said once, in the epilog of ``labric --help``; each subcommand's help describes
the subcommand. Each takes ``--json`` (one documented shape per subcommand, see
:mod:`labric.cli.files`, :mod:`labric.cli.datasets`, :mod:`labric.cli.jobs`), ``--debug`` and
``--allow-insecure`` (plain ``http://`` to a host that is not loopback, the SDK's
``allow_insecure=True``; or ``LABRIC_ALLOW_INSECURE=1``); transfers take ``--quiet``.

Nothing heavy is imported to build the parser: ``labric --version`` and ``--help`` load neither
asyncio nor aiohttp; a subcommand imports the client (or the server) when it runs.

Progress goes to stderr: a bar on a terminal, plain lines when piped.

``serve`` prints exactly three shell-ready lines on stdout once it is listening
(``LABRIC_API_BASE_URL=...``, ``LABRIC_API_KEY=...`` and ``LABRIC_CONSOLE_URL=...``, the web
console's sign-in link, whose token is new on every start; so ``eval "$(labric serve ...)"``-style
wrappers and tests can read them), then serves until SIGINT or SIGTERM and exits 0. It creates
DIR if it is missing or empty; a directory holding other things is refused (exit 2) unless
``--init`` is given, and a directory another server is using is refused (exit 1, naming that
server's address). A start that fails (a busy port, say) leaves no half-made data directory.
``env`` prints the same two settings as ``export`` lines for the server running on DIR (its
address from the directory's lock file), for ``eval "$(labric env --data-dir DIR)"``. ``keys``
needs a directory a server has initialised (exit 2 otherwise, creating nothing); it may run while
that server is serving. A key is shown once, when created; ``keys list`` shows prefixes only.

Each subcommand registers itself through a function in :data:`COMMANDS` that adds its parser and
sets ``func``; a new subcommand is one more such function. Failures are one line on stderr
(``labric: error: ...``) and a non-zero exit status; the library's errors never surface as
tracebacks unless ``--debug`` is given. Exit codes:

    0    success
    1    the operation failed (a transfer, a job run, a server error, a refused request)
    2    usage: bad arguments
    3    auth or configuration: missing or malformed LABRIC_API_KEY, bad LABRIC_API_BASE_URL,
         the key refused (401) or lacking a scope (403)
    4    not found: a file, table, job or execution (404), or a local path
    5    network: the server could not be reached, or timed out
    130  interrupted (Ctrl-C); a transfer resumes when the same command is run again

A bulk command in which some items failed exits with its failures' code when they share one,
else 1.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import re
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labric._version import __version__
from labric.cli._common import (
    CLIENT_OPTIONS,
    CREDENTIALS_HELP,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    CLIError,
    error_line,
    exit_code,
    printable,
)
from labric.cli.datasets import add_datasets
from labric.cli.files import add_files, add_sync
from labric.cli.jobs import add_jobs

if TYPE_CHECKING:
    from labric.server import LocalServer

__all__ = ["COMMANDS", "CLIError", "build_parser", "main"]


_SIZE_RE = re.compile(r"^\s*(\d+)\s*([kmg]?)(i?b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_size(text: str) -> int:
    """Parse a byte size: ``16777216``, ``16M``, ``16MiB`` (units are powers of 1024)."""
    match = _SIZE_RE.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 16777216 or 16MiB)")
    size = int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
    if size < 1:
        raise argparse.ArgumentTypeError("the size must be at least 1 byte")
    return size


# -- serve ------------------------------------------------------------------------------------


def _add_serve(commands: Any) -> None:
    parser = commands.add_parser(
        "serve",
        help="run the local Labric server",
        description="Run the local Labric server on a data directory (created if missing or "
        "empty). Prints LABRIC_API_BASE_URL, LABRIC_API_KEY and LABRIC_CONSOLE_URL (the web "
        "console's sign-in link), then serves until interrupted.",
    )
    parser.add_argument("--data-dir", required=True, help="where metadata and file bytes live")
    parser.add_argument(
        "--init",
        action="store_true",
        help="make --data-dir a data directory even if it already holds other files",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port to bind (8765; 0 = any)")
    parser.add_argument(
        "--part-size", type=parse_size, default=None, help="multipart upload part size (16MiB)"
    )
    parser.add_argument(
        "--max-single-put",
        type=parse_size,
        default=None,
        help="largest object one signed PUT may store (500 MB, as hosted; raise it to compare "
        "single-stream clients on bigger files)",
    )
    parser.add_argument(
        "--faults", default=None, help='fault injection, e.g. "error=0.1,latency_ms=20,seed=7"'
    )
    parser.add_argument(
        "--notifications-per-hour",
        type=_positive_int,
        default=None,
        help="notifications an organisation may send in any hour (100; more get 429)",
    )
    parser.add_argument(
        "--notifications-per-day",
        type=_positive_int,
        default=None,
        help="notifications an organisation may send in any 24 hours (1000; more get 429)",
    )
    parser.set_defaults(func=_serve)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def _serve(args: argparse.Namespace) -> int:
    import asyncio

    from labric.server import LocalServer, parse_faults
    from labric.server.core.datadir import DataDir
    from labric.server.core.state import (
        DEFAULT_NOTIFICATIONS_PER_DAY,
        DEFAULT_NOTIFICATIONS_PER_HOUR,
        DEFAULT_PART_SIZE,
        MAX_SINGLE_PUT,
    )

    try:
        faults = parse_faults(args.faults) if args.faults else None
    except ValueError as exc:
        raise CLIError(f"--faults: {exc}") from None
    data_dir = DataDir(args.data_dir)
    if not (args.init or data_dir.is_initialised() or data_dir.is_empty()):
        raise CLIError(
            f"{data_dir.root} is not a Labric data directory and is not empty; name a new or "
            "empty directory, or pass --init to make this one a data directory",
            code=EXIT_USAGE,
        )
    # Only a directory made here gets a .gitignore: one given with --init is the user's.
    created = data_dir.is_empty()
    server = LocalServer(
        args.data_dir,
        args.host,
        args.port,
        init=True,
        part_size=args.part_size or DEFAULT_PART_SIZE,
        max_single_put=args.max_single_put or MAX_SINGLE_PUT,
        faults=faults,
        notifications_per_hour=args.notifications_per_hour or DEFAULT_NOTIFICATIONS_PER_HOUR,
        notifications_per_day=args.notifications_per_day or DEFAULT_NOTIFICATIONS_PER_DAY,
    )
    return asyncio.run(_serve_until_signalled(server, f"{args.host}:{args.port}", created=created))


def _ignore_in_git(root: Path) -> None:
    """Keep a data directory this command created out of git (it holds keys and blobs)."""
    with contextlib.suppress(OSError):
        (root / ".gitignore").write_text(
            "# made by labric serve: keys and blobs, never commit\n*\n"
        )


async def _serve_until_signalled(server: LocalServer, address: str, *, created: bool) -> int:
    import asyncio

    from labric.server.core.datadir import DataDirError
    from labric.server.core.db import DatabaseError

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        try:
            await server.start()
        except OSError as exc:
            reason = exc.strerror or str(exc)
            if exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
                raise CLIError(f"cannot listen on {address}: {reason}") from None
            raise CLIError(
                f"cannot start the server: {reason} ({exc.filename or address})"
            ) from None
        except (DatabaseError, DataDirError) as exc:
            raise CLIError(str(exc)) from None
        if created:
            _ignore_in_git(server.data_dir.root)
        try:
            print(f"LABRIC_API_BASE_URL={server.base_url}", flush=True)
            print(f"LABRIC_API_KEY={server.admin_key}", flush=True)
            print(f"LABRIC_CONSOLE_URL={server.console_url}", flush=True)
            print(
                f"labric: serving {server.data_dir.root} at {server.origin} (Ctrl-C to stop)",
                file=sys.stderr,
                flush=True,
            )
            await stop.wait()
        finally:
            await server.stop()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
    return 0


# -- env --------------------------------------------------------------------------------------


def _add_env(commands: Any) -> None:
    parser = commands.add_parser(
        "env",
        help="print export lines for a running local server",
        description="Print `export LABRIC_API_BASE_URL=...` and `export LABRIC_API_KEY=...` for "
        'the server running on a data directory, for eval "$(labric env --data-dir DIR)". The '
        "address comes from the server's lock file, the key is the directory's admin key.",
    )
    parser.add_argument("--data-dir", required=True, help="the running server's data directory")
    parser.set_defaults(func=_env)


def _env(args: argparse.Namespace) -> int:
    import shlex

    root = Path(args.data_dir).expanduser().resolve()
    try:
        holder = json.loads((root / "server.lock").read_bytes() or b"null")
    except FileNotFoundError:
        holder = None
    except (OSError, ValueError) as exc:
        raise CLIError(f"cannot read the server lock file in {root}: {exc}") from None
    address = holder.get("address") if isinstance(holder, dict) else None
    if not isinstance(address, str) or not address:
        raise CLIError(
            f"no labric server is running on {root} (start one with "
            f"`labric serve --data-dir {shlex.quote(os.fspath(root))}`)"
        )
    try:
        key = (root / "admin.key").read_text().strip()
    except OSError as exc:
        raise CLIError(f"cannot read the admin key in {root}: {exc.strerror or exc}") from None
    base_url = f"http://{address}/api"
    print(f"export LABRIC_API_BASE_URL={shlex.quote(base_url)}")
    print(f"export LABRIC_API_KEY={shlex.quote(key)}", flush=True)
    return 0


# -- keys -------------------------------------------------------------------------------------


def _add_keys(commands: Any) -> None:
    parser = commands.add_parser(
        "keys",
        help="create, list and revoke API keys of a data directory",
        description="API keys of a local server's data directory (the server may be running).",
    )
    actions = parser.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    create = actions.add_parser(
        "create",
        help="create a named API key and print it (shown once)",
        description="Create a named API key and print it: the only time it is shown. Scopes "
        "nest: admin implies write, which implies read.",
    )
    create.add_argument("--data-dir", required=True, help="the server's data directory")
    create.add_argument("--name", required=True, help="what the key is for, shown by keys list")
    create.add_argument("--org", default=None, help="organisation name (created if missing)")
    create.add_argument("--scopes", required=True, help="comma-separated: read,write,admin")
    create.add_argument(
        "--expires-in", type=float, default=None, metavar="SECONDS", help="key lifetime"
    )
    create.set_defaults(func=_keys_create)
    listing = actions.add_parser(
        "list",
        help="list the API keys (never their secrets)",
        description="List the data directory's API keys: prefix, name, organisation, scopes, "
        "when each was created and last used (to the minute), and its state. Job runs' "
        "short-lived keys are not listed.",
    )
    listing.add_argument("--data-dir", required=True, help="the server's data directory")
    listing.add_argument("--json", action="store_true", help="print an array of key objects")
    listing.set_defaults(func=_keys_list)
    revoke = actions.add_parser(
        "revoke",
        help="revoke an API key by its prefix",
        description="Revoke an API key: every request made with it is refused (401) from now "
        "on. Name it by its prefix, as keys list shows it (lbk_<prefix>_… or just <prefix>).",
    )
    revoke.add_argument("prefix", metavar="PREFIX", help="the key's prefix")
    revoke.add_argument("--data-dir", required=True, help="the server's data directory")
    revoke.set_defaults(func=_keys_revoke)


def _open_data_dir(path: str) -> tuple[Any, Any]:
    """The initialised data directory at ``path`` and its open database (close it after)."""
    from labric.server.core.datadir import DataDir
    from labric.server.core.db import Database, DatabaseError

    data_dir = DataDir(path)
    not_initialised = CLIError(
        f"{data_dir.root} is not an initialised Labric data directory; check --data-dir "
        f"(`labric serve --data-dir {data_dir.root}` creates one)",
        code=EXIT_USAGE,
    )
    # Opening a missing database would create one: a mistyped path would become a new,
    # empty organisation whose key the real server refuses.
    if not data_dir.is_initialised():
        raise not_initialised
    try:
        db = Database(data_dir.db_path)
        db.open_sync()
    except (OSError, DatabaseError) as exc:
        raise CLIError(f"cannot open the data directory {data_dir.root}: {exc}") from None
    if data_dir.default_org_id(db) is None:
        db.close_sync()
        raise not_initialised
    return data_dir, db


def _keys_create(args: argparse.Namespace) -> int:
    from labric.server.core import auth, records
    from labric.server.core.db import iso

    try:
        scopes = auth.parse_scopes(args.scopes)
    except ValueError as exc:
        raise CLIError(f"--scopes: {exc}", code=EXIT_USAGE) from None
    if args.expires_in is not None and args.expires_in <= 0:
        raise CLIError("--expires-in must be positive", code=EXIT_USAGE)
    name = " ".join(args.name.split())
    if not name:
        raise CLIError("--name must not be blank", code=EXIT_USAGE)
    now = time.time()
    expires_at = now + args.expires_in if args.expires_in is not None else None
    data_dir, db = _open_data_dir(args.data_dir)
    try:
        default_org_id = data_dir.default_org_id(db)

        def create(conn: Any) -> str:
            org_id = (
                default_org_id
                if args.org is None
                else records.get_or_create_org(conn, args.org, iso(now))
            )
            return auth.create_key(
                conn, org_id=org_id, scopes=scopes, now=now, expires_at=expires_at, name=name
            )

        key = db.run_sync(create)
    finally:
        db.close_sync()
    print(key, flush=True)
    return 0


def _keys_list(args: argparse.Namespace) -> int:
    from labric.cli._common import emit_json, print_table
    from labric.server.core import records
    from labric.server.core.db import iso

    _, db = _open_data_dir(args.data_dir)
    try:
        keys = db.run_sync(records.list_keys)
    finally:
        db.close_sync()
    now = iso(time.time())

    def state(key: records.KeyListing) -> str:
        if key.revoked:
            return "revoked"
        if key.expires_at is not None and key.expires_at <= now:
            return "expired"
        return "active"

    if args.json:
        emit_json(
            [
                {
                    "prefix": f"lbk_{k.prefix}_…",
                    "name": k.name,
                    "org": k.org,
                    "scopes": list(k.scopes),
                    "created_at": k.created_at,
                    "last_used_at": k.last_used_at,
                    "expires_at": k.expires_at,
                    "state": state(k),
                    "instrument_id": k.instrument_id,
                }
                for k in keys
            ]
        )
        return 0
    print_table(
        ["PREFIX", "NAME", "ORG", "SCOPES", "CREATED", "LAST USED", "STATE"],
        [
            (
                f"lbk_{k.prefix}_…",
                k.name or ("(paired instrument)" if k.instrument_id else "-"),
                k.org,
                ",".join(k.scopes),
                k.created_at[:16].replace("T", " "),
                k.last_used_at[:16].replace("T", " ") if k.last_used_at else "never",
                state(k),
            )
            for k in keys
        ],
    )
    return 0


def _keys_revoke(args: argparse.Namespace) -> int:
    from labric.cli._common import EXIT_NOT_FOUND
    from labric.server.core import records

    text = args.prefix.strip().rstrip("…")
    match = re.fullmatch(r"(?:lbk_)?([A-Za-z0-9]+)_?", text)
    if match is None:
        raise CLIError(
            f"not a key prefix: {printable(args.prefix)!r} (keys list shows them)",
            code=EXIT_USAGE,
        )
    prefix = match.group(1)
    _, db = _open_data_dir(args.data_dir)
    try:
        found = db.run_sync(records.revoke_key, prefix)
    finally:
        db.close_sync()
    if not found:
        raise CLIError(
            f"no key with the prefix {prefix} (keys list shows them)", code=EXIT_NOT_FOUND
        )
    print(f"revoked lbk_{prefix}_…", flush=True)
    return 0


# -- demo -------------------------------------------------------------------------------------


def _add_demo(commands: Any) -> None:
    parser = commands.add_parser(
        "demo",
        help="run the SDK's main job end to end against a temporary local server",
        description="Start a local server, generate an instrument run, bulk-upload it, list it, "
        "download it back and verify every byte. Exits non-zero if any check fails.",
    )
    parser.add_argument(
        "--data-dir", default=None, help="server data directory (default: a temporary one)"
    )
    parser.add_argument(
        "--plates", type=int, default=24, help="plates in the generated run (default %(default)s)"
    )
    parser.add_argument(
        "--reads", type=int, default=12, help="CSV reads per plate (default %(default)s)"
    )
    parser.add_argument(
        "--big-mib",
        type=int,
        default=256,
        help="size of the large raw file, in MiB (default %(default)s)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from labric.demo import run_demo

    for name in ("plates", "reads", "big_mib"):
        if getattr(args, name) < 0:
            raise CLIError(f"--{name.replace('_', '-')} must not be negative")
    return run_demo(
        args.data_dir, plates=args.plates, reads=args.reads, big_mib=args.big_mib, keep=args.keep
    )


#: Subcommand registrations, in help order. Each adds its parser and sets ``func``.
COMMANDS: list[Callable[[Any], None]] = [
    _add_demo,
    add_files,
    add_sync,
    add_datasets,
    add_jobs,
    _add_serve,
    _add_env,
    _add_keys,
]


def build_parser() -> argparse.ArgumentParser:
    """The ``labric`` argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="labric",
        description="The Labric SDK's command line: a local Labric server and more.",
        epilog=CREDENTIALS_HELP,
    )
    parser.add_argument("--version", action="version", version=f"labric {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks of failures (any subcommand)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in COMMANDS:
        register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``labric`` command; return its exit status.

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).
    """
    args = build_parser().parse_args(argv)
    CLIENT_OPTIONS["allow_insecure"] = bool(getattr(args, "allow_insecure", False))
    try:
        status: int = args.func(args)
    except KeyboardInterrupt:
        hint = getattr(args, "interrupt_hint", None)
        # On a terminal, start past the echoed ^C.
        lead = "\n" if sys.stderr.isatty() else ""
        sys.stderr.write(
            f"{lead}labric: interrupted" + (f"; {printable(hint)}" if hint else "") + "\n"
        )
        sys.stderr.flush()
        return EXIT_INTERRUPTED
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        print(f"labric: error: {error_line(exc)}", file=sys.stderr, flush=True)
        return exit_code(exc)
    return status
