"""The image service: what callers do with images, under one set of rules.

HTTP handlers and CLI commands both call it; it is the only place that turns the configured
thresholds into :class:`~dupdetect.images.rules.Rules`. A service is scoped to one
collection, like its store; it raises :class:`~dupdetect.errors.DupdetectError` subclasses
(``NotFound``…) that the API answers as they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from dupdetect.error_codes import Code
from dupdetect.errors import NotFound, OperatorError
from dupdetect.images import duplicates
from dupdetect.images.body import Item
from dupdetect.images.originals import original_bytes
from dupdetect.images.prepare import IngestResult, NoValidImages, Outcome, prepare
from dupdetect.images.reembed import ReembedReport, reembed
from dupdetect.images.rules import Rules
from dupdetect.observability import DUPLICATES_FOUND
from dupdetect.settings import DuplicateSettings
from dupdetect.store.base import (
    DEFAULT_COLLECTION,
    BulkStore,
    Match,
    RequestInfo,
    RequestNotFound,
    StoredImage,
    VectorStore,
)

if TYPE_CHECKING:  # the pipeline loads torch; its type is all this module needs
    from dupdetect.embedding.pipeline import EmbeddingPipeline
    from dupdetect.images.fetch import Fetcher


class ImageService:
    def __init__(
        self,
        store: VectorStore,
        pipeline: EmbeddingPipeline,
        fetcher: Fetcher,
        settings: DuplicateSettings,
        *,
        caller: str = DEFAULT_COLLECTION,
    ) -> None:
        self.store = store
        self.pipeline = pipeline
        self.fetcher = fetcher
        self.settings = settings
        self.caller = caller
        """Who takes turns for decoders, model room and fetch connections: the collection."""

    def scoped(self, collection: str) -> ImageService:
        """The same service over one collection's view of the store."""
        return ImageService(self.store.scoped(collection), self.pipeline, self.fetcher, self.settings, caller=collection)

    @property
    def descriptor(self) -> str:
        """The descriptor in use (backbone and input size): vectors of another are never compared."""
        return self.pipeline.descriptor

    def rules(self, *, threshold: float | None = None, limit: int | None = None) -> Rules:
        """The configured rules, or a request's own similarity floor and number of results."""
        return Rules.from_settings(self.settings, near=threshold, top_k=limit)

    # Adding and searching.

    def check_room(self) -> None:
        """Raises Overloaded when this collection has no room for even one more image (before a
        body is read: reading a body that will be refused is the costly part)."""
        self.pipeline.check_room(self.caller)

    async def ingest(self, items: list[Item]) -> IngestResult:
        """Store the usable items and their duplicates (POST /images): prepare (fetch, decode,
        embed), then record them, their pairs and the pairs with concurrent uploads
        (:func:`duplicates.record_request`). Raises NoValidImages, Overloaded."""
        images, outcomes = await prepare(items, pipeline=self.pipeline, fetcher=self.fetcher, caller=self.caller)
        rules, request_id = self.rules(), uuid.uuid4()
        found = await duplicates.record_request(self.store, request_id, len(items), images, model=self.descriptor, rules=rules)
        for image, matches in zip(images, found, strict=True):
            outcomes[image.position].image_id = image.id
            outcomes[image.position].duplicates = matches[: rules.top_k]
            for match in matches:
                DUPLICATES_FOUND.labels(match.kind).inc()
        return IngestResult(request_id=request_id, outcomes=outcomes)

    async def search(self, items: list[Item], *, threshold: float | None, limit: int | None) -> list[Outcome]:
        """Each item's duplicates among the stored images; nothing is stored (POST /search)."""
        rules = self.rules(threshold=threshold, limit=limit)
        images, outcomes = await prepare(items, pipeline=self.pipeline, fetcher=self.fetcher, caller=self.caller)
        found = await duplicates.search(self.store, images, model=self.descriptor, rules=rules)
        for image, matches in zip(images, found, strict=True):
            outcomes[image.position].duplicates = matches[: rules.top_k]
        return outcomes

    async def duplicates(
        self, request_id: uuid.UUID, *, threshold: float | None = None, limit: int | None = None
    ) -> list[tuple[StoredImage, list[Match]]]:
        """Per image of a request, its duplicates: as recorded, or searched again with a
        request's own threshold."""
        rules = self.rules(threshold=threshold, limit=limit)
        live = threshold is not None
        try:
            return await duplicates.for_request(self.store, request_id, model=self.descriptor, rules=rules, live=live)
        except RequestNotFound as exc:
            raise _no_request(request_id) from exc

    async def add_unsearched(self, items: list[Item]) -> list[Outcome]:
        """The bulk path (folders in-process): store the usable items without searching, their
        requests left unsettled for :meth:`settle_pending`'s one k-NN pass. Byte-identical copies
        of stored files take the stored vector (no decoding, no model) where the store allows."""
        outcomes: list[Outcome] = []
        if isinstance(self.store, BulkStore):
            digests = {item.index: hashlib.sha256(item.data).hexdigest() for item in items if item.data is not None}
            stored = await self.store.stored_names(list(digests.values()))
            copies = [item for item in items if digests.get(item.index) in stored]
            if copies:
                await self.store.add_copies(uuid.uuid4(), [(c.index, c.filename or "", digests[c.index]) for c in copies])
                outcomes = [Outcome(index=c.index) for c in copies]
            items = [item for item in items if digests.get(item.index) not in stored]
        if not items:
            return outcomes
        try:
            images, prepared = await prepare(items, pipeline=self.pipeline, fetcher=self.fetcher, caller=self.caller)
        except NoValidImages as exc:
            return outcomes + exc.outcomes
        await self.store.add_request(uuid.uuid4(), len(items), images, [], model=self.descriptor)
        return outcomes + prepared

    async def collections(self) -> list[str]:
        """The collections there are (a store without them has the default one only)."""
        if isinstance(self.store, BulkStore):
            return await self.store.collections()
        return [DEFAULT_COLLECTION]

    async def settle_pending(
        self, *, older_than_s: float, progress: Callable[[int], None] | None = None, at_once: int = 1
    ) -> tuple[int, int]:
        """Record the missing pairs of unsettled requests (after a crash or a bulk load):
        (requests settled, pairs recorded)."""
        return await duplicates.settle_pending(
            self.store, model=self.descriptor, rules=self.rules(), older_than_s=older_than_s, progress=progress, at_once=at_once
        )

    @contextlib.asynccontextmanager
    async def bulk_load(self, files: int) -> AsyncIterator[None]:
        """Around a load of ``files`` images: without the HNSW index when the table is small
        next to them (then built in one parallel pass), else as it is."""
        if isinstance(self.store, BulkStore):
            stored = await self.store.image_count()
            if stored < BULK_INDEX_ROWS and stored < files:
                async with self.store.bulk_load():
                    yield
                return
        yield

    async def reembed(self, originals: Mapping[str, Path], *, fetch_urls: bool, delete_missing: bool) -> ReembedReport:
        """Every image of another descriptor, embedded again from its original (by SHA-256 in
        ``originals``, or its URL) and searched again."""
        if not isinstance(self.store, BulkStore):
            raise OperatorError(f"re-embedding needs a store this process owns (pgvector), not {self.store.name}")
        fetcher = self.fetcher if fetch_urls else None
        return await reembed(
            self.store,
            self.pipeline,
            originals=originals,
            fetcher=fetcher,
            rules=self.rules(),
            delete_missing=delete_missing,
        )

    # The catalogue.

    async def request(self, request_id: uuid.UUID) -> tuple[RequestInfo, list[StoredImage]]:
        info = await self.store.get_request(request_id)
        if info is None:
            raise _no_request(request_id)
        return info, [image for image, _ in await self.store.request_images(request_id)]

    async def image(self, image_id: uuid.UUID) -> StoredImage:
        image = await self.store.get_image(image_id)
        if image is None:
            raise NotFound(Code.IMAGE_NOT_FOUND, f"no image with id {image_id}")
        return image

    async def thumbnail(self, image_id: uuid.UUID) -> bytes:
        data = await self.store.thumbnail(image_id)
        if data is None:
            raise NotFound(Code.THUMBNAIL_NOT_FOUND, f"no thumbnail for image {image_id}")
        return data

    async def original(self, image_id: uuid.UUID) -> tuple[bytes, str]:
        """The original file and its format, from ``DUPDETECT_ORIGINALS_DIR``: only a file under
        it, named as stored, whose bytes are those stored (nothing else on disk is reachable)."""
        image = await self.store.get_image(image_id)
        root = self.settings.originals_dir
        if image is None or root is None or image.filename is None:
            raise NotFound(Code.ORIGINAL_NOT_FOUND, f"no original file is served for image {image_id} (DUPDETECT_ORIGINALS_DIR)")
        data = await asyncio.to_thread(original_bytes, root, image)
        if data is None:
            raise NotFound(Code.ORIGINAL_NOT_FOUND, f"{image.filename} is not under DUPDETECT_ORIGINALS_DIR as it was stored")
        return data, image.format

    async def stored_names(self, hashes: list[str]) -> dict[str, set[str | None]]:
        """For each of these SHA-256s that is stored, the file names it is stored under."""
        return await self.store.stored_names([h.lower() for h in hashes])

    async def delete_image(self, image_id: uuid.UUID) -> bool:
        return await self.store.delete_image(image_id)

    async def delete_request(self, request_id: uuid.UUID) -> bool:
        return await self.store.delete_request(request_id)

    async def ping(self) -> None:
        """Raise if the store cannot answer (readiness)."""
        await self.store.ping()


def _no_request(request_id: uuid.UUID) -> NotFound:
    return NotFound(Code.REQUEST_NOT_FOUND, f"no request with id {request_id}")


BULK_INDEX_ROWS = 100_000
"""Below this many stored images, a load larger than the table goes in without the HNSW index,
which is then built in one parallel pass (faster than inserting row by row)."""
