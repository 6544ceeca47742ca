"""The files family's wire shapes: file records, upload URLs and parts, upload status, content.

Component schemas are named after the SDK's models where they answer one (``tests/openapi``
compares their fields); each operation is declared with its handler.
"""

from __future__ import annotations

from labric.server.core.declare import (
    BOOLEAN,
    DATETIME,
    INTEGER,
    STRING,
    Family,
    array,
    integer,
    nullable,
    obj,
    record,
    ref,
    request,
    string,
)
from labric.server.files.common import MAX_FILE_SIZE, MAX_PARTS

FILE_INFO = record(
    {
        "file_id": STRING,
        "original_path": nullable(STRING),
        "source_type": nullable(string(enum=["instrument", "job"])),
        "source_instrument_id": nullable(STRING),
        "size_kilobytes": nullable(INTEGER),
        "crc32c_hash": nullable(STRING),
        "file_created_at": nullable(DATETIME),
        "file_name": nullable(STRING),
        "size_bytes": nullable(INTEGER),
        "content_type": nullable(STRING),
        "job_execution_id": nullable(STRING),
    },
    description="A confirmed file (hosted FileInfoSchema plus local fields)",
)

UPLOAD_PART = record(
    {
        "number": integer(minimum=1),
        "offset": integer(minimum=0),
        "size": integer(minimum=0),
        "url": STRING,
        "headers": obj({}, additionalProperties=STRING),
    },
    description="PUT `size` bytes from `offset` to `url` (signed)",
)

SCHEMAS = {
    "FileInfo": FILE_INFO,
    "FileUpload": record(
        {
            "file_id": STRING,
            "file_name": STRING,
            "size_kilobytes": nullable(INTEGER),
            "size_bytes": nullable(INTEGER),
            "crc32c_hash": nullable(STRING),
        },
        description="A confirmed upload (hosted FileUploadSchema plus size and checksum)",
    ),
    "UploadPart": UPLOAD_PART,
    "UploadURL": record(
        {
            "file_id": STRING,
            "upload_url": STRING,
            "headers": obj({}, additionalProperties=STRING),
            "expires_at": DATETIME,
            "part_size": INTEGER,
            "parts": array(ref("UploadPart")),
        },
        optional=["part_size", "parts"],
        description="Where to PUT the bytes (hosted FileUploadUrlSchema); `parts` when the "
        "upload is planned in parts",
    ),
    "UploadedPart": record(
        {"number": integer(minimum=1), "size": integer(minimum=0), "crc32c": STRING}
    ),
    "UploadStatus": record(
        {
            "file_id": STRING,
            "status": string(enum=["pending", "confirmed"]),
            "part_size": nullable(INTEGER),
            "parts": array(ref("UploadedPart")),
            "missing_parts": array(ref("UploadPart")),
        }
    ),
    "FileContent": record(
        {
            "file_id": STRING,
            "file_name": nullable(STRING),
            "size_kilobytes": nullable(INTEGER),
            "download_url": STRING,
            "text_preview": nullable(STRING),
            "preview_truncated": BOOLEAN,
            "preview_skipped_reason": nullable(STRING),
            "size_bytes": nullable(INTEGER),
            "crc32c_hash": nullable(STRING),
        },
        description="A signed download URL and a text preview (hosted FileContentSchema)",
    ),
    "UploadURLRequest": request(
        {
            "file_name": string(minLength=1, maxLength=4096),
            "content_type": string(maxLength=1024),
            "job_execution_id": string(maxLength=128),
            "instrument_id": string(maxLength=128),
            "size_bytes": integer(
                minimum=0,
                maximum=MAX_FILE_SIZE,
                description=(
                    "Planned in parts above the part size; the parts grow (whole multiples "
                    f"of the server's part size) to keep a file within {MAX_PARTS} parts"
                ),
            ),
            "crc32c": string(maxLength=64),
        },
        required=["file_name"],
    ),
    "CopyFileRequest": request(
        {
            "original_path": string(minLength=1, maxLength=4096),
            "job_execution_id": string(maxLength=128),
        },
        required=["original_path"],
        description="The copy's path, and the execution it is recorded under (default: the "
        "key's own attribution)",
    ),
    "ConfirmUploadRequest": request(
        {
            "parts": array(
                obj(
                    {"number": integer(minimum=1), "crc32c": string(maxLength=64)},
                    required=["number", "crc32c"],
                )
            )
        },
        description="Empty to confirm a single PUT; `parts` to confirm a multipart upload",
    ),
}

ATTRIBUTION = "Give instrument_id or job_execution_id (a job's key defaults to its execution)"

FILES = Family(
    tag="files",
    description="Files: listing, metadata, uploads (multipart, signed single PUT, parts)",
    schemas=SCHEMAS,
)
