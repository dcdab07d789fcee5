"""What a running service holds (database server, pool), started and stopped in one place."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg

from dupdetect import migrate
from dupdetect.database import DatabaseError, DatabaseServer, create_pool, require_pgvector
from dupdetect.settings import Settings

log = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """The service cannot start; the message tells the operator what to do."""


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    server: DatabaseServer
    pool: asyncpg.Pool


async def _prepare_schema(dsn: str, settings: Settings) -> None:
    await require_pgvector(dsn)
    if settings.database.migrate_on_start:
        await migrate.upgrade_async(dsn)
        return
    current, head = await migrate.current_revision(dsn), migrate.head_revision()
    if current != head:
        raise DatabaseError(
            f"the database schema is at revision {current or 'none'}, this version needs {head}: "
            "run `dupdetect migrate` (or set DUPDETECT_MIGRATE_ON_START=true)"
        )


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Runtime]:
    """Start everything the service needs, in order; stop it in reverse, also on failure."""
    async with contextlib.AsyncExitStack() as stack:
        try:
            server = await asyncio.to_thread(DatabaseServer.start, settings.database)
            stack.callback(server.stop)
            await _prepare_schema(server.dsn, settings)
            pool = await create_pool(server.dsn, settings.database)
            stack.push_async_callback(pool.close)
        except DatabaseError as exc:
            raise StartupError(str(exc)) from exc
        log.info("database ready: %s", server.describe())
        yield Runtime(settings=settings, server=server, pool=pool)
