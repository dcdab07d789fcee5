"""The read-only role for SQL analysts: it reads the tables and views, and nothing else."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from dupdetect import migrate
from dupdetect.analysts import create_analyst, drop_analyst
from dupdetect.database import create_pool
from dupdetect.settings import DatabaseSettings


def _as(dsn: str, user: str, password: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{parts.hostname or ''}"))


async def test_an_analyst_reads_images_and_duplicates_but_not_keys_and_writes_nothing(dsn: str) -> None:
    pool = await create_pool(dsn, DatabaseSettings(), ef_search=40)
    name = f"analyst_{uuid.uuid4().hex[:8]}"
    try:
        password = await create_analyst(pool, name)
        analyst = await asyncpg.connect(_as(dsn, name, password))
        try:
            for relation in ("images", "requests", "duplicates", "image_duplicates", "collections"):
                await analyst.fetchval(f"SELECT count(*) FROM {relation}")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await analyst.fetch("SELECT * FROM api_keys")
            with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
                await analyst.execute("INSERT INTO collections (name) VALUES ('mine')")
        finally:
            await analyst.close()
        assert await drop_analyst(pool, name)
        assert not await drop_analyst(pool, name)
    finally:
        await pool.close()


async def test_an_analyst_cannot_block_migrations_or_escape_the_limits(dsn: str) -> None:
    from dupdetect.analysts import end_runaway_sessions
    from dupdetect.migrate import MigrationLockTimeout

    pool = await create_pool(dsn, DatabaseSettings(), ef_search=40)
    name = f"analyst_{uuid.uuid4().hex[:8]}"
    try:
        analyst = await asyncpg.connect(_as(dsn, name, await create_analyst(pool, name)))
        try:
            assert await analyst.fetchval("SHOW idle_in_transaction_session_timeout") == "5min"
            for statement in (
                "CREATE TEMP TABLE mine (x int)",
                "CREATE FUNCTION public.mine() RETURNS int LANGUAGE sql AS 'SELECT 1'",
            ):
                await analyst.execute("SET default_transaction_read_only = off")  # theirs to set, and no way in
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await analyst.execute(statement)
            await analyst.execute("SET statement_timeout = 0")
            await analyst.fetchval("SELECT pg_advisory_lock(1685417319)")  # the migrations' lock ("dumg")
            with pytest.raises(MigrationLockTimeout, match=f"user '{name}'"):
                await migrate.upgrade_async(dsn, lock_timeout=1.0)
            ended = await end_runaway_sessions(pool)  # what the service does every few seconds
            assert any(name in line and "advisory lock" in line for line in ended), ended
            with pytest.raises((asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.InternalClientError)):
                await analyst.fetchval("SELECT 1")
            await migrate.upgrade_async(dsn, lock_timeout=5.0)  # the lock is free again
        finally:
            await analyst.close()
    finally:
        await drop_analyst(pool, name)
        await pool.close()
