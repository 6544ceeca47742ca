"""Pixels: the one module that uses Pillow (the optional ``images`` extra).

Everything that looks inside an image or a mask goes through here, so the rest of the package
deals in sizes, counts and bytes. Pillow is imported on first use, not at import time, so a
server installed without the extra starts and serves everything else; the image routes then
answer 503 naming the extra (:class:`PillowMissing`).

The mask rule
    A mask is a PNG, "white on transparent" as the hosted platform describes it. A pixel is
    *foreground* when its alpha is at least 128, for a PNG with an alpha channel (RGBA, LA, or a
    palette or grey image with a transparent colour); a PNG without one (white on black) is read
    by its grey level instead, at least 128 being foreground. The mask must have exactly the
    image's width and height. What is stored and served is the mask *normalised* to that rule:
    a 1-bit palette PNG, white and opaque where the foreground is and transparent elsewhere, so
    the served PNG always shows exactly the pixels that ``bbox`` and ``foreground_fraction``
    describe.

Limits
    Masks and images are refused above :data:`MAX_PIXELS` before any pixel is decoded (a PNG
    of a blank 100,000 x 100,000 mask is a few kilobytes: its size must be checked first).
    Pillow's own decompression-bomb check (at a higher limit) answers the same way: its error,
    and its warning where warnings are errors (elsewhere the warning is logged once and our
    own check refuses the image).

Everything here is blocking and CPU-bound: call it on a worker thread.
"""

from __future__ import annotations

import base64
import binascii
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from PIL import Image as PILImage

    #: A decoded mask, as :func:`load_mask` returns it.
    MaskImage = PILImage.Image

__all__ = [
    "EXTRA",
    "MAX_PIXELS",
    "Measured",
    "NotAnImage",
    "PillowMissing",
    "decode_mask",
    "encode_mask",
    "image_size",
    "load_mask",
    "load_rgb",
    "require_pillow",
]

#: The extra that installs Pillow.
EXTRA = "images"
#: The most pixels an annotated image (and so a mask) may have.
MAX_PIXELS = 50_000_000
#: The alpha (or grey) level from which a mask pixel counts as foreground.
THRESHOLD = 128
#: The modes whose PNGs carry an alpha channel of their own.
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA"})


class PillowMissing(Exception):
    """Pillow is not installed; the message says which extra installs it."""


class NotAnImage(Exception):
    """The bytes are not an image Pillow can read (or not the PNG a mask must be); the message
    says why, in a sentence fit for an error's detail."""


def _pil() -> Any:
    """The ``PIL.Image`` module, or :class:`PillowMissing`."""
    try:
        from PIL import Image
    except ImportError:
        raise PillowMissing(
            f"Image annotations need Pillow, which is not installed on this server: "
            f"pip install 'labric[{EXTRA}]'"
        ) from None
    return Image


def require_pillow() -> None:
    """Raise :class:`PillowMissing` unless Pillow can be imported."""
    _pil()


def _too_large(width: int, height: int, what: str) -> NotAnImage:
    return NotAnImage(
        f"The {what} is {width} x {height} pixels, over the limit of {MAX_PIXELS:,} pixels"
    )


def image_size(path: Path) -> tuple[int, int]:
    """The ``(width, height)`` of a stored image, read from its header.

    Raises:
        PillowMissing: Pillow is not installed.
        NotAnImage: Pillow cannot identify the file as an image, or it is over the limit.
    """
    Image = _pil()
    try:
        with Image.open(path) as im:
            width, height = im.size
            fmt = im.format
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Past Pillow's own limit (above ours) it warns, or raises where warnings are errors.
        raise NotAnImage(f"The image is over the limit of {MAX_PIXELS:,} pixels") from None
    except (OSError, ValueError, SyntaxError):
        # UnidentifiedImageError is an OSError; truncated headers raise the others. Their
        # messages name the blob's path on disk, which is nobody's business: say it plainly.
        raise NotAnImage("it is not an image (Pillow cannot identify it)") from None
    if width * height > MAX_PIXELS:
        raise _too_large(width, height, f"{fmt or 'image'} image")
    return int(width), int(height)


@attrs.frozen(kw_only=True)
class Measured:
    """A decoded mask: its size, what it covers, and its normalised PNG.

    Attributes:
        bbox: ``(x, y, width, height)`` of the foreground pixels, in mask pixel coordinates;
            ``None`` when the mask has none.
        foreground: How many pixels are foreground.
        png: The normalised mask (see the module docstring), to store and serve.
    """

    width: int
    height: int
    bbox: tuple[int, int, int, int] | None
    foreground: int
    png: bytes = attrs.field(repr=False)

    @property
    def foreground_fraction(self) -> float:
        """The share of the mask's pixels that are foreground, 0 to 1."""
        return self.foreground / (self.width * self.height)


