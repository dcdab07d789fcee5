"""Alembic environment: runs the migration scripts over SQLAlchemy's asyncpg driver.

The URL comes from ``dupdetect.migrate`` (config attribute ``sqlalchemy_url``); the scripts
are plain SQL so that analysts can read the schema they query.
"""

import asyncio

from alembic import context
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine

MIGRATION_LOCK = 0x64756D67  # "dumg": one migrating process at a time per database


def _run(connection: Connection) -> None:
    # Service processes starting together on one database each migrate: the first does the
    # work, the others wait here and then find the schema at head. Held until disconnect.
    connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
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
