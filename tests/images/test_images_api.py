"""The image annotation routes and ``client.images``, over real sockets: measured masks, labels,
additive and all-or-nothing saves, signed mask URLs, attribution and revert, scopes and
organisations."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest
from _clocked import FakeClock, Wire
from _masks import (
    box_pixels,
    foreground,
    huge_blank_png,
    image_jpeg,
    image_png,
    mask_b64,
    mask_png,
    rgba_png,
)

from labric import AsyncLabric
from labric.errors import (
    BadRequestError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    UnprocessableEntityError,
)
from labric.models import ActivityActor, Annotation, MaskBoundingBox, SaveAnnotation
from labric.server import LocalServer
from labric.server.core.state import STATE
from labric.server.images import store

from .conftest import HEIGHT, WIDTH

PIXELS = WIDTH * HEIGHT


def _masks_on_disk(server: LocalServer) -> list[Path]:
    folder = server.data_dir.root / "masks"
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


async def _fetch(url: str) -> tuple[int, str, bytes]:
    """GET a signed URL with a plain session: no API key anywhere."""
    async with aiohttp.ClientSession() as s, s.get(url) as resp:
        return resp.status, resp.content_type, await resp.read()


# -- measuring ---------------------------------------------------------------------------------


async def test_bbox_and_fraction_come_from_the_masks(client: AsyncLabric, image_id: str) -> None:
    corners = [(0, 0, 2, 2), (WIDTH - 3, HEIGHT - 1, 3, 1)]
    saved = await client.images.annotate(
        image_id,
        [
            SaveAnnotation(mask=mask_b64(WIDTH, HEIGHT, [(5, 4, 10, 6)]), label="cell"),
            {"mask": mask_b64(WIDTH, HEIGHT, corners), "label": "debris"},
            {"mask": mask_b64(WIDTH, HEIGHT), "label": "nothing", "is_human_vetted": True},
            # White on black, without alpha: the grey level decides.
            {"mask": mask_b64(WIDTH, HEIGHT, [(1, 2, 3, 4)], mode="L"), "label": "grey"},
        ],
    )
    assert all(isinstance(a, Annotation) for a in saved)
    assert [a.label for a in saved] == ["cell", "debris", "nothing", "grey"]
    cell, debris, nothing, grey = saved
    assert cell.bbox == MaskBoundingBox(x=5, y=4, width=10, height=6)
    assert cell.foreground_fraction == pytest.approx(60 / PIXELS)
    assert (cell.width, cell.height) == (WIDTH, HEIGHT)
    assert debris.bbox == MaskBoundingBox(x=0, y=0, width=WIDTH, height=HEIGHT)
    assert debris.foreground_fraction == pytest.approx(7 / PIXELS)
    assert nothing.bbox is None
    assert nothing.foreground_fraction == 0
    assert grey.bbox == MaskBoundingBox(x=1, y=2, width=3, height=4)
    assert grey.foreground_fraction == pytest.approx(12 / PIXELS)
    assert [a.is_human_vetted for a in saved] == [False, False, True, False]
    assert all(a.file_id == image_id and a.job_execution_id is None for a in saved)
    assert isinstance(cell.user, ActivityActor)
    assert cell.user.name.startswith("API key lbk_")
    assert cell.user.name.endswith("…")
    # Listed oldest first, exactly as saved (with fresh URLs).
    listed = await client.images.annotations(image_id)
    assert [attrs.evolve(a, mask_url=None) for a in listed] == [
        attrs.evolve(a, mask_url=None) for a in saved
    ]


async def test_a_mask_of_any_png_mode_is_measured_by_its_alpha(
    client: AsyncLabric, image_id: str
) -> None:
    """A translucent pixel under half opacity is background; a black opaque one is foreground
    (alpha decides, not colour)."""
    png = rgba_png(
        WIDTH,
        HEIGHT,
        {(3, 3): (0, 0, 0, 255), (4, 4): (255, 255, 255, 127), (5, 5): (255, 255, 255, 128)},
    )
    (saved,) = await client.images.annotate(image_id, [SaveAnnotation.from_png(png, label="a")])
    assert saved.bbox == MaskBoundingBox(x=3, y=3, width=3, height=3)
    assert saved.foreground_fraction == pytest.approx(2 / PIXELS)
    status, kind, png = await _fetch(saved.mask_url or "")
    assert (status, kind) == (200, "image/png")
    assert foreground(png) == {(3, 3), (5, 5)}


async def test_labels_are_created_once_and_saves_add_up(client: AsyncLabric, image_id: str) -> None:
    first = await client.images.annotate(
        image_id,
        [
            {"mask": mask_b64(WIDTH, HEIGHT, [(0, 0, 4, 4)]), "label": "cell"},
            {"mask": mask_b64(WIDTH, HEIGHT, [(10, 10, 4, 4)]), "label": "cell"},
        ],
    )
    second = await client.images.annotate(
        image_id,
        [
            {"mask": mask_b64(WIDTH, HEIGHT, [(20, 20, 2, 2)]), "label": "cell"},
            {"mask": mask_b64(WIDTH, HEIGHT, [(1, 1, 1, 1)]), "label": "debris"},
        ],
    )
    listed = await client.images.annotations(image_id)
    assert [a.id for a in listed] == [a.id for a in first + second]  # nothing replaced
    by_label: dict[str, set[str | None]] = {}
    for a in listed:
        by_label.setdefault(a.label, set()).add(a.label_id)
    assert {k: len(v) for k, v in by_label.items()} == {"cell": 1, "debris": 1}
    assert by_label["cell"] != by_label["debris"]
    assert await client.images.annotate(image_id, []) == []  # an empty prediction saves nothing


async def test_the_label_table_holds_each_name_once(
    server: LocalServer, client: AsyncLabric, image_id: str
) -> None:
    for _ in range(2):
        await client.images.annotate(
            image_id, [{"mask": mask_b64(WIDTH, HEIGHT, [(0, 0, 1, 1)]), "label": "cell"}]
        )
    state = server._runner.app[STATE]  # type: ignore[union-attr]
    names = await state.db.run(
        lambda conn: [r["name"] for r in conn.execute("SELECT name FROM image_labels")]
    )
    assert names == ["cell"]


# -- all or nothing ----------------------------------------------------------------------------

GOOD = {"mask": mask_b64(WIDTH, HEIGHT, [(2, 2, 2, 2)]), "label": "cell"}


@pytest.mark.parametrize(
    ("bad", "error", "says"),
    [
        ({"mask": "not base64 at all!", "label": "x"}, BadRequestError, "not valid base64"),
        ({"mask": "aGVsbG8=", "label": "x"}, BadRequestError, "not a PNG"),
        (
            {"mask": mask_b64(WIDTH + 1, HEIGHT), "label": "x"},
            BadRequestError,
            "masks must have the image's size",
        ),
        (
            {"mask": mask_b64(WIDTH, HEIGHT), "label": "x", "width": 7},
            BadRequestError,
            "width/height say 7 x 30",
        ),
        ({"mask": mask_b64(WIDTH, HEIGHT)}, UnprocessableEntityError, "label"),
        ({"label": "x"}, UnprocessableEntityError, "mask"),
        (
            {"mask": mask_b64(WIDTH, HEIGHT), "label": "x", "is_human_vetted": "yes"},
            UnprocessableEntityError,
            "is_human_vetted",
        ),
    ],
)
async def test_one_bad_entry_saves_nothing(
    server: LocalServer,
    client: AsyncLabric,
    image_id: str,
    bad: dict[str, Any],
    error: type[Exception],
    says: str,
) -> None:
    with pytest.raises(error) as caught:
        await client.images.annotate(image_id, [GOOD, GOOD, bad])
    assert says in str(caught.value.detail)  # type: ignore[attr-defined]
    if error is BadRequestError:
        assert "annotations[2]" in str(caught.value.detail)  # type: ignore[attr-defined]
    assert await client.images.annotations(image_id) == []
    assert _masks_on_disk(server) == []
    state = server._runner.app[STATE]  # type: ignore[union-attr]
    labels = await state.db.run(
        lambda conn: conn.execute("SELECT count(*) FROM image_labels").fetchone()[0]
    )
    assert labels == 0


async def test_a_mask_claiming_too_many_pixels_is_refused_before_decoding(
    client: AsyncLabric, image_id: str
) -> None:
    """A PNG bomb (a few kilobytes claiming 100 million pixels) is refused from its header."""
    bomb = huge_blank_png(10_000, 10_000)
    assert len(bomb) < 100_000
    with pytest.raises(BadRequestError) as caught:
        await client.images.annotate(image_id, [SaveAnnotation.from_png(bomb, label="x")])
    assert "over the limit of 50,000,000 pixels" in str(caught.value.detail)
    assert await client.images.annotations(image_id) == []


async def test_an_entry_for_another_file_refuses_the_request(
    server: LocalServer, client: AsyncLabric, image_id: str
) -> None:
    instrument = server.create_instrument("Other scope")
    other = await client.files.upload(
        image_png(WIDTH, HEIGHT), name="other.png", instrument_id=instrument
    )
    with pytest.raises(BadRequestError) as caught:
        await client.images.annotate(
            image_id, [{**GOOD, "file_id": image_id}, {**GOOD, "file_id": other.file_id}]
        )
    assert f"annotations[1] names file {other.file_id}" in str(caught.value.detail)
    assert await client.images.annotations(image_id) == []
    assert await client.images.annotations(other.file_id) == []
    # Naming the path's own file is fine.
    (saved,) = await client.images.annotate(image_id, [{**GOOD, "file_id": image_id}])
    assert saved.file_id == image_id


async def test_predicted_annotations_are_taken_as_they_are(
    client: AsyncLabric, image_id: str
) -> None:
    """A segmentation prediction's annotations (dicts or models, with confidence and the rest)
    go straight in; measurements are the server's own."""

    @attrs.frozen(kw_only=True)
    class Predicted:  # the shape of the hosted PredictedAnnotationSchema
        file_id: str
        label: str
        mask: str
        width: int
        height: int
        foreground_fraction: float
        confidence: float

    mask = mask_b64(WIDTH, HEIGHT, [(0, 0, WIDTH, 3)])
    as_dict = {
        "file_id": image_id,
        "label": "cell",
        "mask": mask,
        "width": WIDTH,
        "height": HEIGHT,
        "foreground_fraction": 0.9,
        "confidence": 0.7,
    }
    saved = await client.images.annotate(image_id, [as_dict, Predicted(**as_dict)])
    assert [a.foreground_fraction for a in saved] == [pytest.approx(0.1)] * 2
    assert [a.is_human_vetted for a in saved] == [False, False]