def _palette_alpha(im: PILImage.Image, transparency: int | bytes) -> PILImage.Image:
    """A palette image's alpha, from its indices (no RGBA copy: a quarter of the memory)."""
    Image = _pil()
    if isinstance(transparency, int):
        alpha = [0 if i == transparency else 255 for i in range(256)]
    else:
        alpha = [transparency[i] if i < len(transparency) else 255 for i in range(256)]
    indices: PILImage.Image = Image.frombytes("L", im.size, im.tobytes())
    return indices.point(alpha)


def _coverage(im: PILImage.Image) -> PILImage.Image:
    """The mask's foreground as an ``L`` image: 255 where foreground, 0 elsewhere."""
    transparency = im.info.get("transparency")
    if im.mode == "P" and isinstance(transparency, int | bytes):
        level = _palette_alpha(im, transparency)
    elif transparency is not None and im.mode not in _ALPHA_MODES:
        level = im.convert("RGBA").getchannel("A")  # a grey or RGB PNG with a transparent colour
    elif im.mode in _ALPHA_MODES:
        level = im.getchannel("A")
    else:
        level = im.convert("L")
    return level.point([0] * THRESHOLD + [255] * (256 - THRESHOLD))


def decode_mask(text: str) -> Measured:
    """Decode a base64 PNG mask and measure it.

    Raises:
        PillowMissing: Pillow is not installed.
        NotAnImage: not base64, not a PNG, over the pixel limit, or unreadable.
    """
    Image = _pil()
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise NotAnImage("The mask is not valid base64") from None
    if not raw.startswith(b"\x89PNG\r\n\x1a\n"):
        raise NotAnImage("The mask is not a PNG (masks are base64 PNGs, white on transparent)")
    try:
        with Image.open(io.BytesIO(raw), formats=["PNG"]) as im:
            width, height = im.size
            if width * height > MAX_PIXELS:
                raise _too_large(width, height, "mask")
            im.load()
            coverage = _coverage(im)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise NotAnImage(f"The mask is over the limit of {MAX_PIXELS:,} pixels") from None
    except (OSError, ValueError, SyntaxError, EOFError):
        raise NotAnImage("The mask PNG is truncated or corrupt and cannot be decoded") from None
    box = coverage.getbbox()
    foreground = coverage.histogram()[255]
    return Measured(
        width=int(width),
        height=int(height),
        bbox=None if box is None else (box[0], box[1], box[2] - box[0], box[3] - box[1]),
        foreground=int(foreground),
        png=_encode(coverage),
    )


def _encode(coverage: PILImage.Image) -> bytes:
    """The normalised mask PNG: one bit per pixel, index 1 white and opaque, index 0
    transparent. About 7x faster to write than an 8-bit LA PNG of the same mask (the PNG
    writer's compression dominates), and several times smaller."""
    bits = coverage.point([0] * THRESHOLD + [1] * (256 - THRESHOLD))
    bits.putpalette([0, 0, 0, 255, 255, 255])  # an L image given a palette becomes P
    out = io.BytesIO()
    bits.save(out, format="PNG", transparency=0, bits=1)
    return out.getvalue()


def load_mask(path: Path) -> MaskImage:
    """A stored (normalised) mask as an ``L`` image: 255 on the foreground, 0 elsewhere.

    Raises:
        PillowMissing: Pillow is not installed.
        OSError: the blob is gone or unreadable.
    """
    Image = _pil()
    with Image.open(path, formats=["PNG"]) as im:
        im.load()
        return _coverage(im)


def load_rgb(path: Path) -> PILImage.Image:
    """A stored image, decoded as RGB (for a segmentation model's pixels).

    Raises:
        PillowMissing: Pillow is not installed.
        NotAnImage: Pillow cannot decode it, or it is over the limit.
        FileNotFoundError: the blob is gone.
    """
    image_size(path)  # identifies it and refuses one over the limit before decoding
    Image = _pil()
    try:
        with Image.open(path) as im:
            rgb: PILImage.Image = im.convert("RGB")
    except FileNotFoundError:
        raise
    except (OSError, ValueError, SyntaxError):
        raise NotAnImage("it is not an image Pillow can decode") from None
    return rgb


def encode_mask(levels: bytes, width: int, height: int) -> bytes:
    """A mask given as one byte per pixel (foreground at 128 or more), as the normalised PNG
    (white on transparent) that annotations are saved and served as."""
    Image = _pil()
    coverage = Image.frombytes("L", (width, height), levels)
    return _encode(coverage.point([0] * THRESHOLD + [255] * (256 - THRESHOLD)))
