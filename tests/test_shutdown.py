"""SIGTERM while uploads run: those that finish within the grace are answered and stored; those
cut off get the JSON error shape and leave nothing behind."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from tests.conftest import web_server
from tests.photos import jpeg
from tests.processes import cli_env, free_port, start_serve, wait_ready

pytestmark = pytest.mark.slow  # real processes (`-m "not slow"` leaves them out)


def _slow_image_host() -> web.Application:
    async def image(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query["delay"]))
        return web.Response(body=jpeg(request.match_info["name"]), content_type="image/jpeg")

    app = web.Application()
    app.router.add_get("/{name}.jpg", image)
    return app


async def _post_url(http: aiohttp.ClientSession, base_url: str, url: str) -> tuple[int, dict[str, Any], str]:
    async with http.post(f"{base_url}/images", json={"images": [{"url": url}]}) as resp:
        return resp.status, await resp.json(), resp.headers.get("Retry-After", "")


async def test_sigterm_finishes_requests_within_the_grace_and_answers_the_rest_503(dsn: str, http: aiohttp.ClientSession) -> None:
    port = free_port()
    env = cli_env(
        DUPDETECT_DATABASE_URL=dsn,
        DUPDETECT_SHUTDOWN_GRACE="3",
        DUPDETECT_FETCH_ALLOW_NETWORKS="127.0.0.0/8",
        DUPDETECT_FETCH_READ_TIMEOUT="60",
    )
    async with web_server(_slow_image_host()) as images:
        proc = start_serve(env, port)
        try:
            await asyncio.to_thread(wait_ready, proc, port)
            base_url = f"http://127.0.0.1:{port}"
            quick = asyncio.create_task(_post_url(http, base_url, f"{images}/coffee.jpg?delay=1"))
            cut_off = asyncio.create_task(_post_url(http, base_url, f"{images}/rocket.jpg?delay=8"))
            await asyncio.sleep(0.5)
            proc.send_signal(signal.SIGTERM)

            status, body, _ = await quick
            assert status == 201, body  # in flight, finished within the grace
            status, body, retry_after = await cut_off
            assert status == 503, body
            assert body["error"]["code"] == "shutting_down" and int(retry_after) > 0
            await asyncio.to_thread(proc.wait, 30)
        finally:
            if proc.poll() is None:
                proc.kill()
    conn = await asyncpg.connect(dsn)
    try:
        stored = await conn.fetch(
            "SELECT r.id, count(i.id) AS images FROM requests r JOIN images i ON i.request_id = r.id GROUP BY r.id"
        )
    finally:
        await conn.close()
    assert [(str(row["id"]), row["images"]) for row in stored] == [(quick.result()[1]["request_id"], 1)]
