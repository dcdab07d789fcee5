"""Hostile inputs that are cheap to send and costly to serve: each is refused or bounded with a
clear 4xx, other clients keep being served, and nothing is stored by halves.

(The SSRF forms are in test_api.py, keys and cross-site writes in test_auth.py.)"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import numpy as np
import psutil
import pytest
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


async def test_json_bodies_are_limited_before_they_are_read_whole(settings: Settings, http: aiohttp.ClientSession) -> None:
    async with serving(_limits(settings, max_json_bytes=1 * MB)) as base_url:
        big = {"images": [{"base64": base64.b64encode(b"\0" * (2 * MB)).decode()}]}
        async with http.post(f"{base_url}/images", json=big) as resp:
            body = await resp.json()
        assert resp.status == 413 and body["error"]["code"] == "request_too_large"
        assert "multipart" in body["error"]["message"]


async def test_fetched_urls_count_towards_the_request_byte_limit(settings: Settings, http: aiohttp.ClientSession) -> None:
    photo = jpeg("chelsea")
    app = web.Application()

    async def image(_: web.Request) -> web.Response:
        return _image_response(photo)

    app.router.add_get("/{n}.jpg", image)
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


@contextlib.asynccontextmanager
async def _slow_images(payload: bytes) -> AsyncIterator[tuple[str, list[int]]]:
    """A host whose images take 0.3 s each: its URL, and the most requests it held at once."""
    running, peak = 0, [0]

    async def slow(_: web.Request) -> web.Response:
        nonlocal running
        running += 1
        peak[0] = max(peak[0], running)
        await asyncio.sleep(0.3)
        running -= 1
        return _image_response(payload)

    app = web.Application()
    app.router.add_get("/{n}.jpg", slow)
    async with web_server(app) as url:
        yield url, peak


async def test_one_request_cannot_take_every_fetch_connection(settings: Settings, http: aiohttp.ClientSession) -> None:
    async with _slow_images(jpeg("rocket")) as (images, peak):
        fetching = msgspec.structs.replace(
            settings, fetch=FetchSettings(fetch_allow_networks=("127.0.0.0/8",), fetch_concurrency=2)
        )
        async with serving(fetching) as base_url:
            payload = {"images": [{"url": f"{images}/{n}.jpg"} for n in range(6)]}
            async with http.post(f"{base_url}/images", json=payload) as resp:
                assert resp.status == 201
    assert peak == [2]


async def test_a_client_that_stops_sending_its_body_is_dropped(settings: Settings) -> None:
    async with serving(_limits(settings, body_read_timeout=1.0)) as base_url:
        host, port = base_url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            f"POST /images HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            'Content-Length: 1000\r\n\r\n{"images": ['.encode()
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


@pytest.mark.slow
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


# Issue 22: no request, file or key can starve the others, crash a request, or hang the service.


def test_the_decoding_cost_counts_the_copies_of_a_transparent_image() -> None:
    # 6000² RGBA: 144 MB decoded, but its flattening, crop and grey copies take it past 256 MB.
    with pytest.raises(DecodeError) as refused:
        decode(_rgba_png(6000), size=64, max_pixels=64_000_000, max_decode_bytes=256 * MB)
    assert refused.value.code == "too_many_pixels"


async def test_too_many_json_items_are_refused_before_the_body_is_decoded(
    settings: Settings, http: aiohttp.ClientSession
) -> None:
    # A 16 M-item body costs gigabytes to decode; counting first refuses it for what it is,
    # even when a late item would fail validation.
    body = b'{"images": [' + b"{}," * 2_000_000 + b"5]}"
    async with serving(settings) as base_url:
        async with http.post(f"{base_url}/images", data=body, headers={"Content-Type": "application/json"}) as resp:
            answer = await resp.json()
        assert resp.status == 413 and answer["error"]["code"] == "too_many_images"
        braces = {"images": [{"url": "http://example.com/{" + "{" * 200 + "}.jpg"}]}  # braces in a string are no items
        async with http.post(f"{base_url}/images", json=braces) as resp:
            assert resp.status == 422 and (await resp.json())["error"]["code"] == "no_valid_images"


async def test_non_ascii_base64_is_that_items_error_and_the_others_are_stored(
    settings: Settings, http: aiohttp.ClientSession
) -> None:
    payload = {"images": [{"base64": "aGVsbG8é"}, {"base64": base64.b64encode(jpeg("coffee")).decode()}]}
    async with serving(settings) as base_url, http.post(f"{base_url}/images", json=payload) as resp:
        body = await resp.json()
    assert resp.status == 201 and body["added"] == 1, body
    assert body["items"][0]["error"]["code"] == "invalid_base64" and "non-ASCII" in body["items"][0]["error"]["message"]


async def test_an_upload_whose_duplicate_was_just_deleted_is_stored_without_that_pair(dsn: str) -> None:
    from dupdetect.store.base import NewImage, Pair
    from dupdetect.store.pgvector import PgVectorStore

    pool = await create_pool(dsn, DatabaseSettings(), ef_search=40)
    try:
        store = PgVectorStore(pool, dims=512)
        image = NewImage(
            id=uuid.uuid4(),
            position=0,
            filename="a.jpg",
            url=None,
            byte_size=1,
            width=1,
            height=1,
            format="JPEG",
            sha256="0" * 64,
            phash=None,
            thumbnail=None,
            vector=np.eye(512, dtype=np.float32)[0],
        )
        deleted_meanwhile = uuid.uuid4()  # found by the search, deleted before the commit
        pair = Pair(image_id=image.id, duplicate_id=deleted_meanwhile, similarity=0.9, kind="near")
        request_id = uuid.uuid4()
        await store.add_request(request_id, 1, [image], [pair], model="m")
        assert [stored.id for stored, _ in await store.request_images(request_id)] == [image.id]
        assert await pool.fetchval("SELECT count(*) FROM duplicates") == 0
    finally:
        await pool.close()


async def _keys(settings: Settings, *collections: str) -> list[str]:
    pool = await create_pool(settings.database.database_url or "", DatabaseSettings(), ef_search=40)
    try:
        return [(await KeyRegistry(pool).create(collection)).token for collection in collections]
    finally:
        await pool.close()


def _from(address: str) -> aiohttp.ClientSession:
    """A client on another loopback address (the server tells clients apart by address)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0)))


