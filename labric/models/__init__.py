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

__all__ = [
    "ExecutionStatus",
    "FileContent",
    "FileInfo",
    "FileUpload",
    "OffPlatformExecution",
    "OpenEnum",
    "UploadPart",
    "UploadStatus",
    "UploadURL",
    "UploadedPart",
]
