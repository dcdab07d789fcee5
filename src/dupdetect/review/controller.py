"""Handlers behind the review page: thumbnails, duplicate groups, "not a duplicate" decisions."""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from importlib import resources
from typing import Annotated

from litestar import Controller, MediaType, Response, delete, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.response import Redirect

from dupdetect.api.auth import authenticated
from dupdetect.api.errors import error_responses
from dupdetect.images.service import ImageService
from dupdetect.review.deps import provide_review
from dupdetect.review.keeper import KeeperPolicy, Prefer
from dupdetect.review.schemas import (
    GroupsPage,
    KeepSuggested,
    Marked,
    MarkOut,
    Marks,
    NotDuplicate,
    SuggestedMarked,
    group_out,
    mark_out,
    marks_as_csv,
)
from dupdetect.review.service import ReviewService

PAGE = (resources.files("dupdetect.review") / "ui" / "index.html").read_text(encoding="utf-8")
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


class ReviewController(Controller):
    tags = ("review",)
    guards = [authenticated]  # noqa: RUF012 - Litestar's own attribute

    @get("/", include_in_schema=False, opt={"public": True})
    async def home(self) -> Redirect:
        return Redirect("/ui")

    @get("/ui", media_type=MediaType.HTML, include_in_schema=False, opt={"public": True})
    async def page(self) -> Response[str]:
        return Response(PAGE, media_type=MediaType.HTML, headers=PAGE_HEADERS)

    @get(
        "/images/{image_id:str}/thumbnail",
        summary="A small JPEG of the image",
        media_type="image/jpeg",
        responses=error_responses((400, "Malformed image id"), (404, "No such image, or no thumbnail kept for it")),
    )
    async def thumbnail(self, image_id: FromPath[uuid.UUID], images: NamedDependency[ImageService]) -> Response[bytes]:
        data = await images.thumbnail(image_id)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=86400"})

    @get(
        "/images/{image_id:str}/original",
        summary="The original file, when DUPDETECT_ORIGINALS_DIR holds it unchanged",
        media_type="application/octet-stream",
        responses=error_responses((400, "Malformed image id"), (404, "No such image, or its file is not served")),
    )
    async def original(self, image_id: FromPath[uuid.UUID], images: NamedDependency[ImageService]) -> Response[bytes]:
        data, kind = await images.original(image_id)
        return Response(data, media_type=f"image/{kind.lower()}", headers={"Cache-Control": "private, max-age=3600"})


class DecisionsController(Controller):
    """Groups, "not a duplicate" decisions and keep/trash marks: registered only when the store
    keeps pairs and decisions (pgvector), so a Pinecone deployment does not offer them at all."""

    tags = ("review",)
    guards = [authenticated]  # noqa: RUF012 - Litestar's own attribute
    dependencies = {"review": Provide(provide_review)}  # noqa: RUF012 - Litestar's own attribute

    @get(
        "/groups",
        summary="Groups of duplicates across the collection, largest first",
        responses=error_responses((400, "Malformed parameter")),
    )
    async def groups(
        self,
        review: NamedDependency[ReviewService],
        page: Annotated[int, QueryParameter(ge=1)] = 1,
        page_size: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
        max_size: Annotated[int, QueryParameter(ge=2, le=1000, description="Images shown per group")] = 50,
        prefer_folder: Annotated[
            list[str] | None,
            QueryParameter(description="Reference folder (a name prefix, repeatable): a copy in one is the keeper"),
        ] = None,
        prefer_format: Annotated[str | None, QueryParameter(description="Keep a copy in this format if there is one")] = None,
        prefer: Annotated[Prefer | None, QueryParameter(description="Keep the oldest or the newest date taken")] = None,
    ) -> GroupsPage:
        policy = KeeperPolicy(folders=tuple(prefer_folder or ()), format=prefer_format, prefer=prefer)
        found = await review.groups(page=page, page_size=page_size, policy=policy)
        return GroupsPage(
            groups=[group_out(g, max_size) for g in found.groups], page=page, page_size=page_size, total=found.total
        )

    @post(
        "/not-duplicates",
        summary="Mark two images as not duplicates; searches and groups leave the pair out",
        status_code=201,
        responses=error_responses((400, "Not two different image ids"), (404, "No such image")),
        media_type=MediaType.JSON,
    )
    async def not_duplicate(self, data: JSONBody[NotDuplicate], review: NamedDependency[ReviewService]) -> NotDuplicate:
        await review.not_duplicate(*data.image_ids)
        return data

    @post(
        "/marks",
        summary="Mark images keep or trash (null clears), e.g. the copies of a duplicate group",
        status_code=200,
        responses=error_responses((400, "Malformed body")),
    )
    async def set_marks(self, data: JSONBody[Marks], review: NamedDependency[ReviewService]) -> Marked:
        return Marked(marked=await review.set_marks(data.image_ids, data.mark))

    @post(
        "/marks/suggested",
        summary="Keep each group's suggested copy and trash the rest (given groups, or all); returns the marks before",
        status_code=200,
        responses=error_responses((400, "Malformed body")),
    )
    async def keep_suggested(self, data: JSONBody[KeepSuggested], review: NamedDependency[ReviewService]) -> SuggestedMarked:
        previous = await review.keep_suggested(data.group_ids, data.policy())
        return SuggestedMarked(marked=len(previous), previous=previous)

    @get("/marks", summary="Export the keep/trash marks as JSON", responses=error_responses())
    async def marks(self, review: NamedDependency[ReviewService]) -> list[MarkOut]:
        return [mark_out(marked) for marked in await review.marks()]

    @get(
        "/marks.csv",
        summary="Export the keep/trash marks as CSV (for a spreadsheet or a clean-up script)",
        media_type="text/csv",
        responses=error_responses(),
    )
    async def marks_csv(self, review: NamedDependency[ReviewService]) -> Response[str]:
        rows = [mark_out(marked) for marked in await review.marks()]
        return Response(
            marks_as_csv(rows),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="dupdetect-marks.csv"'},
        )

    @delete(
        "/not-duplicates/{a:str}/{b:str}",
        summary="Undo a not-a-duplicate decision: the pair is searched again and recorded if it is one",
        responses=error_responses((400, "Malformed image id"), (404, "No such decision")),
    )
    async def undo_not_duplicate(
        self, a: FromPath[uuid.UUID], b: FromPath[uuid.UUID], review: NamedDependency[ReviewService]
    ) -> None:
        await review.undo_not_duplicate(a, b)
