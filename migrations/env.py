"""Alembic environment: runs the migration scripts over SQLAlchemy's asyncpg driver.

The URL comes from ``dupdetect.migrate`` (config attribute ``sqlalchemy_url``); the scripts
are plain SQL so that analysts can read the schema they query.
"""

import asyncio
import time

from alembic import context
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine

from dupdetect.migrate import MigrationLockTimeout

MIGRATION_LOCK = 0x64756D67  # "dumg": one migrating process at a time per database
_HOLDER = text("""
    SELECT a.pid, a.usename, a.application_name, a.client_addr, a.state, now() - a.xact_start AS held
    FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0 AND l.objid = :key AND l.objsubid = 1
""")


def _lock(connection: Connection, wait_s: float) -> None:
    """Take the migration lock, or say who holds it: a session that never lets go (an analyst
    who took it by hand) must not make start-up wait in silence."""
    deadline = time.monotonic() + wait_s
    while not connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": MIGRATION_LOCK}).scalar():
        if time.monotonic() > deadline:
            row = connection.execute(_HOLDER, {"key": MIGRATION_LOCK}).first()
            holder = (
                f"PostgreSQL session {row.pid} of user {row.usename!r} (application {row.application_name!r},"
                f" from {row.client_addr or 'a local socket'}, {row.state})"
                if row is not None
                else "a session that has just let go"
            )
            raise MigrationLockTimeout(
                f"the migration lock is held by {holder} for more than {wait_s:g} s"
                f" (DUPDETECT_MIGRATION_LOCK_TIMEOUT); end that session"
                f" (SELECT pg_terminate_backend({row.pid if row else 'pid'})) or wait for its migration to finish"
            )
        connection.commit()
        time.sleep(0.5)


def _run(connection: Connection) -> None:
    # Service processes starting together on one database each migrate: the first does the
    # work, the others wait here and then find the schema at head. Held until disconnect.
    _lock(connection, context.config.attributes.get("lock_timeout", 120.0))
    connection.commit()
    context.configure(connection=connection, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()


async def _main() -> None:
    engine = create_async_engine(context.config.attributes["sqlalchemy_url"])
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("dupdetect migrations run online only: use `dupdetect migrate`")
asyncio.run(_main())
