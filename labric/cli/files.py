"""``labric files ls|upload|download|rm|info`` and ``labric sync up|down``.

Output: data on stdout, progress and summaries on stderr, so ``labric files upload run42/ | cut
-f1`` gets the new ids. Progress is a redrawn bar when stderr is a terminal and plain lines every
few seconds when it is not; ``--quiet`` turns it off.

``--json`` shapes (keys are always present, ``null`` when unknown; new keys may be added):

``files ls``
    an array of file objects, newest first. A file object has the API's fields: ``file_id``,
    ``original_path``, ``file_name``, ``size_bytes``, ``size_kilobytes``, ``crc32c_hash``,
    ``content_type``, ``source_type``, ``source_instrument_id``, ``job_execution_id``,
    ``file_created_at`` (ISO 8601).
``files info``
    one file object.
``files upload``, ``sync up``
    ``{"files": [{"source", "name", "ok", "skipped", "file_id", "size_bytes", "crc32c_hash",
    "error", "warnings"}], "summary": {"files", "ok", "skipped", "failed", "bytes_transferred",
    "seconds"}}``, one entry per local file in the order walked; ``source`` is the local path,
    ``name`` the file's path on the platform, ``warnings`` what went wrong around a file that
    was still uploaded (closing the run's execution, for one), also printed once each on stderr
    without ``--json``.
``files download``, ``sync down``
    ``{"files": [{"file_id", "ok", "skipped", "path", "error"}], "summary": {...as above}}``.
``files rm``
    ``{"deleted": [file_id, ...], "failed": [{"file_id", "error"}]}``.

Interrupting (Ctrl-C) a transfer is safe: rerunning the same command resumes it. Uploads from
paths are journalled, so files the server already confirmed are not sent again and a large file
sends only its missing parts; downloads skip local files whose CRC32C already matches and resume
large files from the temporary file their journal names.

``sync`` (never deletes anything, on either side)
    ``labric sync up DIR`` uploads every file under ``DIR`` as ``<name of DIR>/<relative path>``
    (as ``files upload DIR`` does), skipping files whose path and CRC32C already match a file on
    the platform. ``labric sync down DIR`` downloads the newest platform file of every path under
    ``<name of DIR>/`` into ``DIR``, skipping local files whose CRC32C matches and replacing those
    that differ; when no platform file is under ``<name of DIR>/`` it says so and exits 4 (not
    found), downloading nothing. So ``sync up runs/run42`` on one machine and ``sync down
    runs/run42`` on another make the second a copy of the first.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labric.cli._common import (
    EXIT_CONFIG,
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    CLIError,
    add_common,
    bulk_exit_code,
    emit_json,
    error_line,
    positive_int,
    print_table,
    printable,
    progress_bar,
    run_with_client,
    to_json,
)
from labric.cli.progress import format_bytes
from labric.models.files import FileInfo
from labric.models.transfers import DownloadOutcome, UploadOutcome

if TYPE_CHECKING:
    from labric._client import AsyncLabric

__all__ = ["add_files", "add_sync"]

_UPLOAD_RESUME = "rerun the same command to resume (files already confirmed are not sent again)"
_DOWNLOAD_RESUME = "rerun the same command to resume (files already downloaded are skipped)"
#: At most this many failures are listed one per line; the rest are counted.
_MAX_LISTED_FAILURES = 20


def _add_transfer_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        default=None,
        metavar="N",
        help="most requests in flight at once (default 16)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress display")


# -- registration ---------------------------------------------------------------------------


def add_files(commands: Any) -> None:
    """Register ``labric files`` and its subcommands."""
    parser = commands.add_parser(
        "files",
        help="list, upload, download, delete and inspect files",
        description="Files on the platform.",
    )
    sub = parser.add_subparsers(dest="files_command", metavar="SUBCOMMAND", required=True)

    ls = sub.add_parser(
        "ls", help="list files, newest first", description="List files, newest first."
    )
    ls.add_argument("--instrument", metavar="ID", help="only files from this instrument")
    ls.add_argument("--ext", metavar="EXTS", help="only these extensions, e.g. csv,txt")
    ls.add_argument("--query", metavar="TEXT", help="terms that must all appear in the path")
    ls.add_argument("--limit", type=positive_int, metavar="N", help="list at most N files")
    add_common(ls, json_help="print an array of file objects")
    ls.set_defaults(func=_ls)

    up = sub.add_parser(
        "upload",
        help="upload files, directories and globs",
        description="Upload files. A directory is walked (its files keep their path relative to "
        "the directory's parent as their name, run42/plate1.csv); a quoted glob such as "
        "'runs/**/*.csv' is expanded here. Interrupted? Rerun the same command to resume. A "
        "path that names nothing is reported as that file's failure; the others are uploaded.",
    )
    up.add_argument("paths", nargs="+", metavar="PATH", help="files, directories or globs")
    up.add_argument(
        "--name",
        metavar="NAME",
        help="the platform path of the one file uploaded (default: its file name)",
    )
    up.add_argument("--instrument", metavar="ID", help="attach the files to this instrument")
    up.add_argument(
        "--skip-existing",
        action="store_true",
        help="skip files whose name and CRC32C already match a file on the platform",
    )
    _add_transfer_options(up)
    add_common(up, json_help='print {"files": [...], "summary": {...}}')
    up.set_defaults(func=_upload, interrupt_hint=_UPLOAD_RESUME)

    down = sub.add_parser(
        "download",
        help="download files by id into a directory",
        description="Download files into a directory, each at its platform path. Local files "
        "whose CRC32C already matches are skipped, so rerunning after an interruption resumes. ",
    )
    down.add_argument("file_ids", nargs="+", metavar="FILE_ID")
    down.add_argument(
        "-o", "--output", default=".", metavar="DIR", help="directory to write into (.)"
    )
    down.add_argument("--overwrite", action="store_true", help="replace local files that differ")
    _add_transfer_options(down)
    add_common(down, json_help='print {"files": [...], "summary": {...}}')
    down.set_defaults(func=_download, interrupt_hint=_DOWNLOAD_RESUME)

    rm = sub.add_parser("rm", help="delete files by id", description="Delete files by id.")
    rm.add_argument("file_ids", nargs="+", metavar="FILE_ID")
    add_common(rm, json_help='print {"deleted": [...], "failed": [...]}')
    rm.set_defaults(func=_rm)

    info = sub.add_parser(
        "info", help="show one file's metadata", description="Show one file's metadata."
    )
    info.add_argument("file_id", metavar="FILE_ID")
    add_common(info, json_help="print the file object")
    info.set_defaults(func=_info)


def add_sync(commands: Any) -> None:
    """Register ``labric sync up|down``."""
    parser = commands.add_parser(
        "sync",
        help="sync a directory to the platform (up) or from it (down)",
        description="Sync a local directory with the platform files under its name, skipping "
        "files whose CRC32C already matches. 'up' uploads DIR as <name of DIR>/...; 'down' "
        "downloads the newest file of every path under <name of DIR>/ into DIR. Nothing is "
        "ever deleted. ",
    )
    sub = parser.add_subparsers(dest="sync_direction", metavar="DIRECTION", required=True)
    for direction, text, description, instrument_help in (
        (
            "up",
            "upload what differs from the platform",
            "Upload every file under LOCAL_DIR as <name of LOCAL_DIR>/<relative path>, skipping "
            "files whose path and CRC32C already match a file on the platform. Deletes nothing.",
            "attach the uploads to this instrument",
        ),
        (
            "down",
            "download what differs from the local directory",
            "Download the newest platform file of every path under <name of LOCAL_DIR>/ into "
            "LOCAL_DIR, skipping local files whose CRC32C matches and replacing those that "
            "differ. Deletes nothing.",
            "only this instrument's files",
        ),
    ):
        p = sub.add_parser(direction, help=text, description=description)
        p.add_argument("local_dir", metavar="LOCAL_DIR")
        p.add_argument("--instrument", metavar="ID", help=instrument_help)
        _add_transfer_options(p)
        add_common(p, json_help='print {"files": [...], "summary": {...}}')
        if direction == "up":
            p.set_defaults(func=_sync_up, interrupt_hint=_UPLOAD_RESUME)
        else:
            p.set_defaults(func=_sync_down, interrupt_hint=_DOWNLOAD_RESUME)


# -- ls, info, rm ---------------------------------------------------------------------------


def _ls(args: argparse.Namespace) -> int:
    async def work(client: AsyncLabric) -> list[FileInfo]:
        pager = client.files.list(
            instrument_id=args.instrument, extensions=args.ext, query=args.query, limit=args.limit
        )
        return [f async for f in pager]

    files = run_with_client(work)
    if args.json:
        emit_json(to_json(files))
        return 0
    print_table(
        ["FILE_ID", "SIZE", "CREATED", "PATH"],
        (
            [
                f.file_id,
                _size(f),
                f.file_created_at.strftime("%Y-%m-%d %H:%M:%S") if f.file_created_at else "",
                f.original_path or f.file_name,
            ]
            for f in files
        ),
        max_width=120,
    )
    return 0


def _size(f: FileInfo) -> str:
    if f.size_bytes is not None:
        return format_bytes(f.size_bytes)
    if f.size_kilobytes is not None:
        return format_bytes(f.size_kilobytes * 1024)
    return ""


def _info(args: argparse.Namespace) -> int:
    async def work(client: AsyncLabric) -> FileInfo:
        return await client.files.get(args.file_id)

    info = run_with_client(work)
    data = to_json(info)
    if args.json:
        emit_json(data)
        return 0
    width = max(len(k) for k in data)
    for key, value in data.items():
        sys.stdout.write(f"{key.ljust(width)}  {'' if value is None else printable(value)}\n")
    return 0


def _rm(args: argparse.Namespace) -> int:
    async def work(client: AsyncLabric) -> tuple[list[str], list[tuple[str, BaseException]]]:
        deleted: list[str] = []
        failed: list[tuple[str, BaseException]] = []
        for file_id in args.file_ids:
            try:
                await client.files.delete(file_id)
            except Exception as exc:
                failed.append((file_id, exc))
            else:
                deleted.append(file_id)
        return deleted, failed

    deleted, failed = run_with_client(work)
    if args.json:
        emit_json(
            {
                "deleted": deleted,
                "failed": [{"file_id": i, "error": error_line(e)} for i, e in failed],
            }
        )
    else:
        for file_id in deleted:
            sys.stdout.write(f"deleted {printable(file_id)}\n")
    _report_failures([(i, e) for i, e in failed])
    return bulk_exit_code(e for _, e in failed)


# -- transfers ------------------------------------------------------------------------------


def _source_problem(path: str) -> CLIError | None:
    """Why a path or glob cannot be uploaded (it names nothing, say), or ``None``."""
    if glob.has_magic(path):
        if not any(os.path.isfile(m) for m in glob.iglob(path, recursive=True)):
            return CLIError("no files match", code=EXIT_NOT_FOUND)
    elif not os.path.exists(path):
        return CLIError("no such file or directory", code=EXIT_NOT_FOUND)
    elif not (os.path.isfile(path) or os.path.isdir(path)):
        return CLIError("not a regular file or directory", code=EXIT_USAGE)
    return None


def _upload(args: argparse.Namespace) -> int:
    if args.name is not None and (
        len(args.paths) != 1 or glob.has_magic(args.paths[0]) or os.path.isdir(args.paths[0])
    ):
        raise CLIError("--name names one file: give exactly one file path", code=EXIT_USAGE)
    # As upload_many does for its items, a path that names nothing fails alone: the rest go.
    problems = {path: _source_problem(path) for path in args.paths}
    sources = [path for path, problem in problems.items() if problem is None]
    missing = [(path, problem) for path, problem in problems.items() if problem is not None]
    return _run_upload(
        args,
        sources,
        skip_existing=args.skip_existing,
        verb="upload",
        name=args.name,
        missing=missing,
    )


def _run_upload(
    args: argparse.Namespace,
    sources: list[str],
    *,
    skip_existing: bool,
    verb: str,
    name: str | None = None,
    missing: Sequence[tuple[str, BaseException]] = (),
) -> int:
    from labric._transfer.bulk import expand_sources
    from labric.errors import PermissionDeniedError

    # Expanded here (as upload_many would) so each outcome is known by its platform name.
    expanded = [
        (os.fspath(local), name or given or Path(local).name)
        for _, local, given in expand_sources(sources)
    ]
    bar = progress_bar(args.quiet)
    started = time.perf_counter()

    async def work(client: AsyncLabric) -> list[UploadOutcome]:
        return await client.files.upload_many(
            [(name, local) for local, name in expanded],
            concurrency=args.concurrency,
            instrument_id=args.instrument,
            skip_existing=skip_existing,
            on_progress=bar,
        )

    try:
        outcomes = run_with_client(work) if expanded else []
    except PermissionDeniedError:
        # Raised before any file is sent (the upload's job execution is refused): say what
        # could not be done and why, not which internal request failed.
        raise CLIError(
            f"could not {verb} {_count(len(expanded), 'file')} ({_some(n for _, n in expanded)}): "
            "the key in LABRIC_API_KEY lacks the write scope (it may be a read-only key)",
            code=EXIT_CONFIG,
        ) from None
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - started
    moved = sum(o.file.size_bytes or 0 for o in outcomes if o.file and not o.skipped)
    entries = [
        {
            "source": local,
            "name": name,
            "ok": o.ok,
            "skipped": o.skipped,
            "file_id": o.file.file_id if o.file else None,
            "size_bytes": o.file.size_bytes if o.file else None,
            "crc32c_hash": o.file.crc32c_hash if o.file else None,
            "error": error_line(o.error) if o.error is not None else None,
            "warnings": list(o.warnings),
        }
        for (local, name), o in zip(expanded, outcomes, strict=True)
    ]
    entries[:0] = [
        {
            "source": path,
            "name": None,
            "ok": False,
            "skipped": False,
            "file_id": None,
            "size_bytes": None,
            "crc32c_hash": None,
            "error": error_line(problem),
        }
        for path, problem in missing
    ]
    return _finish(
        args,
        entries,
        [*missing]
        + [(local, o.error) for (local, _), o in zip(expanded, outcomes, strict=True) if o.error],
        seconds=seconds,
        moved=moved,
        verb=verb,
        lines=[f"{printable(e['file_id'])}\t{printable(e['name'])}" for e in entries if e["ok"]],
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _some(names: Any, shown: int = 3) -> str:
    """The first few names, and how many more."""
    names = list(names)
    text = ", ".join(printable(n) for n in names[:shown])
    return text + (f" and {len(names) - shown} more" if len(names) > shown else "")


def _download(args: argparse.Namespace) -> int:
    return _run_download(args, list(args.file_ids), Path(args.output), args.overwrite, "download")


def _run_download(
    args: argparse.Namespace, file_ids: list[str], dest: Path, overwrite: bool, verb: str
) -> int:
    bar = progress_bar(args.quiet)
    started = time.perf_counter()

    async def work(client: AsyncLabric) -> list[DownloadOutcome]:
        return await client.files.download_many(
            file_ids,
            dest,
            concurrency=args.concurrency,
            overwrite=overwrite,
            skip_existing=True,
            on_progress=bar,
        )

    try:
        outcomes = run_with_client(work)
    finally:
        if bar is not None:
            bar.close()
    return _report_downloads(args, outcomes, time.perf_counter() - started, verb)


def _report_downloads(
    args: argparse.Namespace, outcomes: list[DownloadOutcome], seconds: float, verb: str
) -> int:
    moved = sum(os.path.getsize(o.path) for o in outcomes if o.path is not None and not o.skipped)
    entries = [
        {
            "file_id": o.file_id,
            "ok": o.ok,
            "skipped": o.skipped,
            "path": os.fspath(o.path) if o.path is not None else None,
            "error": _download_error(o.error) if o.error is not None else None,
        }
        for o in outcomes
    ]
    return _finish(
        args,
        entries,
        [(o.file_id, o.error) for o in outcomes if o.error is not None],
        seconds=seconds,
        moved=moved,
        verb=verb,
        lines=[printable(e["path"]) for e in entries if e["ok"]],
    )


def _download_error(exc: BaseException) -> str:
    text = error_line(exc)
    if isinstance(exc, FileExistsError):
        # The SDK's message names its own argument; on the command line it is a flag.
        text = text.replace("pass overwrite=True", "pass --overwrite")
    return text


def _finish(
    args: argparse.Namespace,
    entries: list[dict[str, Any]],
    failures: list[tuple[str, BaseException]],
    *,
    seconds: float,
    moved: int,
    verb: str,
    lines: list[str],
) -> int:
    skipped = sum(1 for e in entries if e["skipped"])
    ok = sum(1 for e in entries if e["ok"])
    if args.json:
        emit_json(
            {
                "files": entries,
                "summary": {
                    "files": len(entries),
                    "ok": ok,
                    "skipped": skipped,
                    "failed": len(failures),
                    "bytes_transferred": moved,
                    "seconds": round(seconds, 3),
                },
            }
        )
    else:
        for line in lines:
            sys.stdout.write(line + "\n")
        sys.stdout.flush()
    if not args.quiet or failures:
        done = "uploaded" if verb in ("upload", "sync up") else "downloaded"
        summary = (
            f"{verb}: {ok - skipped} {done} ({format_bytes(moved)}), "
            f"{skipped} unchanged, {len(failures)} failed, in {seconds:.2f} s"
        )
        if not entries:
            summary = f"{verb}: nothing to transfer"
        sys.stderr.write(summary + "\n")
    if not args.json:
        # Said once each, though a warning about the call (closing its execution) is on every file.
        for warning in dict.fromkeys(w for e in entries for w in e.get("warnings", ())):
            sys.stderr.write(f"warning: {warning}\n")
    # Per-item messages, after the summary (the --json document carries them too).
    _report_failures(failures if not args.json else [])
    return bulk_exit_code(e for _, e in failures)


def _report_failures(failures: list[tuple[str, BaseException]]) -> None:
    for label, exc in failures[:_MAX_LISTED_FAILURES]:
        text = _download_error(exc) if isinstance(exc, FileExistsError) else error_line(exc)
        sys.stderr.write(f"labric: error: {printable(label)}: {printable(text)}\n")
    if len(failures) > _MAX_LISTED_FAILURES:
        sys.stderr.write(
            f"labric: error: ... and {len(failures) - _MAX_LISTED_FAILURES} more failures\n"
        )
    sys.stderr.flush()


# -- sync -----------------------------------------------------------------------------------


def _sync_root(text: str) -> Path:
    root = Path(text).resolve()
    if not root.name:
        raise CLIError(f"cannot sync the root directory {root}", code=EXIT_USAGE)
    return root


def _sync_up(args: argparse.Namespace) -> int:
    root = _sync_root(args.local_dir)
    if not root.is_dir():
        raise CLIError(f"not a directory: {args.local_dir}", code=EXIT_NOT_FOUND)
    # The directory itself as the source: its files are named <root.name>/<relative path>.
    return _run_upload(args, [str(root)], skip_existing=True, verb="sync up")


def _sync_down(args: argparse.Namespace) -> int:
    root = _sync_root(args.local_dir)
    if root.exists() and not root.is_dir():
        raise CLIError(f"not a directory: {args.local_dir}", code=EXIT_USAGE)
    prefix = root.name + "/"
    bar = progress_bar(args.quiet)
    started = time.perf_counter()

    async def work(client: AsyncLabric) -> list[DownloadOutcome]:
        newest: dict[str, str] = {}
        # The listing is newest first: the first file seen for a path is the one to keep.
        async for f in client.files.list(instrument_id=args.instrument, query=root.name):
            path = f.original_path or f.file_name or ""
            if path.startswith(prefix) and path not in newest:
                newest[path] = f.file_id
        if not newest:
            raise CLIError(
                f"nothing on the platform matches {prefix}* (sync down takes the files that "
                f"sync up {root.name} stored); nothing was downloaded",
                code=EXIT_NOT_FOUND,
            )
        # Files land at <dest>/<platform path>, so the parent of the directory is the dest.
        return await client.files.download_many(
            list(newest.values()),
            root.parent,
            concurrency=args.concurrency,
            overwrite=True,
            skip_existing=True,
            on_progress=bar,
        )

    try:
        outcomes = run_with_client(work)
    finally:
        if bar is not None:
            bar.close()
    return _report_downloads(args, outcomes, time.perf_counter() - started, "sync down")