# -- which files ---------------------------------------------------------------------------------


async def test_only_stored_images_can_be_annotated(
    server: LocalServer, client: AsyncLabric, image_id: str
) -> None:
    instrument = server.create_instrument("Reader")
    csv = await client.files.upload(b"a,b\n1,2\n", name="r.csv", instrument_id=instrument)
    for call in (
        lambda: client.images.annotations(csv.file_id),
        lambda: client.images.annotate(csv.file_id, [GOOD]),
    ):
        with pytest.raises(BadRequestError) as caught:
            await call()
        assert "cannot be annotated: it is not an image" in str(caught.value.detail)
    with pytest.raises(NotFoundError):
        await client.images.annotations("no-such-file")
    with pytest.raises(NotFoundError):
        await client.images.annotate("no-such-file", [GOOD])
    # Any format Pillow reads is an image (the masks are PNGs).
    jpeg = await client.files.upload(
        image_jpeg(WIDTH, HEIGHT), name="j.jpg", instrument_id=instrument
    )
    assert len(await client.images.annotate(jpeg.file_id, [GOOD])) == 1
    # An image over the pixel limit cannot be (its masks would be as large).
    huge = await client.files.upload(
        huge_blank_png(10_000, 10_000), name="huge.png", instrument_id=instrument
    )
    with pytest.raises(BadRequestError) as caught:
        await client.images.annotations(huge.file_id)
    assert "over the limit of 50,000,000 pixels" in str(caught.value.detail)
    # An upload that is not confirmed yet is not processed.
    pending = await client._transport.request(
        "POST", "/v1/files/upload-url", json={"file_name": "p.png", "instrument_id": instrument}
    )
    with pytest.raises(BadRequestError) as caught:
        await client.images.annotations(pending.json()["file_id"])
    assert "not processed yet" in str(caught.value.detail)


