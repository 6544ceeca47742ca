"""The admin family's wire shapes: fault configuration, counters, dataset limits.

Component schemas are named after the SDK's models where they answer one (``tests/openapi``
compares their fields); each operation is declared with its handler.
"""

from __future__ import annotations

from labric.server.core.declare import INTEGER, Family, integer, nullable, obj, record, ref, string

FAULT_CONFIG = {
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

#: The command line's text form of a value (``"5M"`` for a bandwidth, ``"0.1"`` for a fraction),
#: accepted in a request body beside the number itself, as ``labric serve --faults`` takes it.
_AS_TEXT = string(minLength=1, maxLength=64)

#: What ``PUT /v1/admin/faults`` takes: each setting as a number or in its command-line text.
FAULT_CONFIG_REQUEST = {
    name: schema if name == "scope" else {"anyOf": [schema, _AS_TEXT]}
    for name, schema in FAULT_CONFIG.items()
}

DATASET_LIMITS = {
    "query_timeout": {"type": "number", "exclusiveMinimum": 0},
    "max_query_rows": integer(minimum=1),
    "max_query_bytes": integer(minimum=1),
    "lock_timeout": {"type": "number", "minimum": 0},
}

COUNTERS = obj({}, additionalProperties=INTEGER)

SCHEMAS = {
    "FaultConfig": record(FAULT_CONFIG),
    "FaultConfigRequest": obj(FAULT_CONFIG_REQUEST, additionalProperties=False),
    "DatasetLimits": record(DATASET_LIMITS),
    "DatasetLimitsRequest": obj(DATASET_LIMITS, additionalProperties=False),
    "Faults": record({"config": ref("FaultConfig"), "counters": COUNTERS}),
    "Stats": record(
        {
            "requests": record({"total": INTEGER, "by_route": COUNTERS, "by_status": COUNTERS}),
            "storage": record(
                {
                    "bytes_received": INTEGER,
                    "bytes_sent": INTEGER,
                    "bytes_received_by_file": COUNTERS,
                    "object_puts": INTEGER,
                    "part_puts": INTEGER,
                    "part_puts_by_file": obj({}, additionalProperties=COUNTERS),
                }
            ),
            "faults": COUNTERS,
        }
    ),
}

ADMIN = Family(
    tag="admin",
    description="Admin (admin scope; exempt from fault injection): faults and counters",
    schemas=SCHEMAS,
)
