"""The images family's wire shapes: annotations as the hosted platform answers and takes them.

Component schemas are named after the SDK's models (``tests/openapi`` compares their fields);
each operation is declared with its handler.
"""

from __future__ import annotations

from labric.server.core.declare import (
    BOOLEAN,
    DATETIME,
    INTEGER,
    NUMBER,
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

#: The largest annotate body (the hosted edge's limit on request bodies).
MAX_BODY = 4_500_000
#: The most masks one annotate request saves.
MAX_ANNOTATIONS = 1000
MAX_LABEL = 255

SCHEMAS = {
    "Annotation": record(
        {
            "id": STRING,
            "label": STRING,
            "mask_url": nullable(
                string(description="Signed URL of the mask PNG (white on transparent); expires")
            ),
            "width": nullable(INTEGER),
            "height": nullable(INTEGER),
            "is_human_vetted": nullable(BOOLEAN),
            "foreground_fraction": nullable(NUMBER),
            "bbox": nullable(ref("MaskBoundingBox")),
            "user": nullable(ref("ActivityActor")),
            "file_id": STRING,
            "label_id": STRING,
            "job_execution_id": nullable(STRING),
            "created_at": DATETIME,
        },
        description="Hosted AnnotationSchema, plus the file, label id, execution and time",
    ),
    "MaskBoundingBox": record(
        {"x": INTEGER, "y": INTEGER, "width": INTEGER, "height": INTEGER},
        description="The box of the mask's foreground pixels, in mask pixel coordinates",
    ),
    "ActivityActor": record(
        {"id": STRING, "name": STRING, "image_url": nullable(STRING)},
        description="Who saved it: locally, the API key (its name, else its public prefix)",
    ),
    "SaveAnnotation": request(
        {
            "mask": string(description="Base64 PNG, white on transparent, the image's size"),
            "label": string(minLength=1, maxLength=MAX_LABEL),
            "width": integer(minimum=1),
            "height": integer(minimum=1),
            "is_human_vetted": BOOLEAN,
            "file_id": string(description="Must be the path's file when set"),
        },
        required=["mask", "label"],
        description="One mask to save; a predicted annotation (with its extra fields) also fits",
    ),
    "AnnotateRequest": obj(
        {
            "annotations": array(ref("SaveAnnotation"), maxItems=MAX_ANNOTATIONS),
            "job_execution_id": nullable(STRING),
        },
        required=["annotations"],
    ),
}

IMAGES = Family(
    tag="images",
    description="Image annotations: masks saved on image files, labels created on first use",
    schemas=SCHEMAS,
)
