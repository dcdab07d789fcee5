"""Read-only PostgreSQL roles for SQL analysts: the tables and views of images, requests and
duplicates, nothing else (not the API keys), in read-only transactions.

An analyst can override any setting of their own session (``SET statement_timeout = 0``), so
the limits that protect the service are not settings alone: the role has no privilege to
write, create temporary tables or functions, and the service ends analyst sessions that run a
statement too long, sit idle in a transaction, or hold an advisory lock (the migrations' lock)
(:func:`end_runaway_sessions`, every few seconds)."""

from __future__ import annotations

import re
import secrets

import asyncpg

from dupdetect.errors import OperatorError

READABLE = (
    "collections",
    "requests",
    "images",
    "duplicates",
    "not_duplicates",
    "marks",
    "image_duplicates",
    "duplicate_pairs",
    "duplicate_groups",
)
"""What analysts see; ``api_keys`` and ``alembic_version`` stay out of reach."""
ANALYSTS = "dupdetect_analysts"
"""The group every analyst role belongs to: how the service knows their sessions."""
STATEMENT_LIMIT_S = 600
"""Longest statement an analyst may run."""
IDLE_IN_TRANSACTION_LIMIT_S = 300
"""Longest an analyst's transaction may stay open doing nothing (it holds back vacuum, and
its locks block migrations)."""
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
        await _run(conn, f"ALTER ROLE %I SET statement_timeout = '{STATEMENT_LIMIT_S}s'", name)
        await _run(conn, f"ALTER ROLE %I SET idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION_LIMIT_S}s'", name)
        database = await conn.fetchval("SELECT current_database()")
        await _run(conn, "GRANT CONNECT ON DATABASE %I TO %I", database, name)
        # Temporary tables and functions: PUBLIC has the privilege by default, so only taking
        # it from PUBLIC takes it from the analyst; the service's own role keeps it.
        await _run(conn, "REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC", database)
        await _run(conn, "GRANT TEMPORARY ON DATABASE %I TO CURRENT_USER", database)
        await conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        await _run(conn, "GRANT USAGE ON SCHEMA public TO %I", name)
        if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", ANALYSTS):
            await _run(conn, "CREATE ROLE %I NOLOGIN", ANALYSTS)
        await _run(conn, "GRANT %I TO %I", ANALYSTS, name)
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


_RUNAWAY = f"""
    SELECT a.pid, a.usename, pg_terminate_backend(a.pid) AS ended,
           CASE WHEN a.state = 'active' THEN 'a statement running over {STATEMENT_LIMIT_S} s'
                WHEN a.state LIKE 'idle in transaction%' THEN 'a transaction idle over {IDLE_IN_TRANSACTION_LIMIT_S} s'
                ELSE 'an advisory lock' END AS reason
    FROM pg_stat_activity a
    WHERE a.pid <> pg_backend_pid() AND a.usesysid IS NOT NULL
      AND pg_has_role(a.usesysid, '{ANALYSTS}', 'MEMBER')
      AND ((a.state = 'active' AND now() - a.query_start > interval '{STATEMENT_LIMIT_S} seconds')
        OR (a.state LIKE 'idle in transaction%' AND now() - a.state_change > interval '{IDLE_IN_TRANSACTION_LIMIT_S} seconds')
        OR EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'advisory'))
"""


async def end_runaway_sessions(pool: asyncpg.Pool) -> list[str]:
    """End the analyst sessions past their limits, whatever they SET; what was ended, in words.
    Needs the service's role to be a superuser or a member of pg_signal_backend."""
    if not await pool.fetchval("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", ANALYSTS):
        return []
    return [
        f"session {row['pid']} of {row['usename']} ({row['reason']})" + ("" if row["ended"] else ": could not end it")
        for row in await pool.fetch(_RUNAWAY)
    ]
