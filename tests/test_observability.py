"""What an operator sees: Prometheus metrics, request ids, JSON log lines."""

import json
import logging

import aiohttp

from dupdetect.observability import REQUEST_ID, JsonFormatter
from tests.photos import jpeg


async def test_metrics_count_requests_images_batches_and_duplicates(base_url: str, http: aiohttp.ClientSession) -> None:
    data = aiohttp.FormData()
    data.add_field("files", jpeg("coffee"), filename="a.jpg")
    data.add_field("files", jpeg("coffee"), filename="b.jpg")
    async with http.post(f"{base_url}/images", data=data) as resp:
        assert resp.status == 201
    async with http.get(f"{base_url}/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    assert 'dupdetect_http_requests_total{' in text and 'path="/images"' in text
    assert "dupdetect_http_request_duration_seconds_bucket" in text
    assert "dupdetect_images_embedded_total" in text
    assert "dupdetect_embed_batch_size_bucket" in text
    assert "dupdetect_embed_queue_depth" in text
    assert 'dupdetect_duplicates_found_total{kind="exact"}' in text


async def test_request_ids_are_returned_and_kept(base_url: str, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{base_url}/health", headers={"X-Request-ID": "client-42"}) as resp:
        assert resp.headers["X-Request-ID"] == "client-42"
    async with http.get(f"{base_url}/health", headers={"X-Request-ID": "bad id\twith spaces"}) as resp:
        generated = resp.headers["X-Request-ID"]
    assert generated != "bad id\twith spaces" and len(generated) == 32


def test_log_lines_are_json_with_the_request_id() -> None:
    record = logging.LogRecord("dupdetect.access", logging.INFO, __file__, 1, "request", None, None)
    record.fields = {"status": 201}
    token = REQUEST_ID.set("abc123")
    try:
        line = json.loads(JsonFormatter().format(record))
    finally:
        REQUEST_ID.reset(token)
    assert line["request_id"] == "abc123" and line["status"] == 201 and line["message"] == "request"
    assert line["level"] == "info"

