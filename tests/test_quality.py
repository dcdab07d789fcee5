"""A fixed slice of bench/quality.py in CI: mild edits of real photos must be found, and
different photos must not be paired, at the default thresholds with the offline backbone."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import aiohttp
import asyncpg
import numpy as np
import pytest

from bench.hard_negatives import (
    Negative,
    chats,
    documents,
    flats,
    gradients,
    logos,
    photo_viewer,
    png,
    soft_art,
    transparent,
    wordmarks,
)
from bench.transforms import EDITS
from dupdetect.images.duplicates import classify
from dupdetect.images.rules import Rules
from dupdetect.settings import DuplicateSettings
from dupdetect.store.base import Candidate, Query, StoredImage
from dupdetect.store.pgvector import PgVectorStore
from tests.http import form
from tests.photos import PHOTOS, jpeg, photo

pytestmark = pytest.mark.slow  # photo sets through the whole path (`-m "not slow"` leaves them out)

MILD = [edit for edit in EDITS if edit.difficulty == "mild"]


async def test_mild_edits_are_found_and_different_photos_are_not(base_url: str, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{base_url}/images", data=form(*[(f"{n}.jpg", jpeg(n)) for n in PHOTOS])) as resp:
        originals = await resp.json()
    assert all(item["duplicates"] == 0 for item in originals["items"])  # no pairs among different photos
    original_of = {item["image_id"]: PHOTOS[item["index"]] for item in originals["items"]}

    found, wrong, total = 0, [], 0
    for name in PHOTOS:
        copies = [(f"{name}~{edit.name}", edit.apply(photo(name))) for edit in MILD]
        async with http.post(f"{base_url}/images", data=form(*copies)) as resp:
            request_id = (await resp.json())["request_id"]
        async with http.get(f"{base_url}/duplicates/{request_id}?limit=100") as resp:
            images = (await resp.json())["images"]
        for image in images:
            total += 1
            dups = image["duplicates"]
            found += any(original_of.get(d["image_id"]) == name for d in dups)
            wrong += [
                (image["filename"], d["filename"])
                for d in dups
                if original_of.get(d["image_id"], d["filename"].split("~")[0].split(".")[0]) != name
            ]
    recall = found / total
    assert not wrong, wrong  # precision 1.0 on this slice
    assert recall >= 0.97, recall


HARD = [edit for edit in EDITS if edit.name in ("crop-50", "flip", "rotate-10", "rotate-90", "rotate-180", "straighten-crop")]


async def test_hard_edits_are_found_without_false_pairs(base_url: str, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{base_url}/images", data=form(*[(f"{n}.jpg", jpeg(n)) for n in PHOTOS])) as resp:
        original_of = {item["image_id"]: PHOTOS[item["index"]] for item in (await resp.json())["items"]}
    found, wrong, total = 0, [], 0
    for name in PHOTOS:
        copies = [(f"{name}~{edit.name}", edit.apply(photo(name))) for edit in HARD]
        async with http.post(f"{base_url}/search", data=form(*copies)) as resp:
            items = (await resp.json())["items"]
        for item in items:
            total += 1
            found += any(original_of[d["image_id"]] == name for d in item["duplicates"])
            wrong += [(copies[item["index"]][0], d["filename"]) for d in item["duplicates"] if original_of[d["image_id"]] != name]
    assert not wrong, wrong
    assert found / total >= 0.8, found / total


async def test_flat_transparent_logo_document_and_gradient_images_never_pair(base_url: str, http: aiohttp.ClientSession) -> None:
    """The false pairs users reported: each family's images are all different from each other.
    Also images that share a part and differ in the rest: one viewer's screenshots of different
    pictures, one wordmark under different marks, one chat app's screenshots."""
    folder = [photo(name) for name in PHOTOS[:4]]
    viewed = [
        Negative(f"viewer-{i}", "viewer", png(photo_viewer(picture, folder, f"IMG_{i}.JPG", i)))
        for i, picture in enumerate(soft_art(3, 3))
    ]
    negatives = (
        flats() + gradients() + logos() + transparent() + documents() + viewed + wordmarks("ACME", 0)[:2] + chats(range(4))
    )
    async with http.post(f"{base_url}/images", data=form(*[(n.name + ".img", n.data) for n in negatives])) as resp:
        assert resp.status == 201
        body = await resp.json()
    paired = [negatives[item["index"]].name for item in body["items"] if item["duplicates"]]
    assert paired == []
    async with http.get(f"{base_url}/duplicates/{body['request_id']}?threshold=0.01") as resp:  # even at any similarity
        loose = await resp.json()
    assert [(i["filename"], [d["filename"] for d in i["duplicates"]]) for i in loose["images"] if i["duplicates"]] == []
    async with http.get(f"{base_url}/groups") as resp:
        assert (await resp.json())["total"] == 0  # no group of blank thumbnails


async def test_a_hash_match_needs_the_descriptor_to_agree(dsn: str) -> None:
    """Wood planks and a logo on a flat background, 10 bits apart at similarity 0.31: not a pair.
    The same hashes at similarity 0.97 (a re-encoded photo): near-exact, without a geometric check."""
    pool = await asyncpg.create_pool(dsn)
    try:
        store = PgVectorStore(pool, dims=1280)
        rules = Rules.from_settings(DuplicateSettings())
        stored = StoredImage(
            id=uuid.uuid4(),
            request_id=uuid.uuid4(),
            position=0,
            filename="wood.jpg",
            url=None,
            byte_size=1,
            width=1,
            height=1,
            format="JPEG",
            sha256="a" * 64,
            phash=0x0F0F_0F0F_0F0F_0F0F,
            model="m",
            created_at=datetime.now(UTC),
        )
        query = Query(vector=np.zeros(1280, np.float32), sha256="b" * 64, phash=0x0F0F_0F0F_0F0F_0F0F ^ 0b1)
        for similarity, expected in ((0.31, []), (0.97, ["near_exact"])):
            [matches] = await classify(store, [query], [[Candidate(image=stored, similarity=similarity)]], rules)
            assert [m.kind for m in matches] == expected
    finally:
        await pool.close()
