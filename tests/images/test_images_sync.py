"""``Labric().images``: the sync twin, against a real server on its own thread."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from _masks import box_pixels, foreground, image_png, mask_b64

from labric import Labric
from labric.errors import BadRequestError, NotFoundError, PermissionDeniedError
from labric.models import Annotation, MaskBoundingBox, SaveAnnotation
from labric.server import LocalServer, ThreadedServer

W, H = 12, 10


@pytest.fixture
def threaded(tmp_path: Path) -> Iterator[ThreadedServer]:
    with LocalServer.run_in_thread(tmp_path / "server") as srv:
        yield srv


@pytest.fixture
def sync_client(threaded: ThreadedServer) -> Iterator[Labric]:
    with Labric(threaded.admin_key, base_url=threaded.base_url, max_retries=0) as c:
        yield c


@pytest.fixture
def image(threaded: ThreadedServer, sync_client: Labric) -> str:
    instrument = threaded.create_instrument("Microscope")
    return str(
        sync_client.files.upload(image_png(W, H), name="a.png", instrument_id=instrument).file_id
    )


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url) as resp:  # no Authorization: the URL is signed
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_annotate_list_and_fetch_a_mask(sync_client: Labric, image: str) -> None:
    box = (2, 3, 4, 5)
    saved = sync_client.images.annotate(
        image,
        [
            SaveAnnotation(mask=mask_b64(W, H, [box]), label="cell", is_human_vetted=True),
            {"mask": mask_b64(W, H, [(0, 0, 1, 1)]), "label": "cell"},
        ],
    )
    assert all(isinstance(a, Annotation) for a in saved)
    assert saved[0].bbox == MaskBoundingBox(x=2, y=3, width=4, height=5)
    assert saved[0].foreground_fraction == pytest.approx(20 / (W * H))
    assert saved[0].label_id == saved[1].label_id
    listed = sync_client.images.annotations(image)
    assert [a.id for a in listed] == [a.id for a in saved]
    status, png = _get(listed[0].mask_url or "")
    assert status == 200
    assert foreground(png) == box_pixels([box])


def test_all_or_nothing_and_another_file(sync_client: Labric, image: str) -> None:
    good = {"mask": mask_b64(W, H, [(1, 1, 1, 1)]), "label": "cell"}
    with pytest.raises(BadRequestError):
        sync_client.images.annotate(image, [good, {"mask": mask_b64(W, H + 1), "label": "x"}])
    with pytest.raises(BadRequestError):
        sync_client.images.annotate(image, [good, {**good, "file_id": "another"}])
    assert sync_client.images.annotations(image) == []
    with pytest.raises(NotFoundError):
        sync_client.images.annotations("no-such-file")


def test_revert_removes_the_masks_of_its_execution(sync_client: Labric, image: str) -> None:
    run = sync_client.jobs.executions.start(job_name="segment").job_execution_id
    (saved,) = sync_client.images.annotate(
        image, [{"mask": mask_b64(W, H), "label": "x"}], job_execution_id=run
    )
    assert saved.job_execution_id == run
    assert sync_client.jobs.executions.revert(run).deleted_count == 1
    assert sync_client.images.annotations(image) == []
    assert _get(saved.mask_url or "")[0] == 404


def test_a_read_only_key_cannot_annotate(threaded: ThreadedServer, image: str) -> None:
    with Labric(threaded.create_key(["read"]), base_url=threaded.base_url) as reader:
        with pytest.raises(PermissionDeniedError):
            reader.images.annotate(image, [{"mask": mask_b64(W, H), "label": "x"}])
        assert reader.images.annotations(image) == []
