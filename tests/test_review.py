"""Review features over real HTTP: thumbnails, "not a duplicate" decisions, duplicate groups."""

from __future__ import annotations

import io
import itertools

import aiohttp
import asyncpg
from PIL import Image

from dupdetect.settings import Settings
from tests.http import upload
from tests.photos import edited_copy, encode, jpeg, photo


async def test_thumbnails_are_kept_and_served(base_url: str, http: aiohttp.ClientSession) -> None:
    body = await upload(http, base_url, ("cat.jpg", jpeg("chelsea")))
    async with http.get(f"{base_url}/images/{body['items'][0]['image_id']}/thumbnail") as resp:
        assert resp.status == 200 and resp.content_type == "image/jpeg"
        thumb = Image.open(io.BytesIO(await resp.read()))
    assert max(thumb.size) == 256 and thumb.size[0] > thumb.size[1]  # whole photo, aspect kept


async def test_not_a_duplicate_is_honoured_by_later_searches_and_groups(base_url: str, http: aiohttp.ClientSession) -> None:
    first = await upload(http, base_url, ("a.jpg", jpeg("rocket")))
    second = await upload(
        http, base_url, ("b.jpg", edited_copy("rocket")), ("c.jpg", jpeg("coffee")), ("d.jpg", jpeg("coffee", 60))
    )
    a, b = first["items"][0]["image_id"], second["items"][0]["image_id"]
    async with http.get(f"{base_url}/groups") as resp:
        groups = await resp.json()
    assert groups["total"] == 2 and [g["size"] for g in groups["groups"]] == [2, 2]
    rockets = next(g for g in groups["groups"] if a in {i["id"] for i in g["images"]})
    assert rockets["keep"] == a and rockets["images"][0]["id"] == a  # the full-size original, listed first
    assert [({p["a"], p["b"]}, p["kind"]) for p in rockets["pairs"]] == [({a, b}, "near_exact")]  # why they are a group

    async with http.post(f"{base_url}/not-duplicates", json={"image_ids": [b, a]}) as resp:
        assert resp.status == 201
    for query in ("", "?threshold=0.5"):  # recorded pairs and live searches
        async with http.get(f"{base_url}/duplicates/{first['request_id']}{query}") as resp:
            assert (await resp.json())["images"][0]["duplicates"] == []
    async with http.get(f"{base_url}/groups") as resp:
        groups = await resp.json()
    assert groups["total"] == 1
    assert {i["filename"] for i in groups["groups"][0]["images"]} == {"c.jpg", "d.jpg"}

    # Changed one's mind: the decision goes and the pair is back, recorded as before.
    async with http.delete(f"{base_url}/not-duplicates/{a}/{b}") as resp:
        assert resp.status == 204
    async with http.get(f"{base_url}/duplicates/{first['request_id']}") as resp:
        assert [d["image_id"] for d in (await resp.json())["images"][0]["duplicates"]] == [b]
    async with http.get(f"{base_url}/groups") as resp:
        assert (await resp.json())["total"] == 2
    async with http.delete(f"{base_url}/not-duplicates/{a}/{b}") as resp:
        assert resp.status == 404 and (await resp.json())["error"]["code"] == "decision_not_found"


async def test_bad_decisions_are_refused(base_url: str, http: aiohttp.ClientSession) -> None:
    body = await upload(http, base_url, ("a.jpg", jpeg("rocket")))
    image = body["items"][0]["image_id"]
    cases = [
        ({"image_ids": [image, image]}, 400, "same_image"),
        ({"image_ids": [image, "7c9e6679-7425-40de-944b-e07fc1f90ae7"]}, 404, "image_not_found"),
        ({"image_ids": [image]}, 400, "invalid_request"),
    ]
    for payload, status, code in cases:
        async with http.post(f"{base_url}/not-duplicates", json=payload) as resp:
            assert (resp.status, (await resp.json())["error"]["code"]) == (status, code)
    async with http.get(f"{base_url}/groups?page_size=0") as resp:
        assert resp.status == 400


async def test_analysts_get_pairs_with_names_and_groups_without_recursive_sql(
    base_url: str, http: aiohttp.ClientSession, settings: Settings
) -> None:
    await upload(http, base_url, ("a.jpg", jpeg("rocket")))
    await upload(http, base_url, ("b.jpg", edited_copy("rocket")), ("c.jpg", jpeg("coffee")), ("d.jpg", jpeg("coffee", 60)))
    await upload(http, base_url, ("e.jpg", jpeg("rocket", 60)))  # a third copy: one group of three
    async with http.get(f"{base_url}/groups") as resp:  # rebuilds the groups now (the service does within seconds)
        assert resp.status == 200
    conn = await asyncpg.connect(settings.database.database_url)
    try:
        pairs = await conn.fetch("SELECT image, duplicate, kind, image_phash FROM duplicate_pairs")
        groups = await conn.fetch(
            "SELECT group_id, group_size, array_agg(image ORDER BY image) AS images FROM duplicate_groups"
            " GROUP BY group_id, group_size ORDER BY group_size DESC"
        )
        described = await conn.fetchval("SELECT col_description('images'::regclass, 3)")  # every column explained
        keepers = await conn.fetch("SELECT image FROM duplicate_groups WHERE suggested_keep ORDER BY image")
    finally:
        await conn.close()
    expected = {frozenset(("a.jpg", "b.jpg")), frozenset(("c.jpg", "d.jpg"))}
    assert {frozenset((p["image"], p["duplicate"])) for p in pairs} >= expected
    assert all(len(p["image_phash"]) == 16 for p in pairs)
    assert [(g["group_size"], g["images"]) for g in groups] == [(3, ["a.jpg", "b.jpg", "e.jpg"]), (2, ["c.jpg", "d.jpg"])]
    assert described
    assert [k["image"] for k in keepers] == ["a.jpg", "c.jpg"]  # one per group: the largest, best copy


