"""The duplicate rules, in one place for every store and entry point: which candidates count,
of which kind, in which order, how many, and how the images of one request pair up.

Stores fetch candidates (the nearest descriptors, the same bytes, a shared hash band); this
module decides, in two stages:

1. Cheap gates. ``exact``: the same bytes (similarity 1.0). Otherwise the descriptors'
   cosine similarity must reach ``Rules.near`` (a request's ``threshold``). A *hash match*
   (perceptual hashes within ``Rules.near_exact`` bits, both hashes informative, similarity at
   least ``Rules.near_exact_floor``) at ``Rules.trusted`` or above is ``near_exact`` at once.
2. Geometric verification (:mod:`dupdetect.embedding.geometry`) of everything else: the pair is kept when
   one homography maps enough keypoints of one image onto the other (``matched_points``), as
   ``near_exact`` if the hashes matched, else ``near``. Images too plain for keypoints, or more
   than 3× smaller than the other (beyond ORB's scale range), pair only on a hash match; pairs
   whose keypoints are not stored (Pinecone, older rows) fall back to the descriptor alone at
   ``Rules.unverified``.

A pair is reported once, as its strongest kind. Pairs are symmetric: if B duplicates A, A
duplicates B.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime

import msgspec
import numpy as np

from dupdetect.embedding import geometry
from dupdetect.embedding.perceptual import hamming
from dupdetect.settings import DuplicateSettings
from dupdetect.store.base import Candidate, Kind, Match, NewImage, Pair, Query, ReviewStore, StoredImage, VectorStore

log = logging.getLogger(__name__)

_TIER: dict[Kind, int] = {"exact": 0, "near_exact": 1, "near": 2}
WEAK_DESCRIPTOR = 0.7
WEAK_DESCRIPTOR_POINTS = 40
"""Below :data:`WEAK_DESCRIPTOR` similarity the descriptors barely agree, so the geometry must
carry the pair alone with this many points (bench/quality.py: unrelated images reach 23 at
0.48–0.57; rotated copies keep 100 and more)."""
MAX_CHECKS = 12
"""Failed geometric checks per image at most (about 0.6 ms each): an image without duplicates
in a large collection has many candidates above the similarity floor, and a copy, when there is
one, is nearly always among the most similar. Checks that confirm a pair do not count (a
request of many copies of one photo checks them all)."""
RECORDED = 100
"""Pairs recorded per image at most: ``top_k`` limits what a response lists, not what groups
are made of, so that every copy of a picture shot or shared fifty times lands in one group."""
NEIGHBOURS = 64
"""Nearest descriptors fetched per image at least (more when ``top_k`` asks for more)."""
TRUSTED_BITS = 2
"""A hash match this close (and at ``Rules.trusted`` similarity) skips the geometric check:
different pages of text reach similarity 0.98 but stay 8 bits apart or more."""


class Rules(msgspec.Struct, frozen=True, kw_only=True):
    """When a candidate counts as a duplicate, and how many to report per image."""

    near: float
    """Cosine similarity floor of every non-exact pair."""
    near_exact: int
    """Largest Hamming distance between perceptual hashes for a hash match."""
    top_k: int
    """Duplicates reported per image (up to :data:`RECORDED` are recorded)."""
    near_exact_floor: float = 0.6
    """Similarity a hash match needs as well."""
    trusted: float = 0.95
    """A hash match within :data:`TRUSTED_BITS` bits and this similar skips the geometric check."""
    unverified: float = 0.85
    """Similarity a pair needs when no keypoints are stored for it."""

    @classmethod
    def from_settings(cls, settings: DuplicateSettings, *, near: float | None = None, top_k: int | None = None) -> Rules:
        """The configured rules, or a request's own similarity floor and limit."""
        return cls(
            near=settings.near_threshold if near is None else near,
            near_exact=settings.near_exact_distance,
            top_k=settings.top_k if top_k is None else top_k,
            near_exact_floor=settings.near_exact_similarity,
            trusted=settings.trusted_similarity,
            unverified=settings.unverified_threshold,
        )

    @property
    def neighbours(self) -> int:
        """Vector neighbours fetched per image: more than ``top_k``, so that a near-exact match
        ranked below several near ones (bursts, series) is still among the candidates, and at
        least :data:`NEIGHBOURS`, so that a picture's many copies all find each other."""
        return max(2 * self.top_k + 1, NEIGHBOURS)