async def test_deleting_the_file_removes_its_masks(
    server: LocalServer, client: AsyncLabric, image_id: str
) -> None:
    (saved,) = await client.images.annotate(image_id, [GOOD])
    assert len(_masks_on_disk(server)) == 1
    await client.files.delete(image_id)
    assert _masks_on_disk(server) == []
    assert (await _fetch(saved.mask_url or ""))[0] == 404


# -- mask URLs -----------------------------------------------------------------------------------


async def test_the_mask_url_serves_the_png_without_a_key_and_expires(
    server: LocalServer, client: AsyncLabric, image_id: str, clock: FakeClock
) -> None:
    boxes = [(5, 4, 10, 6), (30, 20, 3, 3)]
    (saved,) = await client.images.annotate(
        image_id, [{"mask": mask_b64(WIDTH, HEIGHT, boxes), "label": "cell"}]
    )
    url = saved.mask_url or ""
    assert url.startswith(server.origin + "/storage/v1/masks/")
    assert "Signature" not in repr(saved)
    status, kind, png = await _fetch(url)
    assert (status, kind) == (200, "image/png")
    assert foreground(png) == box_pixels(boxes)
    # Tampered with: 403.
    assert (await _fetch(url[:-1] + ("0" if url[-1] != "0" else "1")))[0] == 403
    assert (await _fetch(url.split("?")[0]))[0] == 403
    # Another annotation's path under this signature: 403.
    other = url.replace(saved.id, "0" * len(saved.id))
    assert (await _fetch(other))[0] == 403
    # Expired on the server's clock: 403; a fresh listing signs a new URL.
    clock.advance(server.settings.download_url_ttl + 1)
    status, _, body = await _fetch(url)
    assert status == 403
    assert b"expired" in body
    (listed,) = await client.images.annotations(image_id)
    assert listed.mask_url != url
    assert (await _fetch(listed.mask_url or ""))[:2] == (200, "image/png")


