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


async def test_the_readmes_nearest_neighbour_query_finds_a_copy_through_the_code_index(dsn: str) -> None:
    """An analyst's similarity search (README, "Indexes") ranks the nearest binary codes by exact
    cosine; it must use the index a 1M-row table needs, and find the copy first."""
    import numpy as np
    from pgvector import HalfVector

    from dupdetect.store.base import NewImage
    from dupdetect.store.pgvector import PgVectorStore

    pool = await create_pool(dsn, DatabaseSettings(), ef_search=40)
    rng = np.random.default_rng(4)
    vectors = rng.random((40, 2048)) ** 3  # non-negative, as GeM descriptors are
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    images = [
        NewImage(
            id=uuid.uuid4(),
            position=n,
            filename=f"{n}.jpg",
            url=None,
            byte_size=1000,
            width=64,
            height=48,
            format="JPEG",
            sha256=uuid.uuid4().hex * 2,
            phash=None,
            thumbnail=None,
            vector=vector.astype(np.float32),
        )
        for n, vector in enumerate(vectors)
    ]
    copy = vectors[7] + rng.normal(scale=0.002, size=2048)
    query = """
        SELECT id, 1 - (embedding::halfvec(2048) <=> $1::halfvec(2048)) AS similarity
        FROM (SELECT * FROM images WHERE vector_dims(embedding) = 2048
              ORDER BY descriptor_code(embedding::halfvec(2048))::bit(2048) <~> descriptor_code($1)::bit(2048)
              LIMIT 20) shortlist
        ORDER BY similarity DESC LIMIT 10
    """
    try:
        await PgVectorStore(pool, dims=2048).add_request(uuid.uuid4(), len(images), images, [], model="test/analyst")
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL enable_seqscan = off")  # a tiny table: show the index can serve it
            plan = "\n".join(row[0] for row in await conn.fetch("EXPLAIN " + query, HalfVector(copy)))
            assert "images_code_2048_hnsw_idx" in plan
            found = await conn.fetch(query, HalfVector(copy))
        assert found[0]["id"] == images[7].id and found[0]["similarity"] > 0.99
    finally:
        await pool.close()
