"""The duplicate rules, in one place for every store and entry point: which candidates count,
of which kind, in which order, how many, and how the images of one request pair up.

Three tiers, strongest first:

- ``exact``: the same bytes (SHA-256); similarity 1.0.
- ``near_exact``: perceptual hashes within ``Rules.near_exact`` bits: mild edits such as
  resizing, re-encoding, colour changes or blur, whatever the CNN similarity.
- ``near``: cosine similarity of the CNN descriptors at or above ``Rules.near``: heavier
  edits (crops, padding, overlays).

A pair is reported once, as its strongest kind, with the descriptors' cosine similarity (1.0
for exact). Pairs are symmetric: if B duplicates A, A duplicates B.

Stores only fetch candidates (:meth:`VectorStore.candidates`) and write; this module decides.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import msgspec
import numpy as np

from dupdetect.perceptual import hamming
from dupdetect.settings import DuplicateSettings
from dupdetect.store.base import Candidate, Kind, Match, NewImage, Pair, Query, StoredImage, VectorStore

log = logging.getLogger(__name__)

_TIER: dict[Kind, int] = {"exact": 0, "near_exact": 1, "near": 2}


class Rules(msgspec.Struct, frozen=True, kw_only=True):
    """When a candidate counts as a duplicate, and how many to report per image."""

    near: float
    """Cosine similarity floor of the near tier."""
    near_exact: int
    """Largest Hamming distance between perceptual hashes for the near-exact tier."""
    top_k: int
    """Duplicates reported (and recorded) per image."""

    @classmethod
    def from_settings(cls, settings: DuplicateSettings, *, near: float | None = None, top_k: int | None = None) -> Rules:
        """The configured rules, or a request's own similarity floor and limit."""
        return cls(
            near=settings.near_threshold if near is None else near,
            near_exact=settings.near_exact_distance,
            top_k=settings.top_k if top_k is None else top_k,
        )

    @property
    def neighbours(self) -> int:
        """Vector neighbours fetched per image: more than ``top_k``, so that a near-exact match
        ranked below several near ones (bursts, series) is still among the candidates."""
        return 2 * self.top_k + 1


def _rank(match: Match) -> tuple[int, float]:
    return _TIER[match.kind], -match.similarity


def classify(query: Query, candidates: Iterable[Candidate], rules: Rules) -> list[Match]:
    """One image's candidates → its duplicates, strongest first, at most ``rules.top_k``."""
    best: dict[uuid.UUID, Match] = {}
    for candidate in candidates:
        image = candidate.image
        if image.id == query.exclude:
            continue
        similarity = min(candidate.similarity, 1.0)
        kind: Kind | None = None
        if image.sha256 == query.sha256:
            kind, similarity = "exact", 1.0
        elif query.phash is not None and image.phash is not None and hamming(query.phash, image.phash) <= rules.near_exact:
            kind = "near_exact"
        elif similarity >= rules.near:
            kind = "near"
        if kind is None:
            continue
        match = Match(image=image, similarity=similarity, kind=kind)
        if image.id not in best or _rank(match) < _rank(best[image.id]):
            best[image.id] = match
    return sorted(best.values(), key=_rank)[: rules.top_k]


def _within_request(images: list[NewImage], stored: list[StoredImage]) -> list[list[Candidate]]:
    """Per image, every earlier image of the same request as a candidate (brute force: a request
    holds at most a few hundred images)."""
    vectors = np.stack([image.vector for image in images])
    similarity = vectors @ vectors.T
    return [[Candidate(image=stored[j], similarity=float(similarity[i, j])) for j in range(i)] for i in range(len(images))]


def _pairs(images: Iterable[uuid.UUID], found: Iterable[list[Match]]) -> list[Pair]:
    return [
        Pair(image_id=image_id, duplicate_id=match.image.id, similarity=match.similarity, kind=match.kind)
        for image_id, matches in zip(images, found, strict=True)
        for match in matches
    ]


