"""Thin HTTP handlers for images, requests and duplicates; the work is in intake, ingest,
duplicates and the store."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import msgspec
from litestar import Controller, Request, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from dupdetect.api.errors import error_responses
from dupdetect.api.schemas import (
    DuplicatesResponse,
    ImageDuplicates,
    ImagesOperation,
    IngestItem,
    IngestResponse,
    RequestOut,
    SearchItem,
    SearchResponse,
    duplicate_out,
    request_out,
    source,
)
from dupdetect.embedding.worker import Overloaded
from dupdetect.errors import DupdetectError
from dupdetect.ingest import NoValidImages, Outcome
from dupdetect.intake import Item, read_items
from dupdetect.runtime import Runtime
from dupdetect.service import ImageService
from dupdetect.store.base import RequestNotFound, StoredImage, VectorStore

Sha256 = Annotated[str, msgspec.Meta(pattern="^[0-9a-fA-F]{64}$", description="hex SHA-256 of a file")]


T = TypeVar("T")


class KnownHashes(msgspec.Struct, kw_only=True):
    sha256: Annotated[list[Sha256], msgspec.Meta(max_length=1000)]
    """Hex SHA-256s of files."""


class KnownFiles(msgspec.Struct, kw_only=True):
    sha256: list[str]
    """Those of the hashes asked about that are stored."""
    filenames: dict[str, list[str]]
    """Per stored hash, the file names it is stored under (a copy under another name is new)."""


Threshold = Annotated[
    float | None,
    QueryParameter(gt=0.0, le=1.0, description="Similarity floor; without it, the pairs recorded at ingest (default threshold)."),
]
Limit = Annotated[int | None, QueryParameter(ge=1, le=1000, description="Duplicates per image; default DUPDETECT_TOP_K.")]


def _item(outcome: Outcome) -> IngestItem:
    if outcome.error is not None:
        return IngestItem(index=outcome.index, error=outcome.error)
    return IngestItem(index=outcome.index, image_id=outcome.image_id, duplicates=len(outcome.duplicates))


async def _with_items(
    request: Request[Any, Any, Any], runtime: Runtime, work: Callable[[list[Item]], Awaitable[T]]
) -> T:
    """Read the body's items within the limits and run ``work`` on them; every refusal becomes
    the API's error (the same for POST /images and POST /search)."""
    limits = runtime.settings.limits
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limits.max_request_bytes:
        raise DupdetectError(
            "request_too_large", f"the request body is larger than {limits.max_request_bytes:,} bytes", status=413
        )
    try:
        items = await read_items(request.headers.get("content-type", ""), request.stream(), limits)
        return await work(items)
    except NoValidImages as exc:
        raise DupdetectError(
            "no_valid_images", "none of the images could be used", details=[_item(o) for o in exc.outcomes], status=422
        ) from exc
    except Overloaded as exc:
        raise DupdetectError(
            "overloaded", f"{exc}; retry in {exc.retry_after} s", headers={"Retry-After": str(exc.retry_after)}, status=503
        ) from exc


def _not_found(kind: str, key: uuid.UUID) -> DupdetectError:
    return DupdetectError(f"{kind}_not_found", f"no {kind} with id {key}", status=404)


class ImagesController(Controller):
    tags = ("images",)

    @post(
        "/images",
        summary="Add images and find their duplicates",
        description=(
            "Multipart (field `files`, repeated) or JSON (`images`: base64 and/or URL items). Every item gets"
            " an outcome by its index; valid ones are stored even if others fail."
        ),
        operation_class=ImagesOperation,
        request_max_body_size=None,  # intake enforces the per-image and per-request limits while streaming
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
        self, request: Request[Any, Any, Any], runtime: NamedDependency[Runtime], images: NamedDependency[ImageService]
    ) -> IngestResponse:
        result = await _with_items(request, runtime, images.ingest)
        return IngestResponse(
            request_id=result.request_id, added=result.added, items=[_item(o) for o in result.outcomes]
        )

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
        request: Request[Any, Any, Any],
        runtime: NamedDependency[Runtime],
        images: NamedDependency[ImageService],
        threshold: Threshold = None,
        limit: Limit = None,
    ) -> SearchResponse:
        outcomes = await _with_items(
            request, runtime, lambda items: images.search(items, threshold=threshold, limit=limit)
        )
        found = sum(bool(o.duplicates) for o in outcomes)
        return SearchResponse(
            items=[
                SearchItem(index=o.index, duplicates=[duplicate_out(m) for m in o.duplicates], error=o.error)
                for o in outcomes
            ],
            message=f"{found} of {len(outcomes)} images have duplicates" if found else "no duplicates found",
        )

    @post(
        "/images/known",
        summary="Which of these SHA-256s are already stored (for resumable uploads)",
        status_code=200,
        responses=error_responses((400, "Malformed body")),
    )
    async def known(self, data: JSONBody[KnownHashes], store: NamedDependency[VectorStore]) -> KnownFiles:
        stored = await store.stored_names([h.lower() for h in data.sha256])
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
        try:
            found = await images.duplicates(request_id, threshold=threshold, limit=limit)
        except RequestNotFound as exc:
            raise _not_found("request", request_id) from exc
        with_duplicates = sum(bool(matches) for _, matches in found)
        message = (
            f"{with_duplicates} of {len(found)} images have duplicates"
            if with_duplicates
            else f"no duplicates found for the {len(found)} images of this request"
        )
        return DuplicatesResponse(
            request_id=request_id,
            images=[
                ImageDuplicates(
                    image_id=image.id, filename=source(image), duplicates=[duplicate_out(m) for m in matches]
                )
                for image, matches in found
            ],
            message=message,
        )

    @get(
        "/requests/{request_id:str}",
        summary="A request and its stored images",
        responses=error_responses((400, "Malformed request id"), (404, "No such request")),
    )
    async def get_request(self, request_id: FromPath[uuid.UUID], store: NamedDependency[VectorStore]) -> RequestOut:
        info = await store.get_request(request_id)
        if info is None:
            raise _not_found("request", request_id)
        images = [image for image, _ in await store.request_images(request_id)]
        return request_out(info, images)

    @get(
        "/images/{image_id:str}",
        summary="One stored image's metadata",
        responses=error_responses((400, "Malformed image id"), (404, "No such image")),
    )
    async def get_image(self, image_id: FromPath[uuid.UUID], store: NamedDependency[VectorStore]) -> StoredImage:
        image = await store.get_image(image_id)
        if image is None:
            raise _not_found("image", image_id)
        return image

    @delete(
        "/images/{image_id:str}",
        summary="Remove an image, its vector and its recorded duplicates (idempotent)",
        responses=error_responses((400, "Malformed image id")),
    )
    async def delete_image(self, image_id: FromPath[uuid.UUID], store: NamedDependency[VectorStore]) -> None:
        await store.delete_image(image_id)

    @delete(
        "/requests/{request_id:str}",
        summary="Remove a request with its images, vectors and recorded duplicates (idempotent)",
        responses=error_responses((400, "Malformed request id")),
    )
    async def delete_request(self, request_id: FromPath[uuid.UUID], store: NamedDependency[VectorStore]) -> None:
        await store.delete_request(request_id)
