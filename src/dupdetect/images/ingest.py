"""POST /images and POST /search as plain functions: fetch, decode and embed every item
concurrently, then store the valid ones and their duplicates in one go (or only look)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

from dupdetect.embedding.decode import DecodeError
from dupdetect.embedding.pipeline import EmbeddingPipeline
from dupdetect.errors import DupdetectError
from dupdetect.images.body import Item, ItemError
from dupdetect.images.duplicates import Rules, record_request, search
from dupdetect.images.fetch import FetchBudget, Fetcher, FetchError
from dupdetect.images.schemas import IngestItem
from dupdetect.observability import DUPLICATES_FOUND, ITEMS_REFUSED
from dupdetect.store.base import Match, NewImage, VectorStore


@dataclass
class Outcome:
    index: int
    image_id: uuid.UUID | None = None
    error: ItemError | None = None
    duplicates: list[Match] = field(default_factory=list)


@dataclass
class IngestResult:
    request_id: uuid.UUID
    outcomes: list[Outcome]

    @property
    def added(self) -> int:
        return sum(outcome.image_id is not None for outcome in self.outcomes)


class NoValidImages(DupdetectError):
    """Every item failed; nothing was stored. ``details``: each item's error."""

    status = 422

    def __init__(self, outcomes: list[Outcome]) -> None:
        super().__init__(
            "no_valid_images", "none of the images could be used", details=[ingest_item(o) for o in outcomes]
        )
        self.outcomes = outcomes


def ingest_item(outcome: Outcome) -> IngestItem:
    """An item's outcome as the API (and the folder commands) report it."""
    if outcome.error is not None:
        return IngestItem(index=outcome.index, error=outcome.error)
    return IngestItem(index=outcome.index, image_id=outcome.image_id, duplicates=len(outcome.duplicates))


async def _prepare(
    item: Item, pipeline: EmbeddingPipeline, fetcher: Fetcher, budget: FetchBudget, caller: str
) -> NewImage | ItemError:
    if item.error is not None:
        return item.error
    try:
        data = item.data if item.url is None else await fetcher.fetch(item.url, budget)
        assert data is not None
        embedded = await pipeline.embed(data, caller)
    except (FetchError, DecodeError) as exc:
        return ItemError(exc.code, exc.message)
    image = embedded.image
    return NewImage(
        id=uuid.uuid4(),
        position=item.index,
        filename=item.filename,
        url=item.url,
        byte_size=image.byte_size,
        width=image.width,
        height=image.height,
        format=image.format,
        sha256=image.sha256,
        phash=image.phash,
        thumbnail=image.thumbnail,
        keypoints=image.keypoints,
        vector=embedded.vector,
        taken_at=image.taken_at,
        camera_make=image.camera_make,
        camera_model=image.camera_model,
        content_width=image.content_width,
        content_height=image.content_height,
        jpeg_quality=image.jpeg_quality,
        detail_scale=image.detail_scale,
        artefacts=list(image.artefacts),
    )


async def prepare(
    items: list[Item], *, pipeline: EmbeddingPipeline, fetcher: Fetcher, caller: str
) -> tuple[list[NewImage], list[Outcome]]:
    """Fetch, decode and embed every item concurrently: the valid images, and every item's
    outcome so far. Raises NoValidImages if none is valid, and Overloaded, before any work, when
    the model has no room for the request. ``caller`` (the collection) takes turns with others
    for decoders, model room and fetch connections."""
    with pipeline.admit(sum(item.error is None for item in items), caller):
        budget = fetcher.budget(caller)
        prepared = await asyncio.gather(
            *(_prepare(item, pipeline, fetcher, budget, caller) for item in items), return_exceptions=True
        )
    for result in prepared:
        if isinstance(result, BaseException):
            raise result
    images = [result for result in prepared if isinstance(result, NewImage)]
    outcomes = [
        Outcome(index=item.index, error=result) if isinstance(result, ItemError) else Outcome(index=item.index)
        for item, result in zip(items, prepared, strict=True)
    ]
    for outcome in outcomes:
        if outcome.error is not None:
            ITEMS_REFUSED.labels(outcome.error.code).inc()
    if not images:
        raise NoValidImages(outcomes)
    return images, outcomes


async def ingest(
    items: list[Item],
    *,
    pipeline: EmbeddingPipeline,
    store: VectorStore,
    fetcher: Fetcher,
    rules: Rules,
    caller: str,
) -> IngestResult:
    """Raises NoValidImages if nothing can be stored, and Overloaded when the model has no room."""
    images, outcomes = await prepare(items, pipeline=pipeline, fetcher=fetcher, caller=caller)
    request_id = uuid.uuid4()
    found = await record_request(store, request_id, len(items), images, model=pipeline.descriptor, rules=rules)
    for image, matches in zip(images, found, strict=True):
        outcomes[image.position].image_id = image.id
        outcomes[image.position].duplicates = matches[: rules.top_k]
        for match in matches:
            DUPLICATES_FOUND.labels(match.kind).inc()
    return IngestResult(request_id=request_id, outcomes=outcomes)


async def look_up(
    items: list[Item], *, pipeline: EmbeddingPipeline, store: VectorStore, fetcher: Fetcher, rules: Rules, caller: str
) -> list[Outcome]:
    """Like :func:`ingest`, storing nothing: every item's outcome with its duplicates."""
    images, outcomes = await prepare(items, pipeline=pipeline, fetcher=fetcher, caller=caller)
    for image, matches in zip(images, await search(store, images, model=pipeline.descriptor, rules=rules), strict=True):
        outcomes[image.position].duplicates = matches[: rules.top_k]
    return outcomes
