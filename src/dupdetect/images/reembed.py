"""Re-embedding stored images with the configured model after a model change.

dupdetect keeps vectors and metadata, not the original files, so re-embedding needs the
originals back: files in a folder are matched to stored images by SHA-256, and URL images can
be fetched again. What cannot be found keeps its old vector (never compared) or is deleted.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from dupdetect.embedding.decode import DecodeError
from dupdetect.images.duplicates import search_again
from dupdetect.images.fetch import Fetcher, FetchError
from dupdetect.images.rules import Rules
from dupdetect.store.base import BulkStore, StoredImage

if TYPE_CHECKING:  # the pipeline loads torch; its type is all this module needs
    from dupdetect.embedding.pipeline import EmbeddingPipeline

log = logging.getLogger(__name__)


@dataclass
class ReembedReport:
    reembedded: int = 0
    deleted: int = 0
    missing: list[str] = field(default_factory=list)
    """Images whose original was not found (or failed to decode), by id and name."""


async def reembed(
    store: BulkStore,
    pipeline: EmbeddingPipeline,
    *,
    originals: Mapping[str, Path],
    fetcher: Fetcher | None,
    rules: Rules,
    delete_missing: bool,
) -> ReembedReport:
    report = ReembedReport()
    stale: list[tuple[BulkStore, StoredImage]] = []
    for collection in await store.collections():  # each image is searched again in its own
        scoped = store.scoped(collection)
        stale += [(scoped, image) for image in await scoped.stale_images(pipeline.descriptor)]
    for home, image in stale:
        data: bytes | None = None
        if image.sha256 in originals:
            data = originals[image.sha256].read_bytes()
        elif image.url is not None and fetcher is not None:
            try:
                data = await fetcher.fetch(image.url)
            except FetchError as exc:
                log.warning("cannot fetch %s again: %s", image.url, exc.message)
        embedded = None
        if data is not None and hashlib.sha256(data).hexdigest() == image.sha256:
            try:
                embedded = await pipeline.embed(data, "reembed")  # one operator command: one caller
            except DecodeError as exc:
                log.warning("cannot decode the original of %s: %s", image.id, exc.message)
        if embedded is not None:
            model = pipeline.descriptor
            await home.replace_embedding(image.id, embedded.vector, embedded.image.phash, embedded.image.keypoints, model=model)
            updated = msgspec.structs.replace(image, model=model, phash=embedded.image.phash)
            pairs = await search_again(home, updated, embedded.vector, model=model, rules=rules)
            await home.settle(image.request_id, pairs, model=model)
            report.reembedded += 1
        elif delete_missing:
            await home.delete_image(image.id)
            report.deleted += 1
        else:
            report.missing.append(f"{image.id} ({image.filename or image.url or 'unnamed'})")
    return report
