"""Test helpers that draw images and masks with Pillow (the one test module allowed to import it).

Masks are drawn as the hosted platform describes them, white on transparent, from a list of
rectangles, so a test knows exactly which pixels are foreground.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable

from PIL import Image

#: A rectangle ``(x, y, width, height)`` in pixels.
Box = tuple[int, int, int, int]


def image_png(width: int, height: int, color: tuple[int, int, int] = (40, 90, 160)) -> bytes:
    """An RGB PNG of one colour."""
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, format="PNG")
    return out.getvalue()


def image_jpeg(width: int, height: int) -> bytes:
    """A JPEG (any image format Pillow reads can be annotated)."""
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 10, 10)).save(out, format="JPEG")
    return out.getvalue()


def mask_png(width: int, height: int, boxes: Iterable[Box] = (), *, mode: str = "RGBA") -> bytes:
    """A mask: the boxes white and opaque, the rest transparent (``mode="L"``: white on black,
    no alpha)."""
    if mode == "L":
        im = Image.new("L", (width, height), 0)
        for x, y, w, h in boxes:
            im.paste(255, (x, y, x + w, y + h))
    else:
        im = Image.new("RGBA", (width, height), (0, 0, 0, 0))
        for x, y, w, h in boxes:
            im.paste((255, 255, 255, 255), (x, y, x + w, y + h))
    out = io.BytesIO()
    im.save(out, format="PNG")
    return out.getvalue()


def rgba_png(width: int, height: int, pixels: dict[tuple[int, int], tuple[int, ...]]) -> bytes:
    """A transparent RGBA PNG with the given pixels set (``(x, y) -> (r, g, b, a)``)."""
    im = Image.new("RGBA", (width, height), (255, 255, 255, 0))
    for xy, value in pixels.items():
        im.putpixel(xy, value)
    out = io.BytesIO()
    im.save(out, format="PNG")
    return out.getvalue()


def mask_b64(width: int, height: int, boxes: Iterable[Box] = (), *, mode: str = "RGBA") -> str:
    """:func:`mask_png`, base64-encoded as the API takes it."""
    return base64.b64encode(mask_png(width, height, boxes, mode=mode)).decode("ascii")


def foreground(png: bytes) -> set[tuple[int, int]]:
    """The foreground pixels of a served (normalised, white on transparent) mask."""
    with Image.open(io.BytesIO(png)) as im:
        assert im.format == "PNG"
        alpha = im.convert("RGBA").getchannel("A")
        width = im.size[0]
        data = alpha.tobytes()
    return {(i % width, i // width) for i, a in enumerate(data) if a >= 128}


def box_pixels(boxes: Iterable[Box]) -> set[tuple[int, int]]:
    """Every pixel inside the boxes."""
    return {(px, py) for x, y, w, h in boxes for px in range(x, x + w) for py in range(y, y + h)}


def huge_blank_png(width: int, height: int) -> bytes:
    """A 1-bit blank PNG: a few kilobytes however many pixels it claims."""
    out = io.BytesIO()
    Image.new("1", (width, height), 0).save(out, format="PNG")
    return out.getvalue()


#: A disc ``(cx, cy, radius)``, or a ring ``(cx, cy, radius, hole_radius)``, in pixels.
Disc = tuple[int, ...]


def disc_pixels(discs: Iterable[Disc]) -> set[tuple[int, int]]:
    """The pixels of discs (less their holes): those whose centre lies within the radius."""
    out = set()
    for cx, cy, r, *hole in discs:
        inner = hole[0] if hole else 0
        for y in range(cy - r, cy + r + 1):
            for x in range(cx - r, cx + r + 1):
                d2 = (x - cx) ** 2 + (y - cy) ** 2
                if inner * inner <= d2 <= r * r:
                    out.add((x, y))
    return out


def disc_image_png(width: int, height: int, discs: Iterable[Disc]) -> bytes:
    """A dark, slightly textured RGB image with bright discs on it (clearly separable)."""
    im = Image.new("RGB", (width, height))
    inside = disc_pixels(discs)
    for y in range(height):
        for x in range(width):
            texture = (x * 7 + y * 13) % 17
            if (x, y) in inside:
                im.putpixel((x, y), (215 + texture, 205 + texture, 180 + texture))
            else:
                im.putpixel((x, y), (25 + texture, 30 + texture, 45 + texture))
    out = io.BytesIO()
    im.save(out, format="PNG")
    return out.getvalue()


def pixels_mask_b64(width: int, height: int, pixels: Iterable[tuple[int, int]]) -> str:
    """A white-on-transparent mask of exactly these pixels, base64 as the API takes it."""
    return base64.b64encode(rgba_png(width, height, dict.fromkeys(pixels, (255,) * 4))).decode()


def decoded_foreground(b64: str) -> set[tuple[int, int]]:
    """:func:`foreground` of a base64 mask (a prediction's)."""
    return foreground(base64.b64decode(b64))
