"""Handlers behind the review page: thumbnails, duplicate groups, "not a duplicate" decisions."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import re
import uuid
from datetime import datetime
from importlib import resources
from typing import Annotated

import msgspec
from litestar import Controller, MediaType, Response, delete, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.response import Redirect

from dupdetect.api.errors import error_responses
from dupdetect.errors import DupdetectError
from dupdetect.service import ImageService
from dupdetect.store.base import Kind, Mark, MarkedImage, ReviewStore, StoredImage, VectorStore

PAGE = (resources.files("dupdetect") / "ui" / "index.html").read_text(encoding="utf-8")
"""The review page: one static file over this JSON API, no front-end build."""


def _inline_hash(tag: str) -> str:
    body = re.search(rf"<{tag}>(.*?)</{tag}>", PAGE, re.S)
    assert body is not None, tag
    return "'sha256-" + base64.b64encode(hashlib.sha256(body.group(1).encode()).digest()).decode() + "'"


PAGE_HEADERS = {
    # Only the page's own script and style run; it talks to this origin only; no one frames it.
    "Content-Security-Policy": (
        f"default-src 'none'; script-src {_inline_hash('script')}; style-src {_inline_hash('style')};"
        " img-src 'self' blob:; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class GroupPair(msgspec.Struct, kw_only=True):
    """Why ``a`` is in the group: its recorded pair with ``b``, the group's best copy."""

    a: uuid.UUID
    b: uuid.UUID
    kind: Kind
    similarity: float
    matched_points: int | None
    """Keypoints one homography maps between the two (geometric check); null when not checked."""


class Group(msgspec.Struct, kw_only=True):
    size: int
    """All images in the group; ``images`` holds at most ``max_size`` of them."""
    keep: uuid.UUID
    """The best copy, listed first: the largest resolution, then file, then the earliest taken.
    Every other member is a direct duplicate of it (groups do not chain)."""
    images: list[StoredImage]
    pairs: list[GroupPair]
    """For each other image listed, the pair that put it in the group."""


class GroupsPage(msgspec.Struct, kw_only=True):
    groups: list[Group]
    page: int
    page_size: int
    total: int
    """Groups in all pages."""


class NotDuplicate(msgspec.Struct, kw_only=True):
    image_ids: Annotated[list[uuid.UUID], msgspec.Meta(min_length=2, max_length=2)]


class Marks(msgspec.Struct, kw_only=True):
    image_ids: Annotated[list[uuid.UUID], msgspec.Meta(min_length=1, max_length=1000)]
    mark: Mark | None
    """``keep``, ``trash``, or null to clear."""


class Marked(msgspec.Struct, kw_only=True):
    marked: int
    """How many of the images exist (in this collection) and now carry the mark."""


class MarkOut(msgspec.Struct, kw_only=True):
    image_id: uuid.UUID
    file: str | None
    sha256: str
    width: int
    height: int
    byte_size: int
    taken_at: datetime | None
    mark: Mark
    marked_at: datetime


def _mark_out(marked: MarkedImage) -> MarkOut:
    image = marked.image
    return MarkOut(
        image_id=image.id, file=image.filename or image.url, sha256=image.sha256, width=image.width,
        height=image.height, byte_size=image.byte_size, taken_at=image.taken_at, mark=marked.mark,
        marked_at=marked.marked_at,
    )


