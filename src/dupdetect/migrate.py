"""Schema migrations: alembic, driven from code so ``dupdetect migrate`` and start-up share it."""

from __future__ import annotations

import asyncio
from importlib import resources
from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from dupdetect.errors import OperatorError


class MigrationLockTimeout(OperatorError):
    """Another session held the migration lock for longer than the wait allows (raised by the
    migrations' env.py, naming that session)."""


def migrations_dir() -> Path:
    """The wheel carries ``migrations/`` inside the package; a source checkout has it at the top."""
    packaged = Path(str(resources.files("dupdetect"))) / "migrations"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "migrations"


def sqlalchemy_url(dsn: str) -> str:
    scheme, sep, rest = dsn.partition("://")
    if not sep or scheme not in ("postgres", "postgresql"):
        raise ValueError(f"not a PostgreSQL URL: {scheme}://…")
    return f"postgresql+asyncpg://{rest}"


def alembic_config(dsn: str, lock_timeout: float = 120.0) -> Config:
    """``lock_timeout``: how long to wait for another session's migration lock before failing
    with a message that names that session."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["sqlalchemy_url"] = sqlalchemy_url(dsn)
    config.attributes["lock_timeout"] = lock_timeout
    return config


def upgrade(dsn: str, revision: str = "head", *, lock_timeout: float = 120.0) -> None:
    """Blocking (alembic runs its own event loop): call from a thread inside async code."""
    command.upgrade(alembic_config(dsn, lock_timeout), revision)


def downgrade(dsn: str, revision: str) -> None:
    command.downgrade(alembic_config(dsn), revision)


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("postgresql://")).get_current_head()
    assert head is not None
    return head


async def current_revision(dsn: str) -> str | None:
    conn = await asyncpg.connect(dsn)
    try:
        exists = await conn.fetchval("SELECT to_regclass('alembic_version') IS NOT NULL")
        return await conn.fetchval("SELECT version_num FROM alembic_version") if exists else None
    finally:
        await conn.close()


async def upgrade_async(dsn: str, *, lock_timeout: float = 120.0) -> None:
    await asyncio.to_thread(upgrade, dsn, lock_timeout=lock_timeout)
