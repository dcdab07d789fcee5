"""The duplicate workflow against a store, for every entry point: search, decide with
:mod:`dupdetect.images.rules`, write, compare with concurrent uploads, settle.

A request is *settled* once its pairs against every upload that ran at the same moment are
recorded; until then the sweeper (:func:`settle_pending`) finishes it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime

import msgspec
import numpy as np

from dupdetect.images.rules import RECORDED, Decided, Rules, as_pairs, decide, propose, rank, within_request
from dupdetect.store.base import Candidate, Match, NewImage, Pair, Query, ReviewStore, StoredImage, VectorStore

log = logging.getLogger(__name__)


async def classify(
    store: VectorStore,
    queries: list[Query],
    found: Iterable[list[Candidate]],
    rules: Rules,
    known: Mapping[uuid.UUID, bytes] | None = None,
    decided: Decided | None = None,
) -> list[list[Match]]:
    """Each query's candidates → its duplicates, strongest first, at most :data:`RECORDED`.
    ``known``: keypoints already at hand (images of the request being stored). A stored query
    (``exclude`` set) without keypoints gets its own from the store, in the same round trip as
    its candidates'. ``decided``: see :data:`dupdetect.images.rules.Decided`."""
    proposals = [propose(query, candidates, rules) for query, candidates in zip(queries, found, strict=True)]
    keypoints = dict(known or {})
    checkable = [q.keypoints is not None or q.exclude is not None for q in queries]
    wanted = {q.exclude for q in queries if q.keypoints is None and q.exclude is not None} | {
        p.image.id for ps, can in zip(proposals, checkable, strict=True) if can for p in ps if p.decided is None
    }
    wanted -= keypoints.keys()
    if not wanted:  # nothing to check geometrically: no store round trip, no thread
        return [decide(query, ps, keypoints, rules, decided) for query, ps in zip(queries, proposals, strict=True)]
    keypoints.update(await store.keypoints(sorted(i for i in wanted if i is not None)))
    queries = [
        msgspec.structs.replace(q, keypoints=keypoints.get(q.exclude)) if q.keypoints is None and q.exclude else q
        for q in queries
    ]
    return await asyncio.to_thread(
        lambda: [decide(query, ps, keypoints, rules, decided) for query, ps in zip(queries, proposals, strict=True)]
    )


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
    earlier = within_request(images, stored)
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
    store: VectorStore,
    request_id: uuid.UUID,
    submitted: int,
    images: list[NewImage],
    queries: list[Query],
    found: list[list[Match]],
    seen: str | None,
    *,
    model: str,
    rules: Rules,
) -> list[list[Match]]:
    await store.add_request(request_id, submitted, images, as_pairs((i.id for i in images), found), model=model)
    try:
        late: list[Pair] = []
        if seen is not None:
            concurrent = await store.concurrent_candidates(request_id, seen, model=model, k=rules.neighbours)
            judged = await classify(store, queries, (concurrent.get(image.id, []) for image in images), rules)
            for i, image in enumerate(images):
                known = {match.image.id for match in found[i]}
                extra = [m for m in judged[i] if m.image.id not in known]
                late += as_pairs([image.id], [extra])
                found[i] = sorted(found[i] + extra, key=rank)[:RECORDED]
        await store.settle(request_id, late, model=model)
    except Exception:  # committed: the request is stored, whatever fails now (the database died)
        log.warning(
            "request %s is stored; its check against concurrent uploads is left to the sweeper", request_id, exc_info=True
        )
    return found


async def _search_stored(
    store: VectorStore,
    stored: list[tuple[StoredImage, np.ndarray]],
    *,
    model: str,
    rules: Rules,
    decided: Decided | None = None,
) -> dict[uuid.UUID, list[Match]]:
    """Live search for stored images; vectors of another model (kept under
    DUPDETECT_ALLOW_MODEL_CHANGE) are never compared."""
    comparable = [(image, vector) for image, vector in stored if image.model == model]
    if not comparable:
        return {}
    queries = [Query(vector=vector, sha256=image.sha256, phash=image.phash, exclude=image.id) for image, vector in comparable]
    search = await store.candidates(queries, model=model, k=rules.neighbours)
    found = await classify(store, queries, search.found, rules, decided=decided)
    return {image.id: matches for (image, _), matches in zip(comparable, found, strict=True)}


async def settle_pending(
    store: VectorStore,
    *,
    model: str,
    rules: Rules,
    older_than_s: float,
    progress: Callable[[int], None] | None = None,
    at_once: int = 1,
) -> tuple[int, int]:
    """Record the missing pairs of unsettled requests (a crash between commit and the
    concurrent comparison, or a bulk load): one batched k-NN search per request, every pair
    once. Returns (requests settled, pairs newly recorded).

    ``at_once``: requests in progress together. One request alternates between the database's
    search and the geometric checks, each on one core, so a folder's pass (which has the
    machine to itself) runs two to use two cores; the service's sweeper runs one."""
    pending = iter(await store.unsettled_requests(older_than_s))
    decided: Decided = {}

    async def settle_each() -> tuple[int, int]:
        settled = pairs = 0
        for collection, request_id in pending:  # shared: each request is taken by one of them
            scoped = store.scoped(collection)
            stored = await scoped.request_images(request_id)
            found = await _search_stored(scoped, stored, model=model, rules=rules, decided=decided)
            pairs += await scoped.settle(request_id, as_pairs(found.keys(), found.values()), model=model)
            settled += 1
            if progress is not None:
                progress(len(stored))
        return settled, pairs

    try:
        async with asyncio.TaskGroup() as running:
            tasks = [running.create_task(settle_each()) for _ in range(at_once)]
    except ExceptionGroup as failed:  # the first failure, as one request alone would raise it
        raise failed.exceptions[0] from None
    counts = [task.result() for task in tasks]
    return sum(settled for settled, _ in counts), sum(pairs for _, pairs in counts)


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
    return as_pairs(found.keys(), found.values())


async def undo_not_duplicate(store: ReviewStore, a: uuid.UUID, b: uuid.UUID, *, model: str, rules: Rules) -> bool:
    """Withdraw a person's decision and search the first image again, so the pair (and any
    other it had) is recorded as the rules find it. False if there was no such decision."""
    if not await store.unmark_not_duplicate(a, b):
        return False
    image = await store.get_image(a)
    if image is not None:
        stored = [(i, v) for i, v in await store.request_images(image.request_id) if i.id == a]
        found = await _search_stored(store, stored, model=model, rules=rules)
        await store.settle(image.request_id, as_pairs(found.keys(), found.values()), model=model)
    return True
