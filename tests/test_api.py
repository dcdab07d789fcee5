"""The REST API as a client sees it: real HTTP, real Postgres, real photos."""

from __future__ import annotations

import base64
import io
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web
from PIL import Image, ImageOps

from dupdetect.settings import FetchSettings, LimitSettings, Settings
from tests.conftest import Backend, serving, web_server
from tests.http import form
from tests.photos import corrupt_png, edited_copy, encode, jpeg, not_an_image, photo, pixel_bomb, truncated_jpeg


async def post(http: aiohttp.ClientSession, base_url: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    async with http.post(f"{base_url}/images", **kwargs) as resp:
        return resp.status, await resp.json()


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    async with http.get(url) as resp:
        return resp.status, await resp.json()


@pytest.fixture
def settings(backend: Backend) -> Settings:
    """Every test here runs against each store: pgvector and (a local stand-in for) Pinecone."""
    return backend.settings


@pytest.fixture
def stored(backend: Backend) -> Callable[[], Awaitable[tuple[int, int]]]:
    """(requests, images) the store holds."""
    return backend.count


Stored = Callable[[], Awaitable[tuple[int, int]]]


def b64(payload: bytes) -> str:
    return base64.b64encode(payload).decode()


# --- ingest and duplicates ---------------------------------------------------------------


async def test_multipart_upload_stores_every_image(base_url: str, http: aiohttp.ClientSession, stored: Stored) -> None:
    status, body = await post(http, base_url, data=form(("chelsea.jpg", jpeg("chelsea")), ("coffee.jpg", jpeg("coffee"))))
    assert status == 201, body
    assert body["added"] == 2
    assert [item["index"] for item in body["items"]] == [0, 1]
    assert all(uuid.UUID(item["image_id"]) for item in body["items"])
    assert await stored() == (1, 2)


async def test_edited_copy_is_a_near_duplicate_across_requests_both_ways(base_url: str, http: aiohttp.ClientSession) -> None:
    _, first = await post(http, base_url, data=form(("rocket.jpg", jpeg("rocket")), ("coffee.jpg", jpeg("coffee"))))
    _, second = await post(http, base_url, data=form(("rocket-small.jpg", edited_copy("rocket"))))
    assert second["items"][0]["duplicates"] == 1

    status, later = await get(http, f"{base_url}/duplicates/{second['request_id']}")
    assert status == 200
    [image] = later["images"]
    assert image["filename"] == "rocket-small.jpg"
    [dup] = image["duplicates"]
    assert dup["image_id"] == first["items"][0]["image_id"]
    assert dup["request_id"] == first["request_id"]
    assert dup["filename"] == "rocket.jpg"
    assert dup["kind"] == "near_exact" and 0.9 <= dup["similarity"] < 1.0  # a mild edit

    _, earlier = await get(http, f"{base_url}/duplicates/{first['request_id']}")
    rocket, coffee = earlier["images"]
    assert [d["image_id"] for d in rocket["duplicates"]] == [image["image_id"]]  # symmetric
    assert coffee["duplicates"] == []
    assert earlier["message"] == "1 of 2 images have duplicates"


async def test_same_bytes_are_an_exact_duplicate(base_url: str, http: aiohttp.ClientSession) -> None:
    _, first = await post(http, base_url, data=form(("a.jpg", jpeg("astronaut"))))
    _, second = await post(http, base_url, data=form(("b.jpg", jpeg("astronaut"))))
    _, found = await get(http, f"{base_url}/duplicates/{second['request_id']}")
    [dup] = found["images"][0]["duplicates"]
    assert dup == {
        "image_id": first["items"][0]["image_id"],
        "request_id": first["request_id"],
        "filename": "a.jpg",
        "similarity": 1.0,
        "kind": "exact",
        "matched_points": None,  # same bytes: nothing to check
    }


async def test_duplicates_within_one_request_are_found(base_url: str, http: aiohttp.ClientSession) -> None:
    _, body = await post(http, base_url, data=form(("x.jpg", jpeg("chelsea")), ("y.jpg", edited_copy("chelsea"))))
    _, found = await get(http, f"{base_url}/duplicates/{body['request_id']}")
    first, second = found["images"]
    assert [d["image_id"] for d in first["duplicates"]] == [second["image_id"]]
    assert [d["image_id"] for d in second["duplicates"]] == [first["image_id"]]


async def test_distinct_photos_are_not_reported(base_url: str, http: aiohttp.ClientSession) -> None:
    names = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "motorcycle_left", "retina")
    _, body = await post(http, base_url, data=form(*((f"{n}.jpg", jpeg(n)) for n in names)))
    status, found = await get(http, f"{base_url}/duplicates/{body['request_id']}")
    assert status == 200
    assert [image["duplicates"] for image in found["images"]] == [[]] * len(names)
    assert found["message"] == f"no duplicates found for the {len(names)} images of this request"


