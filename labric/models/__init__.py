"""The SDK's models: frozen attrs classes with the hosted platform's field names."""

from labric.models._base import OpenEnum
from labric.models.files import (
    FileContent,
    FileInfo,
    FileUpload,
    UploadedPart,
    UploadPart,
    UploadStatus,
    UploadURL,
)
from labric.models.jobs import ExecutionStatus, OffPlatformExecution
from labric.models.transfers import (
    DownloadOutcome,
    TransferPhase,
    TransferProgress,
    UploadOutcome,
)

__all__ = [
    "DownloadOutcome",
    "ExecutionStatus",
    "FileContent",
    "FileInfo",
    "FileUpload",
    "OffPlatformExecution",
    "OpenEnum",
    "TransferPhase",
    "TransferProgress",
    "UploadOutcome",
    "UploadPart",
    "UploadStatus",
    "UploadURL",
    "UploadedPart",
]
