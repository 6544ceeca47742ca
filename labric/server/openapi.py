"""The local API's OpenAPI 3.1 document, built from one table of route families.

``GET /api/v1/openapi.json`` (public) serves it. The document is not written as JSON: each route
family below is one block, a :class:`Family` holding its component schemas and its
:class:`Operation` s, and :func:`document` assembles them. What every operation shares is added
there, once, from what the operation says about itself:

* security: bearer for every API route, none for storage routes and this document
  (``x-labric-scope`` names the scope the route needs, as registered with the router);
* ``Idempotency-Key`` on API ``POST``/``PATCH``/``PUT`` routes (and its 400);
* ``X-Request-ID`` on every response, ``Link`` on paginated listings, ``Retry-After`` on 429;
* error bodies: ``{"detail": str}``, 422 ``{"detail": [{"loc", "msg", "type"}]}``, and the
  statuses every route of a kind can answer: 401/403 where a key is needed, 400/413/422 where
  a JSON body is read, 413 for a body declared far too large (over 1 MiB for a GET, HEAD or
  DELETE route, which takes none), 429/503 where fault injection reaches (all but the admin
  routes), 500; and on every route the HTTP layer's own plain-text 400 for a request line or
  header over its limit (before any middleware, so without ``X-Request-ID``).

Adding a family: write a function returning its :class:`Family` next to the others and list it
in :data:`FAMILIES`; name component schemas after the SDK's models where they answer one (their
fields are compared). ``tests/openapi`` compares the document with the application's registered
routes and scopes (and names any route missing on either side), validates it as OpenAPI 3.1,
checks one real successful answer of every operation against it (a new operation needs a step
in ``test_document.py``), and runs schemathesis against a live server with it.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
from aiohttp import web

from labric.server.core.routing import API_PREFIX, PUBLIC, Router
from labric.server.files.common import MAX_FILE_SIZE, MAX_PARTS

__all__ = [
    "FAMILIES",
    "OPENAPI_PATH",
    "Body",
    "Family",
    "Operation",
    "Param",
    "Response",
    "document",
    "register",
]

#: Where the document is served (under the API prefix).
OPENAPI_PATH = "/v1/openapi.json"
JSONSchema = dict[str, Any]

# -- schema building blocks --------------------------------------------------------------------

STRING: JSONSchema = {"type": "string"}
INTEGER: JSONSchema = {"type": "integer"}
NUMBER: JSONSchema = {"type": "number"}
BOOLEAN: JSONSchema = {"type": "boolean"}
DATETIME: JSONSchema = {"type": "string", "format": "date-time"}
ANY: JSONSchema = {}
OBJECT: JSONSchema = {"type": "object"}


def ref(name: str) -> JSONSchema:
    """A reference to the component schema ``name``."""
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: JSONSchema) -> JSONSchema:
    """``schema`` or ``null``."""
    kind = schema.get("type")
    if isinstance(kind, str) and "$ref" not in schema:
        out = {**schema, "type": [kind, "null"]}
        if "enum" in schema:
            out["enum"] = [*schema["enum"], None]
        return out
    return {"anyOf": [schema, {"type": "null"}]}


def array(items: JSONSchema, **extra: Any) -> JSONSchema:
    """A JSON array of ``items``."""
    return {"type": "array", "items": items, **extra}


def string(**extra: Any) -> JSONSchema:
    """A string with constraints (``maxLength=...``, ``enum=[...]``)."""
    return {"type": "string", **extra}


def integer(**extra: Any) -> JSONSchema:
    """An integer with constraints (``minimum=...``)."""
    return {"type": "integer", **extra}


def obj(
    properties: Mapping[str, JSONSchema],
    *,
    required: Sequence[str] = (),
    description: str | None = None,
    **extra: Any,
) -> JSONSchema:
    """A JSON object; unknown properties are allowed unless ``additionalProperties`` says no."""
    schema: JSONSchema = {"type": "object", "properties": dict(properties)}
    if required:
        schema["required"] = list(required)
    if description:
        schema["description"] = description
    schema.update(extra)
    return schema


def record(
    properties: Mapping[str, JSONSchema],
    *,
    optional: Sequence[str] = (),
    description: str | None = None,
) -> JSONSchema:
    """A response object: every property is always sent, except those in ``optional``, and no
    other (so an answer that grew a field the document lacks fails the document's tests)."""
    return obj(
        properties,
        required=[name for name in properties if name not in optional],
        description=description,
        additionalProperties=False,
    )


def request(
    properties: Mapping[str, JSONSchema],
    *,
    required: Sequence[str] = (),
    description: str | None = None,
) -> JSONSchema:
    """A request object: optional properties may be ``null`` (the server reads it as absent)."""
    return obj(
        {name: s if name in required else nullable(s) for name, s in properties.items()},
        required=required,
        description=description,
    )


# -- the table's row types ---------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Param:
    """A query, path or header parameter."""

    name: str
    where: str  # "query", "path" or "header"
    schema: JSONSchema = attrs.field(factory=lambda: dict(STRING))
    description: str = ""
    required: bool = False


@attrs.frozen(kw_only=True)
class Body:
    """A request body: its schema, media type and whether it may be left out."""

    schema: JSONSchema
    media_type: str = "application/json"
    required: bool = True
    description: str = ""


@attrs.frozen(kw_only=True)
class Response:
    """A success response: status, body (``None``: no body) and extra headers."""

    status: int = 200
    description: str = "OK"
    schema: JSONSchema | None = None
    media_type: str = "application/json"
    headers: Mapping[str, JSONSchema] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class Operation:
    """One route: what it takes and answers.

    Attributes:
        method: The HTTP method.
        path: The path as registered, without ``/api`` for API routes (``/v1/files``).
        scope: ``read``, ``write``, ``admin``, or :data:`~labric.server.core.routing.PUBLIC`.
        storage: A storage route (outside ``/api``; authorised by its URL signature).
        summary: One line.
        description: More, where it helps.
        params: Query, path and header parameters (path parameters are found in ``path`` and
            need listing only to describe them).
        body: The request body, if the route reads one.
        responses: The success responses (several for e.g. 200 / 206 / 304).
        errors: Route-specific error statuses -> when they happen (the shared ones are added).
        error_schemas: A status whose body is not ``{"detail": str}`` -> its schema.
        paginated: A listing that links its next page with ``Link``.
        hosted: The hosted platform has this route (else it is a local addition).
        tag: The tag, when not the family's.
    """

    method: str
    path: str
    scope: str
    storage: bool = False
    summary: str
    description: str = ""
    params: tuple[Param, ...] = ()
    body: Body | None = None
    responses: tuple[Response, ...] = (Response(),)
    errors: Mapping[int, str] = attrs.field(factory=dict)
    error_schemas: Mapping[int, JSONSchema] = attrs.field(factory=dict)
    paginated: bool = False
    hosted: bool = False
    tag: str | None = None

    @property
    def full_path(self) -> str:
        """The path the server serves (``/api/v1/files``, ``/storage/v1/...``)."""
        return self.path if self.storage else API_PREFIX + self.path

    @property
    def operation_id(self) -> str:
        """``get_files_file_id``: the method and the path's words."""
        words = [w.strip("{}") for w in self.path.split("/") if w and w != "v1"]
        return "_".join([self.method.lower(), *words]).replace("-", "_").replace(".", "_")


@attrs.frozen(kw_only=True)
class Family:
    """One block of the document: a tag, its component schemas and its operations."""

    tag: str
    description: str
    schemas: Mapping[str, JSONSchema]
    operations: tuple[Operation, ...]


# -- parameters used by several families -------------------------------------------------------

LIMIT = Param(
    name="limit",
    where="query",
    schema=integer(minimum=1),
    description="Items per page (capped by the server; the next page is linked)",
)
CURSOR = Param(
    name="cursor",
    where="query",
    schema=string(maxLength=1024),
    description="Where the page starts: pass back the one from the previous page's Link",
)
PAGE = (LIMIT, CURSOR)
#: A boolean in a query string (any case; empty means not given).
QUERY_BOOLEAN = string(enum=["true", "false", "1", "0", "yes", "no", ""])


def path_param(name: str, description: str, **schema: Any) -> Param:
    """A path parameter (always required)."""
    return Param(
        name=name, where="path", schema=string(**schema), description=description, required=True
    )


FILE_ID = path_param("file_id", "The file")
EXECUTION_ID = path_param("execution_id", "The job execution")
JOB_ID = path_param("job_id", "The job")


# -- route families: one function each ---------------------------------------------------------


def _files() -> Family:
    file_info = record(
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
    upload_part = record(
        {
            "number": integer(minimum=1),
            "offset": integer(minimum=0),
            "size": integer(minimum=0),
            "url": STRING,
            "headers": obj({}, additionalProperties=STRING),
        },
        description="PUT `size` bytes from `offset` to `url` (signed)",
    )
    schemas = {
        "FileInfo": file_info,
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
        "UploadPart": upload_part,
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
    attribution = "Give instrument_id or job_execution_id (a job's key defaults to its execution)"
    operations = (
        Operation(
            method="GET",
            path="/v1/files",
            scope="read",
            summary="List confirmed files, newest first",
            params=(
                Param(name="instrument_id", where="query", schema=string(maxLength=128)),
                Param(
                    name="extensions",
                    where="query",
                    schema=string(maxLength=2048),
                    description="Comma-separated, e.g. csv,txt",
                ),
                Param(
                    name="query",
                    where="query",
                    schema=string(maxLength=2048),
                    description="Space-separated terms that must all appear in the path",
                ),
                *PAGE,
            ),
            responses=(Response(schema=array(ref("FileInfo"))),),
            errors={400: "Invalid cursor"},
            paginated=True,
            hosted=True,
        ),
        Operation(
            method="POST",
            path="/v1/files",
            scope="write",
            summary="Upload a small file and its record in one multipart request",
            body=Body(
                media_type="multipart/form-data",
                schema=obj(
                    {
                        "file": string(contentMediaType="application/octet-stream"),
                        "instrument_id": string(maxLength=128),
                        "job_execution_id": string(maxLength=128),
                    },
                    required=["file"],
                ),
            ),
            responses=(Response(schema=ref("FileUpload")),),
            errors={
                400: f"No attribution ({attribution}), a native executable, or a malformed body",
                404: "The instrument or job execution does not exist",
            },
            hosted=True,
        ),
        Operation(
            method="POST",
            path="/v1/files/upload-url",
            scope="write",
            summary="Create a file record and signed URL(s) to PUT its bytes to",
            body=Body(schema=ref("UploadURLRequest")),
            responses=(Response(schema=ref("UploadURL")),),
            errors={
                400: f"No attribution: {attribution}",
                404: "The instrument or job execution does not exist",
            },
            hosted=True,
        ),
        Operation(
            method="GET",
            path="/v1/files/{file_id}",
            scope="read",
            summary="One confirmed file's metadata",
            params=(FILE_ID,),
            responses=(Response(schema=ref("FileInfo")),),
            errors={404: "No such confirmed file"},
        ),
        Operation(
            method="DELETE",
            path="/v1/files/{file_id}",
            scope="write",
            summary="Delete a file: its record, parts and bytes",
            params=(FILE_ID,),
            responses=(Response(status=204, description="Deleted"),),
            errors={404: "No such file"},
        ),
        Operation(
            method="POST",
            path="/v1/files/{file_id}/confirm-upload",
            scope="write",
            summary="Finish a signed upload (single PUT or parts); idempotent",
            params=(FILE_ID,),
            body=Body(schema=ref("ConfirmUploadRequest"), required=False),
            responses=(Response(schema=ref("FileUpload")),),
            errors={
                400: "Nothing uploaded, a size or checksum mismatch, missing parts",
                404: "No such file",
                409: "The upload was re-planned or deleted while confirming",
            },
            hosted=True,
        ),
        Operation(
            method="GET",
            path="/v1/files/{file_id}/upload-status",
            scope="read",
            summary="Pending or confirmed, the parts stored and fresh URLs for missing ones",
            params=(FILE_ID,),
            responses=(Response(schema=ref("UploadStatus")),),
            errors={404: "No such file"},
        ),
        Operation(
            method="GET",
            path="/v1/files/{file_id}/content",
            scope="read",
            summary="A signed download URL and a UTF-8 text preview of the first 64 KiB",
            params=(FILE_ID,),
            responses=(Response(schema=ref("FileContent")),),
            errors={404: "No such confirmed file"},
            hosted=True,
        ),
    )
    return Family(
        tag="files",
        description="Files: listing, metadata, uploads (multipart, signed single PUT, parts)",
        schemas=schemas,
        operations=operations,
    )


def _storage() -> Family:
    signature = (
        Param(name="X-Labric-Expires", where="query", schema=string(pattern="^[0-9]+$")),
        Param(name="X-Labric-SignedHeaders", where="query"),
        Param(name="X-Labric-Signature", where="query", schema=string(pattern="^[0-9a-f]*$")),
    )
    object_headers = {
        "ETag": STRING,
        "x-goog-hash": string(description="crc32c=<base64>"),
        "x-goog-generation": STRING,
    }
    download_headers = {
        **object_headers,
        "Accept-Ranges": STRING,
        "Content-Disposition": STRING,
        "x-goog-stored-content-length": STRING,
    }
    download_params = (
        FILE_ID,
        *signature,
        Param(name="Range", where="header", description="One range: bytes=first-last"),
        Param(name="If-Match", where="header"),
        Param(name="If-None-Match", where="header"),
        Param(name="If-Range", where="header"),
    )
    download_errors = {
        403: "The signature is missing, tampered with or expired",
        404: "No object is stored for this file",
        412: "If-Match does not match the object's ETag",
        416: "The range starts past the end of the object",
    }
    bytes_schema = string(contentMediaType="application/octet-stream")

    def download(method: str) -> Operation:
        body = None if method == "HEAD" else bytes_schema
        return Operation(
            method=method,
            path="/storage/v1/objects/{file_id}",
            scope=PUBLIC,
            storage=True,
            summary="The object's bytes, or one range of them (signed URL)",
            params=download_params,
            responses=(
                Response(
                    description="The whole object",
                    schema=body,
                    media_type="*/*",
                    headers=download_headers,
                ),
                Response(
                    status=206,
                    description="One range",
                    schema=body,
                    media_type="*/*",
                    headers={**download_headers, "Content-Range": STRING},
                ),
                Response(status=304, description="If-None-Match matched", headers={"ETag": STRING}),
            ),
            errors=download_errors,
        )

    schemas = {
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
    put_body = Body(schema=bytes_schema, media_type="application/octet-stream")
    operations = (
        Operation(
            method="PUT",
            path="/storage/v1/objects/{file_id}",
            scope=PUBLIC,
            storage=True,
            summary="Store a whole object (create-only; signed URL)",
            params=(
                FILE_ID,
                *signature,
                Param(name="x-goog-if-generation-match", where="header"),
                Param(name="x-goog-content-length-range", where="header"),
                Param(name="x-goog-hash", where="header", description="crc32c=<base64>"),
            ),
            body=put_body,
            responses=(Response(schema=ref("StoredObject"), headers=object_headers),),
            errors={
                400: "Size outside the signed range, a malformed header, a checksum mismatch",
                403: "The signature is missing, tampered with or expired",
                404: "No such upload",
                412: "An object is already stored for this upload",
                413: "Over the single-PUT limit",
            },
        ),
        Operation(
            method="PUT",
            path="/storage/v1/objects/{file_id}/parts/{number}",
            scope=PUBLIC,
            storage=True,
            summary="Store (or replace) one part of a multipart upload (signed URL)",
            params=(
                FILE_ID,
                Param(
                    name="number",
                    where="path",
                    schema=string(pattern="^[0-9]{1,9}$"),
                    required=True,
                ),
                *signature,
                Param(name="x-goog-hash", where="header", description="crc32c=<base64>"),
            ),
            body=put_body,
            responses=(Response(schema=ref("StoredPart"), headers={"x-goog-hash": STRING}),),
            errors={
                400: "Not in the plan, the wrong size, a checksum mismatch",
                403: "The signature is missing, tampered with or expired",
                404: "No such upload",
                409: "The upload is confirmed or being confirmed, or a newer PUT took over",
            },
        ),
        download("GET"),
        download("HEAD"),
    )
    return Family(
        tag="storage",
        description="The object store behind signed URLs: no API key, the URL's signature is "
        "the authorisation",
        schemas=schemas,
        operations=operations,
    )


def _executions() -> Family:
    statuses = ["queued", "running", "completed", "failed"]
    schemas = {
        "OffPlatformExecution": record(
            {
                "job_execution_id": STRING,
                "job_id": STRING,
                "job_name": STRING,
                "status": nullable(string(enum=statuses)),
                "started_at": nullable(DATETIME),
                "completed_at": nullable(DATETIME),
            },
            description="Hosted OffPlatformJobExecutionSchema",
        ),
        "ExecutionTrigger": record(
            {
                "category": string(enum=["file_uploaded", "job_completed", "schedule"]),
                "trigger_id": STRING,
                "file_id": nullable(STRING),
                "source_execution_id": nullable(STRING),
                "scheduled_for": nullable(DATETIME),
            },
            description="What started a triggered execution",
        ),
        "JobExecution": record(
            {
                "job_execution_id": STRING,
                "job_id": STRING,
                "job_name": STRING,
                "status": nullable(string(enum=statuses)),
                "started_at": nullable(DATETIME),
                "completed_at": nullable(DATETIME),
                "created_at": nullable(DATETIME),
                "off_platform": nullable(BOOLEAN),
                "script_version": nullable(INTEGER),
                "exit_code": nullable(INTEGER),
                "file_ids": array(STRING),
                "parameters": OBJECT,
                "trigger": nullable(ref("ExecutionTrigger")),
            },
            description="An execution, on the platform or off it (local)",
        ),
        "ExecutionLogs": record(
            {
                "job_execution_id": STRING,
                "status": nullable(string(enum=statuses)),
                "text": STRING,
                "truncated": BOOLEAN,
            }
        ),
        "StartExecutionRequest": request(
            {
                "job_id": string(maxLength=128),
                "job_name": string(maxLength=255),
                "timeout_minutes": integer(minimum=1, maximum=43200),
            }
        ),
        "CloseExecutionRequest": request(
            {"status": string(enum=["completed", "failed"])}, required=["status"]
        ),
    }
    operations = (
        Operation(
            method="GET",
            path="/v1/job-executions",
            scope="read",
            summary="Executions, newest first",
            params=(
                Param(name="job_id", where="query", schema=string(maxLength=128)),
                Param(
                    name="status",
                    where="query",
                    schema=string(enum=[*statuses, ""]),
                    description="Empty means not given",
                ),
                *PAGE,
            ),
            responses=(Response(schema=array(ref("JobExecution"))),),
            errors={400: "Invalid cursor"},
            paginated=True,
        ),
        Operation(
            method="POST",
            path="/v1/job-executions",
            scope="write",
            summary="Open a running execution for a script running off the platform",
            body=Body(schema=ref("StartExecutionRequest"), required=False),
            responses=(Response(schema=ref("OffPlatformExecution")),),
            errors={404: "No such job"},
            hosted=True,
        ),
        Operation(
            method="GET",
            path="/v1/job-executions/{execution_id}",
            scope="read",
            summary="One execution; `wait` holds the answer until it ends",
            params=(
                EXECUTION_ID,
                Param(
                    name="wait",
                    where="query",
                    schema=integer(minimum=0, maximum=30),
                    description="Seconds to wait for the execution to end",
                ),
            ),
            responses=(Response(schema=ref("JobExecution")),),
            errors={404: "No such execution"},
        ),
        Operation(
            method="PATCH",
            path="/v1/job-executions/{execution_id}",
            scope="write",
            summary="Close an off-platform execution (terminal)",
            params=(EXECUTION_ID,),
            body=Body(schema=ref("CloseExecutionRequest")),
            responses=(Response(schema=ref("OffPlatformExecution")),),
            errors={
                400: "Not an off-platform execution, or already closed with another status",
                404: "No such execution",
            },
            hosted=True,
        ),
        Operation(
            method="GET",
            path="/v1/job-executions/{execution_id}/logs",
            scope="read",
            summary="An execution's captured output (live while running)",
            params=(EXECUTION_ID,),
            responses=(Response(schema=ref("ExecutionLogs")),),
            errors={404: "No such execution"},
        ),
    )
    return Family(
        tag="job-executions",
        description="Job executions: off-platform runs (hosted), listing, waiting and logs",
        schemas=schemas,
        operations=operations,
    )


def _jobs() -> Family:
    categories = ["file_uploaded", "job_completed", "schedule"]
    publish = ["draft", "in_review", "published"]
    parameter = obj(
        {
            "widget_type": string(enum=["combobox", "date", "slider", "text", "region"]),
            "parameter_name": string(minLength=1),
            "label": nullable(STRING),
            "model_source": nullable(STRING),
            "min": nullable(NUMBER),
            "max": nullable(NUMBER),
            "step": nullable(NUMBER),
            "file_id": nullable(STRING),
            "file_id_parameter": nullable(STRING),
            "required": nullable(BOOLEAN),
            "default": ANY,
        },
        required=["widget_type", "parameter_name"],
        description="A parameter a job takes (hosted ParameterDefinitionSchema)",
    )
    trigger_fields = {
        "trigger_enabled": BOOLEAN,
        "trigger_category": string(enum=categories),
        "trigger_instrument_id": string(maxLength=128),
        "trigger_conditions": OBJECT,
    }
    schemas = {
        "ParameterDefinition": parameter,
        "JobTrigger": record(
            {
                "id": STRING,
                "category": string(enum=categories),
                "instrument_id": nullable(STRING),
                "instrument_name": nullable(STRING),
                "conditions": nullable(OBJECT),
            },
            description="Hosted JobTriggerSchema",
        ),
        "Job": record(
            {
                "id": STRING,
                "name": STRING,
                "description": nullable(STRING),
                "archived": BOOLEAN,
                "publish_status": string(enum=publish),
                "trigger": nullable(ref("JobTrigger")),
                "parameter_definitions": nullable(array(ref("ParameterDefinition"))),
                "script_version": nullable(INTEGER),
                "timeout_seconds": nullable(INTEGER),
                "created_at": nullable(DATETIME),
                "updated_at": nullable(DATETIME),
                "code": nullable(STRING),
            },
            optional=["code"],
            description="Hosted ToolsJobSchema plus local fields; `code` on single-job answers",
        ),
        "ScriptEdit": obj(
            {"old_string": string(minLength=1), "new_string": STRING},
            required=["old_string", "new_string"],
        ),
        "CreateJobRequest": request(
            {
                "name": string(minLength=1, maxLength=255),
                "code": string(minLength=1),
                "description": string(maxLength=10_000),
                **trigger_fields,
                "parameter_definitions": array(ref("ParameterDefinition")),
                "timeout_seconds": integer(minimum=1, maximum=7 * 24 * 3600),
            },
            required=["name", "code"],
        ),
        "UpdateJobRequest": request(
            {
                "name": string(minLength=1, maxLength=255),
                "description": string(maxLength=10_000),
                "code": string(minLength=1),
                "edits": array(ref("ScriptEdit"), minItems=1),
                "archived": BOOLEAN,
                **trigger_fields,
                "parameter_definitions": array(ref("ParameterDefinition")),
                "publish_status": string(enum=publish),
                "timeout_seconds": integer(minimum=1, maximum=7 * 24 * 3600),
            },
            description="Only the fields sent change; `code` and `edits` exclude each other",
        ),
        "RunJobRequest": request(
            {
                "file_ids": array(string(minLength=1), maxItems=1000, uniqueItems=True),
                "parameters": OBJECT,
                "timeout_seconds": integer(minimum=1, maximum=7 * 24 * 3600),
            }
        ),
    }
    operations = (
        Operation(
            method="GET",
            path="/v1/jobs",
            scope="read",
            summary="Jobs, newest first (archived ones only with archived=true)",
            params=(
                Param(name="name", where="query", schema=string(maxLength=255)),
                Param(
                    name="archived",
                    where="query",
                    schema=QUERY_BOOLEAN,
                ),
                *PAGE,
            ),
            responses=(Response(schema=array(ref("Job"))),),
            errors={400: "Invalid cursor"},
            paginated=True,
            hosted=True,
        ),
        Operation(
            method="POST",
            path="/v1/jobs",
            scope="write",
            summary="Create a draft job",
            body=Body(schema=ref("CreateJobRequest")),
            responses=(Response(schema=ref("Job")),),
            errors={404: "The trigger's instrument does not exist", 409: "The name is taken"},
            hosted=True,
        ),
        Operation(
            method="GET",
            path="/v1/jobs/{job_id}",
            scope="read",
            summary="One job, with its current script",
            params=(JOB_ID,),
            responses=(Response(schema=ref("Job")),),
            errors={404: "No such job"},
        ),
        Operation(
            method="PATCH",
            path="/v1/jobs/{job_id}",
            scope="write",
            summary="Change the fields sent; new code or edits make a new script version",
            params=(JOB_ID,),
            body=Body(schema=ref("UpdateJobRequest")),
            responses=(Response(schema=ref("Job")),),
            errors={
                400: "An edit does not match the script exactly once; nothing was saved",
                404: "No such job (or trigger instrument)",
                409: "The new name is taken",
            },
            hosted=True,
        ),
        Operation(
            method="POST",
            path="/v1/jobs/{job_id}/runs",
            scope="write",
            summary="Queue a platform execution of the job's current script",
            params=(JOB_ID,),
            body=Body(schema=ref("RunJobRequest"), required=False),
            responses=(Response(schema=ref("JobExecution")),),
            errors={
                400: "The job is archived or has no script",
                404: "No such job, or an input file does not exist",
            },
        ),
    )
    return Family(
        tag="jobs",
        description="Jobs: scripts with versions, triggers and parameters; runs on demand",
        schemas=schemas,
        operations=operations,
    )


def _datasets() -> Family:
    column_info = record(
        {
            "id": nullable(INTEGER),
            "name": STRING,
            "sql_column_name": STRING,
            "description": nullable(STRING),
            "data_type": STRING,
            "is_primary_key": BOOLEAN,
            "is_foreign_key": BOOLEAN,
            "is_nullable": BOOLEAN,
            "is_unique": BOOLEAN,
            "foreign_key_table_name": nullable(STRING),
        },
        description="Hosted QueryableColumnSchema",
    )
    table_write = obj(
        {
            "table": STRING,
            "rows": array(OBJECT),
            "mode": nullable(string(enum=["insert", "upsert", "update", "delete"])),
            "key": nullable(array(STRING)),
            "cascade": nullable(BOOLEAN),
            "on_match": nullable(string(enum=["overwrite", "fill_missing"])),
        },
        required=["table", "rows"],
    )
    series_write = obj(
        {
            "table": STRING,
            "parent": {"anyOf": [STRING, INTEGER, OBJECT]},
            "columns": obj({}, additionalProperties=array(ANY)),
            "parent_column": nullable(STRING),
        },
        required=["table", "parent", "columns"],
    )
    name = string(pattern="^[a-z][a-z0-9_]{0,62}$")
    column = obj(
        {
            "name": name,
            "type": nullable(
                string(enum=["text", "integer", "float", "boolean", "datetime", "json"])
            ),
            "nullable": nullable(BOOLEAN),
            "unique": nullable(BOOLEAN),
            "primary_key": nullable(BOOLEAN),
            "foreign_key": nullable(STRING),
            "description": nullable(STRING),
        },
        required=["name"],
        description="A column of a table to create",
    )
    limits = {
        "query_timeout": {"type": "number", "exclusiveMinimum": 0},
        "max_query_rows": integer(minimum=1),
        "max_query_bytes": integer(minimum=1),
        "lock_timeout": {"type": "number", "minimum": 0},
    }
    schemas = {
        "ColumnInfo": column_info,
        "TableInfo": record(
            {
                "id": nullable(INTEGER),
                "name": STRING,
                "description": nullable(STRING),
                "semantic_category": nullable(STRING),
                "columns": array(ref("ColumnInfo")),
            },
            description="Hosted QueryableTableSchema",
        ),
        "QueryResult": record({"columns": array(STRING), "data": array(array(ANY))}),
        "TableWriteResult": record(
            {
                "table": STRING,
                "created": INTEGER,
                "updated": INTEGER,
                "deleted": INTEGER,
                "cascade_deleted": nullable(obj({}, additionalProperties=INTEGER)),
                "ids": array(STRING),
                "rows": nullable(array(OBJECT)),
            }
        ),
        "SeriesWriteResult": record(
            {
                "table": STRING,
                "parent_id": STRING,
                "points_written": INTEGER,
                "points_replaced": INTEGER,
            }
        ),
        "WriteResult": record(
            {
                "job_execution_id": nullable(STRING),
                "tables": array(ref("TableWriteResult")),
                "series": array(ref("SeriesWriteResult")),
                "refs": obj({}, additionalProperties=STRING),
            },
            description="Hosted WriteDataResponse",
        ),
        "WriteErrors": record(
            {"errors": array(record({"path": nullable(STRING), "message": STRING}), minItems=1)},
            description="Every problem of a data/write request (hosted WriteDataErrorResponse)",
        ),
        "TableWrite": table_write,
        "SeriesWrite": series_write,
        "ReadRequest": request(
            {
                "target_name": string(maxLength=128),
                "target_type": string(enum=["table", "core-table"]),
                "filters": OBJECT,
                "mode": string(enum=["single", "multiple"]),
                "limit": integer(minimum=1),
                "cursor": string(maxLength=256),
            },
            required=["target_name", "target_type"],
        ),
        "QueryRequest": request(
            {
                "query": string(minLength=1, maxLength=100_000),
                "params": array({"type": ["string", "number", "boolean", "null"]}),
            },
            required=["query"],
        ),
        "WriteRequest": request(
            {
                "tables": array(ref("TableWrite")),
                "series": array(ref("SeriesWrite")),
                "job_execution_id": string(minLength=1),
                "job_name": string(maxLength=255),
                "dry_run": BOOLEAN,
                "return_rows": BOOLEAN,
            },
            description="Table writes and series, applied in one transaction",
        ),
        "Column": column,
        "TableDefinition": request(
            {
                "name": name,
                "description": string(maxLength=4000),
                "semantic_category": string(enum=["curated", "raw"]),
                "columns": array(ref("Column"), minItems=1, maxItems=200),
            },
            required=["name", "columns"],
        ),
        "RevertResult": record(
            {
                "deleted_count": INTEGER,
                "raws_deleted_count": INTEGER,
                "skipped_count": INTEGER,
                "warnings": array(STRING),
            },
            description="Hosted RevertResultSchema",
        ),
        "DatasetLimits": record(limits),
        "DatasetLimitsRequest": obj(limits, additionalProperties=False),
    }
    busy = "The organisation's data is locked by other writes; nothing was written"
    operations = (
        Operation(
            method="GET",
            path="/v1/tools/schema",
            scope="read",
            summary="Every table: the organisation's own first, then platform tables",
            responses=(Response(schema=array(ref("TableInfo"))),),
            hosted=True,
        ),
        Operation(
            method="POST",
            path="/v1/tools/read",
            scope="read",
            summary="Rows by equality filters, a page at a time",
            params=PAGE,
            body=Body(schema=ref("ReadRequest")),
            responses=(Response(schema=array(OBJECT)),),
            errors={
                400: "A filter names no column, an invalid cursor, several rows in mode single",
                404: "No such table",
            },
            paginated=True,
            hosted=True,
        ),
        Operation(
            method="POST",
            path="/v1/tools/query",
            scope="read",
            summary="Read-only SQL on the organisation's tables (positional %s parameters)",
            body=Body(schema=ref("QueryRequest")),
            responses=(Response(schema=ref("QueryResult")),),
            errors={400: "The query was refused, failed, ran too long or returned too much"},
            hosted=True,
        ),
        Operation(
            method="POST",
            path="/v1/data/write",
            scope="write",
            summary="Table writes and series in one transaction",
            body=Body(schema=ref("WriteRequest")),
            responses=(Response(schema=ref("WriteResult")),),
            errors={
                400: "Problems with the request (all listed; nothing was written)",
                413: "The body is 4.5 MB or more, or over the row or value limits",
                429: busy,
            },
            error_schemas={400: {"anyOf": [ref("WriteErrors"), ref("Error")]}},
            hosted=True,
        ),
        Operation(
            method="POST",
            path="/v1/job-executions/{execution_id}/revert",
            scope="write",
            summary="Delete what an execution created (files, rows and their series)",
            params=(EXECUTION_ID,),
            responses=(Response(schema=ref("RevertResult")),),
            errors={404: "No such execution", 429: busy},
            hosted=True,
            tag="job-executions",
        ),
        Operation(
            method="GET",
            path="/v1/datasets",
            scope="read",
            summary="Table definitions (as tools/schema)",
            responses=(Response(schema=array(ref("TableInfo"))),),
        ),
        Operation(
            method="POST",
            path="/v1/datasets",
            scope="write",
            summary="Create a table",
            body=Body(schema=ref("TableDefinition")),
            responses=(Response(status=201, description="Created", schema=ref("TableInfo")),),
            errors={409: "A table of that name exists", 429: busy},
        ),
        Operation(
            method="GET",
            path="/v1/datasets/{name}",
            scope="read",
            summary="One table's definition",
            params=(path_param("name", "The table's name"),),
            responses=(Response(schema=ref("TableInfo")),),
            errors={404: "No such table"},
        ),
        Operation(
            method="GET",
            path="/v1/admin/datasets/limits",
            scope="admin",
            summary="The query and lock limits",
            responses=(Response(schema=ref("DatasetLimits")),),
            tag="admin",
        ),
        Operation(
            method="PUT",
            path="/v1/admin/datasets/limits",
            scope="admin",
            summary="Replace the limits (keys left out take their defaults)",
            body=Body(schema=ref("DatasetLimitsRequest"), required=False),
            responses=(Response(schema=ref("DatasetLimits")),),
            tag="admin",
        ),
    )
    return Family(
        tag="datasets",
        description="Datasets: the hosted tools/* and data/write, and local table definitions",
        schemas=schemas,
        operations=operations,
    )


def _instruments() -> Family:
    statuses = ["online", "offline", "error"]
    instrument_id = path_param("instrument_id", "The instrument")
    name = string(minLength=1, maxLength=255)
    description = string(maxLength=10_000)
    metadata = obj({}, description="Any JSON object (at most 64 KiB as JSON)")
    instrument_name = record({"id": STRING, "name": STRING})
    schemas = {
        "Instrument": record(
            {
                "id": STRING,
                "name": STRING,
                "description": nullable(STRING),
                "metadata": nullable(OBJECT),
                "created_at": nullable(DATETIME),
                "updated_at": nullable(DATETIME),
                "paired_at": nullable(DATETIME),
                "status": nullable(string(enum=statuses)),
                "last_seen_at": nullable(DATETIME),
                "app_version": nullable(STRING),
            }
        ),
        "InstrumentPairing": record(
            {"instrument": ref("Instrument"), "pairing_code": STRING, "expires_at": DATETIME},
            description="A one-time code a device exchanges for its key",
        ),
        "PairedDevice": record(
            {
                "api_key": STRING,
                "scopes": array(STRING),
                "organization_id": STRING,
                "instrument": ref("Instrument"),
            },
            description="A device's key (shown only here)",
        ),
        "InstrumentName": instrument_name,
        "CurrentDeviceStatus": record({"value": string(enum=statuses), "since": DATETIME}),
        "DeviceStatus": record(
            {
                "status": string(enum=statuses),
                "first_seen": DATETIME,
                "last_seen": DATETIME,
                "app_version": nullable(STRING),
                "is_watching": nullable(BOOLEAN),
            },
            description="One period of a device's status (hosted DeviceStatusSchema)",
        ),
        "DeviceStatusHistory": record(
            {
                "instrument": ref("InstrumentName"),
                "start_time": DATETIME,
                "end_time": DATETIME,
                "current_status": nullable(ref("CurrentDeviceStatus")),
                "statuses": array(ref("DeviceStatus")),
                "notes": array(STRING),
            },
            description="Hosted DeviceStatusHistorySchema: periods oldest first",
        ),
        "DeviceStatusReport": record(
            {
                "instrument": ref("InstrumentName"),
                "current_status": nullable(ref("CurrentDeviceStatus")),
                "period": ref("DeviceStatus"),
                "heartbeat_interval_seconds": INTEGER,
                "offline_after_seconds": INTEGER,
            }
        ),
        "CreateInstrumentRequest": request(
            {"name": name, "description": description, "metadata": metadata},
            required=["name"],
        ),
        "UpdateInstrumentRequest": request(
            {"name": name, "description": description, "metadata": metadata},
            description="Only the fields sent change; metadata is replaced whole",
        ),
        "PairRequest": request({"pairing_code": string(maxLength=64)}, required=["pairing_code"]),
        "DeviceStatusRequest": request(
            {
                "status": string(enum=statuses),
                "app_version": string(maxLength=128),
                "is_watching": BOOLEAN,
            },
            required=["status"],
        ),
    }
    missing = {404: "No such instrument"}
    operations = (
        Operation(
            method="GET",
            path="/v1/instruments",
            scope="read",
            summary="Instruments, newest first",
            params=PAGE,
            responses=(Response(schema=array(ref("Instrument"))),),
            errors={400: "Invalid cursor"},
            paginated=True,
        ),
        Operation(
            method="POST",
            path="/v1/instruments",
            scope="write",
            summary="Create an instrument and a one-time pairing code for its device",
            body=Body(schema=ref("CreateInstrumentRequest")),
            responses=(Response(schema=ref("InstrumentPairing")),),
        ),
        Operation(
            method="POST",
            path="/v1/instruments/pair",
            scope=PUBLIC,
            summary="A device exchanges a pairing code for its key (no API key)",
            params=(
                Param(
                    name="Idempotency-Key",
                    where="header",
                    schema=string(maxLength=255),
                    description="A repeated exchange with the same key gets the same device key",
                ),
            ),
            body=Body(schema=ref("PairRequest")),
            responses=(Response(schema=ref("PairedDevice")),),
            errors={400: "The code is unknown, expired or already used"},
        ),
        Operation(
            method="GET",
            path="/v1/instruments/{instrument_id}",
            scope="read",
            summary="One instrument",
            params=(instrument_id,),
            responses=(Response(schema=ref("Instrument")),),
            errors=missing,
        ),
        Operation(
            method="PATCH",
            path="/v1/instruments/{instrument_id}",
            scope="write",
            summary="Change the fields sent",
            params=(instrument_id,),
            body=Body(schema=ref("UpdateInstrumentRequest"), required=False),
            responses=(Response(schema=ref("Instrument")),),
            errors=missing,
        ),
        Operation(
            method="DELETE",
            path="/v1/instruments/{instrument_id}",
            scope="write",
            summary="Delete an instrument (refused while files are attached, unless force)",
            params=(
                instrument_id,
                Param(
                    name="force",
                    where="query",
                    schema=QUERY_BOOLEAN,
                    description="Delete even with files attached (they are kept, detached)",
                ),
            ),
            responses=(Response(status=204, description="Deleted"),),
            errors={
                **missing,
                409: "Files are attached (without force), or dataset rows require it",
            },
        ),
        Operation(
            method="POST",
            path="/v1/instruments/{instrument_id}/pairing-code",
            scope="write",
            summary="A fresh one-time pairing code (earlier unused codes stop working)",
            params=(instrument_id,),
            responses=(Response(schema=ref("InstrumentPairing")),),
            errors=missing,
        ),
        Operation(
            method="POST",
            path="/v1/instruments/{instrument_id}/device-status",
            scope="write",
            summary="A device reports its status",
            params=(instrument_id,),
            body=Body(schema=ref("DeviceStatusRequest")),
            responses=(Response(schema=ref("DeviceStatusReport")),),
            errors={**missing, 403: "A device's key reports for its own instrument only"},
        ),
        Operation(
            method="GET",
            path="/v1/instruments/{instrument_id}/device-status",
            scope="read",
            summary="The device's status periods in a window (default: the last 7 days)",
            params=(
                instrument_id,
                Param(name="start_time", where="query", schema=string(maxLength=64)),
                Param(name="end_time", where="query", schema=string(maxLength=64)),
            ),
            responses=(Response(schema=ref("DeviceStatusHistory")),),
            errors=missing,
            hosted=True,
        ),
    )
    return Family(
        tag="instruments",
        description="Instruments: pairing devices, device status reports and history",
        schemas=schemas,
        operations=operations,
    )


def _experiments() -> Family:
    statuses = ["planned", "running", "completed", "failed", "archived"]
    experiment_id = path_param("experiment_id", "The experiment")
    fields = {
        "name": string(minLength=1, maxLength=255),
        "description": string(maxLength=10_000),
        "status": string(enum=statuses),
        "tags": array(string(minLength=1, maxLength=100), maxItems=100),
        "metadata": obj({}, description="Any JSON object (at most 64 KiB as JSON)"),
        "started_at": string(maxLength=64, description="ISO 8601"),
        "ended_at": string(maxLength=64, description="ISO 8601; not before started_at"),
    }
    ids = array(string(minLength=1, maxLength=128), maxItems=1000)
    schemas = {
        "Experiment": record(
            {
                "id": STRING,
                "name": STRING,
                "description": nullable(STRING),
                "status": string(enum=statuses),
                "tags": array(STRING),
                "metadata": OBJECT,
                "started_at": nullable(DATETIME),
                "ended_at": nullable(DATETIME),
                "created_at": nullable(DATETIME),
                "updated_at": nullable(DATETIME),
            }
        ),
        "ExperimentRow": record({"table": STRING, "row_id": STRING}),
        "ExperimentLinks": record({"linked": INTEGER, "total": INTEGER}),
        "CreateExperimentRequest": request(fields, required=["name"]),
        "UpdateExperimentRequest": request(
            fields, description="Only the fields sent change; tags and metadata are replaced"
        ),
        "LinkFilesRequest": request({"file_ids": ids}, required=["file_ids"]),
        "LinkRowsRequest": request(
            {
                "rows": array(
                    obj(
                        {
                            "table": string(minLength=1),
                            "row_id": {"anyOf": [string(minLength=1), INTEGER]},
                        },
                        required=["table", "row_id"],
                    ),
                    maxItems=1000,
                )
            },
            required=["rows"],
        ),
    }
    missing = {404: "No such experiment"}
    operations = (
        Operation(
            method="GET",
            path="/v1/experiments",
            scope="read",
            summary="Experiments, newest first, by status, tag and search terms",
            params=(
                Param(name="status", where="query", schema=string(enum=statuses)),
                Param(name="tag", where="query", schema=string(maxLength=100)),
                Param(
                    name="query",
                    where="query",
                    schema=string(maxLength=2048),
                    description="Terms that must all appear in the name or description",
                ),
                *PAGE,
            ),
            responses=(Response(schema=array(ref("Experiment"))),),
            errors={400: "Invalid cursor"},
            paginated=True,
        ),
        Operation(
            method="POST",
            path="/v1/experiments",
            scope="write",
            summary="Create an experiment (status planned unless given)",
            body=Body(schema=ref("CreateExperimentRequest")),
            responses=(Response(schema=ref("Experiment")),),
        ),
        Operation(
            method="GET",
            path="/v1/experiments/{experiment_id}",
            scope="read",
            summary="One experiment",
            params=(experiment_id,),
            responses=(Response(schema=ref("Experiment")),),
            errors=missing,
        ),
        Operation(
            method="PATCH",
            path="/v1/experiments/{experiment_id}",
            scope="write",
            summary="Change the fields sent",
            params=(experiment_id,),
            body=Body(schema=ref("UpdateExperimentRequest"), required=False),
            responses=(Response(schema=ref("Experiment")),),
            errors=missing,
        ),
        Operation(
            method="DELETE",
            path="/v1/experiments/{experiment_id}",
            scope="write",
            summary="Delete an experiment and its links (the files stay)",
            params=(experiment_id,),
            responses=(Response(status=204, description="Deleted"),),
            errors={**missing, 409: "Dataset rows require it"},
        ),
        Operation(
            method="GET",
            path="/v1/experiments/{experiment_id}/files",
            scope="read",
            summary="The linked files, newest first",
            params=(experiment_id, *PAGE),
            responses=(Response(schema=array(ref("FileInfo"))),),
            errors={**missing, 400: "Invalid cursor"},
            paginated=True,
        ),
        Operation(
            method="POST",
            path="/v1/experiments/{experiment_id}/files",
            scope="write",
            summary="Link confirmed files (all or none)",
            params=(experiment_id,),
            body=Body(schema=ref("LinkFilesRequest")),
            responses=(Response(schema=ref("ExperimentLinks")),),
            errors={404: "No such experiment, or a file does not exist (nothing was linked)"},
        ),
        Operation(
            method="DELETE",
            path="/v1/experiments/{experiment_id}/files/{file_id}",
            scope="write",
            summary="Unlink one file (the file stays)",
            params=(experiment_id, FILE_ID),
            responses=(Response(status=204, description="Unlinked"),),
            errors={404: "No such experiment, or the file is not linked to it"},
        ),
        Operation(
            method="GET",
            path="/v1/experiments/{experiment_id}/rows",
            scope="read",
            summary="The linked dataset rows, oldest link first",
            params=(experiment_id,),
            responses=(Response(schema=array(ref("ExperimentRow"))),),
            errors=missing,
        ),
        Operation(
            method="POST",
            path="/v1/experiments/{experiment_id}/rows",
            scope="write",
            summary="Link dataset rows (all or none)",
            params=(experiment_id,),
            body=Body(schema=ref("LinkRowsRequest")),
            responses=(Response(schema=ref("ExperimentLinks")),),
            errors=missing,
        ),
    )
    return Family(
        tag="experiments",
        description="Experiments: records with status, tags and times, linked to files and rows",
        schemas=schemas,
        operations=operations,
    )


def _dashboards() -> Family:
    dashboard_id = path_param("dashboard_id", "The dashboard")
    name128 = string(minLength=1, maxLength=128)
    common = {
        "id": nullable(string(pattern="^[A-Za-z0-9_-]{1,64}$")),
        "title": nullable(string(maxLength=255)),
        "layout": nullable(ref("WidgetLayout")),
    }
    source = {"anyOf": [ref("SQLSource"), ref("DatasetSource")]}
    # Distinct column names, or one name (a list of one).
    names = {"anyOf": [name128, array(name128, minItems=1, uniqueItems=True)]}
    scalar = {"type": ["string", "number", "boolean", "null"]}
    schemas = {
        "WidgetLayout": record(
            {
                "x": integer(minimum=0, maximum=11),
                "y": integer(minimum=0, maximum=10_000),
                "w": integer(minimum=1, maximum=12),
                "h": integer(minimum=1, maximum=100),
            },
            description="A place on the 12-column grid (x + w at most 12)",
        ),
        "SQLSource": obj(
            {
                "type": string(enum=["sql"]),
                "query": string(minLength=1, maxLength=100_000),
                "params": nullable(array(scalar, maxItems=1000)),
            },
            required=["type", "query"],
            description="Read-only SQL with positional %s parameters",
        ),
        "DatasetSource": obj(
            {
                "type": string(enum=["dataset"]),
                "table": name128,
                "columns": nullable(names),
                "filters": nullable(obj({}, additionalProperties=scalar)),
                "order_by": nullable(name128),
                "descending": nullable(BOOLEAN),
                "limit": nullable(integer(minimum=1)),
            },
            required=["type", "table"],
            description="Rows of one table, filtered as tools/read filters",
        ),
        "ChartWidget": obj(
            {
                "type": string(enum=["chart"]),
                **common,
                "source": source,
                "kind": string(enum=["line", "bar", "scatter", "histogram"]),
                # Read for the kinds they belong to (below), ignored for the others.
                "x": ANY,
                "y": ANY,
                "column": ANY,
                "bins": ANY,
            },
            required=["type", "source", "kind"],
            description="x and y for line, bar and scatter charts; column and bins for histograms",
            **{
                "if": {"properties": {"kind": {"const": "histogram"}}},
                "then": {
                    "properties": {
                        "column": nullable(name128),
                        "bins": nullable(integer(minimum=1, maximum=1000)),
                    }
                },
                "else": {"properties": {"x": nullable(name128), "y": nullable(names)}},
            },
        ),
        "TableWidget": obj(
            {"type": string(enum=["table"]), **common, "source": source},
            required=["type", "source"],
        ),
        "MetricWidget": obj(
            {
                "type": string(enum=["metric"]),
                **common,
                "source": source,
                "label": nullable(string(maxLength=255)),
                "unit": nullable(string(maxLength=64)),
            },
            required=["type", "source"],
        ),
        "TextWidget": obj(
            {"type": string(enum=["text"]), **common, "markdown": string(maxLength=100_000)},
            required=["type", "markdown"],
        ),
        "Widget": {
            "anyOf": [
                ref("ChartWidget"),
                ref("TableWidget"),
                ref("MetricWidget"),
                ref("TextWidget"),
            ]
        },
        "Dashboard": record(
            {
                "id": STRING,
                "name": STRING,
                "description": nullable(STRING),
                "widgets": array(ref("Widget")),
                "created_at": nullable(DATETIME),
                "updated_at": nullable(DATETIME),
            }
        ),
        "WidgetData": record(
            {
                "widget_id": STRING,
                "type": STRING,
                "columns": array(STRING),
                "rows": array(array(ANY)),
                "kind": STRING,
                "x": nullable(STRING),
                "y": array(STRING),
                "column": STRING,
                "bins": INTEGER,
                "value": ANY,
                "label": nullable(STRING),
                "unit": nullable(STRING),
                "markdown": STRING,
            },
            optional=["kind", "x", "y", "column", "bins", "value", "label", "unit", "markdown"],
            description="One widget evaluated: its columns and rows, and what its type adds",
        ),
        "CreateDashboardRequest": request(
            {
                "name": string(minLength=1, maxLength=255),
                "description": string(maxLength=10_000),
                "widgets": array(ref("Widget"), maxItems=100),
            },
            required=["name"],
        ),
        "UpdateDashboardRequest": request(
            {
                "name": string(minLength=1, maxLength=255),
                "description": string(maxLength=10_000),
                "widgets": array(ref("Widget"), maxItems=100),
            },
            description="Only the fields sent change; widgets are replaced as a whole",
        ),
    }
    missing = {404: "No such dashboard"}
    operations = (
        Operation(
            method="GET",
            path="/v1/dashboards",
            scope="read",
            summary="Dashboards, newest first",
            params=PAGE,
            responses=(Response(schema=array(ref("Dashboard"))),),
            errors={400: "Invalid cursor"},
            paginated=True,
        ),
        Operation(
            method="POST",
            path="/v1/dashboards",
            scope="write",
            summary="Create a dashboard",
            body=Body(schema=ref("CreateDashboardRequest")),
            responses=(Response(status=201, description="Created", schema=ref("Dashboard")),),
        ),
        Operation(
            method="GET",
            path="/v1/dashboards/{dashboard_id}",
            scope="read",
            summary="One dashboard with its widgets",
            params=(dashboard_id,),
            responses=(Response(schema=ref("Dashboard")),),
            errors=missing,
        ),
        Operation(
            method="PATCH",
            path="/v1/dashboards/{dashboard_id}",
            scope="write",
            summary="Change the fields sent",
            params=(dashboard_id,),
            body=Body(schema=ref("UpdateDashboardRequest")),
            responses=(Response(schema=ref("Dashboard")),),
            errors=missing,
        ),
        Operation(
            method="DELETE",
            path="/v1/dashboards/{dashboard_id}",
            scope="write",
            summary="Delete a dashboard",
            params=(dashboard_id,),
            responses=(Response(status=204, description="Deleted"),),
            errors=missing,
        ),
        Operation(
            method="GET",
            path="/v1/dashboards/{dashboard_id}/widgets/{widget_id}/data",
            scope="read",
            summary="Evaluate one widget",
            params=(dashboard_id, path_param("widget_id", "The widget")),
            responses=(Response(schema=ref("WidgetData")),),
            errors={
                400: "The widget's source cannot be evaluated against the data as it is",
                404: "No such dashboard or widget",
            },
        ),
    )
    return Family(
        tag="dashboards",
        description="Dashboards: widgets (chart, table, metric, text) over SQL or dataset rows",
        schemas=schemas,
        operations=operations,
    )


def _admin() -> Family:
    fault_config = {
        "error": {"type": "number", "minimum": 0, "maximum": 1},
        "throttle": {"type": "number", "minimum": 0, "maximum": 1},
        "reset": {"type": "number", "minimum": 0, "maximum": 1},
        "latency_ms": {"type": "number", "minimum": 0},
        "bandwidth": integer(minimum=0),
        "seed": nullable(INTEGER),
        "retry_after": integer(minimum=0),
        "scope": string(enum=["all", "api", "storage"]),
        "throttle_burst": integer(minimum=1),
        "spike": {"type": "number", "minimum": 0, "maximum": 1},
        "spike_ms": {"type": "number", "minimum": 0},
    }
    counters = obj({}, additionalProperties=INTEGER)
    schemas = {
        "FaultConfig": record(fault_config),
        "FaultConfigRequest": obj(fault_config, additionalProperties=False),
        "Faults": record({"config": ref("FaultConfig"), "counters": counters}),
        "Stats": record(
            {
                "requests": record({"total": INTEGER, "by_route": counters, "by_status": counters}),
                "storage": record(
                    {
                        "bytes_received": INTEGER,
                        "bytes_sent": INTEGER,
                        "bytes_received_by_file": counters,
                        "object_puts": INTEGER,
                        "part_puts": INTEGER,
                        "part_puts_by_file": obj({}, additionalProperties=counters),
                    }
                ),
                "faults": counters,
            }
        ),
    }
    operations = (
        Operation(
            method="GET",
            path="/v1/admin/faults",
            scope="admin",
            summary="The fault injection settings and counters",
            responses=(Response(schema=ref("Faults")),),
        ),
        Operation(
            method="PUT",
            path="/v1/admin/faults",
            scope="admin",
            summary="Replace the fault settings (keys left out take defaults: {} turns all off)",
            body=Body(schema=ref("FaultConfigRequest"), required=False),
            responses=(Response(schema=ref("Faults")),),
        ),
        Operation(
            method="GET",
            path="/v1/admin/stats",
            scope="admin",
            summary="The server's counters",
            responses=(Response(schema=ref("Stats")),),
        ),
        Operation(
            method="DELETE",
            path="/v1/admin/stats",
            scope="admin",
            summary="Zero the counters",
            responses=(Response(status=204, description="Zeroed"),),
        ),
    )
    return Family(
        tag="admin",
        description="Admin (admin scope; exempt from fault injection): faults and counters",
        schemas=schemas,
        operations=operations,
    )


def _meta() -> Family:
    return Family(
        tag="meta",
        description="This document",
        schemas={},
        operations=(
            Operation(
                method="GET",
                path=OPENAPI_PATH,
                scope=PUBLIC,
                summary="This OpenAPI 3.1 document",
                responses=(Response(schema=obj({"openapi": STRING}, required=["openapi"])),),
            ),
        ),
    )


#: The route families, in the document's order. Add new families here.
FAMILIES: tuple[Callable[[], Family], ...] = (
    _files,
    _storage,
    _executions,
    _jobs,
    _datasets,
    _instruments,
    _experiments,
    _dashboards,
    _admin,
    _meta,
)

# -- what every operation shares ---------------------------------------------------------------

_SHARED_SCHEMAS: dict[str, JSONSchema] = {
    "Error": record({"detail": STRING}, description="An error: what went wrong"),
    "ValidationError": record(
        {
            "detail": array(
                record(
                    {
                        "loc": array({"type": ["string", "integer"]}),
                        "msg": STRING,
                        "type": STRING,
                    }
                ),
                minItems=1,
            )
        },
        description="Every problem of the request (422)",
    ),
}

_SHARED_ERRORS = {
    400: "Bad request",
    401: "No API key, or one that is invalid, revoked or expired",
    403: "The API key lacks the scope this route needs",
    404: "Not found",
    409: "Conflict",
    412: "Precondition failed",
    413: "The request body is over this route's limit",
    416: "Range not satisfiable",
    422: "The request does not validate: every problem is listed",
    429: "Too many requests (or injected by fault injection): retry after Retry-After seconds",
    500: "Internal server error (or injected by fault injection)",
    503: "Service unavailable (injected by fault injection)",
}

_WRITE_METHODS = frozenset({"POST", "PATCH", "PUT"})
#: Methods whose routes take no body: one declared over 1 MiB is refused.
_BODYLESS = frozenset({"GET", "HEAD", "DELETE"})
#: aiohttp's parser answers a request line or header over its limits itself, in plain text and
#: without X-Request-ID, before any route or middleware runs.
_HTTP_LIMITS = "The request line or a header is over the HTTP limit of 8190 bytes (plain text)"


def _is_admin(op: Operation) -> bool:
    return op.path.startswith("/v1/admin/")


def _error_statuses(op: Operation) -> dict[int, str]:
    """Route-specific errors plus those every route of its kind can answer."""
    statuses: dict[int, str] = {}
    if op.scope != PUBLIC:
        statuses[401] = _SHARED_ERRORS[401]
        statuses[403] = _SHARED_ERRORS[403]
    if op.body is not None and op.body.media_type == "application/json":
        statuses[400] = "The body is not valid JSON"
        statuses[413] = _SHARED_ERRORS[413]
        statuses[422] = _SHARED_ERRORS[422]
    if op.body is not None and op.body.media_type == "multipart/form-data":
        statuses[413] = _SHARED_ERRORS[413]
        statuses[422] = _SHARED_ERRORS[422]
    if op.body is None and op.method in _BODYLESS:
        statuses[413] = "A body declared over 1 MiB (the route takes none)"
    elif not op.storage:
        statuses.setdefault(413, "A body declared far over what any route takes")
    if any(p.where == "query" for p in op.params) and not op.storage:
        statuses[422] = _SHARED_ERRORS[422]
    if op.method in _WRITE_METHODS and not op.storage and op.scope != PUBLIC:
        statuses.setdefault(400, "Idempotency-Key is empty or over 255 characters")
    if not _is_admin(op):
        statuses[429] = _SHARED_ERRORS[429]
        statuses[503] = _SHARED_ERRORS[503]
    # Any route: the HTTP layer refuses these before routing (see _error_response).
    statuses.setdefault(400, _HTTP_LIMITS)
    statuses[500] = _SHARED_ERRORS[500]
    for status, why in op.errors.items():
        shared = statuses.get(status)
        statuses[status] = why if shared is None else f"{why}; or: {shared}"
    return dict(sorted(statuses.items()))


def _header(schema: JSONSchema, description: str = "", required: bool = False) -> JSONSchema:
    header: JSONSchema = {"schema": schema}
    if description:
        header["description"] = description
    if required:
        header["required"] = True
    return header


_REQUEST_ID = _header(STRING, "The request's id (errors name it too)", required=True)
_LINK = _header(STRING, 'The next page: <url>; rel="next" (absent on the last page)')
_RETRY_AFTER = _header(string(pattern="^[0-9]+$"), "Seconds to wait before retrying")
_WWW_AUTHENTICATE = _header(STRING, "Bearer")


def _error_response(op: Operation, status: int, description: str) -> JSONSchema:
    schema = op.error_schemas.get(status) or ref("ValidationError" if status == 422 else "Error")
    content: JSONSchema = {"application/json": {"schema": schema}}
    headers: dict[str, JSONSchema] = {"X-Request-ID": _REQUEST_ID}
    if status == 400:
        content["text/plain"] = {"schema": STRING}
        headers["X-Request-ID"] = _header(
            STRING, _REQUEST_ID["description"] + "; not on the HTTP layer's plain-text answers"
        )
    if status == 429:
        headers["Retry-After"] = _RETRY_AFTER
    if status == 401:
        headers["WWW-Authenticate"] = _WWW_AUTHENTICATE
    return {
        "description": description,
        "headers": headers,
        "content": content,
    }


def _success_response(op: Operation, response: Response) -> JSONSchema:
    headers: dict[str, JSONSchema] = {"X-Request-ID": _REQUEST_ID}
    headers.update({name: _header(s) for name, s in response.headers.items()})
    if op.paginated and response.status == 200:
        headers["Link"] = _LINK
    out: JSONSchema = {"description": response.description, "headers": headers}
    if response.schema is not None:
        out["content"] = {response.media_type: {"schema": response.schema}}
    return out


def _parameter(param: Param) -> JSONSchema:
    out: JSONSchema = {"name": param.name, "in": param.where, "schema": param.schema}
    if param.description:
        out["description"] = param.description
    if param.required or param.where == "path":
        out["required"] = True
    return out


def _operation(op: Operation, family: Family) -> JSONSchema:
    params = list(op.params)
    named = {p.name for p in params if p.where == "path"}
    for segment in op.full_path.split("/"):
        if segment.startswith("{") and segment.strip("{}") not in named:
            params.append(path_param(segment.strip("{}"), ""))
    if op.method in _WRITE_METHODS and not op.storage and op.scope != PUBLIC:
        params.append(
            Param(
                name="Idempotency-Key",
                where="header",
                schema=string(minLength=1, maxLength=255),
                description="Repeats with the same key get the first answer again",
            )
        )
    out: JSONSchema = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag or family.tag],
        "security": [] if op.scope == PUBLIC else [{"bearer": []}],
        "x-labric-scope": op.scope,
        "x-labric-hosted": op.hosted,
    }
    if op.description:
        out["description"] = op.description
    if params:
        out["parameters"] = [_parameter(p) for p in params]
    if op.body is not None:
        schema = op.body.schema
        if not op.body.required and op.body.media_type == "application/json":
            schema = {"anyOf": [schema, {"type": "null"}]}  # a JSON null counts as no body
        body: JSONSchema = {
            "required": op.body.required,
            "content": {op.body.media_type: {"schema": schema}},
        }
        if op.body.description:
            body["description"] = op.body.description
        out["requestBody"] = body
    responses: dict[str, JSONSchema] = {}
    for response in op.responses:
        responses[str(response.status)] = _success_response(op, response)
    for status, why in _error_statuses(op).items():
        responses[str(status)] = _error_response(op, status, why)
    out["responses"] = responses
    return out


def build_document(families: Sequence[Family]) -> dict[str, Any]:
    """Assemble the OpenAPI document of ``families`` (see the module docstring)."""
    from labric._version import __version__

    paths: dict[str, dict[str, Any]] = {}
    schemas = dict(_SHARED_SCHEMAS)
    tags = []
    for family in families:
        tags.append({"name": family.tag, "description": family.description})
        for name, schema in family.schemas.items():
            if name in schemas:
                raise ValueError(f"Two families define the schema {name}")
            schemas[name] = schema
        for op in family.operations:
            item = paths.setdefault(op.full_path, {})
            method = op.method.lower()
            if method in item:
                raise ValueError(f"{op.method} {op.full_path} is described twice")
            item[method] = _operation(op, family)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Labric local API",
            "version": __version__,
            "description": "The local Labric server: the hosted routes it is wire-compatible "
            'with (x-labric-hosted) and its local additions. Errors are {"detail": ...}; '
            "listings link their next page with a Link header.",
        },
        "servers": [{"url": "/"}],
        "tags": tags,
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key: lbk_<prefix>_<secret>",
                }
            },
        },
    }


@functools.cache
def _cached() -> tuple[dict[str, Any], bytes]:
    doc = build_document([family() for family in FAMILIES])
    return doc, json.dumps(doc, separators=(",", ":")).encode()


def document() -> dict[str, Any]:
    """The local API's OpenAPI 3.1 document (a fresh copy)."""
    return copy.deepcopy(_cached()[0])


async def serve_document(request: web.Request) -> web.StreamResponse:
    """``GET /v1/openapi.json``: the document (public)."""
    return web.Response(body=_cached()[1], content_type="application/json")


def register(router: Router) -> None:
    """Add the document's route."""
    router.api("GET", OPENAPI_PATH, serve_document, scope=PUBLIC)
