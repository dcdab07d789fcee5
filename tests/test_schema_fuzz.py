"""Schemathesis over our OpenAPI document: generated requests (bounded) against the real
service never get a 5xx, and every answer matches the documented status, type and shape."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import asyncpg
import hypothesis
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from dupdetect.app import create_app
from dupdetect.database import DatabaseServer
from dupdetect.settings import Settings
from tests.conftest import with_database
from tests.processes import cli_env, free_port, start_serve, wait_ready

pytestmark = pytest.mark.slow  # a real process and hundreds of generated requests (`-m "not slow"` leaves them out)

# The document is the app's own, made without starting anything.
schema = schemathesis.openapi.from_dict(create_app(Settings()).openapi_schema.to_schema())
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def live_url(pg_server: DatabaseServer) -> Iterator[str]:
    name = f"fuzz_{uuid.uuid4().hex[:8]}"

    async def create() -> None:
        admin = await asyncpg.connect(pg_server.dsn)
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()

    asyncio.run(create())
    port = free_port()
    proc = start_serve(cli_env(DUPDETECT_DATABASE_URL=with_database(pg_server.dsn, name), DUPDETECT_LOG_LEVEL="error"), port)
    try:
        wait_ready(proc, port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(30)


@schema.parametrize()
@hypothesis.settings(max_examples=8, deadline=None, derandomize=True, suppress_health_check=list(hypothesis.HealthCheck))
def test_generated_requests_get_documented_answers_and_never_a_5xx(case: schemathesis.Case, live_url: str) -> None:
    case.call_and_validate(base_url=live_url, checks=CHECKS)
