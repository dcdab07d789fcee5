"""API keys and collections, as clients and operators meet them: real HTTP, real keys."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
import pytest

from dupdetect.database import create_pool
from dupdetect.keys import KeyRegistry
from dupdetect.settings import DatabaseSettings, ServerSettings, Settings
from tests.conftest import Backend, serving
from tests.photos import edited_copy, jpeg


def _auth_on(settings: Settings, **server: Any) -> Settings:
    return msgspec.structs.replace(settings, server=ServerSettings(auth="on", **server))


async def _registry(settings: Settings) -> AsyncIterator[KeyRegistry]:
    assert settings.database.database_url
    pool = await create_pool(settings.database.database_url, DatabaseSettings(), ef_search=40)
    try:
        yield KeyRegistry(pool)
    finally:
        await pool.close()


class Client:
    def __init__(self, http: aiohttp.ClientSession, base_url: str, token: str | None) -> None:
        self.http, self.base_url = http, base_url
        self.headers = {"X-API-Key": token} if token else {}

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        async with self.http.request(method, f"{self.base_url}{path}", headers=self.headers, **kwargs) as resp:
            body = await resp.json() if resp.content_type == "application/json" else await resp.read()
            return resp.status, body

    async def upload(self, name: str, payload: bytes) -> dict[str, Any]:
        form = aiohttp.FormData()
        form.add_field("files", payload, filename=name)
        status, body = await self.call("POST", "/images", data=form)
        assert status == 201, body
        return body


async def test_without_a_valid_key_every_data_call_is_401_and_probes_stay_open(
    settings: Settings, http: aiohttp.ClientSession
) -> None:
    async with serving(_auth_on(settings)) as base_url:
        anonymous = Client(http, base_url, None)
        for method, path in [
            ("POST", "/images"),
            ("GET", "/groups"),
            ("DELETE", f"/requests/{'0' * 8}-0000-0000-0000-{'0' * 12}"),
            ("POST", "/images/known"),
            ("GET", "/metrics"),
        ]:
            status, body = await anonymous.call(method, path)
            assert status == 401, (method, path, body)
            assert body["error"]["code"] == "missing_api_key"
        bad = Client(http, base_url, "ddk_000000000000_" + "x" * 43)
        status, body = await bad.call("GET", "/groups")
        assert status == 401 and body["error"]["code"] == "invalid_api_key"
        for path in ("/health", "/ready", "/ui"):
            status, _ = await anonymous.call("GET", path)
            assert status == 200, path


async def test_two_collections_never_see_or_match_each_others_images(backend: Backend, http: aiohttp.ClientSession) -> None:
    settings = _auth_on(backend.settings)
    async with serving(settings) as base_url:
        async for registry in _registry(settings):
            alice = Client(http, base_url, (await registry.create("alice")).token)
            bob = Client(http, base_url, (await registry.create("bob")).token)

            first = await alice.upload("coffee.jpg", jpeg("coffee"))
            bobs = await bob.upload("coffee.jpg", jpeg("coffee"))  # the same bytes, another collection
            status, found = await bob.call("GET", f"/duplicates/{bobs['request_id']}")
            assert status == 200 and found["images"][0]["duplicates"] == []

            later = await alice.upload("coffee-small.jpg", edited_copy("coffee"))
            status, found = await alice.call("GET", f"/duplicates/{later['request_id']}")
            assert [d["request_id"] for d in found["images"][0]["duplicates"]] == [first["request_id"]]

            image_id = first["items"][0]["image_id"]
            for path in (f"/duplicates/{first['request_id']}", f"/requests/{first['request_id']}", f"/images/{image_id}"):
                status, body = await bob.call("GET", path)
                assert status == 404, (path, body)
            await bob.call("DELETE", f"/requests/{first['request_id']}")  # not Bob's: nothing happens
            status, _ = await alice.call("GET", f"/requests/{first['request_id']}")
            assert status == 200


async def test_pairs_groups_thumbnails_and_decisions_stay_in_their_collection(
    settings: Settings, http: aiohttp.ClientSession
) -> None:
    settings = _auth_on(settings)
    async with serving(settings) as base_url:
        async for registry in _registry(settings):
            alice = Client(http, base_url, (await registry.create("alice")).token)
            bob = Client(http, base_url, (await registry.create("bob")).token)
            first = await alice.upload("rocket.jpg", jpeg("rocket"))
            second = await alice.upload("rocket-small.jpg", edited_copy("rocket"))
            a, b = first["items"][0]["image_id"], second["items"][0]["image_id"]

            status, groups = await alice.call("GET", "/groups")
            assert groups["total"] == 1
            status, groups = await bob.call("GET", "/groups")
            assert groups["total"] == 0
            status, _ = await bob.call("GET", f"/images/{a}/thumbnail")
            assert status == 404
            status, _ = await alice.call("GET", f"/images/{a}/thumbnail")
            assert status == 200
            status, body = await bob.call("POST", "/images/known", json={"sha256": [_sha(jpeg("rocket"))]})
            assert body["sha256"] == []
            status, body = await bob.call("POST", "/not-duplicates", json={"image_ids": [a, b]})
            assert status == 404
            status, groups = await alice.call("GET", "/groups")
            assert groups["total"] == 1  # Bob's decision did not touch Alice's pair


async def test_a_revoked_key_stops_working_at_once(settings: Settings, http: aiohttp.ClientSession) -> None:
    settings = _auth_on(settings)
    async with serving(settings) as base_url:
        async for registry in _registry(settings):
            issued = await registry.create("alice")
            alice = Client(http, base_url, issued.token)
            status, _ = await alice.call("GET", "/groups")
            assert status == 200
            assert await registry.revoke(issued.key.id)
            status, body = await alice.call("GET", "/groups")
            assert status == 401 and body["error"]["code"] == "invalid_api_key"
            bearer = {"Authorization": f"Bearer {(await registry.create('alice')).token}"}
            async with http.get(f"{base_url}/groups", headers=bearer) as resp:
                assert resp.status == 200


@pytest.mark.parametrize(
    ("host", "auth", "required"),
    [
        ("127.0.0.1", "auto", False),
        ("localhost", "auto", False),
        ("::1", "auto", False),
        ("0.0.0.0", "auto", True),
        ("10.1.2.3", "auto", True),
        ("0.0.0.0", "off", False),
        ("127.0.0.1", "on", True),
    ],
)
def test_auth_defaults_to_on_unless_the_service_listens_on_loopback_only(host: str, auth: Any, required: bool) -> None:
    assert ServerSettings(host=host, auth=auth).auth_required is required


async def test_foreign_hosts_and_cross_site_writes_are_refused(base_url: str, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{base_url}/groups", headers={"Host": "evil.example"}) as resp:
        assert resp.status == 400 and (await resp.json())["error"]["code"] == "host_not_allowed"
    form = aiohttp.FormData()
    form.add_field("files", jpeg("coffee"), filename="coffee.jpg")
    async with http.post(f"{base_url}/images", data=form, headers={"Origin": "https://evil.example"}) as resp:
        assert resp.status == 403 and (await resp.json())["error"]["code"] == "cross_origin_write"
    async with http.get(f"{base_url}/groups") as resp:
        assert (await resp.json())["total"] == 0  # nothing was stored
    async with http.post(f"{base_url}/images", data=form, headers={"Origin": base_url}) as resp:
        assert resp.status == 201  # the review page's own uploads


def _sha(payload: bytes) -> str:
    import hashlib

    return hashlib.sha256(payload).hexdigest()


async def test_the_api_docs_render_offline_without_scripts_or_cdn(base_url: str, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{base_url}/schema") as resp:
        page = await resp.text()
    assert resp.status == 200 and resp.content_type == "text/html"
    assert "<script" not in page and "https://" not in page  # nothing to fetch from the internet
    assert "/duplicates/{request_id}" in page and "POST" in page.upper()
    async with http.get(f"{base_url}/schema/openapi.json") as resp:
        assert resp.status == 200 and "/images" in (await resp.json())["paths"]


async def test_the_review_page_runs_only_its_own_code_and_cannot_be_framed(base_url: str, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{base_url}/ui") as resp:
        policy = resp.headers["Content-Security-Policy"]
        assert resp.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in policy and "script-src 'sha256-" in policy and "unsafe-inline" not in policy
