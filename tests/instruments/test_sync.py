"""The blocking client end to end: pair a device, report, upload, and file it in an experiment."""

from __future__ import annotations

from pathlib import Path

import pytest

from labric import Labric
from labric.errors import BadRequestError
from labric.server import ThreadedServer


def test_the_sync_client_pairs_a_device_and_files_its_upload(tmp_path: Path) -> None:
    with (
        ThreadedServer(tmp_path / "server") as server,
        Labric(server.admin_key, base_url=server.base_url, max_retries=0) as admin,
    ):
        made = admin.instruments.create(name="Reader")
        device = admin.instruments.pair(made.pairing_code)
        with pytest.raises(BadRequestError):
            admin.instruments.pair(made.pairing_code)
        with Labric(device.api_key, base_url=server.base_url, max_retries=0) as as_device:
            as_device.instruments.report_status(made.instrument.id, status="online")
            uploaded = as_device.files.upload(b"A1,0.5\n", name="plate.csv")
        assert [f.file_id for f in admin.files.list(instrument_id=made.instrument.id)] == [
            uploaded.file_id
        ]
        history = admin.instruments.device_status(made.instrument.id)
        assert [p.status for p in history.statuses] == ["online"]
        run = admin.experiments.create(name="Run", status="running", tags=["plate"])
        admin.experiments.link_files(run.id, [uploaded.file_id])
        assert [f.file_id for f in admin.experiments.files(run.id)] == [uploaded.file_id]
        assert [e.id for e in admin.experiments.list(tag="plate")] == [run.id]
        rows = list(admin.datasets.rows("experiment"))
        assert [(r["id"], r["status"]) for r in rows] == [(run.id, "running")]
