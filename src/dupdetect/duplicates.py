"""The duplicate rules: which candidates count, of which kind, in which order.

Two tiers: ``exact`` (same SHA-256: byte-identical, similarity 1.0) and ``near`` (cosine
similarity of the descriptors at or above the threshold). A pair is reported once, as its
strongest kind. Pairs are symmetric: if B duplicates A, A duplicates B.
"""

from __future__ import annotations

import uuid

from dupdetect.store.base import Match, SearchQuery, StoredImage, VectorStore


def merge(
    exact: list[StoredImage],
    near: list[tuple[StoredImage, float]],
    *,
    threshold: float,
    limit: int,
) -> list[Match]:
    """Exact matches first, then near ones at or above ``threshold``, best first, ``limit`` in all."""
    matches = [Match(image=image, similarity=1.0, kind="exact") for image in exact]
    seen = {image.id for image in exact}
    for image, similarity in sorted(near, key=lambda pair: -pair[1]):
        if similarity >= threshold and image.id not in seen:
            seen.add(image.id)
            matches.append(Match(image=image, similarity=min(similarity, 1.0), kind="near"))
    return matches[:limit]


async def for_request(
    store: VectorStore, request_id: uuid.UUID, *, model: str, threshold: float | None, limit: int
) -> list[tuple[StoredImage, list[Match]]]:
    """Per image of the request, in upload order, its duplicates in both directions.

    Without a threshold: the pairs recorded at ingest. With one: a live search at that
    threshold, so a looser threshold than the ingest default still finds everything.
    Raises RequestNotFound.
    """
    if threshold is None:
        return [(image, matches[:limit]) for image, matches in await store.recorded_duplicates(request_id)]
    stored = await store.request_images(request_id)
    # Vectors of another model (kept under DUPDETECT_ALLOW_MODEL_CHANGE) are never compared.
    comparable = [(image, vector) for image, vector in stored if image.model == model]
    found = await store.search(
        [SearchQuery(vector=vector, sha256=image.sha256, exclude=image.id) for image, vector in comparable],
        model=model,
        threshold=threshold,
        limit=limit,
    )
    by_id = {image.id: matches for (image, _), matches in zip(comparable, found, strict=True)}
    return [(image, by_id.get(image.id, [])) for image, _ in stored]