async def test_threshold_filters_every_tier_but_exact(base_url: str, http: aiohttp.ClientSession, settings: Settings) -> None:
    grey = encode(ImageOps.grayscale(photo("chelsea")).convert("RGB"), "JPEG", quality=90)
    _, body = await post(http, base_url, data=form(("a.jpg", jpeg("chelsea")), ("b.jpg", grey), ("c.jpg", jpeg("chelsea"))))
    url = f"{base_url}/duplicates/{body['request_id']}"
    _, recorded = await get(http, url)
    kinds = {d["filename"]: d for d in recorded["images"][0]["duplicates"]}
    assert kinds["c.jpg"]["kind"] == "exact" and kinds["b.jpg"]["kind"] == "near_exact"
    assert kinds["b.jpg"]["similarity"] < 0.95
    if settings.store.store == "pgvector":  # Pinecone keeps no keypoints: its pairs are not checked
        assert kinds["b.jpg"]["matched_points"] >= 20
    _, strict = await get(http, f"{url}?threshold=0.95")
    assert [d["filename"] for d in strict["images"][0]["duplicates"]] == ["c.jpg"]  # the near-exact pair is filtered
    _, loose = await get(http, f"{url}?threshold=0.3")
    assert {d["filename"] for d in loose["images"][0]["duplicates"]} == {"b.jpg", "c.jpg"}


async def test_a_loose_threshold_still_never_pairs_different_photos(base_url: str, http: aiohttp.ClientSession) -> None:
    _, body = await post(http, base_url, data=form(("a.jpg", jpeg("chelsea")), ("b.jpg", jpeg("coffee"))))
    _, loose = await get(http, f"{base_url}/duplicates/{body['request_id']}?threshold=0.01")
    assert loose["images"][0]["duplicates"] == []  # the descriptors agree a little; the geometry does not


async def test_limit_caps_duplicates_per_image(base_url: str, http: aiohttp.ClientSession) -> None:
    payload = jpeg("coffee")
    _, body = await post(http, base_url, data=form(*((f"{i}.jpg", payload) for i in range(4))))
    _, found = await get(http, f"{base_url}/duplicates/{body['request_id']}?limit=2")
    assert [len(image["duplicates"]) for image in found["images"]] == [2, 2, 2, 2]


# --- input forms --------------------------------------------------------------------------


async def test_json_base64_items_with_and_without_data_url(base_url: str, http: aiohttp.ClientSession) -> None:
    payload = {
        "images": [
            {"base64": b64(jpeg("chelsea")), "filename": "cat.jpg"},
            {"base64": "data:image/jpeg;base64," + b64(jpeg("coffee"))},
        ]
    }
    status, body = await post(http, base_url, json=payload)
    assert status == 201, body
    assert body["added"] == 2
    _, info = await get(http, f"{base_url}/requests/{body['request_id']}")
    assert [image["filename"] for image in info["images"]] == ["cat.jpg", None]
    assert [image["format"] for image in info["images"]] == ["JPEG", "JPEG"]


async def test_search_finds_duplicates_without_storing_anything(
    base_url: str, http: aiohttp.ClientSession, stored: Stored
) -> None:
    _, first = await post(http, base_url, data=form(("rocket.jpg", jpeg("rocket"))))
    before = await stored()
    async with http.post(
        f"{base_url}/search",
        data=form(("copy.jpg", edited_copy("rocket")), ("coffee.jpg", jpeg("coffee")), ("bad.jpg", truncated_jpeg())),
    ) as resp:
        status, body = resp.status, await resp.json()
    assert status == 200, body
    copy, other, bad = body["items"]
    assert [d["image_id"] for d in copy["duplicates"]] == [first["items"][0]["image_id"]]
    assert copy["duplicates"][0]["kind"] in ("near_exact", "near") and other["duplicates"] == []
    assert bad["error"]["code"] == "corrupt_image"
    assert await stored() == before  # nothing was written
    payload = {"images": [{"base64": b64(jpeg("rocket"))}]}  # the same JSON forms as POST /images
    async with http.post(f"{base_url}/search", json=payload) as resp:
        assert [d["kind"] for d in (await resp.json())["items"][0]["duplicates"]] == ["exact"]


