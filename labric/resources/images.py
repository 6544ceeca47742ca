"""``client.images``: the masks saved on image files (hosted routes)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from labric._core.converter import unstructure
from labric._core.urls import path_segment
from labric.models.images import Annotation, SaveAnnotation
from labric.resources._base import AsyncResource

__all__ = ["AsyncImages"]


def _annotations_path(file_id: str) -> str:
    return f"/v1/images/{path_segment(file_id, 'file_id')}/annotations"


def _entry(item: Mapping[str, Any] | object) -> dict[str, Any]:
    """One entry as sent: a mapping as it is, a model (``SaveAnnotation``, or a predicted
    annotation from a segmentation model) as its fields, leaving out unset ones."""
    if isinstance(item, Mapping):
        return dict(item)
    if attrs.has(type(item)):
        data = unstructure(item)
        return {name: value for name, value in data.items() if value is not None}
    raise TypeError(
        f"An annotation must be a mapping or a model such as SaveAnnotation, not "
        f"{type(item).__name__}"
    )


class AsyncImages(AsyncResource):
    """Image annotations: labelled masks saved on image files, for review and for training
    segmentation models."""

    async def annotations(self, file_id: str) -> list[Annotation]:
        """List the masks saved on an image, oldest first.

        Masks from automated (unvetted) saves are listed too; only vetted ones train models.

        Args:
            file_id: The image file.

        Returns:
            The annotations, each with a signed, expiring ``mask_url`` of its PNG (fetch it
            without the API key).

        Raises:
            NotFoundError: no such file in the organisation.
            BadRequestError: the file is not an image (or not processed yet).
        """
        response = await self._transport.request("GET", _annotations_path(file_id))
        return self._parse(response, list[Annotation])

    async def annotate(
        self,
        file_id: str,
        annotations: Iterable[SaveAnnotation | Mapping[str, Any] | Any],
        *,
        job_execution_id: str | None = None,
    ) -> list[Annotation]:
        """Save masks on an image: all or nothing, added to those already there.

        Args:
            file_id: The image file.
            annotations: The masks: :class:`~labric.models.SaveAnnotation` entries, mappings of
                the same fields (``mask``, a base64 PNG of the image's size, white on
                transparent; ``label``; optionally ``is_human_vetted``, ``width``, ``height``,
                ``file_id``), or the annotations a segmentation model's prediction returned,
                passed as they are. A label is created the first time a mask names it.
            job_execution_id: The execution to record the masks under (reverting it removes
                them); inside a job script the running execution is used by default.

        Returns:
            The saved annotations, in the order given.

        Raises:
            BadRequestError: a mask is not a base64 PNG of the image's size, an entry names
                another file, or the file is not an image; nothing was saved.
            UnprocessableEntityError: an entry misses ``mask`` or ``label`` or has a field of
                the wrong type; nothing was saved.
            NotFoundError: no such file or job execution in the organisation.
            PermissionDeniedError: the key lacks the ``write`` scope.

        Example::

            entry = SaveAnnotation.from_png(png_bytes, label="colony", is_human_vetted=True)
            saved = await client.images.annotate(file_id, [entry])
            print(saved[0].bbox, saved[0].foreground_fraction)
        """
        payload: dict[str, Any] = {"annotations": [_entry(item) for item in annotations]}
        if job_execution_id is not None:
            payload["job_execution_id"] = job_execution_id
        response = await self._transport.request("POST", _annotations_path(file_id), json=payload)
        return self._parse(response, list[Annotation])
