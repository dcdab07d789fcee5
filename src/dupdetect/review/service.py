"""The review service: duplicate groups, people's "not a duplicate" decisions, keep/trash marks.

Built by :meth:`dupdetect.images.service.ImageService.review` with its rules (undoing a decision
searches again), over a store that keeps pairs and decisions.
"""

from __future__ import annotations

import uuid

from dupdetect.errors import DupdetectError, NotFound
from dupdetect.images.duplicates import Rules, undo_not_duplicate
from dupdetect.store.base import DuplicateGroup, Mark, MarkedImage, ReviewStore


class ReviewService:
    def __init__(self, store: ReviewStore, *, descriptor: str, rules: Rules) -> None:
        self.store = store
        self.descriptor = descriptor
        self.rules = rules

    async def groups(self, *, page: int = 1, page_size: int | None = None) -> tuple[list[DuplicateGroup], int]:
        """One page of the collection's groups, largest first, and how many there are in all."""
        groups = await self.store.groups()
        if page_size is None:
            return groups, len(groups)
        return groups[(page - 1) * page_size : page * page_size], len(groups)

    async def not_duplicate(self, a: uuid.UUID, b: uuid.UUID) -> None:
        """A person says the two are different images: searches and groups leave the pair out."""
        if a == b:
            raise DupdetectError("same_image", "an image is always a duplicate of itself")
        if not await self.store.mark_not_duplicate(a, b):
            raise NotFound("image", "one of the images does not exist")

    async def undo_not_duplicate(self, a: uuid.UUID, b: uuid.UUID) -> None:
        """Withdraw a decision; the pair is searched for again and recorded if it is one."""
        if not await undo_not_duplicate(self.store, a, b, model=self.descriptor, rules=self.rules):
            raise NotFound("decision", f"no not-a-duplicate decision for {a} and {b}")

    async def set_marks(self, image_ids: list[uuid.UUID], mark: Mark | None) -> int:
        """Mark images keep or trash (None clears); how many of them exist in this collection."""
        return await self.store.set_marks(image_ids, mark)

    async def marks(self) -> list[MarkedImage]:
        """Every marked image, oldest mark first."""
        return await self.store.marked_images()
