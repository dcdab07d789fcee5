"""The first step of POST /images, POST /search and the folder commands: fetch, decode and
embed every item concurrently, each item's outcome kept by its position."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import msgspec

from dupdetect.embedding.decode import DecodedImage, DecodeError
from dupdetect.error_codes import Code
from dupdetect.errors import DupdetectError
from dupdetect.images.body import Item, ItemError
from dupdetect.images.fetch import FetchBudget, Fetcher, FetchError
from dupdetect.observability import ITEMS_REFUSED
from dupdetect.store.base import ImageFacts, Match, NewImage

if TYPE_CHECKING:  # the pipeline loads torch; its type is all this module needs
    from dupdetect.embedding.pipeline import EmbeddingPipeline


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


_DECODED = [name for name in ImageFacts.__struct_fields__ if name in DecodedImage.__dataclass_fields__ and name != "artefacts"]
"""What decoding tells of an image, copied field by field into the record it is stored as."""


class RefusedItem(msgspec.Struct, frozen=True):
    index: int
    error: ItemError


class NoValidImages(DupdetectError):
    """Every item failed; nothing was stored. ``details``: each item's error, by its position."""

    status = 422

    def __init__(self, outcomes: list[Outcome]) -> None:
        refused = [RefusedItem(o.index, o.error) for o in outcomes if o.error is not None]
        super().__init__(Code.NO_VALID_IMAGES, "none of the images could be used", details=refused)
        self.outcomes = outcomes


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
    facts = {name: getattr(image, name) for name in _DECODED}
    return NewImage(
        **facts,
        id=uuid.uuid4(),
        position=item.index,
        filename=item.filename,
        url=item.url,
        thumbnail=image.thumbnail,
        keypoints=image.keypoints,
        vector=embedded.vector,
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
