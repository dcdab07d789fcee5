"""The image service: what callers do with images, under one set of rules.

The HTTP handlers and the command line both call it; nothing outside it and
:mod:`dupdetect.duplicates` builds the rules from the thresholds. A service is scoped to one
collection, like its store.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from dupdetect import duplicates
from dupdetect.duplicates import Rules
from dupdetect.ingest import IngestResult, Outcome, ingest, look_up
from dupdetect.intake import Item
from dupdetect.settings import DuplicateSettings
from dupdetect.store.base import DuplicateGroup, Match, ReviewStore, StoredImage, VectorStore

if TYPE_CHECKING:  # the pipeline loads torch; its type is all this module needs
    from dupdetect.embedding.pipeline import EmbeddingPipeline
    from dupdetect.fetch import Fetcher


class ImageService:
    def __init__(
        self, store: VectorStore, pipeline: EmbeddingPipeline, fetcher: Fetcher, settings: DuplicateSettings
    ) -> None:
        self.store = store
        self.pipeline = pipeline
        self.fetcher = fetcher
        self.settings = settings

    def using(self, store: VectorStore) -> ImageService:
        """The same service over another view of the store (one collection)."""
        return ImageService(store, self.pipeline, self.fetcher, self.settings)

    def scoped(self, collection: str) -> ImageService:
        return self.using(self.store.scoped(collection))

    @property
    def model(self) -> str:
        """The descriptor in use: vectors of another are never compared."""
        return self.pipeline.model_name

    def rules(self, *, threshold: float | None = None, limit: int | None = None) -> Rules:
        """The configured rules, or a request's own similarity floor and number of results."""
        return Rules.from_settings(self.settings, near=threshold, top_k=limit)

    async def ingest(self, items: list[Item]) -> IngestResult:
        """Store the usable items and their duplicates (POST /images)."""
        return await ingest(items, pipeline=self.pipeline, store=self.store, fetcher=self.fetcher, rules=self.rules())

    async def search(self, items: list[Item], *, threshold: float | None, limit: int | None) -> list[Outcome]:
        """Each item's duplicates among the stored images; nothing is stored (POST /search)."""
        rules = self.rules(threshold=threshold, limit=limit)
        return await look_up(items, pipeline=self.pipeline, store=self.store, fetcher=self.fetcher, rules=rules)

    async def duplicates(
        self, request_id: uuid.UUID, *, threshold: float | None = None, limit: int | None = None
    ) -> list[tuple[StoredImage, list[Match]]]:
        """Per image of a request, its duplicates: as recorded, or searched again with a
        request's own threshold. Raises RequestNotFound."""
        rules = self.rules(threshold=threshold, limit=limit)
        live = threshold is not None
        return await duplicates.for_request(self.store, request_id, model=self.model, rules=rules, live=live)

    def review(self) -> ReviewStore:
        """The store as one that keeps pairs and decisions; only such stores get the routes that
        call this (api/review.DecisionsController)."""
        if not isinstance(self.store, ReviewStore):
            raise TypeError(f"{type(self.store).__name__} keeps no pairs or decisions")
        return self.store

    async def groups(self) -> list[DuplicateGroup]:
        return await self.review().groups()

    async def undo_not_duplicate(self, a: uuid.UUID, b: uuid.UUID) -> bool:
        """Withdraw a "not a duplicate" decision; the pair is searched for again."""
        return await duplicates.undo_not_duplicate(self.review(), a, b, model=self.model, rules=self.rules())

    async def settle_pending(
        self, *, older_than_s: float, progress: Callable[[int], None] | None = None
    ) -> tuple[int, int]:
        """Record the missing pairs of unsettled requests (after a crash or a bulk load)."""
        return await duplicates.settle_pending(
            self.store, model=self.model, rules=self.rules(), older_than_s=older_than_s, progress=progress
        )
