"""Thin HTTP handlers for images, requests and duplicates: read, call the image service, shape
the answer."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from dupdetect.api.auth import authenticated
from dupdetect.api.errors import error_responses
from dupdetect.images.body import BodyReader, Item
from dupdetect.images.schemas import (
    DuplicatesResponse,
    ImageDuplicates,
    ImagesOperation,
    IngestItem,
    IngestResponse,
    KnownFiles,
    KnownHashes,
    RequestOut,
    SearchItem,
    SearchResponse,
    duplicate_out,
    request_out,
    shown_name,
)
from dupdetect.images.service import ImageService
from dupdetect.store.base import StoredImage

Threshold = Annotated[
    float | None,
    QueryParameter(gt=0.0, le=1.0, description="Similarity floor; without it, the pairs recorded at ingest (default threshold)."),
]
Limit = Annotated[int | None, QueryParameter(ge=1, le=1000, description="Duplicates per image; default DUPDETECT_TOP_K.")]
AnyRequest = Request[Any, Any, Any]


async def _items(request: AnyRequest, reader: BodyReader) -> list[Item]:
    return await reader.read(request.headers.get("content-type", ""), request.stream(), request.headers.get("content-length"))


class ImagesController(Controller):
    tags = ("images",)
    guards = [authenticated]  # noqa: RUF012 - Litestar's own attribute: the key is checked before the body is read

    @post(
        "/images",
        summary="Add images and find their duplicates",
        description=(
            "Multipart (field `files`, repeated) or JSON (`images`: base64 and/or URL items). Every item gets"
            " an outcome by its index; valid ones are stored even if others fail."
        ),
        operation_class=ImagesOperation,
        request_max_body_size=None,  # the body reader enforces the per-image and per-request limits while streaming
        status_code=201,
        responses=error_responses(
            (400, "Malformed body"),
            (413, "Too many images, or the body is too large"),
            (415, "Neither multipart/form-data nor application/json"),
            (422, "No item is usable; details lists each item's error, nothing was stored"),
            (503, "The model's queue is full; retry later"),
        ),
    )
    async def add_images(
        self, request: AnyRequest, reader: NamedDependency[BodyReader], images: NamedDependency[ImageService]
    ) -> IngestResponse:
        images.check_room()
        result = await images.ingest(await _items(request, reader))
        return IngestResponse(request_id=result.request_id, added=result.added, items=[IngestItem.of(o) for o in result.outcomes])

    @post(
        "/search",
        summary="Duplicates of the images sent, among those stored; nothing is stored",
        description="The same bodies and per-item errors as POST /images; each item's duplicates as GET /duplicates.",
        operation_class=ImagesOperation,
        request_max_body_size=None,
        status_code=200,
        responses=error_responses(
            (400, "Malformed body or parameter"),
            (413, "Too many images, or the body is too large"),
            (415, "Neither multipart/form-data nor application/json"),
            (422, "No item is usable; details lists each item's error"),
            (503, "The model's queue is full; retry later"),
        ),
    )
    async def search(
        self,
        request: AnyRequest,
        reader: NamedDependency[BodyReader],
        images: NamedDependency[ImageService],
        threshold: Threshold = None,
        limit: Limit = None,
    ) -> SearchResponse:
        images.check_room()
        outcomes = await images.search(await _items(request, reader), threshold=threshold, limit=limit)
        found = sum(bool(o.duplicates) for o in outcomes)
        return SearchResponse(
            items=[
                SearchItem(index=o.index, duplicates=[duplicate_out(m) for m in o.duplicates], error=o.error) for o in outcomes
            ],
            message=f"{found} of {len(outcomes)} images have duplicates" if found else "no duplicates found",
        )

    @post(
        "/images/known",
        summary="Which of these SHA-256s are already stored (for resumable uploads)",
        status_code=200,
        responses=error_responses((400, "Malformed body")),
    )
    async def known(self, data: JSONBody[KnownHashes], images: NamedDependency[ImageService]) -> KnownFiles:
        stored = await images.stored_names(data.sha256)
        return KnownFiles(
            sha256=sorted(stored),
            filenames={digest: sorted(name for name in names if name is not None) for digest, names in stored.items()},
        )

    @get(
        "/duplicates/{request_id:str}",
        summary="Duplicates of each image of a request",
        responses=error_responses((400, "Malformed request id or parameter"), (404, "No such request")),
    )
    async def get_duplicates(
        self,
        request_id: FromPath[uuid.UUID],
        images: NamedDependency[ImageService],
        threshold: Threshold = None,
        limit: Limit = None,
    ) -> DuplicatesResponse:
        found = await images.duplicates(request_id, threshold=threshold, limit=limit)
        with_duplicates = sum(bool(matches) for _, matches in found)
        message = (
            f"{with_duplicates} of {len(found)} images have duplicates"
            if with_duplicates
            else f"no duplicates found for the {len(found)} images of this request"
        )
        return DuplicatesResponse(
            request_id=request_id,
            images=[
                ImageDuplicates(image_id=image.id, filename=shown_name(image), duplicates=[duplicate_out(m) for m in matches])
                for image, matches in found
            ],
            message=message,
        )

    @get(
        "/requests/{request_id:str}",
        summary="A request and its stored images",
        responses=error_responses((400, "Malformed request id"), (404, "No such request")),
    )
    async def get_request(self, request_id: FromPath[uuid.UUID], images: NamedDependency[ImageService]) -> RequestOut:
        return request_out(*await images.request(request_id))

    @get(
        "/images/{image_id:str}",
        summary="One stored image's metadata",
        responses=error_responses((400, "Malformed image id"), (404, "No such image")),
    )
    async def get_image(self, image_id: FromPath[uuid.UUID], images: NamedDependency[ImageService]) -> StoredImage:
        return await images.image(image_id)

    @delete(
        "/images/{image_id:str}",
        summary="Remove an image, its vector and its recorded duplicates (idempotent)",
        responses=error_responses((400, "Malformed image id")),
    )
    async def delete_image(self, image_id: FromPath[uuid.UUID], images: NamedDependency[ImageService]) -> None:
        await images.delete_image(image_id)

    @delete(
        "/requests/{request_id:str}",
        summary="Remove a request with its images, vectors and recorded duplicates (idempotent)",
        responses=error_responses((400, "Malformed request id")),
    )
    async def delete_request(self, request_id: FromPath[uuid.UUID], images: NamedDependency[ImageService]) -> None:
        await images.delete_request(request_id)
