"""Hostile inputs that are cheap to send and costly to serve: each is refused or bounded with a
clear 4xx, other clients keep being served, and nothing is stored by halves.

(The SSRF forms are in test_api.py, keys and cross-site writes in test_auth.py.)"""

from __future__ import annotations

import asyncio
import base64
import io
import time
from typing import Any

import aiohttp
import msgspec
import numpy as np
from aiohttp import web
from PIL import Image

from dupdetect.database import create_pool
from dupdetect.embedding.decode import DecodeError, decode
from dupdetect.keys import KeyRegistry
from dupdetect.settings import DatabaseSettings, FetchSettings, LimitSettings, ServerSettings, Settings
from tests.conftest import serving, web_server
from tests.photos import jpeg
from tests.processes import cli_env, free_port, start_serve, wait_ready

MB = 1024 * 1024


def _limits(settings: Settings, **limits: Any) -> Settings:
    return msgspec.structs.replace(settings, limits=msgspec.structs.replace(LimitSettings(), **limits))


def _rgba_png(side: int) -> bytes:
    """A few hundred KB on the wire, ``side``² × 4 bytes once decoded."""
    image = Image.new("RGBA", (side, side), (40, 90, 160, 255))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_decoding_cost_counts_what_decoding_allocates_not_the_file_size() -> None:
    costly = _rgba_png(3000)  # ~30 KB, 9 M pixels × (4 + 3) bytes = 63 MB to decode
    assert len(costly) < MB
    try:
        decode(costly, size=64, max_pixels=64_000_000, max_decode_bytes=32 * MB)
    except DecodeError as exc:
        assert exc.code == "too_many_pixels" and "MB" in exc.message
    else:
        raise AssertionError("a 63 MB decode passed a 32 MB budget")
    # A JPEG of the same size is decoded at reduced scale: it fits the budget.
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (3000, 3000, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=50)
    decode(buffer.getvalue(), size=64, max_pixels=64_000_000, max_decode_bytes=32 * MB)


async def test_a_costly_png_is_refused_and_the_rest_of_its_request_stored(
    settings: Settings, http: aiohttp.ClientSession
) -> None:
    async with serving(_limits(settings, max_decode_bytes=32 * MB)) as base_url:
        form = aiohttp.FormData()
        form.add_field("files", _rgba_png(3000), filename="bomb.png")
        form.add_field("files", jpeg("coffee"), filename="coffee.jpg")
        async with http.post(f"{base_url}/images", data=form) as resp:
            body = await resp.json()
        assert resp.status == 201 and body["added"] == 1
        assert body["items"][0]["error"]["code"] == "too_many_pixels"


async def test_json_bodies_are_limited_before_they_are_read_whole(
    settings: Settings, http: aiohttp.ClientSession
) -> None:
    async with serving(_limits(settings, max_json_bytes=1 * MB)) as base_url:
        big = {"images": [{"base64": base64.b64encode(b"\0" * (2 * MB)).decode()}]}
        async with http.post(f"{base_url}/images", json=big) as resp:
            body = await resp.json()
        assert resp.status == 413 and body["error"]["code"] == "request_too_large"
        assert "multipart" in body["error"]["message"]


async def test_fetched_urls_count_towards_the_request_byte_limit(
    settings: Settings, http: aiohttp.ClientSession
) -> None:
    photo = jpeg("chelsea")
    app = web.Application()
    app.router.add_get("/{n}.jpg", lambda _: _image_response(photo))
    async with web_server(app) as images:
        limited = msgspec.structs.replace(
            _limits(settings, max_request_bytes=int(len(photo) * 2.5)),
            fetch=FetchSettings(fetch_allow_networks=("127.0.0.0/8",), fetch_concurrency=1),
        )
        async with serving(limited) as base_url:
            payload = {"images": [{"url": f"{images}/{n}.jpg"} for n in range(5)]}
            async with http.post(f"{base_url}/images", json=payload) as resp:
                body = await resp.json()
    assert resp.status == 201 and body["added"] == 2, body
    assert [item.get("error", {}).get("code") for item in body["items"]][2:] == ["request_too_large"] * 3


async def test_one_request_cannot_take_every_fetch_connection(
    settings: Settings, http: aiohttp.ClientSession
) -> None:
    running = peak = 0

    async def slow(_: web.Request) -> web.Response:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.3)
        running -= 1
        return _image_response(jpeg("rocket"))

    app = web.Application()
    app.router.add_get("/{n}.jpg", slow)
    async with web_server(app) as images:
        fetching = msgspec.structs.replace(
            settings, fetch=FetchSettings(fetch_allow_networks=("127.0.0.0/8",), fetch_concurrency=2)
        )
        async with serving(fetching) as base_url:
            payload = {"images": [{"url": f"{images}/{n}.jpg"} for n in range(6)]}
            async with http.post(f"{base_url}/images", json=payload) as resp:
                assert resp.status == 201
    assert peak == 2


async def test_a_client_that_stops_sending_its_body_is_dropped(settings: Settings) -> None:
    async with serving(_limits(settings, body_read_timeout=1.0)) as base_url:
        host, port = base_url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            f"POST /images HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            "Content-Length: 1000\r\n\r\n{\"images\": [".encode()
        )
        await writer.drain()
        started = time.monotonic()
        answer = await asyncio.wait_for(reader.read(4096), timeout=10)
        writer.close()
    assert b" 408 " in answer.split(b"\r\n")[0] and b"body_timeout" in answer
    assert time.monotonic() - started < 5


def _image_response(payload: bytes) -> web.Response:
    return web.Response(body=payload, content_type="image/jpeg")


async def test_a_key_over_its_rate_limit_gets_429_and_another_key_does_not(
    settings: Settings, http: aiohttp.ClientSession
) -> None:
    limited = msgspec.structs.replace(settings, server=ServerSettings(auth="on", rate_limit=3))
    async with serving(limited) as base_url:
        pool = await create_pool(settings.database.database_url or "", DatabaseSettings(), ef_search=40)
        try:
            registry = KeyRegistry(pool)
            busy, calm = (await registry.create("a")).token, (await registry.create("b")).token
        finally:
            await pool.close()
        statuses = []
        for _ in range(4):
            async with http.get(f"{base_url}/groups", headers={"X-API-Key": busy}) as resp:
                statuses.append(resp.status)
                body, retry_after = await resp.json(), resp.headers.get("Retry-After")
        assert statuses == [200, 200, 200, 429]
        assert body["error"]["code"] == "too_many_requests" and int(retry_after or 0) > 0
        async with http.get(f"{base_url}/groups", headers={"X-API-Key": calm}) as resp:
            assert resp.status == 200


async def test_connections_that_never_finish_their_headers_are_closed(dsn: str, http: aiohttp.ClientSession) -> None:
    port = free_port()
    proc = start_serve(cli_env(DUPDETECT_DATABASE_URL=dsn, DUPDETECT_HEADER_READ_TIMEOUT="1"), port)
    try:
        await asyncio.to_thread(wait_ready, proc, port)
        slow = [await asyncio.open_connection("127.0.0.1", port) for _ in range(20)]
        for _, writer in slow:  # slowloris: a request line and one header, never the blank line
            writer.write(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Slow: ".encode())
            await writer.drain()
        started = time.monotonic()
        closed = await asyncio.gather(*(asyncio.wait_for(reader.read(), timeout=10) for reader, _ in slow))
        assert closed == [b""] * 20 and time.monotonic() - started < 5
        async with http.get(f"http://127.0.0.1:{port}/health") as resp:  # others are still served
            assert resp.status == 200
    finally:
        proc.terminate()
        proc.wait(30)
