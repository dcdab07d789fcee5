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
    await migrate.upgrade_async(dsn)
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