async def test_keys_made_up_in_a_victims_id_count_against_their_sender_not_the_victim(
    settings: Settings, http: aiohttp.ClientSession
) -> None:
    limited = msgspec.structs.replace(settings, server=ServerSettings(auth="on", rate_limit=3, auth_failure_limit=5))
    async with serving(limited) as base_url:
        (victim,) = await _keys(settings, "victim")
        forged = victim[: len("ddk_") + 12] + "_" + "x" * 43
        async with _from("127.0.0.2") as attacker:
            statuses = []
            for _ in range(6):
                async with attacker.get(f"{base_url}/groups", headers={"X-API-Key": forged}) as resp:
                    statuses.append(resp.status)
                    last = await resp.json()
            assert statuses == [401] * 5 + [429] and "invalid API key" in last["error"]["message"]
            async with attacker.get(f"{base_url}/groups", headers={"X-API-Key": f"ddk_{'0' * 12}_{'y' * 43}"}) as resp:
                assert resp.status == 429  # a fresh fake key each time is no way around it
        for _ in range(3):  # the victim's own minute is untouched
            async with http.get(f"{base_url}/groups", headers={"X-API-Key": victim}) as resp:
                assert resp.status == 200


async def _raw_request(base_url: str, head: str, body: bytes = b"") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
    await writer.drain()
    return reader, writer


@pytest.mark.parametrize("path", ["/images/known", "/marks", "/not-duplicates", "/images"])
async def test_a_request_without_a_key_is_refused_before_its_body_is_read(settings: Settings, path: str) -> None:
    async with serving(msgspec.structs.replace(settings, server=ServerSettings(auth="on"))) as base_url:
        reader, writer = await _raw_request(
            base_url, f"POST {path} HTTP/1.1\nHost: 127.0.0.1\nContent-Type: application/json\nContent-Length: 5000000\n"
        )  # the 5 MB body is never sent
        answer = await asyncio.wait_for(reader.read(4096), timeout=10)
        writer.close()
    assert b" 401 " in answer.split(b"\r\n")[0] and b"missing_api_key" in answer


async def test_a_body_dripped_a_byte_at_a_time_is_dropped(settings: Settings) -> None:
    async with serving(_limits(settings, body_read_timeout=1.0, min_body_rate=1000)) as base_url:
        reader, writer = await _raw_request(
            base_url, "POST /images HTTP/1.1\nHost: 127.0.0.1\nContent-Type: application/json\nContent-Length: 1000\n"
        )

        async def drip() -> None:
            for byte in b'{"images": [' * 20:  # each byte well within the pause allowed
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.2)

        dripping = asyncio.create_task(drip())
        answer = await asyncio.wait_for(reader.read(4096), timeout=20)
        dripping.cancel()
        writer.close()
    assert b" 408 " in answer.split(b"\r\n")[0] and b"DUPDETECT_MIN_BODY_RATE" in answer