def _rank(match: Match) -> tuple[int, float]:
    return _TIER[match.kind], -match.similarity


class _Proposal(msgspec.Struct, frozen=True):
    """A candidate through the cheap gates, waiting for the geometric check (or not)."""

    image: StoredImage
    similarity: float
    hash_match: bool
    settled: Kind | None
    """Decided without geometry (exact, or a trusted hash match)."""


def _propose(query: Query, candidates: Iterable[Candidate], rules: Rules) -> list[_Proposal]:
    """The cheap gates, best first; one proposal per image."""
    best: dict[uuid.UUID, _Proposal] = {}
    for candidate in candidates:
        image = candidate.image
        if image.id == query.exclude or (image.id in best and best[image.id].settled == "exact"):
            continue
        similarity = min(candidate.similarity, 1.0)
        if image.sha256 == query.sha256:
            best[image.id] = _Proposal(image, 1.0, True, "exact")
            continue
        if similarity < rules.near:
            continue
        bits = None if query.phash is None or image.phash is None else hamming(query.phash, image.phash)
        hash_match = bits is not None and bits <= rules.near_exact and similarity >= rules.near_exact_floor
        trusted = hash_match and bits is not None and bits <= TRUSTED_BITS and similarity >= rules.trusted
        best[image.id] = _Proposal(image, similarity, hash_match, "near_exact" if trusted else None)
    return sorted(best.values(), key=lambda p: (p.settled != "exact", not p.hash_match, -p.similarity))


def _decide(query: Query, proposals: list[_Proposal], keypoints: Mapping[uuid.UUID, bytes], rules: Rules) -> list[Match]:
    """The geometric stage: at most :data:`RECORDED` matches, checking the most likely first
    (hash matches, then by similarity) and giving up after :data:`MAX_CHECKS` checks that fail."""
    found: list[Match] = []
    failed = 0
    for proposal in proposals:
        if len(found) >= RECORDED:
            break
        theirs = keypoints.get(proposal.image.id)
        checked = proposal.settled is None and query.keypoints is not None and theirs is not None
        if checked and failed == MAX_CHECKS:
            continue
        match = _verified(query, proposal, theirs, rules)
        if match is not None:
            found.append(match)
        elif checked:
            failed += 1
    return sorted(found, key=_rank)


def _verified(query: Query, proposal: _Proposal, theirs: bytes | None, rules: Rules) -> Match | None:
    tier: Kind = "near_exact" if proposal.hash_match else "near"
    if proposal.settled is not None:
        return Match(image=proposal.image, similarity=proposal.similarity, kind=proposal.settled)
    if query.keypoints is None or theirs is None:  # nothing to check with: the descriptor alone
        if proposal.hash_match or proposal.similarity >= max(rules.near, rules.unverified):
            return Match(image=proposal.image, similarity=proposal.similarity, kind=tier)
        return None
    verdict, points = geometry.verify(query.keypoints, theirs)
    needed = geometry.MIN_INLIERS if proposal.similarity >= WEAK_DESCRIPTOR else WEAK_DESCRIPTOR_POINTS
    if verdict == "confirmed" and points >= needed:
        return Match(image=proposal.image, similarity=proposal.similarity, kind=tier, matched_points=points)
    if verdict in ("textureless", "out_of_scale") and proposal.hash_match:
        return Match(image=proposal.image, similarity=proposal.similarity, kind="near_exact")
    return None


