"""``PUT /v1/admin/faults`` takes settings as ``labric serve --faults`` does: text or numbers."""

from __future__ import annotations

import pytest

from labric.server import LocalServer, parse_faults
from labric.server.admin.wire import SCHEMAS

from ._support import Wire


async def test_the_json_body_takes_the_command_lines_values(
    wire: Wire, server: LocalServer
) -> None:
    body = {"bandwidth": "5M", "error": "0.1", "latency_ms": 2, "seed": "7", "scope": "storage"}
    reply = await wire.put("/v1/admin/faults", json=body)
    assert reply.status == 200, reply.json()
    spec = "bandwidth=5M,error=0.1,latency_ms=2,seed=7,scope=storage"
    assert server.faults.config == parse_faults(spec)
    assert reply.json()["config"]["bandwidth"] == 5_000_000
    assert (await wire.put("/v1/admin/faults", json={})).status == 200


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"bandwidth": "fast"}, "bandwidth"),
        ({"error": "2"}, "error"),
        ({"bandwidth": "5M,error=1"}, "bandwidth"),
        ({"error": True}, "error"),
    ],
)
async def test_bad_text_values_are_422_naming_the_setting(
    wire: Wire, server: LocalServer, body: dict[str, object], named: str
) -> None:
    reply = await wire.put("/v1/admin/faults", json=body)
    assert reply.status == 422
    assert named in str(reply.json()["detail"])
    assert not server.faults.config.active


def test_the_openapi_declaration_allows_text_values() -> None:
    properties = SCHEMAS["FaultConfigRequest"]["properties"]
    assert {"type": "string", "minLength": 1, "maxLength": 64} in properties["bandwidth"]["anyOf"]
    assert properties["scope"]["enum"] == ["all", "api", "storage"]