async def test_base64_as_command_line_tools_write_it(base_url: str, http: aiohttp.ClientSession) -> None:
    photo, other = jpeg("rocket"), jpeg("coffee")
    wrapped = base64.encodebytes(photo).decode()  # 76 columns, as `base64 photo.jpg` prints it
    url_safe = base64.urlsafe_b64encode(other).decode().rstrip("=")  # URL-safe alphabet, no padding
    status, body = await post(http, base_url, json={"images": [{"base64": wrapped}, {"base64": url_safe}]})
    assert status == 201 and body["added"] == 2, body


def serve_bytes(payload: bytes) -> Any:
    async def handler(_: web.Request) -> web.Response:
        return web.Response(body=payload, content_type="image/jpeg")

    return handler


def redirect(location: str) -> Any:
    async def handler(_: web.Request) -> web.Response:
        raise web.HTTPFound(location)

    return handler


@pytest.fixture
async def image_host() -> AsyncIterator[str]:
    """A web server on 127.0.0.1 serving real photos, redirects and an endless body."""

    async def endless(_: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(_)
        for _i in range(64):  # 64 MiB if nobody stops reading: bounded either way
            await response.write(b"\xff" * (1 << 20))
        return response

    app = web.Application()
    app.router.add_get("/chelsea.jpg", serve_bytes(jpeg("chelsea")))
    app.router.add_get("/moved", redirect("/chelsea.jpg"))
    app.router.add_get("/loop", redirect("/loop"))
    app.router.add_get("/nowhere", redirect("http://[::1"))
    app.router.add_get("/endless", endless)
    async with web_server(app) as url:
        yield url


def with_fetch(settings: Settings, **fetch: Any) -> Settings:
    return msgspec.structs.replace(settings, fetch=msgspec.structs.replace(FetchSettings(), **fetch))


def with_limits(settings: Settings, **limits: Any) -> Settings:
    return msgspec.structs.replace(settings, limits=msgspec.structs.replace(LimitSettings(), **limits))


async def test_urls_are_fetched_and_mixed_with_base64(settings: Settings, image_host: str, http: aiohttp.ClientSession) -> None:
    async with serving(with_fetch(settings, fetch_allow_networks=("127.0.0.0/8",))) as base_url:
        payload = {
            "images": [
                {"url": f"{image_host}/chelsea.jpg"},
                {"base64": b64(edited_copy("chelsea")), "filename": "copy.jpg"},
                {"url": f"{image_host}/moved"},
            ]
        }
        status, body = await post(http, base_url, json=payload)
        assert status == 201, body
        assert body["added"] == 3
        _, found = await get(http, f"{base_url}/duplicates/{body['request_id']}")
    assert found["images"][0]["filename"] == f"{image_host}/chelsea.jpg"
    kinds = {d["filename"]: d["kind"] for d in found["images"][2]["duplicates"]}
    assert kinds == {f"{image_host}/chelsea.jpg": "exact", "copy.jpg": "near_exact"}


async def test_url_problems_are_item_errors(settings: Settings, image_host: str, http: aiohttp.ClientSession) -> None:
    limited = with_limits(with_fetch(settings, fetch_allow_networks=("127.0.0.0/8",)), max_image_bytes=2 << 20)
    async with serving(limited) as base_url:
        payload = {
            "images": [
                {"url": f"{image_host}/chelsea.jpg"},
                {"url": f"{image_host}/missing.jpg"},
                {"url": f"{image_host}/loop"},
                {"url": f"{image_host}/endless"},
                {"url": "ftp://example.org/a.jpg"},
                {"url": f"{image_host}/nowhere"},
            ]
        }
        status, body = await post(http, base_url, json=payload)
    assert status == 201
    codes = [item.get("error", {}).get("code") for item in body["items"]]
    assert codes == [None, "fetch_failed", "too_many_redirects", "image_too_large", "invalid_url", "fetch_failed"]


SSRF_TARGETS = [
    "http://127.0.0.1:{port}/chelsea.jpg",
    "http://localhost:{port}/chelsea.jpg",
    "http://10.0.0.1/image.jpg",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]:{port}/chelsea.jpg",
    "http://0.0.0.0:{port}/chelsea.jpg",
    "http://[::ffff:127.0.0.1]:{port}/chelsea.jpg",
    "http://[64:ff9b::7f00:1]:{port}/chelsea.jpg",
]
"""Names and address forms through the whole fetch path; every form's rule has its unit test
(tests/unit/test_address_policy.py)."""


