"""Read-only PostgreSQL roles for SQL analysts: the tables and views of images, requests and
duplicates, nothing else (not the API keys), in read-only transactions."""

from __future__ import annotations

import re
import secrets

import asyncpg

from dupdetect.errors import OperatorError

READABLE = (
    "collections", "requests", "images", "duplicates", "not_duplicates", "marks",
    "image_duplicates", "duplicate_pairs", "duplicate_groups",
)
"""What analysts see; ``api_keys`` and ``alembic_version`` stay out of reach."""
ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class InvalidRole(OperatorError):
    pass


def _check(name: str) -> str:
    if not ROLE_NAME.match(name) or name.startswith("pg_"):
        raise InvalidRole(f"role name {name!r} is not valid: lower-case letters, digits and '_', not starting with pg_")
    return name


async def _run(conn: asyncpg.Connection, template: str, *values: str) -> None:
    """Utility statements take no parameters: quote them with PostgreSQL's own format()."""
    placeholders = ", ".join(f"${i}::text" for i in range(2, len(values) + 2))
    await conn.execute(await conn.fetchval(f"SELECT format($1::text, {placeholders})", template, *values))


async def create_analyst(pool: asyncpg.Pool, name: str) -> str:
    """Create (or reset) the role; returns its new password."""
    password = secrets.token_urlsafe(18)
    async with pool.acquire() as conn, conn.transaction():
        exists = await conn.fetchval("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", _check(name))
        verb = "ALTER" if exists else "CREATE"
        await _run(conn, f"{verb} ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT PASSWORD %L", name, password)
        await _run(conn, "ALTER ROLE %I SET default_transaction_read_only = on", name)
        await _run(conn, "ALTER ROLE %I SET statement_timeout = '10min'", name)
        await _run(conn, "GRANT CONNECT ON DATABASE %I TO %I", await conn.fetchval("SELECT current_database()"), name)
        await _run(conn, "GRANT USAGE ON SCHEMA public TO %I", name)
        for relation in READABLE:
            await _run(conn, f"GRANT SELECT ON {relation} TO %I", name)
    return password


async def drop_analyst(pool: asyncpg.Pool, name: str) -> bool:
    async with pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", _check(name)):
            return False
        await _run(conn, "REVOKE ALL ON ALL TABLES IN SCHEMA public FROM %I", name)
        await _run(conn, "REVOKE ALL ON SCHEMA public FROM %I", name)
        await _run(conn, "REVOKE ALL ON DATABASE %I FROM %I", await conn.fetchval("SELECT current_database()"), name)
        await _run(conn, "DROP ROLE %I", name)
    return True
