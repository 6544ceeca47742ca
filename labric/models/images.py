"""Models of the images resource: annotations (masks saved on image files) as the hosted platform
answers them (``AnnotationSchema``), and the entries a save takes (``SaveAnnotationSchema``).
"""

from __future__ import annotations

import base64
from datetime import datetime

import attrs

__all__ = ["ActivityActor", "Annotation", "MaskBoundingBox", "SaveAnnotation"]


@attrs.frozen(kw_only=True)
class MaskBoundingBox:
    """The box around a mask's foreground pixels, in mask pixel coordinates."""

    x: int
    y: int
    width: int
    height: int


@attrs.frozen(kw_only=True)
class ActivityActor:
    """Who saved an annotation (the local server names the API key that saved it)."""

    id: str
    name: str
    image_url: str | None = None


@attrs.frozen(kw_only=True)
class Annotation:
    """A mask saved on an image file.

    Attributes:
        label: The label's name (labels are created the first time a mask names them).
        mask_url: A signed URL of the mask PNG (white on transparent); it expires, and needs no
            API key. Left out of the repr: it is a credential.
        width: The mask's width in pixels (the image's).
        height: The mask's height in pixels.
        is_human_vetted: Whether a person reviewed the mask; only vetted masks train models.
        foreground_fraction: The share of the mask's pixels that are foreground, 0 to 1.
        bbox: The box around the foreground (``None`` for an empty mask).
        user: Who saved it.
        file_id: The image file (local server).
        label_id: The label's id, the same for every mask of one label (local server).
        job_execution_id: The execution it was saved under; reverting it removes the mask
            (local server).
        created_at: When it was saved (local server).
    """

    id: str
    label: str
    mask_url: str | None = attrs.field(default=None, repr=False)
    width: int | None = None
    height: int | None = None
    is_human_vetted: bool | None = None
    foreground_fraction: float | None = None
    bbox: MaskBoundingBox | None = None
    user: ActivityActor | None = None
    file_id: str | None = None
    label_id: str | None = None
    job_execution_id: str | None = None
    created_at: datetime | None = None


@attrs.frozen(kw_only=True)
class SaveAnnotation:
    """One mask to save on an image.

    Attributes:
        mask: The mask as a base64 PNG, white on transparent, of the image's size.
        label: The label (created on first use).
        width: The mask's width, when stated (checked against the mask).
        height: The mask's height, when stated.
        is_human_vetted: Set only after a person reviewed the mask; automated saves leave it
            false, and only vetted masks train models.
        file_id: The image file, when stated (it must be the file being annotated).
    """

    mask: str = attrs.field(repr=False)
    label: str
    width: int | None = None
    height: int | None = None
    is_human_vetted: bool = False
    file_id: str | None = None

    @classmethod
    def from_png(cls, png: bytes, *, label: str, is_human_vetted: bool = False) -> SaveAnnotation:
        """An entry from a mask's PNG bytes (base64-encoded here).

        Example::

            entry = SaveAnnotation.from_png(Path("cell.png").read_bytes(), label="cell")
        """
        return cls(
            mask=base64.b64encode(png).decode("ascii"),
            label=label,
            is_human_vetted=is_human_vetted,
        )
