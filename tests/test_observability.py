"""What an operator sees: Prometheus metrics, request ids, JSON log lines."""

import json
import logging

import aiohttp

from dupdetect.observability import REQUEST_ID, JsonFormatter
from tests.http import upload
from tests.photos import jpeg


def _metric(text: str, sample: str) -> float:
    """The sum of every sample of a metric whose line starts with ``sample`` (name and labels)."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(sample))


async def test_metrics_count_requests_images_batches_and_duplicates(base_url: str, http: aiohttp.ClientSession) -> None:
    names = (
        "dupdetect_http_requests_total{",
        "dupdetect_http_request_duration_seconds_count",
        "dupdetect_images_embedded_total",
        "dupdetect_embed_batch_size_count",
        'dupdetect_duplicates_found_total{kind="exact"}',
    )
    async with http.get(f"{base_url}/metrics") as resp:
        before = {name: _metric(await resp.text(), name) for name in names}
    await upload(http, base_url, ("a.jpg", jpeg("coffee")), ("b.jpg", jpeg("coffee")))
    async with http.get(f"{base_url}/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    grown = {name: _metric(text, name) - before[name] for name in names}
    assert grown["dupdetect_images_embedded_total"] == 2
    assert grown['dupdetect_duplicates_found_total{kind="exact"}'] == 1  # b is a copy of a
    assert grown["dupdetect_embed_batch_size_count"] >= 1  # at least one batch ran
    assert grown["dupdetect_http_requests_total{"] >= 2 and grown["dupdetect_http_request_duration_seconds_count"] >= 2
    assert 'path="/images"' in text and "dupdetect_embed_queue_depth" in text


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
