"""The JSON of the review routes (groups, decisions, marks), as msgspec Structs."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import datetime
from typing import Annotated

import msgspec

from dupdetect.review.keeper import KeeperPolicy, Prefer
from dupdetect.store.base import DuplicateGroup, Kind, Mark, MarkedImage, PreviousMark, StoredImage


class GroupPair(msgspec.Struct, kw_only=True):
    """Why ``a`` is in the group: its verified pair with ``b``, the group's best copy or a member
    verified against it."""

    a: uuid.UUID
    b: uuid.UUID
    kind: Kind
    similarity: float
    matched_points: int | None
    """Keypoints one homography maps between the two (geometric check); null when not checked."""


class GroupImage(StoredImage, frozen=True, kw_only=True):
    mark: Mark | None = None
    """What a person marked it (POST /marks); null if nothing."""


class Group(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    size: int
    """All images in the group; ``images`` holds at most ``max_size`` of them."""
    keep: uuid.UUID
    """The copy to keep, listed first: the original the others derive from (the largest picture
    inside any padding, no edits, camera metadata, least compression, earliest taken), after the
    request's keeper policy."""
    keep_reason: str
    """Why, in words."""
    images: list[GroupImage]
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


class KeepSuggested(msgspec.Struct, kw_only=True):
    group_ids: Annotated[list[uuid.UUID], msgspec.Meta(max_length=1000)] | None = None
    """The groups (their ``id``); null: every group of the collection."""
    prefer_folder: list[str] = msgspec.field(default_factory=list)
    prefer_format: str | None = None
    prefer: Prefer | None = None
    """The keeper policy, as for ``GET /groups``: the keepers marked are those it shows."""

    def policy(self) -> KeeperPolicy:
        return KeeperPolicy(folders=tuple(self.prefer_folder), format=self.prefer_format, prefer=self.prefer)


class SuggestedMarked(msgspec.Struct, kw_only=True):
    marked: int
    previous: list[PreviousMark]
    """Each member's mark before (null: none): POST them back to /marks to undo."""


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


def mark_out(marked: MarkedImage) -> MarkOut:
    image = marked.image
    return MarkOut(
        image_id=image.id,
        file=image.filename or image.url,
        sha256=image.sha256,
        width=image.width,
        height=image.height,
        byte_size=image.byte_size,
        taken_at=image.taken_at,
        mark=marked.mark,
        marked_at=marked.marked_at,
    )


def marks_as_csv(rows: list[MarkOut]) -> str:
    """Spreadsheet-safe: a cell starting with = + - @ is not read as a formula."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(MarkOut.__struct_fields__)
    for row in rows:
        cells = ["" if value is None else str(value) for value in msgspec.structs.astuple(row)]
        writer.writerow(["'" + cell if cell[:1] in ("=", "+", "-", "@") else cell for cell in cells])
    return out.getvalue()


def group_out(group: DuplicateGroup, max_size: int) -> Group:
    """A group with at most ``max_size`` of its images, and the pair that put each one in it."""
    listed = group.members[:max_size]
    pairs = [
        GroupPair(
            a=m.image.id, b=m.via, kind=m.joined_as, similarity=round(m.similarity or 0.0, 4), matched_points=m.matched_points
        )
        for m in listed
        if m.joined_as is not None and m.via is not None
    ]
    images = [GroupImage(**msgspec.structs.asdict(m.image), mark=m.mark) for m in listed]
    return Group(id=group.id, size=len(group.members), keep=group.keep.id, keep_reason=group.reason, images=images, pairs=pairs)
