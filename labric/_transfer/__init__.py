"""The transfer engine: uploads and downloads, checksums and resume journals.

:mod:`~labric._transfer.engine` holds :class:`TransferEngine` and the overview; the modules it
delegates to are :mod:`~labric._transfer.scheduling` (limiter, memory budget, buffers, part plans),
:mod:`~labric._transfer.context` (shared state and requests), :mod:`~labric._transfer.sources`
(upload sources), :mod:`~labric._transfer.upload` (one file up, with
:mod:`~labric._transfer.parts`, :mod:`~labric._transfer.resume` and
:mod:`~labric._transfer.bookkeeping`), :mod:`~labric._transfer.download` (one file down, with
:mod:`~labric._transfer.ranges` and :mod:`~labric._transfer.tempfiles`),
:mod:`~labric._transfer.bulk` (many files), :mod:`~labric._transfer.naming` (local paths),
:mod:`~labric._transfer.progress`, :mod:`~labric._transfer.checksum` and
:mod:`~labric._transfer.journal`.
"""

from labric._transfer.engine import TransferEngine
from labric._transfer.progress import ProgressCallback
from labric._transfer.sources import UploadSourceType

__all__ = ["ProgressCallback", "TransferEngine", "UploadSourceType"]