async def classify(
    store: VectorStore, queries: list[Query], found: Iterable[list[Candidate]], rules: Rules,
    known: Mapping[uuid.UUID, bytes] | None = None,
) -> list[list[Match]]:
    """Each query's candidates → its duplicates, strongest first, at most :data:`RECORDED`.
    ``known``: keypoints already at hand (images of the request being stored). A stored query
    (``exclude`` set) without keypoints gets its own from the store, in the same round trip as
    its candidates'."""
    proposals = [_propose(query, candidates, rules) for query, candidates in zip(queries, found, strict=True)]
    keypoints = dict(known or {})
    checkable = [q.keypoints is not None or q.exclude is not None for q in queries]
    wanted = {q.exclude for q in queries if q.keypoints is None and q.exclude is not None} | {
        p.image.id for ps, can in zip(proposals, checkable, strict=True) if can
        for p in ps if p.settled is None
    }
    wanted -= keypoints.keys()
    if not wanted:  # nothing to check geometrically: no store round trip, no thread
        return [_decide(query, ps, keypoints, rules) for query, ps in zip(queries, proposals, strict=True)]
    keypoints.update(await store.keypoints(sorted(i for i in wanted if i is not None)))
    queries = [
        msgspec.structs.replace(q, keypoints=keypoints.get(q.exclude)) if q.keypoints is None and q.exclude else q
        for q in queries
    ]
    return await asyncio.to_thread(
        lambda: [_decide(query, ps, keypoints, rules) for query, ps in zip(queries, proposals, strict=True)]
    )


def _within_request(images: list[NewImage], stored: list[StoredImage]) -> list[list[Candidate]]:
    """Per image, every earlier image of the same request as a candidate (brute force: a request
    holds at most a few hundred images)."""
    vectors = np.stack([image.vector for image in images])
    similarity = vectors @ vectors.T
    return [[Candidate(image=stored[j], similarity=float(similarity[i, j])) for j in range(i)] for i in range(len(images))]


def _pairs(images: Iterable[uuid.UUID], found: Iterable[list[Match]]) -> list[Pair]:
    return [
        Pair(image_id=image_id, duplicate_id=match.image.id, similarity=match.similarity, kind=match.kind,
             matched_points=match.matched_points)
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
    mine = {image.id: image.keypoints for image in images if image.keypoints is not None}
    found = await classify(
        store, queries, ([*c, *same] for c, same in zip(search.found, earlier, strict=True)), rules, known=mine
    )
    write = _write_request(store, request_id, submitted, images, queries, found, search.seen, model=model, rules=rules)
    return await _finish_despite_cancel(asyncio.ensure_future(write))


def _query(image: NewImage) -> Query:
    return Query(vector=image.vector, sha256=image.sha256, phash=image.phash, keypoints=image.keypoints)


async def search(store: VectorStore, images: list[NewImage], *, model: str, rules: Rules) -> list[list[Match]]:
    """Per image, its duplicates among the stored ones; nothing is written (POST /search)."""
    queries = [_query(image) for image in images]
    found = await store.candidates(queries, model=model, k=rules.neighbours)
    return await classify(store, queries, found.found, rules)


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
            judged = await classify(store, queries, (concurrent.get(image.id, []) for image in images), rules)
            for i, image in enumerate(images):
                known = {match.image.id for match in found[i]}
                extra = [m for m in judged[i] if m.image.id not in known]
                late += _pairs([image.id], [extra])
                found[i] = sorted(found[i] + extra, key=_rank)[:RECORDED]
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
    queries = [Query(vector=vector, sha256=image.sha256, phash=image.phash, exclude=image.id) for image, vector in comparable]
    search = await store.candidates(queries, model=model, k=rules.neighbours)
    found = await classify(store, queries, search.found, rules)
    return {image.id: matches for (image, _), matches in zip(comparable, found, strict=True)}


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

    Not ``live``: the pairs recorded at ingest, where the store keeps them. ``live`` (or a store
    that records none): a search with ``rules``, so a looser threshold than the ingest default
    still finds everything. Raises RequestNotFound.
    """
    if not live and isinstance(store, ReviewStore):
        return [(image, matches[: rules.top_k]) for image, matches in await store.recorded_duplicates(request_id)]
    stored = await store.request_images(request_id)
    found = await _search_stored(store, stored, model=model, rules=rules)
    return [(image, found.get(image.id, [])[: rules.top_k]) for image, _ in stored]


async def search_again(store: VectorStore, image: StoredImage, vector: np.ndarray, *, model: str, rules: Rules) -> list[Pair]:
    """The pairs of one stored image against everything stored (after its vector changed)."""
    found = await _search_stored(store, [(image, vector)], model=model, rules=rules)
    return _pairs(found.keys(), found.values())


async def undo_not_duplicate(
    store: ReviewStore, a: uuid.UUID, b: uuid.UUID, *, model: str, rules: Rules
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
