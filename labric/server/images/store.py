"""Image annotations on the local server: labels, mask rows, and the mask PNGs in the blob store.

Rows and blobs
    A mask's row (``image_annotations``) holds what was measured from it; its PNG lives in the
    data directory's blob store at ``masks/<file_id>/<annotation_id>.png``, written under
    ``tmp/`` and renamed into place (:class:`~labric.server.core.blobs.TempBlob`), never
    rewritten (an annotation never changes). Keeping a file's masks in a folder of their own
    lets a deleted file take them all with one removal, without asking the database.

    A save writes its blobs first and then inserts every row in one transaction; if that fails,
    the blobs are removed again. Removals go the other way: rows first, then blobs. A crash
    between the two leaves blobs that no row names, which :func:`sweep_sync` removes when the
    server starts; a row never names a missing blob.

Database functions run on the database thread inside the caller's transaction (``conn``
first), like :mod:`labric.server.core.records`. :func:`vetted_masks` is the one coroutine: the
masks a segmentation trainer learns from.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from labric.server.core.blobs import BlobStore
from labric.server.images import pixels

if TYPE_CHECKING:
    from labric.server.core.state import ServerState
    from labric.server.images.pixels import MaskImage

__all__ = [
    "AnnotationRecord",
    "NewMask",
    "VettedMask",
    "all_masks",
    "annotation_file",
    "forget_execution",
    "insert",
    "list_for_file",
    "mask_path",
    "masks_on_files",
    "remove_file_masks",
    "remove_masks",
    "sweep_sync",
    "vetted_masks",
]

#: The blob store's folder of mask PNGs.
MASKS_DIR = "masks"


@attrs.frozen(kw_only=True)
class NewMask:
    """A decoded, measured mask about to be saved (its PNG is already in place)."""

    id: str
    label: str
    width: int
    height: int
    is_human_vetted: bool
    foreground_fraction: float
    bbox: tuple[int, int, int, int] | None


@attrs.frozen(kw_only=True)
class AnnotationRecord:
    """A saved mask, with its label's name and who saved it.

    Attributes:
        bbox: ``(x, y, width, height)`` of the foreground, or ``None`` for an empty mask.
        key_name: The saving key's name (``None`` when unnamed); ``key_prefix`` its public
            prefix. Both ``None`` when the key is gone.
    """

    id: str
    file_id: str
    label_id: str
    label: str
    width: int
    height: int
    is_human_vetted: bool
    foreground_fraction: float
    bbox: tuple[int, int, int, int] | None
    api_key_id: str | None
    key_name: str | None
    key_prefix: str | None
    job_execution_id: str | None
    created_at: str


_SELECT = (
    "SELECT a.*, l.name AS label, k.name AS key_name, k.prefix AS key_prefix "
    "FROM image_annotations a JOIN image_labels l ON l.id = a.label_id "
    "LEFT JOIN api_keys k ON k.id = a.api_key_id "
)


def _record(row: sqlite3.Row) -> AnnotationRecord:
    bbox = None
    if row["bbox_x"] is not None:
        bbox = (row["bbox_x"], row["bbox_y"], row["bbox_width"], row["bbox_height"])
    return AnnotationRecord(
        id=row["id"],
        file_id=row["file_id"],
        label_id=row["label_id"],
        label=row["label"],
        width=row["width"],
        height=row["height"],
        is_human_vetted=bool(row["is_human_vetted"]),
        foreground_fraction=row["foreground_fraction"],
        bbox=bbox,
        api_key_id=row["api_key_id"],
        key_name=row["key_name"],
        key_prefix=row["key_prefix"],
        job_execution_id=row["job_execution_id"],
        created_at=row["created_at"],
    )


def _label_id(conn: sqlite3.Connection, org_id: str, name: str, new_id: str, now: str) -> str:
    """The organisation's label called ``name``, created (as ``new_id``) on first use."""
    conn.execute(
        "INSERT INTO image_labels (id, org_id, name, created_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (org_id, name) DO NOTHING",
        (new_id, org_id, name, now),
    )
    row = conn.execute(
        "SELECT id FROM image_labels WHERE org_id = ? AND name = ?", (org_id, name)
    ).fetchone()
    return str(row["id"])


def insert(
    conn: sqlite3.Connection,
    *,
    org_id: str,
    file_id: str,
    masks: Sequence[NewMask],
    label_ids: Iterable[str],
    api_key_id: str,
    job_execution_id: str | None,
    now: str,
) -> list[AnnotationRecord]:
    """Save masks on a file, all or none (the caller's transaction), creating their labels on
    first use (``label_ids`` are fresh ids, one per mask, for the labels that turn out new).

    Returns:
        The saved annotations, in the order given.
    """
    for mask, new_label in zip(masks, label_ids, strict=True):
        bbox = mask.bbox or (None, None, None, None)
        conn.execute(
            "INSERT INTO image_annotations (id, org_id, file_id, label_id, width, height, "
            "is_human_vetted, foreground_fraction, bbox_x, bbox_y, bbox_width, bbox_height, "
            "api_key_id, job_execution_id, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                mask.id,
                org_id,
                file_id,
                _label_id(conn, org_id, mask.label, new_label, now),
                mask.width,
                mask.height,
                int(mask.is_human_vetted),
                mask.foreground_fraction,
                *bbox,
                api_key_id,
                job_execution_id,
                now,
            ),
        )
    ids = [m.id for m in masks]
    if not ids:
        return []
    marks = ",".join("?" * len(ids))
    found = {r.id: r for r in map(_record, conn.execute(f"{_SELECT} WHERE a.id IN ({marks})", ids))}
    return [found[i] for i in ids]


