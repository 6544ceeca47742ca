"""The storage family's wire shapes: signature parameters, object headers, stored objects and
parts, and the download operation (GET and HEAD share it).

Component schemas are named after the SDK's models where they answer one (``tests/openapi``
compares their fields); each operation is declared with its handler.
"""

from __future__ import annotations

from labric.server.core.declare import (
    FILE_ID,
    PUBLIC,
    STRING,
    Body,
    Family,
    Operation,
    Param,
    Response,
    integer,
    record,
    string,
)

SIGNATURE = (
    Param(name="X-Labric-Expires", where="query", schema=string(pattern="^[0-9]+$")),
    Param(name="X-Labric-SignedHeaders", where="query"),
    Param(name="X-Labric-Signature", where="query", schema=string(pattern="^[0-9a-f]*$")),
)

OBJECT_HEADERS = {
    "ETag": STRING,
    "x-goog-hash": string(description="crc32c=<base64>"),
    "x-goog-generation": STRING,
}

DOWNLOAD_HEADERS = {
    **OBJECT_HEADERS,
    "Accept-Ranges": STRING,
    "Content-Disposition": STRING,
    "x-goog-stored-content-length": STRING,
}

DOWNLOAD_PARAMS = (
    FILE_ID,
    *SIGNATURE,
    Param(name="Range", where="header", description="One range: bytes=first-last"),
    Param(name="If-Match", where="header"),
    Param(name="If-None-Match", where="header"),
    Param(name="If-Range", where="header"),
)

DOWNLOAD_ERRORS = {
    403: "The signature is missing, tampered with or expired",
    404: "No object is stored for this file",
    412: "If-Match does not match the object's ETag",
    416: "The range starts past the end of the object",
}

BYTES_SCHEMA = string(contentMediaType="application/octet-stream")


def download(method: str) -> Operation:
    body = None if method == "HEAD" else BYTES_SCHEMA
    return Operation(
        method=method,
        path="/storage/v1/objects/{file_id}",
        scope=PUBLIC,
        storage=True,
        summary="The object's bytes, or one range of them (signed URL)",
        params=DOWNLOAD_PARAMS,
        responses=(
            Response(
                description="The whole object",
                schema=body,
                media_type="*/*",
                headers=DOWNLOAD_HEADERS,
            ),
            Response(
                status=206,
                description="One range",
                schema=body,
                media_type="*/*",
                headers={**DOWNLOAD_HEADERS, "Content-Range": STRING},
            ),
            Response(status=304, description="If-None-Match matched", headers={"ETag": STRING}),
        ),
        errors=DOWNLOAD_ERRORS,
    )


SCHEMAS = {
    "StoredObject": record(
        {
            "file_id": STRING,
            "size_bytes": integer(minimum=0),
            "crc32c": STRING,
            "generation": STRING,
        }
    ),
    "StoredPart": record(
        {
            "file_id": STRING,
            "number": integer(minimum=1),
            "size": integer(minimum=0),
            "crc32c": STRING,
        }
    ),
}

PUT_BODY = Body(schema=BYTES_SCHEMA, media_type="application/octet-stream")

STORAGE = Family(
    tag="storage",
    description="The object store behind signed URLs: no API key, the URL's signature is "
    "the authorisation",
    schemas=SCHEMAS,
)
