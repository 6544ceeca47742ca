"""Helpers of the jobs tests: a hand-driven clock, raw HTTP calls, job scripts."""

from __future__ import annotations

import textwrap
from typing import Any

from _clocked import ADMIN, FakeClock, Reply
from _clocked import Wire as BaseWire

__all__ = ["FakeClock", "Reply", "Wire", "script"]


class Wire(BaseWire):
    """:class:`_clocked.Wire` plus the calls the jobs tests make often."""

    async def create_job(self, name: str, code: str = "print('hi')\n", **body: Any) -> Any:
        return await self.ok("POST", "/v1/jobs", json={"name": name, "code": code, **body})

    async def executions(self, job_id: str) -> list[Any]:
        listed: list[Any] = await self.ok(
            "GET", "/v1/job-executions", params={"job_id": job_id, "limit": "100"}
        )
        return listed

    async def upload(self, data: bytes, name: str, *, key: str | None = ADMIN, **body: Any) -> Any:
        """The hosted three-step upload; returns the confirmed FileUpload body."""
        ticket = await self.ok(
            "POST", "/v1/files/upload-url", key=key, json={"file_name": name, **body}
        )
        async with self.session.put(
            ticket["upload_url"], data=data, headers=ticket["headers"]
        ) as put:
            assert put.status == 200, await put.read()
        return await self.ok("POST", f"/v1/files/{ticket['file_id']}/confirm-upload", key=key)


def script(text: str) -> str:
    """A job script from an indented block."""
    return textwrap.dedent(text).lstrip()