async def test_keep_and_trash_marks_are_stored_and_exported(base_url: str, http: aiohttp.ClientSession) -> None:
    first = await upload(http, base_url, ("-cmd.jpg", jpeg("rocket")))
    second = await upload(http, base_url, ("copy.jpg", edited_copy("rocket")))
    a, b = first["items"][0]["image_id"], second["items"][0]["image_id"]
    for ids, mark in (([a], "keep"), ([b, "7c9e6679-7425-40de-944b-e07fc1f90ae7"], "trash")):
        async with http.post(f"{base_url}/marks", json={"image_ids": ids, "mark": mark}) as resp:
            assert resp.status == 200 and (await resp.json())["marked"] == 1  # unknown ids are not counted
    async with http.get(f"{base_url}/marks") as resp:
        exported = await resp.json()
    assert [(m["image_id"], m["mark"], m["file"]) for m in exported] == [(a, "keep", "-cmd.jpg"), (b, "trash", "copy.jpg")]
    async with http.get(f"{base_url}/marks.csv") as resp:
        assert resp.content_type == "text/csv" and "attachment" in resp.headers["Content-Disposition"]
        lines = (await resp.text()).splitlines()
    assert lines[0].startswith("image_id,file,sha256") and ",'-cmd.jpg," in lines[1]  # never a formula
    async with http.post(f"{base_url}/marks", json={"image_ids": [a, b], "mark": None}) as resp:
        assert (await resp.json())["marked"] == 2
    async with http.get(f"{base_url}/marks") as resp:
        assert await resp.json() == []


def _collage(*names: str, height: int) -> bytes:
    """Photos side by side at ``height`` px: a duplicate of each, which are not duplicates of each other."""
    parts = [photo(n).resize((round(photo(n).width * height / photo(n).height), height)) for n in names]
    canvas = Image.new("RGB", (sum(p.width for p in parts), height))
    for x, part in zip(itertools.accumulate([0, *(p.width for p in parts)]), parts, strict=False):
        canvas.paste(part, (x, 0))
    return encode(canvas, "JPEG", quality=90)


async def test_groups_do_not_chain_two_photos_through_a_collage(
    base_url: str, http: aiohttp.ClientSession, settings: Settings
) -> None:
    body = await upload(
        http,
        base_url,
        ("cat.jpg", jpeg("chelsea")),
        ("coffee.jpg", jpeg("coffee")),
        ("collage.jpg", _collage("chelsea", "coffee", height=200)),
    )
    cat, coffee, collage = (item["image_id"] for item in body["items"])
    assert [item["duplicates"] for item in body["items"]] == [0, 0, 2]  # the collage pairs with both
    async with http.get(f"{base_url}/groups") as resp:
        groups = (await resp.json())["groups"]
    members = sorted(sorted(i["id"] for i in g["images"]) for g in groups)
    assert members == sorted([sorted([coffee, collage]), sorted([cat, collage])])  # never cat with coffee
    for group in groups:  # each member says which pair put it there: with the group's best copy
        [pair] = group["pairs"]
        assert pair["a"] == collage and pair["b"] == group["keep"] and pair["kind"] == "near"
        assert pair["matched_points"] >= 20 and group["images"][0]["id"] == group["keep"]
    conn = await asyncpg.connect(settings.database.database_url)
    try:
        rows = await conn.fetch(
            "SELECT group_id, image_id, suggested_keep, joined_as, joined_matched_points"
            " FROM duplicate_groups ORDER BY group_id, suggested_keep DESC"
        )
    finally:
        await conn.close()
    by_group: dict[str, list] = {}
    for row in rows:
        by_group.setdefault(str(row["group_id"]), []).append(row)
    assert {g["keep"]: sorted(i["id"] for i in g["images"]) for g in groups} == {
        key: sorted(str(r["image_id"]) for r in group) for key, group in by_group.items()
    }  # analysts see the same groups
    assert all(r["suggested_keep"] == (r["joined_as"] is None) for r in rows)
    assert all(r["joined_matched_points"] >= 20 for r in rows if not r["suggested_keep"])