def list_for_file(conn: sqlite3.Connection, file_id: str, org_id: str) -> list[AnnotationRecord]:
    """The organisation's annotations of a file, oldest first."""
    rows = conn.execute(
        f"{_SELECT} WHERE a.file_id = ? AND a.org_id = ? ORDER BY a.created_at, a.seq",
        (file_id, org_id),
    ).fetchall()
    return [_record(row) for row in rows]


def annotation_file(conn: sqlite3.Connection, annotation_id: str) -> str | None:
    """The file an annotation is on (``None`` when it is gone); for its signed mask URL, whose
    signature is the whole authorisation."""
    row = conn.execute(
        "SELECT file_id FROM image_annotations WHERE id = ?", (annotation_id,)
    ).fetchone()
    return None if row is None else str(row["file_id"])


def forget_execution(
    conn: sqlite3.Connection, org_id: str, execution_id: str
) -> list[tuple[str, str]]:
    """Delete the masks saved under an execution (revert); return their ``(file_id, id)`` so
    the caller removes their blobs after the commit."""
    rows = conn.execute(
        "SELECT file_id, id FROM image_annotations WHERE org_id = ? AND job_execution_id = ?",
        (org_id, execution_id),
    ).fetchall()
    conn.execute(
        "DELETE FROM image_annotations WHERE org_id = ? AND job_execution_id = ?",
        (org_id, execution_id),
    )
    return [(row["file_id"], row["id"]) for row in rows]


def masks_on_files(conn: sqlite3.Connection, file_ids: Collection[str]) -> int:
    """How many masks the files hold (those go with the files when they are deleted)."""
    if not file_ids:
        return 0
    marks = ",".join("?" * len(file_ids))
    row = conn.execute(
        f"SELECT count(*) AS n FROM image_annotations WHERE file_id IN ({marks})",
        list(file_ids),
    ).fetchone()
    return int(row["n"])


def all_masks(conn: sqlite3.Connection) -> set[tuple[str, str]]:
    """``(file_id, id)`` of every mask row, for :func:`sweep_sync`."""
    return {
        (r["file_id"], r["id"]) for r in conn.execute("SELECT file_id, id FROM image_annotations")
    }


# -- blobs ---------------------------------------------------------------------------------------


def mask_path(blobs: BlobStore, file_id: str, annotation_id: str) -> Path:
    """Where a mask's PNG lives."""
    return blobs.root / MASKS_DIR / file_id / f"{annotation_id}.png"


async def remove_masks(blobs: BlobStore, masks: Iterable[tuple[str, str]]) -> None:
    """Remove the PNGs of ``(file_id, annotation_id)`` pairs (missing ones are fine)."""
    await blobs.remove([mask_path(blobs, file_id, mask_id) for file_id, mask_id in masks])


async def remove_file_masks(blobs: BlobStore, file_ids: Iterable[str]) -> None:
    """Remove every mask PNG of deleted files (their rows went with the files)."""
    folders = [blobs.root / MASKS_DIR / file_id for file_id in file_ids]

    def remove() -> None:
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)

    if folders:
        await blobs.run(remove)


def sweep_sync(root: Path, known: Collection[tuple[str, str]]) -> int:
    """Remove mask PNGs no row names (left by a crash between a commit and its blob work), and
    empty folders; return how many files were removed. Run before serving."""
    removed = 0
    base = root / MASKS_DIR
    if not base.is_dir():
        return 0
    for folder in base.iterdir():
        for path in folder.iterdir() if folder.is_dir() else (folder,):
            if path.parent == base or (folder.name, path.stem) not in known:
                path.unlink(missing_ok=True)
                removed += 1
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    return removed


# -- for training --------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class VettedMask:
    """A human-vetted mask of an image, as a segmentation trainer reads it.

    Attributes:
        label: The label's name.
        mask: The mask as a Pillow ``L`` image of the image's size: 255 on the foreground, 0
            elsewhere (``numpy.asarray(mask) > 0`` is the boolean mask).
        annotation_id: The annotation it comes from.
    """

    label: str
    mask: MaskImage = attrs.field(repr=False, eq=False)
    annotation_id: str


async def vetted_masks(state: ServerState, org_id: str, file_id: str) -> list[VettedMask]:
    """The human-vetted masks of one of an organisation's image files, oldest first, decoded.

    Only masks saved with ``is_human_vetted`` true are returned: automated saves (predictions
    saved unreviewed, the default) never train a model. A file of another organisation, or
    with no vetted mask, gives an empty list.

    Raises:
        PillowMissing: Pillow is not installed (the ``images`` extra).
    """

    def rows(conn: Any) -> list[AnnotationRecord]:
        return [r for r in list_for_file(conn, file_id, org_id) if r.is_human_vetted]

    found: list[AnnotationRecord] = await state.db.run(rows)
    out = []
    for record in found:
        image = await state.blobs.run(pixels.load_mask, mask_path(state.blobs, file_id, record.id))
        out.append(VettedMask(label=record.label, mask=image, annotation_id=record.id))
    return out
