"""What a running service holds (database, store, embedding pipeline, URL fetcher, keys, the
image service, the sweeper), started in order and stopped in reverse in one place."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg

from dupdetect.analysts import end_runaway_sessions
from dupdetect.database import DatabaseError, open_database
from dupdetect.embedding.pipeline import EmbeddingPipeline
from dupdetect.embedding.weights import WeightsError
from dupdetect.errors import OperatorError
from dupdetect.images.fetch import Fetcher
from dupdetect.images.service import ImageService
from dupdetect.keys import KeyRegistry
from dupdetect.review.service import refresh_stale_groups
from dupdetect.settings import Settings
from dupdetect.store.base import ModelMismatch, VectorStore
from dupdetect.store.pgvector import PgVectorStore

if TYPE_CHECKING:
    from dupdetect.store.pinecone import PineconeStore

log = logging.getLogger(__name__)

GROUPS_EVERY_S = 5.0
"""How often the groups of collections whose pairs changed are rebuilt, for analysts reading
``duplicate_groups`` (``GET /groups`` rebuilds them itself before it answers); at least five
times as long as the last rebuild took, so that rebuilding never takes more than a sixth of the
time (200,000 groups take ~19 s on two cores, bench/groups.py)."""
ANALYSTS_EVERY_S = 5.0
"""How often analyst sessions past their limits are ended (:mod:`dupdetect.analysts`)."""
SETTLE_EVERY_S = 60.0
"""How often unsettled requests (an ingest killed between its commit and its concurrent
check, or a bulk load cut off before its k-NN pass) get their missing pairs searched."""


class StartupError(OperatorError):
    """The service cannot start; the message tells the operator what to do."""


@dataclass(frozen=True)
class Runtime:
    """Read by the dependency providers (``images/deps``, ``api/auth``) and the CLI, never by handlers."""

    settings: Settings
    keys: KeyRegistry | None
    """None only with Pinecone and auth off (no database)."""
    images: ImageService
    """Over the whole store, holding the store, the model pipeline and the fetcher (the sweeper,
    the command line); the API scopes it to the caller's collection."""


async def _open_pinecone(settings: Settings, pipeline: EmbeddingPipeline, stack: contextlib.AsyncExitStack) -> PineconeStore:
    from dupdetect.store.pinecone import PineconeStore  # the SDK loads only when used

    try:
        store = await PineconeStore.open(settings.store, dims=pipeline.dims, model=pipeline.descriptor)
    except ModelMismatch:
        raise
    except Exception as exc:  # the SDK raises many types (HTTP status, connection, auth)
        raise StartupError(
            f"cannot open the Pinecone index {settings.store.pinecone_index!r}: {exc}. Check"
            " DUPDETECT_PINECONE_API_KEY, DUPDETECT_PINECONE_INDEX and DUPDETECT_PINECONE_HOST."
        ) from exc
    stack.push_async_callback(store.close)
    return store


@contextlib.asynccontextmanager
async def running(settings: Settings, *, sweep: bool = True, shared: bool = True) -> AsyncIterator[Runtime]:
    """Start everything the service needs, in order; stop it in reverse, also on failure.

    ``sweep``: settle cut-off requests in the background (a service does; the folder commands
    run their own k-NN pass, and must not search while a bulk load has the index dropped).
    ``shared``: callers take turns for the decoders and the model (a service; a folder command
    in-process is the one caller and uses them all)."""
    async with contextlib.AsyncExitStack() as stack:
        pipeline = EmbeddingPipeline(settings, shared=shared)
        pinecone = settings.store.store == "pinecone"
        try:
            # The database holds the vectors (pgvector) and the API keys (also with Pinecone).
            pool = await open_database(settings, stack) if not pinecone or settings.server.auth_required else None
            store: VectorStore
            if pinecone:
                store = await _open_pinecone(settings, pipeline, stack)
            else:
                assert pool is not None
                store = PgVectorStore(pool, dims=pipeline.dims)
            await store.check_model(pipeline.descriptor, settings.model.allow_model_change)
            await asyncio.to_thread(pipeline.start)
            stack.callback(pipeline.stop)
        except (DatabaseError, WeightsError, ModelMismatch) as exc:
            raise StartupError(str(exc)) from exc
        limits = settings.limits
        fetcher = Fetcher(settings.fetch, max_bytes=limits.max_image_bytes, max_request_bytes=limits.max_request_bytes)
        stack.push_async_callback(fetcher.close)
        images = ImageService(store, pipeline, fetcher, settings.duplicates)
        if sweep:
            chores = [_settle_forever(images), _refresh_groups_forever(images)]
            if pool is not None:
                chores.append(_end_runaway_analysts_forever(pool))
            for task in chores:
                stack.callback(asyncio.create_task(task).cancel)
        keys = KeyRegistry(pool) if pool is not None else None
        # What start-up made (modules, the model: ~450,000 objects) lives as long as we do. Left
        # to the collector, every full collection walks it, 170-220 ms with the event loop
        # stopped: the slowest requests (bench/neighbours.py). Frozen, collections skip it.
        gc.collect()
        gc.freeze()
        stack.callback(gc.unfreeze)  # at the end they may be garbage: let the collector see them
        yield Runtime(settings=settings, keys=keys, images=images)


async def _refresh_groups_forever(images: ImageService) -> None:
    while True:
        started = time.monotonic()
        try:
            await refresh_stale_groups(images)
        except Exception:  # the database may be down for a moment; the next round tries again
            log.exception("rebuilding duplicate groups failed")
        await asyncio.sleep(max(GROUPS_EVERY_S, 5 * (time.monotonic() - started)))


async def _end_runaway_analysts_forever(pool: asyncpg.Pool) -> None:
    while True:
        await asyncio.sleep(ANALYSTS_EVERY_S)
        try:
            for ended in await end_runaway_sessions(pool):
                log.warning("ended analyst %s", ended)
        except Exception:  # the database may be down for a moment; the next round tries again
            log.exception("checking analyst sessions failed")


async def _settle_forever(images: ImageService) -> None:
    while True:
        try:
            settled, _ = await images.settle_pending(older_than_s=SETTLE_EVERY_S / 2)
        except Exception:  # the database may be down for a moment; the next round tries again
            log.exception("settling unsettled requests failed")
        else:
            if settled:
                log.info("settled %d requests whose duplicate search had not finished", settled)
        await asyncio.sleep(SETTLE_EVERY_S)