async def test_one_address_cannot_hold_every_connection(settings: Settings, http: aiohttp.ClientSession) -> None:
    async with serving(_limits(settings, max_requests_per_client=2)) as base_url:
        held = [
            await _raw_request(
                base_url, "POST /images HTTP/1.1\nHost: 127.0.0.1\nContent-Type: application/json\nContent-Length: 100\n", b"{"
            )
            for _ in range(2)
        ]
        await asyncio.sleep(0.3)
        async with http.get(f"{base_url}/groups") as resp:
            body = await resp.json()
        assert resp.status == 429 and body["error"]["code"] == "too_many_requests_in_flight"
        async with _from("127.0.0.3") as other, other.get(f"{base_url}/groups") as resp:
            assert resp.status == 200  # another client is served
        async with http.get(f"{base_url}/health") as resp:
            assert resp.status == 200  # and probes always are
        for _, writer in held:
            writer.close()


async def test_a_client_that_leaves_mid_body_is_no_server_error(
    settings: Settings, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    async with serving(settings) as base_url:
        for path in ("/images", "/images/known"):
            _reader, writer = await _raw_request(
                base_url,
                f"POST {path} HTTP/1.1\nHost: 127.0.0.1\nContent-Type: application/json\nContent-Length: 1000\n",
                b'{"images": [',
            )
            await asyncio.sleep(0.3)
            writer.close()
        await asyncio.sleep(0.5)
        async with http.get(f"{base_url}/metrics") as resp:
            metrics = await resp.text()
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")], caplog.text
    assert 'status_code="500"' not in metrics


async def test_one_callers_requests_cannot_take_the_whole_model_queue(settings: Settings) -> None:
    from dupdetect.embedding.pipeline import EmbeddingPipeline
    from dupdetect.embedding.worker import Overloaded

    queued = msgspec.structs.replace(settings, model=msgspec.structs.replace(settings.model, queue_size=250))
    pipeline = EmbeddingPipeline(queued)  # not started: admission is bookkeeping
    with pipeline.admit(100, "noisy"), pipeline.admit(50, "noisy"):
        with pytest.raises(Overloaded, match="of this collection"), pipeline.admit(100, "noisy"):
            pass
        with pytest.raises(Overloaded):  # refused before its body is read
            pipeline.check_room("noisy")
        with pipeline.admit(100, "victim"):  # room for another caller's full request is kept
            pass


async def test_one_callers_urls_cannot_take_every_fetch_connection() -> None:
    from dupdetect.images.fetch import CALLER_CONNECTIONS, Fetcher

    async with _slow_images(b"x") as (images, peak):
        fetcher = Fetcher(FetchSettings(fetch_allow_networks=("127.0.0.0/8",)), max_bytes=MB, max_request_bytes=MB * 100)
        try:
            budgets = [fetcher.budget("noisy") for _ in range(4)]  # four requests of 8 URLs at a time each
            await asyncio.gather(*(fetcher.fetch(f"{images}/{n}.jpg", budgets[n % 4]) for n in range(48)))
            assert peak == [CALLER_CONNECTIONS] and CALLER_CONNECTIONS < 32
        finally:
            await fetcher.close()


async def test_a_frozen_database_answers_503_quickly_instead_of_hanging(
    settings: Settings, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    own = msgspec.structs.replace(settings, database=DatabaseSettings(data_dir=tmp_path, query_timeout=1.0))
    async with serving(own) as base_url:
        form = aiohttp.FormData()
        form.add_field("files", jpeg("coffee"), filename="coffee.jpg")
        async with http.post(f"{base_url}/images", data=form) as resp:
            assert resp.status == 201
        postmaster = next(
            proc
            for proc in psutil.process_iter(["name", "cmdline"])
            if proc.info["name"] == "postgres" and str(tmp_path) in " ".join(proc.info["cmdline"] or [])
        )
        frozen = [postmaster, *postmaster.children(recursive=True)]  # the server and every backend
        for proc in frozen:
            proc.send_signal(signal.SIGSTOP)
        try:
            async with asyncio.timeout(8):  # a bound on waiting, not on work: it would hang without the fix
                async with http.get(f"{base_url}/ready") as resp:
                    assert resp.status == 503 and (await resp.json())["error"]["code"] == "store_unavailable"
                form = aiohttp.FormData()
                form.add_field("files", jpeg("rocket"), filename="rocket.jpg")
                async with http.post(f"{base_url}/images", data=form) as resp:
                    body = await resp.json()
                assert resp.status == 503 and body["error"]["code"] == "store_unavailable", body
                async with http.get(f"{base_url}/groups") as resp:
                    assert resp.status == 503
        finally:
            for proc in frozen:
                proc.send_signal(signal.SIGCONT)
        for _ in range(50):  # and it serves again once the database thaws
            async with http.get(f"{base_url}/ready") as resp:
                if resp.status == 200:
                    break
            await asyncio.sleep(0.2)
        assert resp.status == 200