async def test_ssrf_targets_are_refused_without_the_allowlist(
    base_url: str, image_host: str, http: aiohttp.ClientSession, stored: Stored
) -> None:
    port = image_host.rsplit(":", 1)[1]
    urls = [url.format(port=port) for url in SSRF_TARGETS]
    status, body = await post(http, base_url, json={"images": [{"url": url} for url in urls]})
    assert status == 422
    errors = [item["error"] for item in body["error"]["details"]]
    assert [error["code"] for error in errors] == ["url_not_allowed"] * len(urls), errors
    # the rule that refused, not what the name resolves to (no DNS oracle)
    assert "127.0.0.1" not in errors[1]["message"] and "loopback" in errors[1]["message"]
    assert await stored() == (0, 0)


async def test_a_redirect_to_a_private_address_is_refused(
    settings: Settings, image_host: str, http: aiohttp.ClientSession
) -> None:
    # Only the redirecting host (127.0.0.2) is allowed; it sends us on to 127.0.0.1.
    port = int(image_host.rsplit(":", 1)[1])

    app = web.Application()
    app.router.add_get("/bounce", redirect(f"http://127.0.0.1:{port}/chelsea.jpg"))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.2", 0)
    await site.start()
    bounce_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with serving(with_fetch(settings, fetch_allow_networks=("127.0.0.2/32",))) as base_url:
            status, body = await post(http, base_url, json={"images": [{"url": f"http://127.0.0.2:{bounce_port}/bounce"}]})
    finally:
        await runner.cleanup()
    assert status == 422
    error = body["error"]["details"][0]["error"]
    assert error["code"] == "url_not_allowed" and "127.0.0.1" in error["message"]


# --- limits and bad input: a clear 4xx, nothing stored --------------------------------------


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (not_an_image(), "unsupported_format"),
        (truncated_jpeg(), "corrupt_image"),
        (corrupt_png(), "corrupt_image"),
        (pixel_bomb(), "too_many_pixels"),
        (b"", "empty_image"),
    ],
    ids=["pdf", "truncated-jpeg", "corrupt-png", "pixel-bomb", "empty"],
)
async def test_a_bad_file_is_reported_by_code(
    payload: bytes, code: str, base_url: str, http: aiohttp.ClientSession, stored: Stored
) -> None:
    status, body = await post(http, base_url, data=form(("good.jpg", jpeg("chelsea")), ("bad", payload)))
    assert status == 201
    assert body["added"] == 1
    assert body["items"][1]["error"]["code"] == code
    assert body["items"][1]["error"]["message"]
    assert await stored() == (1, 1)


async def test_nothing_valid_is_a_422_with_every_item_error(base_url: str, http: aiohttp.ClientSession, stored: Stored) -> None:
    status, body = await post(http, base_url, data=form(("a", not_an_image()), ("b", truncated_jpeg())))
    assert status == 422
    assert body["error"]["code"] == "no_valid_images"
    assert [item["error"]["code"] for item in body["error"]["details"]] == ["unsupported_format", "corrupt_image"]
    assert await stored() == (0, 0)


async def test_oversized_upload_is_cut_off_per_image(settings: Settings, http: aiohttp.ClientSession, stored: Stored) -> None:
    async with serving(with_limits(settings, max_image_bytes=100_000)) as base_url:
        big = jpeg("astronaut", quality=98)
        assert len(big) > 100_000
        status, body = await post(http, base_url, data=form(("small.jpg", jpeg("coffee", 40)), ("big.jpg", big)))
        assert status == 201
        assert body["items"][1]["error"]["code"] == "image_too_large"
        status, body = await post(http, base_url, json={"images": [{"base64": b64(big)}]})
        assert status == 422
        assert body["error"]["details"][0]["error"]["code"] == "image_too_large"
    assert await stored() == (1, 1)


