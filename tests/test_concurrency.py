"""Concurrent uploads against pgvector: ingests are serialised in the database, so two
requests carrying the same photo at the same moment still find each other."""

import asyncio

import aiohttp

from tests.photos import edited_copy, jpeg


async def test_simultaneous_uploads_of_one_photo_are_paired(base_url: str, http: aiohttp.ClientSession) -> None:
    async def upload(name: str, payload: bytes) -> dict:
        data = aiohttp.FormData()
        data.add_field("files", payload, filename=name)
        async with http.post(f"{base_url}/images", data=data) as resp:
            assert resp.status == 201
            return await resp.json()

    bodies = await asyncio.gather(
        upload("a.jpg", jpeg("astronaut")), upload("b.jpg", jpeg("astronaut")), upload("c.jpg", edited_copy("astronaut"))
    )
    # Whichever committed later found the earlier ones: every pair is recorded exactly once.
    assert sorted(body["items"][0]["duplicates"] for body in bodies) == [0, 1, 2]
    for body in bodies:
        async with http.get(f"{base_url}/duplicates/{body['request_id']}") as resp:
            assert len((await resp.json())["images"][0]["duplicates"]) == 2