async def test_an_api_key_does_not_open_a_mask_url(
    server: LocalServer, wire: Wire, client: AsyncLabric, image_id: str
) -> None:
    (saved,) = await client.images.annotate(image_id, [GOOD])
    bare = (saved.mask_url or "").split("?")[0]
    reply = await wire.get(bare)
    assert reply.status == 403


# -- attribution and revert ----------------------------------------------------------------------


async def test_reverting_the_execution_removes_its_masks(
    server: LocalServer, client: AsyncLabric, image_id: str
) -> None:
    execution = await client.jobs.executions.start(job_name="segment")
    run_id = execution.job_execution_id
    kept = await client.images.annotate(image_id, [GOOD])
    from_run = await client.images.annotate(image_id, [GOOD, GOOD], job_execution_id=run_id)
    assert [a.job_execution_id for a in from_run] == [run_id, run_id]
    assert len(_masks_on_disk(server)) == 3
    result = await client.jobs.executions.revert(run_id)
    assert result.deleted_count == 2
    assert [a.id for a in await client.images.annotations(image_id)] == [kept[0].id]
    assert len(_masks_on_disk(server)) == 1
    assert (await _fetch(from_run[0].mask_url or ""))[0] == 404
    again = await client.jobs.executions.revert(run_id)
    assert again.deleted_count == 0


