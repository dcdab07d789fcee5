"""Overload as a client meets it: refused at once with Retry-After, before any work is done,
and every admitted request completes."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import msgspec

from dupdetect.settings import Settings
from tests.conftest import serving
from tests.photos import PHOTOS, jpeg


async def _embedded_so_far(http: aiohttp.ClientSession, base_url: str) -> float:
    async with http.get(f"{base_url}/metrics") as resp:
        text = await resp.text()
    match = re.search(r"^dupdetect_images_embedded_total ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def test_overload_is_refused_at_once_with_retry_after_and_wastes_no_work(
    settings: Settings, http: aiohttp.ClientSession
) -> None:
    room_for_one = msgspec.structs.replace(
        settings,
        model=msgspec.structs.replace(settings.model, queue_size=4),
        limits=msgspec.structs.replace(settings.limits, max_images_per_request=4),
    )
    async with serving(room_for_one) as base_url:
        before = await _embedded_so_far(http, base_url)

        async def upload(n: int) -> tuple[int, dict, dict[str, str]]:
            form = aiohttp.FormData()
            for k in range(4):
                form.add_field("files", jpeg(PHOTOS[(n + k) % len(PHOTOS)]), filename=f"{n}-{k}.jpg")
            async with http.post(f"{base_url}/images", data=form) as resp:
                return resp.status, await resp.json(), dict(resp.headers)

        answers = await asyncio.gather(*(upload(n) for n in range(6)))
        embedded = await _embedded_so_far(http, base_url) - before

    statuses = [status for status, _, _ in answers]
    assert set(statuses) == {201, 503}, statuses
    for status, body, headers in answers:
        if status == 503:
            assert body["error"]["code"] == "overloaded"
            assert int(headers["Retry-After"]) >= 1
            assert "retry in" in body["error"]["message"]
        else:
            assert body["added"] == 4  # admitted whole, finished whole
    # Refused requests cost no model work: everything embedded was stored.
    assert embedded == 4 * statuses.count(201)