async def test_request_wide_limits(settings: Settings, http: aiohttp.ClientSession, stored: Stored) -> None:
    async with serving(with_limits(settings, max_images_per_request=2, max_request_bytes=300_000)) as base_url:
        small = jpeg("coffee", 30)
        status, body = await post(http, base_url, data=form(*((f"{i}.jpg", small) for i in range(3))))
        assert (status, body["error"]["code"]) == (413, "too_many_images")
        status, body = await post(http, base_url, json={"images": [{"base64": b64(small)}] * 3})
        assert (status, body["error"]["code"]) == (413, "too_many_images")

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the stream is counted
            yield b'--b\r\nContent-Disposition: form-data; name="files"; filename="x"\r\n\r\n'
            for _ in range(100):
                yield b"\x00" * 10_000

        status, body = await post(http, base_url, data=chunks(), headers={"Content-Type": "multipart/form-data; boundary=b"})
        assert (status, body["error"]["code"]) == (413, "request_too_large")
    assert await stored() == (0, 0)


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"data": b"hello", "headers": {"Content-Type": "text/plain"}}, 415, "unsupported_media_type"),
        ({"data": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, "invalid_json"),
        ({"json": {"pictures": []}}, 400, "invalid_request"),
        ({"json": {"images": []}}, 400, "no_images"),
        ({"json": {"images": [{"base64": "aGk=", "url": "http://x"}]}}, 422, "no_valid_images"),
        ({"json": {"images": [{"base64": "not base64!"}]}}, 422, "no_valid_images"),
        ({"data": b"junk", "headers": {"Content-Type": "multipart/form-data"}}, 400, "invalid_multipart"),
        ({"data": b"--b\r\nbroken", "headers": {"Content-Type": "multipart/form-data; boundary=b"}}, 400, "invalid_multipart"),
    ],
    ids=["text", "bad-json", "wrong-shape", "empty-list", "both-fields", "bad-base64", "no-boundary", "truncated"],
)
async def test_malformed_bodies_get_a_clear_4xx(
    kwargs: dict[str, Any], status: int, code: str, base_url: str, http: aiohttp.ClientSession, stored: Stored
) -> None:
    got, body = await post(http, base_url, **kwargs)
    assert (got, body["error"]["code"]) == (status, code), body
    assert body["error"]["message"]
    assert await stored() == (0, 0)


async def test_an_unexpected_form_field_is_named(base_url: str, http: aiohttp.ClientSession) -> None:
    data = aiohttp.FormData()
    data.add_field("image", jpeg("coffee"), filename="c.jpg")
    status, body = await post(http, base_url, data=data)
    assert (status, body["error"]["code"]) == (400, "unexpected_field")
    assert "'image'" in body["error"]["message"]


async def test_item_errors_name_the_problem(base_url: str, http: aiohttp.ClientSession) -> None:
    coffee = b64(jpeg("coffee"))
    payload = {
        "images": [
            {"base64": coffee},
            {"filename": "x.jpg"},
            {"base64": "@@@@"},
            {"base64": coffee, "filename": "nul\u0000byte.jpg"},
            {"base64": coffee, "filename": "x" * 2000},
            {"url": "http://example.org/" + "a" * 5000},
        ]
    }
    status, body = await post(http, base_url, json=payload)
    assert status == 201
    assert [item.get("error", {}).get("code") for item in body["items"]] == [
        None,
        "invalid_item",
        "invalid_base64",
        "invalid_filename",
        "invalid_filename",
        "invalid_url",
    ]