async def record_request(
    store: VectorStore, request_id: uuid.UUID, submitted: int, images: list[NewImage], *, model: str, rules: Rules
) -> list[list[Match]]:
    """Store a request and, per image, its duplicates among everything stored (other requests,
    earlier items of this one, and uploads running at the same moment, on any replica).

    No lock: the search sees what was committed before it; after the write, the images stored by
    ingests it could not see are compared (a few, brute force). Of two concurrent ingests the one
    that compares last finds the pair; a pair found twice is recorded once.
    """
    queries = [_query(image) for image in images]
    search = await store.candidates(queries, model=model, k=rules.neighbours)
    now = datetime.now(UTC)
    stored = [image.stored(request_id, model, now) for image in images]
    earlier = _within_request(images, stored)
    found = [
        classify(query, [*candidates, *same_request], rules)
        for query, candidates, same_request in zip(queries, search.found, earlier, strict=True)
    ]
    write = _write_request(store, request_id, submitted, images, queries, found, search.seen, model=model, rules=rules)
    return await _finish_despite_cancel(asyncio.ensure_future(write))


def _query(image: NewImage) -> Query:
    return Query(vector=image.vector, sha256=image.sha256, phash=image.phash)


async def search(store: VectorStore, images: list[NewImage], *, model: str, rules: Rules) -> list[list[Match]]:
    """Per image, its duplicates among the stored ones; nothing is written (POST /search)."""
    queries = [_query(image) for image in images]
    found = await store.candidates(queries, model=model, k=rules.neighbours)
    return [classify(query, candidates, rules) for query, candidates in zip(queries, found.found, strict=True)]


async def _finish_despite_cancel(task: asyncio.Future[list[list[Match]]]) -> list[list[Match]]:
    """Once a request's write has begun, a cancellation (a shutdown's grace running out) waits
    for it, milliseconds, instead of leaving a stored request whose client was told it failed."""
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        result = await task
        current = asyncio.current_task()
        if current is not None:
            current.uncancel()
        return result


async def _write_request(
    store: VectorStore, request_id: uuid.UUID, submitted: int, images: list[NewImage], queries: list[Query],
    found: list[list[Match]], seen: str | None, *, model: str, rules: Rules,
) -> list[list[Match]]:
    await store.add_request(request_id, submitted, images, _pairs((i.id for i in images), found), model=model)
    try:
        late: list[Pair] = []
        if seen is not None:
            concurrent = await store.concurrent_candidates(request_id, seen, model=model, k=rules.neighbours)
            for i, (image, query) in enumerate(zip(images, queries, strict=True)):
                known = {match.image.id for match in found[i]}
                extra = [m for m in classify(query, concurrent.get(image.id, []), rules) if m.image.id not in known]
                late += _pairs([image.id], [extra])
                found[i] = sorted(found[i] + extra, key=_rank)[: rules.top_k]
        await store.settle(request_id, late, model=model)
    except Exception:  # committed: the request is stored, whatever fails now (the database died)
        log.warning("request %s is stored; its check against concurrent uploads is left to the sweeper",
                    request_id, exc_info=True)
    return found


async def _search_stored(
    store: VectorStore, stored: list[tuple[StoredImage, np.ndarray]], *, model: str, rules: Rules
) -> dict[uuid.UUID, list[Match]]:
    """Live search for stored images; vectors of another model (kept under
    DUPDETECT_ALLOW_MODEL_CHANGE) are never compared."""
    comparable = [(image, vector) for image, vector in stored if image.model == model]
    if not comparable:
        return {}
    queries = [
        Query(vector=vector, sha256=image.sha256, phash=image.phash, exclude=image.id) for image, vector in comparable
    ]
    search = await store.candidates(queries, model=model, k=rules.neighbours)
    return {
        image.id: classify(query, candidates, rules)
        for (image, _), query, candidates in zip(comparable, queries, search.found, strict=True)
    }


