"""The Pinecone adapter against the local stand-in (limits, read-after-write, zero vectors),
the stand-in's own strictness, and, when PINECONE_API_KEY is set, real Pinecone."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import aiohttp
import msgspec
import numpy as np
import pytest

from dupdetect.settings import Settings, StoreSettings
from dupdetect.store.base import ModelMismatch, NewImage, Query
from dupdetect.store.pinecone import PineconeStore
from tests.conftest import fake_pinecone, serving
from tests.fake_pinecone import FakeIndex
from tests.photos import edited_copy, jpeg


def unit_vectors(count: int, dims: int, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(count, dims)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def new_image(position: int, vector: np.ndarray) -> NewImage:
    return NewImage(
        id=uuid.uuid4(),
        position=position,
        filename=f"{position}.jpg",
        url=None,
        byte_size=1000,
        width=10,
        height=10,
        format="JPEG",
        sha256=f"{position:064x}",
        phash=position,
        thumbnail=None,
        vector=vector,
    )


@pytest.fixture
async def resnet_sized_index() -> AsyncIterator[tuple[FakeIndex, PineconeStore]]:
    async with fake_pinecone(dimension=2048) as (index, url):
        settings = StoreSettings(store="pinecone", pinecone_api_key=index.api_key, pinecone_host=url)
        store = await PineconeStore.open(settings, dims=2048, model="m")
        try:
            yield index, store
        finally:
            await store.close()


async def test_a_full_request_of_2048_d_vectors_is_upserted_in_batches_under_the_limits(
    resnet_sized_index: tuple[FakeIndex, PineconeStore],
) -> None:
    index, store = resnet_sized_index
    vectors = unit_vectors(100, 2048)
    request_id = uuid.uuid4()
    await store.add_request(request_id, 100, [new_image(i, v) for i, v in enumerate(vectors)], [], model="m")
    upserts = [r for r in index.requests if r.endswith("/vectors/upsert")]
    assert len(upserts) >= 3  # one 2 MB request could not hold them all
    stored = await store.request_images(request_id)  # visible right away: the adapter waited
    assert [image.position for image, _ in stored] == list(range(100))
    np.testing.assert_allclose(stored[7][1], vectors[7], atol=1e-6)


async def test_wrong_dimension_is_refused_at_start(resnet_sized_index: tuple[FakeIndex, PineconeStore]) -> None:
    index, store = resnet_sized_index
    settings = StoreSettings(store="pinecone", pinecone_api_key=index.api_key, pinecone_host=store.index.host)
    with pytest.raises(ModelMismatch, match="2048 dimensions; the model makes 1280"):
        await PineconeStore.open(settings, dims=1280, model="m")


async def test_the_stand_in_is_strict() -> None:
    async with fake_pinecone(dimension=4) as (index, url), aiohttp.ClientSession(headers={"Api-Key": index.api_key}) as http:

        async def status(path: str, body: dict) -> int:
            async with http.post(url + path, json=body) as resp:
                return resp.status

        good = {"id": "a", "values": [1, 0, 0, 0], "metadata": {"k": "v"}}
        assert await status("/vectors/upsert", {"vectors": [good]}) == 200
        assert await status("/vectors/upsert", {"vectors": [{**good, "values": [1, 0]}]}) == 400
        assert await status("/vectors/upsert", {"vectors": [{**good, "metadata": {"k": None}}]}) == 400
        assert await status("/vectors/upsert", {"vectors": [{**good, "id": "x" * 513}]}) == 400
        assert await status("/vectors/upsert", {"vectors": [good] * 1001}) == 400
        assert await status("/query", {"topK": 1, "vector": [0, 0, 0, 0]}) == 400
        assert await status("/query", {"topK": 10_001, "vector": [1, 0, 0, 0]}) == 400
        async with aiohttp.ClientSession() as anonymous, anonymous.post(url + "/query", json={}) as resp:
            assert resp.status == 401


@pytest.mark.skipif(not os.environ.get("PINECONE_API_KEY"), reason="needs PINECONE_API_KEY (real Pinecone)")
async def test_real_pinecone_end_to_end(settings: Settings) -> None:
    store = StoreSettings(
        store="pinecone",
        pinecone_api_key=os.environ["PINECONE_API_KEY"],
        pinecone_index=os.environ.get("DUPDETECT_TEST_PINECONE_INDEX", "dupdetect-test"),
        pinecone_namespace=f"test-{uuid.uuid4().hex[:8]}",
    )
    async with serving(msgspec.structs.replace(settings, store=store)) as base_url, aiohttp.ClientSession() as http:
        form = aiohttp.FormData()
        form.add_field("files", jpeg("rocket"), filename="rocket.jpg")
        form.add_field("files", edited_copy("rocket"), filename="rocket-small.jpg")
        async with http.post(f"{base_url}/images", data=form) as resp:
            assert resp.status == 201
            request_id = (await resp.json())["request_id"]
        async with http.get(f"{base_url}/duplicates/{request_id}") as resp:
            images = (await resp.json())["images"]
        assert [len(image["duplicates"]) for image in images] == [1, 1]
        async with http.delete(f"{base_url}/requests/{request_id}") as resp:
            assert resp.status == 204


async def test_routes_that_need_recorded_pairs_are_not_offered(settings: Settings) -> None:
    """Pinecone keeps no pairs or decisions: groups, decisions and marks are not routes at all."""
    async with fake_pinecone(dimension=1280) as (index, url):
        store = StoreSettings(store="pinecone", pinecone_api_key=index.api_key, pinecone_host=url)
        async with serving(msgspec.structs.replace(settings, store=store)) as base_url, aiohttp.ClientSession() as http:
            for method, path in (("GET", "/groups"), ("POST", "/not-duplicates"), ("GET", "/marks")):
                async with http.request(method, f"{base_url}{path}", json={"image_ids": []}) as resp:
                    assert resp.status == 404, (method, path)
            async with http.get(f"{base_url}/schema/openapi.json") as resp:
                paths = (await resp.json())["paths"]
            assert "/groups" not in paths and "/marks" not in paths and "/images" in paths
    async with (
        serving(settings) as base_url,
        aiohttp.ClientSession() as http,
        http.get(f"{base_url}/schema/openapi.json") as resp,
    ):
        assert "/groups" in (await resp.json())["paths"]  # pgvector offers them


async def test_vectors_of_another_descriptor_are_never_candidates_not_even_by_bytes_or_hash(
    resnet_sized_index: tuple[FakeIndex, PineconeStore],
) -> None:
    _, store = resnet_sized_index
    vector = unit_vectors(1, 2048)[0]
    old = new_image(0, vector)
    await store.add_request(uuid.uuid4(), 1, [old], [], model="old-descriptor")
    query = Query(vector=vector, sha256=old.sha256, phash=old.phash)
    assert (await store.candidates([query], model="m", k=10)).found == [[]]  # same bytes, same hash, other model
    assert len((await store.candidates([query], model="old-descriptor", k=10)).found[0]) == 3  # each look-up finds it


async def test_pinecone_errors_and_rate_limits_answer_503_with_retry_after(settings: Settings) -> None:
    async with fake_pinecone(dimension=1280) as (index, url), aiohttp.ClientSession() as http:
        store = StoreSettings(store="pinecone", pinecone_api_key=index.api_key, pinecone_host=url)
        async with serving(msgspec.structs.replace(settings, store=store)) as base_url:
            for status in (500, 503, 429):
                index.down_with = status
                form = aiohttp.FormData()
                form.add_field("files", jpeg("coffee"), filename="c.jpg")
                async with http.post(f"{base_url}/images", data=form) as resp:
                    body = await resp.json()
                    assert (resp.status, body["error"]["code"]) == (503, "store_unavailable"), (status, body)
                    assert resp.headers["Retry-After"] == "2"
                async with http.get(f"{base_url}/duplicates/{uuid.uuid4()}") as resp:
                    assert resp.status == 503, status
            index.down_with = None
            form = aiohttp.FormData()
            form.add_field("files", jpeg("coffee"), filename="c.jpg")
            async with http.post(f"{base_url}/images", data=form) as resp:
                assert resp.status == 201  # back as soon as Pinecone is
