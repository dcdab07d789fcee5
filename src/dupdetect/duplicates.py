"""The duplicate rules: which candidates count, of which kind, in which order.

Three tiers, strongest first:

- ``exact``: the same bytes (SHA-256); similarity 1.0.
- ``near_exact``: perceptual hashes within ``Thresholds.near_exact`` bits: mild edits such as
  resizing, re-encoding, colour changes or blur, whatever the CNN similarity.
- ``near``: cosine similarity of the CNN descriptors at or above ``Thresholds.near``: heavier
  edits (crops, padding, overlays).

A pair is reported once, as its strongest kind, with the descriptors' cosine similarity (1.0
for exact). Pairs are symmetric: if B duplicates A, A duplicates B.
"""

from __future__ import annotations

import uuid

from dupdetect.perceptual import hamming
from dupdetect.settings import DuplicateSettings
from dupdetect.store.base import Match, SearchQuery, StoredImage, Thresholds, VectorStore


def thresholds(settings: DuplicateSettings, near: float | None = None, limit: int | None = None) -> Thresholds:
    """The configured rules, or a request's own similarity floor and limit."""
    return Thresholds(
        near=settings.near_threshold if near is None else near,
        near_exact=settings.near_exact_distance,
        limit=settings.top_k if limit is None else limit,
    )


def merge(
    query_phash: int | None,
    exact: list[StoredImage],
    candidates: list[tuple[StoredImage, float]],
    rules: Thresholds,
) -> list[Match]:
    """``candidates``: (image, cosine similarity) from the hash index and the vector index."""
    matches = [Match(image=image, similarity=1.0, kind="exact") for image in exact]
    seen = {image.id for image in exact}
    near_exact, near = [], []
    for image, similarity in sorted(candidates, key=lambda pair: -pair[1]):
        if image.id in seen:
            continue
        seen.add(image.id)
        similarity = min(similarity, 1.0)
        if (
            query_phash is not None
            and image.phash is not None
            and hamming(query_phash, image.phash) <= rules.near_exact
        ):
            near_exact.append(Match(image=image, similarity=similarity, kind="near_exact"))
        elif similarity >= rules.near:
            near.append(Match(image=image, similarity=similarity, kind="near"))
    return (matches + near_exact + near)[: rules.limit]


async def for_request(
    store: VectorStore, request_id: uuid.UUID, *, model: str, rules: Thresholds, live: bool
) -> list[tuple[StoredImage, list[Match]]]:
    """Per image of the request, in upload order, its duplicates in both directions.

    Not ``live``: the pairs recorded at ingest. ``live``: a search with ``rules``, so a looser
    threshold than the ingest default still finds everything. Raises RequestNotFound.
    """
    if not live:
        return [(image, matches[: rules.limit]) for image, matches in await store.recorded_duplicates(request_id)]
    stored = await store.request_images(request_id)
    # Vectors of another model (kept under DUPDETECT_ALLOW_MODEL_CHANGE) are never compared.
    comparable = [(image, vector) for image, vector in stored if image.model == model]
    found = await store.search(
        [
            SearchQuery(vector=vector, sha256=image.sha256, phash=image.phash, exclude=image.id)
            for image, vector in comparable
        ],
        model=model,
        rules=rules,
    )
    by_id = {image.id: matches for (image, _), matches in zip(comparable, found, strict=True)}
    return [(image, by_id.get(image.id, [])) for image, _ in stored]


def connected_groups(pairs: list[tuple[uuid.UUID, uuid.UUID]]) -> list[list[uuid.UUID]]:
    """Images linked by duplicate pairs, directly or through others; largest group first."""
    parent: dict[uuid.UUID, uuid.UUID] = {}

    def root(node: uuid.UUID) -> uuid.UUID:
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for a, b in pairs:
        parent[root(a)] = root(b)
    groups: dict[uuid.UUID, list[uuid.UUID]] = {}
    for node in parent:
        groups.setdefault(root(node), []).append(node)
    return sorted(groups.values(), key=lambda group: (-len(group), min(group)))
