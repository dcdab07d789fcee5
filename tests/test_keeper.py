"""What a user acts on, over real HTTP: the suggested keeper is the original, groups hold every
copy, marks survive a reload, and "keep suggested" can be undone."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import msgspec
from PIL import Image

from bench.derived import DERIVED, original
from dupdetect.embedding.quality import UPSCALED_FROM
from dupdetect.settings import Settings
from tests.conftest import serving
from tests.http import upload
from tests.photos import encode, photo


def camera_file(name: str = "rocket") -> bytes:
    return original(photo(name), 0)


def derived(kind: str, raw: bytes) -> bytes:
    import io

    return DERIVED[kind](Image.open(io.BytesIO(raw)).convert("RGB"), raw)


async def upload_named(http: aiohttp.ClientSession, base_url: str, *files: tuple[str, bytes]) -> dict:
    """Like tests.http.upload, with names sent as they are (sub-folders and all), as the CLI does."""
    data = aiohttp.FormData(quote_fields=False)
    for name, payload in files:
        data.add_field("files", payload, filename=name)
    async with http.post(f"{base_url}/images", data=data) as resp:
        assert resp.status == 201, await resp.text()
        return dict(await resp.json())


async def groups(http: aiohttp.ClientSession, base_url: str, query: str = "") -> list[dict]:
    async with http.get(f"{base_url}/groups{query}") as resp:
        assert resp.status == 200, await resp.text()
        return list((await resp.json())["groups"])


async def test_the_original_is_kept_over_bigger_and_edited_copies(base_url: str, http: aiohttp.ClientSession) -> None:
    raw = camera_file()
    copies = [
        (kind, derived(kind, raw))
        for kind in ("upscale-2x.png", "padded-transparent.png", "rotated-7.jpg", "quality-60.jpg", "no-exif.jpg")
    ]
    body = await upload(http, base_url, *copies, ("original.jpg", raw))
    [group] = await groups(http, base_url)
    assert group["keep"] == body["items"][-1]["image_id"] and group["size"] == 6
    reason = group["keep_reason"]
    assert reason.startswith("kept: ") and "camera" in reason
    for words in ("upscaled", "padded", "filled corners", "no camera metadata"):
        assert words in reason, (words, reason)
    # What each copy holds is in the answer: the upscale's picture is no bigger than the original's.
    upscale = next(i for i in group["images"] if i["filename"] == "upscale-2x.png")
    assert "upscaled" in upscale["artefacts"] and upscale["detail_scale"] >= UPSCALED_FROM


async def test_a_policy_picks_the_keeper_and_membership_stays(base_url: str, http: aiohttp.ClientSession) -> None:
    raw = camera_file()
    await upload_named(
        http,
        base_url,
        ("photos/rocket.jpg", raw),
        ("backup/rocket.png", encode(photo("rocket"), "PNG")),
        ("photos/small.jpg", derived("quality-60.jpg", raw)),
    )
    [default] = await groups(http, base_url)
    assert next(i["filename"] for i in default["images"] if i["id"] == default["keep"]) == "photos/rocket.jpg"
    for query, kept in (("?prefer_folder=backup", "backup/rocket.png"), ("?prefer_format=png", "backup/rocket.png")):
        [group] = await groups(http, base_url, query)
        assert group["images"][0]["filename"] == kept and group["keep"] == group["images"][0]["id"]
        assert {i["id"] for i in group["images"]} == {i["id"] for i in default["images"]}
    async with http.get(f"{base_url}/groups?prefer=sideways") as resp:
        assert resp.status == 400
    # "Keep suggested" keeps the copy the same policy shows.
    async with http.post(f"{base_url}/marks/suggested", json={"group_ids": None, "prefer_folder": ["backup"]}) as resp:
        assert resp.status == 200
    [group] = await groups(http, base_url)
    assert {i["filename"]: i["mark"] for i in group["images"]} == {
        "backup/rocket.png": "keep",
        "photos/rocket.jpg": "trash",
        "photos/small.jpg": "trash",
    }


async def test_groups_hold_every_copy_beyond_top_k(base_url: str, http: aiohttp.ClientSession) -> None:
    picture = photo("chelsea")
    copies = [("original.jpg", encode(picture, "JPEG", quality=95))]
    for n in range(15):  # more copies than top_k (10): smaller and more compressed each time
        scale = 0.95 - n * 0.03
        small = picture.resize((round(picture.width * scale), round(picture.height * scale)))
        copies.append((f"copy{n:02d}.jpg", encode(small, "JPEG", quality=88 - 2 * n)))
    body = await upload(http, base_url, *copies)
    assert all(item["duplicates"] <= 10 for item in body["items"])  # top_k limits what is listed
    [group] = await groups(http, base_url)
    assert group["size"] == 16 and group["keep"] == body["items"][0]["image_id"]
    listed = {i["id"] for i in group["images"]}
    assert all(pair["b"] in listed for pair in group["pairs"]) and len(group["pairs"]) == 15  # each explained


async def test_marks_show_in_groups_and_keep_suggested_can_be_undone(base_url: str, http: aiohttp.ClientSession) -> None:
    raw = camera_file()
    body = await upload(
        http, base_url, ("a.jpg", raw), ("b.jpg", derived("quality-60.jpg", raw)), ("c.jpg", derived("no-exif.jpg", raw))
    )
    a, b, c = (item["image_id"] for item in body["items"])
    async with http.post(f"{base_url}/marks", json={"image_ids": [b], "mark": "keep"}) as resp:
        assert resp.status == 200
    [group] = await groups(http, base_url)
    assert {i["id"]: i["mark"] for i in group["images"]} == {a: None, b: "keep", c: None}  # as stored, after a reload
    async with http.post(f"{base_url}/marks/suggested", json={"group_ids": None}) as resp:
        assert resp.status == 200
        done = await resp.json()
    assert done["marked"] == 3 and {p["image_id"]: p["mark"] for p in done["previous"]} == {a: None, b: "keep", c: None}
    [group] = await groups(http, base_url)
    assert {i["id"]: i["mark"] for i in group["images"]} == {a: "keep", b: "trash", c: "trash"}
    # Undo: the previous marks go back as they were.
    for mark in ("keep", None):
        ids = [p["image_id"] for p in done["previous"] if p["mark"] == mark]
        async with http.post(f"{base_url}/marks", json={"image_ids": ids, "mark": mark}) as resp:
            assert resp.status == 200
    [group] = await groups(http, base_url)
    assert {i["id"]: i["mark"] for i in group["images"]} == {a: None, b: "keep", c: None}


async def test_originals_are_served_only_from_the_folder_and_unchanged(settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "originals"
    (folder / "trip").mkdir(parents=True)
    raw = camera_file()
    (folder / "trip" / "rocket.jpg").write_bytes(raw)
    (tmp_path / "secret.jpg").write_bytes(raw)
    settings = msgspec.structs.replace(settings, duplicates=msgspec.structs.replace(settings.duplicates, originals_dir=folder))
    async with serving(settings) as base_url, aiohttp.ClientSession() as http:
        body = await upload_named(http, base_url, ("trip/rocket.jpg", raw), ("../secret.jpg", raw), ("gone.jpg", raw))
        served, escaping, missing = (item["image_id"] for item in body["items"])
        async with http.get(f"{base_url}/images/{served}/original") as resp:
            assert resp.status == 200 and resp.content_type == "image/jpeg" and await resp.read() == raw
        for image_id in (escaping, missing):  # outside the folder, or not there: never read
            async with http.get(f"{base_url}/images/{image_id}/original") as resp:
                assert resp.status == 404 and (await resp.json())["error"]["code"] == "original_not_found"
        (folder / "trip" / "rocket.jpg").write_bytes(raw + b"changed")
        async with http.get(f"{base_url}/images/{served}/original") as resp:
            assert resp.status == 404  # not the bytes that were stored
