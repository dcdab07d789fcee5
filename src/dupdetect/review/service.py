"""The review service: duplicate groups, people's "not a duplicate" decisions, keep/trash marks.

Built from an :class:`~dupdetect.images.service.ImageService` (:meth:`ReviewService.of`), with its
rules (undoing a decision searches again), over a store that keeps pairs and decisions.
"""

from __future__ import annotations

import uuid

import msgspec

from dupdetect.error_codes import Code
from dupdetect.errors import DupdetectError, NotFound
from dupdetect.images.duplicates import undo_not_duplicate
from dupdetect.images.rules import Rules
from dupdetect.images.service import ImageService
from dupdetect.review import grouping
from dupdetect.review.keeper import DEFAULT_POLICY, KeeperPolicy, enlarged_sources, rank, reason
from dupdetect.store.base import DuplicateGroup, Mark, MarkedImage, PreviousMark, ReviewStore, StoredGroups


def _kept(group: DuplicateGroup, policy: KeeperPolicy) -> DuplicateGroup:
    """The group's members in ``policy``'s order, its keeper first, and why."""
    by_id = {m.image.id: m for m in group.members}
    # Enlargements are told apart among copies of the same picture, not crops and collages.
    sources = enlarged_sources([m.image for m in group.members if m.joined_as != "near"])
    ordered = rank([m.image for m in group.members], policy, sources=sources)
    return DuplicateGroup(id=group.id, members=[by_id[i.id] for i in ordered], reason=reason(ordered, policy, sources=sources))


class ReviewService:
    def __init__(self, store: ReviewStore, *, descriptor: str, rules: Rules) -> None:
        self.store = store
        self.descriptor = descriptor
        self.rules = rules

    @classmethod
    def of(cls, images: ImageService) -> ReviewService:
        """The review of ``images``' collection. Only a store that keeps pairs and decisions
        (pgvector) has one, and only then are the routes that need it registered."""
        if not isinstance(images.store, ReviewStore):
            raise TypeError(f"{type(images.store).__name__} keeps no pairs or decisions")
        return cls(images.store, descriptor=images.descriptor, rules=images.rules())

    async def refresh_groups(self) -> None:
        """Rebuild the stored groups if pairs or images changed since they were built."""
        if await self.store.groups_built():
            return
        version, images, pairs = await self.store.group_inputs()
        await self.store.replace_groups(version, grouping.groups(images, pairs))

    async def groups(self, *, page: int = 1, page_size: int | None = None, policy: KeeperPolicy = DEFAULT_POLICY) -> StoredGroups:
        """One page of the collection's groups, largest first, each member with its mark; the
        keeper of each chosen by ``policy`` (membership does not depend on it)."""
        await self.refresh_groups()
        found = await self.store.groups(offset=(page - 1) * (page_size or 0), limit=page_size)
        if policy == DEFAULT_POLICY:
            return found
        return msgspec.structs.replace(found, groups=[_kept(group, policy) for group in found.groups])

    async def not_duplicate(self, a: uuid.UUID, b: uuid.UUID) -> None:
        """A person says the two are different images: searches and groups leave the pair out."""
        if a == b:
            raise DupdetectError(Code.SAME_IMAGE, "an image is always a duplicate of itself")
        if not await self.store.mark_not_duplicate(a, b):
            raise NotFound(Code.IMAGE_NOT_FOUND, "one of the images does not exist")

    async def undo_not_duplicate(self, a: uuid.UUID, b: uuid.UUID) -> None:
        """Withdraw a decision; the pair is searched for again and recorded if it is one."""
        if not await undo_not_duplicate(self.store, a, b, model=self.descriptor, rules=self.rules):
            raise NotFound(Code.DECISION_NOT_FOUND, f"no not-a-duplicate decision for {a} and {b}")

    async def set_marks(self, image_ids: list[uuid.UUID], mark: Mark | None) -> int:
        """Mark images keep or trash (None clears); how many of them exist in this collection."""
        return await self.store.set_marks(image_ids, mark)

    async def keep_suggested(
        self, group_ids: list[uuid.UUID] | None, policy: KeeperPolicy = DEFAULT_POLICY
    ) -> list[PreviousMark]:
        """ "Keep the suggested copy, trash the rest" for these groups (None: all of them), with
        the keepers ``GET /groups`` shows under ``policy``, trashing what a scan's trash list would
        (:func:`~dupdetect.review.grouping.redundant`). Returns the marks as they were, for an undo."""
        found = (await self.groups(policy=policy)).groups
        chosen = [group for group in found if group_ids is None or group.id in set(group_ids)]
        trash = [image.id for image in grouping.redundant(found, chosen, policy)]
        return await self.store.replace_marks(sorted({group.keep.id for group in chosen}), trash)

    async def marks(self) -> list[MarkedImage]:
        """Every marked image, oldest mark first."""
        return await self.store.marked_images()


async def refresh_stale_groups(images: ImageService) -> int:
    """Rebuild the stored groups of every collection whose pairs changed (analysts read them in
    the ``duplicate_groups`` view); how many were rebuilt."""
    if not isinstance(images.store, ReviewStore):
        return 0
    stale = await images.store.stale_groups()
    for collection in stale:
        await ReviewService.of(images.scoped(collection)).refresh_groups()
    return len(stale)