async def test_inside_a_job_masks_default_to_the_running_execution(
    server: LocalServer, client: AsyncLabric, image_id: str
) -> None:
    execution = await client.jobs.executions.start(job_name="segment")
    run_id = execution.job_execution_id
    job_key = server.create_key(["read", "write"], job_execution_id=run_id)
    async with AsyncLabric(job_key, base_url=server.base_url, max_retries=0) as job:
        (saved,) = await job.images.annotate(image_id, [GOOD])
    assert saved.job_execution_id == run_id
    assert (await client.jobs.executions.revert(run_id)).deleted_count == 1
    assert await client.images.annotations(image_id) == []


async def test_reverting_the_file_upload_takes_masks_others_saved(
    server: LocalServer, client: AsyncLabric
) -> None:
    execution = await client.jobs.executions.start(job_name="acquire")
    run_id = execution.job_execution_id
    up = await client.files.upload(
        image_png(WIDTH, HEIGHT), name="acq.png", job_execution_id=run_id
    )
    await client.images.annotate(up.file_id, [GOOD])  # no execution: someone else's mask
    result = await client.jobs.executions.revert(run_id)
    assert result.deleted_count == 1  # the file
    assert any("1 mask(s) saved by others" in w for w in result.warnings)
    assert _masks_on_disk(server) == []


async def test_an_unknown_execution_is_404(client: AsyncLabric, image_id: str) -> None:
    with pytest.raises(NotFoundError) as caught:
        await client.images.annotate(image_id, [GOOD], job_execution_id="no-such-execution")
    assert "Job execution no-such-execution not found" in str(caught.value.detail)
    assert await client.images.annotations(image_id) == []


# -- scopes, organisations, Pillow ---------------------------------------------------------------


async def test_a_read_only_key_lists_but_cannot_annotate(
    server: LocalServer, client: AsyncLabric, image_id: str
) -> None:
    await client.images.annotate(image_id, [GOOD])
    async with AsyncLabric(
        server.create_key(["read"]), base_url=server.base_url, max_retries=0
    ) as reader:
        assert len(await reader.images.annotations(image_id)) == 1
        with pytest.raises(PermissionDeniedError) as caught:
            await reader.images.annotate(image_id, [GOOD])
        assert "lacks the 'write' scope" in str(caught.value.detail)
    assert len(await client.images.annotations(image_id)) == 1


async def test_another_organisation_cannot_see_or_annotate(
    server: LocalServer, client: AsyncLabric, image_id: str
) -> None:
    (saved,) = await client.images.annotate(image_id, [GOOD])
    async with AsyncLabric(
        server.create_key("admin", org="Org B"), base_url=server.base_url, max_retries=0
    ) as b:
        for call in (
            lambda: b.images.annotations(image_id),
            lambda: b.images.annotate(image_id, [GOOD]),
        ):
            with pytest.raises(NotFoundError) as caught:
                await call()
            assert caught.value.detail == f"File {image_id} not found"  # type: ignore[attr-defined]
    assert [a.id for a in await client.images.annotations(image_id)] == [saved.id]


async def test_without_pillow_the_routes_answer_503_naming_the_extra(
    client: AsyncLabric, image_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "PIL", None)
    for call in (
        lambda: client.images.annotations(image_id),
        lambda: client.images.annotate(image_id, [GOOD]),
    ):
        with pytest.raises(InternalServerError) as caught:
            await call()
        assert caught.value.status_code == 503  # type: ignore[attr-defined]
        assert "pip install 'labric[images]'" in str(caught.value.detail)  # type: ignore[attr-defined]


# -- the trainer's view, and start-up ------------------------------------------------------------