async def settle_pending(
    store: VectorStore, *, model: str, rules: Rules, older_than_s: float, progress: Callable[[int], None] | None = None
) -> tuple[int, int]:
    """Record the missing pairs of unsettled requests (a crash between commit and the
    concurrent comparison, or a bulk load): one batched k-NN search per request, every pair
    once. Returns (requests settled, pairs newly recorded)."""
    settled = pairs = 0
    for collection, request_id in await store.unsettled_requests(older_than_s):
        scoped = store.scoped(collection)
        stored = await scoped.request_images(request_id)
        found = await _search_stored(scoped, stored, model=model, rules=rules)
        pairs += await scoped.settle(request_id, _pairs(found.keys(), found.values()), model=model)
        settled += 1
        if progress is not None:
            progress(len(stored))
    return settled, pairs


async def for_request(
    store: VectorStore, request_id: uuid.UUID, *, model: str, rules: Rules, live: bool
) -> list[tuple[StoredImage, list[Match]]]:
    """Per image of the request, in upload order, its duplicates in both directions.

    Not ``live``: the pairs recorded at ingest. ``live``: a search with ``rules``, so a looser
    threshold than the ingest default still finds everything. Raises RequestNotFound.
    """
    if not live:
        return [(image, matches[: rules.top_k]) for image, matches in await store.recorded_duplicates(request_id)]
    stored = await store.request_images(request_id)
    found = await _search_stored(store, stored, model=model, rules=rules)
    return [(image, found.get(image.id, [])) for image, _ in stored]


async def search_again(store: VectorStore, image: StoredImage, vector: np.ndarray, *, model: str, rules: Rules) -> list[Pair]:
    """The pairs of one stored image against everything stored (after its vector changed)."""
    found = await _search_stored(store, [(image, vector)], model=model, rules=rules)
    return _pairs(found.keys(), found.values())


async def undo_not_duplicate(
    store: VectorStore, a: uuid.UUID, b: uuid.UUID, *, model: str, rules: Rules
) -> bool:
    """Withdraw a person's decision and search the first image again, so the pair (and any
    other it had) is recorded as the rules find it. False if there was no such decision."""
    if not await store.unmark_not_duplicate(a, b):
        return False
    image = await store.get_image(a)
    if image is not None:
        stored = [(i, v) for i, v in await store.request_images(image.request_id) if i.id == a]
        found = await _search_stored(store, stored, model=model, rules=rules)
        await store.settle(image.request_id, _pairs(found.keys(), found.values()), model=model)
    return True


def suggested_keeper(images: list[StoredImage]) -> StoredImage:
    """The copy of a group to keep: the largest resolution, then the largest file, then the
    earliest taken, then the first by name (the duplicate_groups view applies the same rule)."""
    return min(images, key=lambda i: (
        -(i.width * i.height), -i.byte_size, i.taken_at or datetime.max, i.filename or i.url or ""
    ))


def connected_groups(pairs: Iterable[Pair]) -> list[list[uuid.UUID]]:
    """Images linked by duplicate pairs, directly or through others; largest group first."""
    parent: dict[uuid.UUID, uuid.UUID] = {}

    def root(node: uuid.UUID) -> uuid.UUID:
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for pair in pairs:
        parent[root(pair.image_id)] = root(pair.duplicate_id)
    groups: dict[uuid.UUID, list[uuid.UUID]] = {}
    for node in parent:
        groups.setdefault(root(node), []).append(node)
    return sorted(groups.values(), key=lambda group: (-len(group), min(group)))


def pairs_by_group(groups: list[list[uuid.UUID]], pairs: Iterable[Pair]) -> list[list[Pair]]:
    """Each group's pairs, in one pass over them (a pair never links two groups)."""
    group_of = {image: n for n, group in enumerate(groups) for image in group}
    found: list[list[Pair]] = [[] for _ in groups]
    for pair in pairs:
        if pair.image_id in group_of:
            found[group_of[pair.image_id]].append(pair)
    return found
