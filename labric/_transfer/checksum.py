"""CRC32C, the checksum of the storage protocol, in GCS's wire form (base64 of 4 big-endian bytes).

The byte-crunching is done by ``google-crc32c`` (C, hardware-accelerated where the CPU allows).
:func:`crc32c_combine` joins the checksums of adjacent byte ranges without re-reading them, so parts
transferred concurrently yield the whole file's checksum: ``combine(crc(A), crc(B), len(B)) ==
crc(A + B)``.
"""

from __future__ import annotations

import base64
import binascii
import threading

import google_crc32c

__all__ = ["crc32c", "crc32c_combine", "crc32c_extend", "crc32c_from_b64", "crc32c_to_b64"]

_POLY = 0x82F63B78  # CRC-32C (Castagnoli), reflected


def crc32c(data: bytes | bytearray | memoryview) -> int:
    """The CRC32C of ``data``."""
    return crc32c_extend(0, data)


#: Bytes copied at a time when a writable buffer is checksummed (the C extension takes only
#: read-only ``bytes``, so a large buffer is fed through small copies instead of one big one).
_COPY_SLICE = 1024 * 1024


def crc32c_extend(crc: int, data: bytes | bytearray | memoryview) -> int:
    """Continue a running CRC32C with more bytes."""
    if isinstance(data, bytes):
        return int(google_crc32c.extend(crc, data))
    view = memoryview(data).cast("B")
    for start in range(0, len(view), _COPY_SLICE):
        crc = int(google_crc32c.extend(crc, bytes(view[start : start + _COPY_SLICE])))
    return crc


def crc32c_to_b64(crc: int) -> str:
    """GCS's form: base64 of the 4 big-endian bytes."""
    return base64.b64encode(crc.to_bytes(4, "big")).decode("ascii")


def crc32c_from_b64(text: str) -> int:
    """Parse GCS's form; raises ``ValueError`` when it is not 4 base64-encoded bytes."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not a base64 CRC32C: {text!r}") from exc
    if len(raw) != 4:
        raise ValueError(f"not a base64 CRC32C: {text!r}")
    return int.from_bytes(raw, "big")


def _gf2_times(matrix: list[int], vec: int) -> int:
    total = 0
    i = 0
    while vec:
        if vec & 1:
            total ^= matrix[i]
        vec >>= 1
        i += 1
    return total


def _gf2_square(matrix: list[int]) -> list[int]:
    return [_gf2_times(matrix, matrix[n]) for n in range(32)]


def _byte_shift(k: int) -> list[int]:
    """The operator advancing a CRC register over ``2**k`` zero bytes.

    Built by squaring, once per process and only as far as the longest length combined so far
    (a 16 MiB part needs 25 of them): building all 64 up front cost more than a file's combines.
    """
    if k >= len(_SHIFTS):
        with _SHIFTS_LOCK:
            if not _SHIFTS:
                op = [_POLY] + [1 << n for n in range(31)]  # one zero bit
                for _ in range(3):
                    op = _gf2_square(op)  # two, four, eight bits: one byte
                _SHIFTS.append(op)
            while k >= len(_SHIFTS):
                _SHIFTS.append(_gf2_square(_SHIFTS[-1]))
    return _SHIFTS[k]


_SHIFTS: list[list[int]] = []
_SHIFTS_LOCK = threading.Lock()


def crc32c_combine(crc1: int, crc2: int, len2: int) -> int:
    """The CRC32C of ``A + B`` from ``crc(A)``, ``crc(B)`` and ``len(B)``, in O(log len2).

    The operators for powers of two are built once per process, so each call costs one small
    matrix-vector product per set bit of ``len2`` (microseconds, however many parts are joined).
    """
    if len2 <= 0:
        return crc1
    k = 0
    while len2:
        if len2 & 1:
            crc1 = _gf2_times(_byte_shift(k), crc1)
        len2 >>= 1
        k += 1
    return crc1 ^ crc2