async def test_vetted_masks_are_what_a_trainer_reads(
    server: LocalServer, client: AsyncLabric, image_id: str
) -> None:
    box = (5, 4, 10, 6)
    await client.images.annotate(
        image_id,
        [
            {"mask": mask_b64(WIDTH, HEIGHT, [box]), "label": "cell", "is_human_vetted": True},
            {"mask": mask_b64(WIDTH, HEIGHT, [(0, 0, 3, 3)]), "label": "guess"},
        ],
    )
    state = server._runner.app[STATE]  # type: ignore[union-attr]
    org_id = state.operator_org_id
    (vetted,) = await store.vetted_masks(state, org_id, image_id)
    assert vetted.label == "cell"
    assert vetted.mask.mode == "L"
    assert vetted.mask.size == (WIDTH, HEIGHT)
    data = vetted.mask.tobytes()
    on = {(i % WIDTH, i // WIDTH) for i, v in enumerate(data) if v}
    assert on == box_pixels([box])
    assert set(data) == {0, 255}
    assert await store.vetted_masks(state, "another-org", image_id) == []


async def test_stray_mask_blobs_are_swept_at_start(tmp_path: Path, clock: FakeClock) -> None:
    async with LocalServer(tmp_path / "srv", clock=clock) as srv:
        async with AsyncLabric(srv.admin_key, base_url=srv.base_url, max_retries=0) as c:
            up = await c.files.upload(
                image_png(WIDTH, HEIGHT), name="a.png", instrument_id=srv.create_instrument("m")
            )
            (kept,) = await c.images.annotate(up.file_id, [GOOD])
        stray = srv.data_dir.root / "masks" / up.file_id / "stray.png"
        stray.write_bytes(mask_png(WIDTH, HEIGHT))
        orphan = srv.data_dir.root / "masks" / "gone-file" / "x.png"
        orphan.parent.mkdir()
        orphan.write_bytes(b"x")
    async with LocalServer(tmp_path / "srv", clock=clock) as srv:
        left = sorted(p.name for p in (srv.data_dir.root / "masks").rglob("*"))
        assert left == sorted([up.file_id, f"{kept.id}.png"])


def test_neither_the_client_nor_the_server_imports_pillow_until_an_image_is_read() -> None:
    """Pillow is the server's optional extra: importing the SDK, its models and the server (and
    building the app) must not need it."""
    import subprocess

    code = (
        "import sys\n"
        "sys.modules['PIL'] = None  # as if not installed: importing it raises\n"
        "import labric, labric.models, labric.resources.images, labric.server\n"
        "from labric.server.core.app import add_routes\n"
        "from labric.models import SaveAnnotation\n"
        "assert SaveAnnotation.from_png(b'png', label='x').mask == 'cG5n'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


async def test_a_job_scripts_masks_are_its_executions_and_go_with_its_revert(
    tmp_path: Path,
) -> None:
    """A real job run: the script annotates its input image with no ids at all."""
    code = (
        "from labric import Labric\n"
        "from labric.job import JobContext\n"
        "ctx = JobContext.from_env()\n"
        "(image,) = ctx.files\n"
        "with Labric() as client:\n"
        f"    saved = client.images.annotate(image.id, [{{'mask': {GOOD['mask']!r}, "
        "'label': 'from-job'}])\n"
        "print('saved', saved[0].job_execution_id == ctx.execution_id)\n"
    )
    async with (
        LocalServer(tmp_path / "jobs") as srv,
        AsyncLabric(srv.admin_key, base_url=srv.base_url, max_retries=0) as c,
    ):
        image = await c.files.upload(
            image_png(WIDTH, HEIGHT), name="in.png", instrument_id=srv.create_instrument("m")
        )
        job = await c.jobs.create(name="segment", code=code)
        run = await c.jobs.run(job.id, file_ids=[image.file_id])
        done = await c.jobs.wait(run.id, timeout=120)
        logs = await c.jobs.executions.logs(run.id)
        assert done.status == "completed", logs.text
        assert "saved True" in logs.text
        (saved,) = await c.images.annotations(image.file_id)
        assert (saved.label, saved.job_execution_id) == ("from-job", run.id)
        assert (await c.jobs.executions.revert(run.id)).deleted_count == 1
        assert await c.images.annotations(image.file_id) == []
