"""A fixed slice of bench/quality.py in CI: mild edits of real photos must be found, and
different photos must not be paired, at the default thresholds with the offline backbone."""

from __future__ import annotations

import aiohttp

from bench.transforms import EDITS
from tests.photos import PHOTOS, jpeg, photo

MILD = [edit for edit in EDITS if edit.difficulty == "mild"]


def form(files: list[tuple[str, bytes]]) -> aiohttp.FormData:
    data = aiohttp.FormData()
    for name, payload in files:
        data.add_field("files", payload, filename=name)
    return data


async def test_mild_edits_are_found_and_different_photos_are_not(base_url: str, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{base_url}/images", data=form([(f"{n}.jpg", jpeg(n)) for n in PHOTOS])) as resp:
        originals = await resp.json()
    assert all(item["duplicates"] == 0 for item in originals["items"])  # no pairs among different photos
    original_of = {item["image_id"]: PHOTOS[item["index"]] for item in originals["items"]}

    found, wrong, total = 0, [], 0
    for name in PHOTOS:
        copies = [(f"{name}~{edit.name}", edit.apply(photo(name))) for edit in MILD]
        async with http.post(f"{base_url}/images", data=form(copies)) as resp:
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