def _csv(rows: list[MarkOut]) -> str:
    """Spreadsheet-safe: a cell starting with = + - @ is not read as a formula."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(MarkOut.__struct_fields__)
    for row in rows:
        cells = ["" if value is None else str(value) for value in msgspec.structs.astuple(row)]
        writer.writerow(["'" + cell if cell[:1] in ("=", "+", "-", "@") else cell for cell in cells])
    return out.getvalue()


class ReviewController(Controller):
    tags = ("review",)

    @get("/", include_in_schema=False)
    async def home(self) -> Redirect:
        return Redirect("/ui")

    @get("/ui", media_type=MediaType.HTML, include_in_schema=False)
    async def page(self) -> Response[str]:
        return Response(PAGE, media_type=MediaType.HTML, headers=PAGE_HEADERS)

    @get(
        "/images/{image_id:str}/thumbnail",
        summary="A small JPEG of the image",
        media_type="image/jpeg",
        responses=error_responses((400, "Malformed image id"), (404, "No such image, or no thumbnail kept for it")),
    )
    async def thumbnail(self, image_id: FromPath[uuid.UUID], store: NamedDependency[VectorStore]) -> Response[bytes]:
        data = await store.thumbnail(image_id)
        if data is None:
            raise DupdetectError("thumbnail_not_found", f"no thumbnail for image {image_id}", status=404)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=86400"})



async def provide_review_store(store: NamedDependency[VectorStore]) -> ReviewStore:
    """The caller's store as one that keeps pairs and decisions (the controller below is
    registered only for such a store)."""
    if not isinstance(store, ReviewStore):
        raise TypeError(f"{type(store).__name__} keeps no pairs or decisions")
    return store


class DecisionsController(Controller):
    """Groups, "not a duplicate" decisions and keep/trash marks: registered only when the store
    keeps pairs and decisions (pgvector), so a Pinecone deployment does not offer them at all."""

    tags = ("review",)
    dependencies = {"review": Provide(provide_review_store)}  # noqa: RUF012 - Litestar's own attribute

    @get(
        "/groups",
        summary="Groups of duplicates across the collection, largest first",
        responses=error_responses((400, "Malformed parameter")),
    )
    async def groups(
        self,
        images: NamedDependency[ImageService],
        page: Annotated[int, QueryParameter(ge=1)] = 1,
        page_size: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
        max_size: Annotated[int, QueryParameter(ge=2, le=1000, description="Images shown per group")] = 50,
    ) -> GroupsPage:
        groups = await images.groups()
        pages = []
        for group in groups[(page - 1) * page_size : page * page_size]:
            listed = group.members[:max_size]
            pairs = [
                GroupPair(a=m.image.id, b=group.keep.id, kind=m.joined_as, similarity=round(m.similarity or 0.0, 4),
                          matched_points=m.matched_points)
                for m in listed if m.joined_as is not None
            ]
            pages.append(Group(size=len(group.members), keep=group.keep.id, images=[m.image for m in listed], pairs=pairs))
        return GroupsPage(
            groups=pages,
            page=page,
            page_size=page_size,
            total=len(groups),
        )

    @post(
        "/not-duplicates",
        summary="Mark two images as not duplicates; searches and groups leave the pair out",
        status_code=201,
        responses=error_responses((400, "Not two different image ids"), (404, "No such image")),
        media_type=MediaType.JSON,
    )
    async def not_duplicate(self, data: JSONBody[NotDuplicate], review: NamedDependency[ReviewStore]) -> NotDuplicate:
        a, b = data.image_ids
        if a == b:
            raise DupdetectError("same_image", "an image is always a duplicate of itself", status=400)
        if not await review.mark_not_duplicate(a, b):
            raise DupdetectError("image_not_found", "one of the images does not exist", status=404)
        return data

    @post(
        "/marks",
        summary="Mark images keep or trash (null clears), e.g. the copies of a duplicate group",
        status_code=200,
        responses=error_responses((400, "Malformed body")),
    )
    async def set_marks(self, data: JSONBody[Marks], review: NamedDependency[ReviewStore]) -> Marked:
        return Marked(marked=await review.set_marks(data.image_ids, data.mark))

    @get("/marks", summary="Export the keep/trash marks as JSON", responses=error_responses())
    async def marks(self, review: NamedDependency[ReviewStore]) -> list[MarkOut]:
        return [_mark_out(marked) for marked in await review.marked_images()]

    @get(
        "/marks.csv",
        summary="Export the keep/trash marks as CSV (for a spreadsheet or a clean-up script)",
        media_type="text/csv",
        responses=error_responses(),
    )
    async def marks_csv(self, review: NamedDependency[ReviewStore]) -> Response[str]:
        rows = [_mark_out(marked) for marked in await review.marked_images()]
        return Response(
            _csv(rows), media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="dupdetect-marks.csv"'},
        )

    @delete(
        "/not-duplicates/{a:str}/{b:str}",
        summary="Undo a not-a-duplicate decision: the pair is searched again and recorded if it is one",
        responses=error_responses((400, "Malformed image id"), (404, "No such decision")),
    )
    async def undo_not_duplicate(
        self, a: FromPath[uuid.UUID], b: FromPath[uuid.UUID], images: NamedDependency[ImageService]
    ) -> None:
        if not await images.undo_not_duplicate(a, b):
            raise DupdetectError("decision_not_found", f"no not-a-duplicate decision for {a} and {b}", status=404)