async def test_hostile_names_never_reach_the_store(
    base_url: str, http: aiohttp.ClientSession, stored: Callable[[], Awaitable[tuple[int, int]]]
) -> None:
    before = await stored()
    body = b'{"images": [{"base64": "%s", "filename": "\\ud800.jpg"}]}' % b64(jpeg("coffee")).encode()
    status, answer = await post(http, base_url, data=body, headers={"Content-Type": "application/json"})
    assert (status, answer["error"]["code"]) == (400, "invalid_json"), answer  # a lone surrogate is not JSON
    raw = (
        b'--b\r\nContent-Disposition: form-data; name="files"; filename="bell\x07.jpg"\r\n\r\n'
        + jpeg("coffee")
        + b"\r\n--b--\r\n"
    )
    status, answer = await post(http, base_url, data=raw, headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert status == 422 and answer["error"]["details"][0]["error"]["code"] == "invalid_filename"
    assert await stored() == before  # neither request stored anything


# --- reading and deleting ------------------------------------------------------------------


async def test_unknown_and_malformed_ids(base_url: str, http: aiohttp.ClientSession) -> None:
    missing = uuid.uuid4()
    for path in (f"/duplicates/{missing}", f"/requests/{missing}", f"/images/{missing}"):
        status, body = await get(http, base_url + path)
        assert status == 404 and body["error"]["code"].endswith("_not_found"), path
    for path in ("/duplicates/not-a-uuid", "/requests/123", "/images/xyz", "/images/xyz/thumbnail"):
        status, body = await get(http, base_url + path)
        assert (status, body["error"]["code"]) == (400, "invalid_id"), path
    status, body = await get(http, f"{base_url}/duplicates/{missing}?threshold=2")
    assert (status, body["error"]["code"]) == (400, "invalid_request")


async def test_known_hashes_must_be_sha256s(base_url: str, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{base_url}/images/known", json={"sha256": ["not-a-hash"]}) as resp:
        body = await resp.json()
    assert resp.status == 400 and body["error"]["code"] == "invalid_request"
    async with http.post(f"{base_url}/images/known", json={"sha256": ["ab" * 32]}) as resp:
        assert resp.status == 200 and (await resp.json())["sha256"] == []


async def test_when_and_with_what_a_photo_was_taken_is_stored_and_shown(base_url: str, http: aiohttp.ClientSession) -> None:
    exif = Image.Exif()
    exif[0x010F] = "Canon\x00\x00"  # NUL-padded, as cameras write it
    exif[0x0110] = "EOS 5D Mark IV"
    exif.get_ifd(0x8769)[0x9003] = "2021:06:01 10:20:30"
    buffer = io.BytesIO()
    photo("rocket").save(buffer, "JPEG", quality=90, exif=exif.tobytes())
    png = encode(photo("coffee"), "PNG")
    _, body = await post(http, base_url, data=form(("taken.jpg", buffer.getvalue()), ("plain.png", png)))
    (_, taken), (_, plain) = [await get(http, f"{base_url}/images/{item['image_id']}") for item in body["items"]]
    assert (taken["taken_at"], taken["camera_make"], taken["camera_model"]) == ("2021-06-01T10:20:30", "Canon", "EOS 5D Mark IV")
    assert (plain["taken_at"], plain["camera_make"], plain["camera_model"]) == (None, None, None)


async def test_metadata_endpoints(base_url: str, http: aiohttp.ClientSession) -> None:
    _, body = await post(http, base_url, data=form(("cat.jpg", jpeg("chelsea"))))
    image_id = body["items"][0]["image_id"]
    status, image = await get(http, f"{base_url}/images/{image_id}")
    assert status == 200
    assert image["filename"] == "cat.jpg" and image["format"] == "JPEG"
    assert (image["width"], image["height"]) == (451, 300)
    assert len(image["sha256"]) == 64 and image["model"].startswith("efficientnet_lite0/")
    status, request = await get(http, f"{base_url}/requests/{body['request_id']}")
    assert status == 200
    assert (request["submitted"], request["added"]) == (1, 1)
    assert [i["id"] for i in request["images"]] == [image_id]


async def test_deletes_remove_pairs_and_are_idempotent(base_url: str, http: aiohttp.ClientSession, stored: Stored) -> None:
    _, first = await post(http, base_url, data=form(("a.jpg", jpeg("coffee"))))
    _, second = await post(http, base_url, data=form(("b.jpg", jpeg("coffee")), ("c.jpg", jpeg("rocket"))))
    assert await stored() == (2, 3)
    assert second["items"][0]["duplicates"] == 1
    image_id = second["items"][0]["image_id"]
    for _ in range(2):
        async with http.delete(f"{base_url}/images/{image_id}") as resp:
            assert resp.status == 204
    _, found = await get(http, f"{base_url}/duplicates/{first['request_id']}")
    assert found["images"][0]["duplicates"] == []
    assert await stored() == (2, 2)
    for _ in range(2):
        async with http.delete(f"{base_url}/requests/{second['request_id']}") as resp:
            assert resp.status == 204
    status, _ = await get(http, f"{base_url}/requests/{second['request_id']}")
    assert status == 404
    assert await stored() == (1, 1)


async def test_openapi_documents_bodies_parameters_and_errors(base_url: str, http: aiohttp.ClientSession) -> None:
    _, schema = await get(http, f"{base_url}/schema/openapi.json")
    post_images = schema["paths"]["/images"]["post"]
    assert {"multipart/form-data", "application/json"} <= post_images["requestBody"]["content"].keys()
    assert {"201", "400", "413", "415", "422", "503"} <= post_images["responses"].keys()
    get_dups = schema["paths"]["/duplicates/{request_id}"]["get"]
    assert {p["name"] for p in get_dups["parameters"]} == {"request_id", "threshold", "limit"}
    assert {"200", "400", "404"} <= get_dups["responses"].keys()
    for path in ("/requests/{request_id}", "/images/{image_id}"):
        assert {"get", "delete"} <= schema["paths"][path].keys()
