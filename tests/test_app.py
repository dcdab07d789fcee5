"""The service over real HTTP: health, readiness, OpenAPI, the error shape."""

from pathlib import Path

import aiohttp
import msgspec
import pytest

from dupdetect.runtime import StartupError, running
from dupdetect.settings import DatabaseSettings, Settings


async def test_health_and_ready(base_url: str, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{base_url}/health") as resp:
        assert resp.status == 200
        assert await resp.json() == {"status": "ok"}
    async with http.get(f"{base_url}/ready") as resp:
        assert resp.status == 200
        body = await resp.json()
        assert body["status"] == "ready" and body["store"] == "pgvector"
        assert body["model"] == "efficientnet_lite0/gem3-v1/224px"


async def test_openapi_schema_is_served(base_url: str, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{base_url}/schema/openapi.json") as resp:
        assert resp.status == 200
        schema = await resp.json()
    assert schema["info"]["title"] == "dupdetect"
    assert {"/health", "/ready"} <= schema["paths"].keys()


async def test_unknown_path_gets_the_json_error_shape(base_url: str, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{base_url}/no/such/thing") as resp:
        assert resp.status == 404
        assert resp.content_type == "application/json"
        body = await resp.json()
    assert body["error"]["code"] == "not_found"
    assert body["error"]["message"]


async def test_wrong_method_gets_the_json_error_shape(base_url: str, http: aiohttp.ClientSession) -> None:
    async with http.delete(f"{base_url}/health") as resp:
        assert resp.status == 405
        assert (await resp.json())["error"]["code"] == "method_not_allowed"


async def test_start_refuses_an_unmigrated_database_when_told_not_to_migrate(empty_dsn: str, tmp_path: Path) -> None:
    settings = Settings(database=DatabaseSettings(database_url=empty_dsn, data_dir=tmp_path, migrate_on_start=False))
    with pytest.raises(StartupError, match="run `dupdetect migrate`"):
        async with running(settings):
            pass


async def test_start_reports_an_unreachable_database(tmp_path: Path) -> None:
    settings = Settings(database=DatabaseSettings(database_url="postgresql://nobody@127.0.0.1:1/none", data_dir=tmp_path))
    with pytest.raises(StartupError, match="cannot connect to PostgreSQL"):
        async with running(settings):
            pass


def test_error_shape_is_stable() -> None:
    from dupdetect.api.errors import ErrorDetail, ErrorResponse

    body = msgspec.json.decode(msgspec.json.encode(ErrorResponse(error=ErrorDetail(code="x", message="y"))), type=dict)
    assert body == {"error": {"code": "x", "message": "y", "details": None}}
