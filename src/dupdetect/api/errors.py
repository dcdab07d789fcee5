"""One JSON error shape for every 4xx/5xx, so clients can branch on ``error.code``."""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any

import msgspec
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import ResponseSpec
from litestar.types import ExceptionHandlersMap, HTTPResponseBodyEvent, HTTPResponseStartEvent, Send

from dupdetect.error_codes import Code
from dupdetect.errors import DupdetectError
from dupdetect.observability import STORE_UP
from dupdetect.store.base import OutcomeUnknown, StoreUnavailable

log = logging.getLogger(__name__)


class ErrorDetail(msgspec.Struct, kw_only=True):
    code: str
    """Stable, machine-readable: e.g. ``not_found``, ``payload_too_large``, ``invalid_request``."""
    message: str
    """For people; may change between versions."""
    details: Any = None
    """Per-item errors, or the id of a request whose commit was cut off; null otherwise."""


class ErrorResponse(msgspec.Struct, kw_only=True):
    error: ErrorDetail


def error_response(
    status: int, code: str, message: str, details: Any | None = None, headers: dict[str, str] | None = None
) -> Response[ErrorResponse]:
    body = ErrorResponse(error=ErrorDetail(code=code, message=message, details=details))
    return Response(body, status_code=status, media_type=MediaType.JSON, headers=headers)


async def send_error(send: Send, status: int, code: str, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """The same shape from ASGI middleware, which answers before Litestar's handlers run."""
    body = msgspec.json.encode(ErrorResponse(error=ErrorDetail(code=code, message=message)))
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *(headers or []),
        ],
    }
    await send(start)
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(end)


def error_responses(*documented: tuple[int, str]) -> dict[int, ResponseSpec]:
    """OpenAPI entries for a handler's error statuses, all with the one error shape."""
    return {
        status: ResponseSpec(data_container=ErrorResponse, description=description, generate_examples=False)
        for status, description in documented
    }


def _code_for(status: int) -> str:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        return "error"
    return re.sub(r"[^a-z0-9]+", "_", phrase.lower()).strip("_")


def handle_dupdetect_error(_: Request[Any, Any, Any], exc: DupdetectError) -> Response[ErrorResponse]:
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


def handle_store_down(_: Request[Any, Any, Any], exc: StoreUnavailable) -> Response[ErrorResponse]:
    STORE_UP.set(0)
    log.warning("store unavailable: %s", exc)
    return error_response(
        503, Code.STORE_UNAVAILABLE, "the store is not answering; retry shortly", headers={"Retry-After": str(exc.retry_after)}
    )


def handle_outcome_unknown(_: Request[Any, Any, Any], exc: OutcomeUnknown) -> Response[ErrorResponse]:
    STORE_UP.set(0)
    log.warning("database unavailable while committing request %s: %s", exc.request_id, exc.__cause__)
    return error_response(
        503,
        Code.STORE_UNAVAILABLE,
        f"the database failed while storing this request; GET /requests/{exc.request_id} answers 404 if it was not"
        " stored (then send it again)",
        details={"request_id": str(exc.request_id)},
        headers={"Retry-After": "2"},
    )


CLIENT_GONE = "client disconnected prematurely"
"""Litestar's InternalServerException detail when the client leaves mid-body: not a server error."""


def handle_http_exception(_: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorResponse]:
    if isinstance(exc, ValidationException):
        problems = exc.extra if isinstance(exc.extra, list) else []
        ids = [p["key"] for p in problems if isinstance(p, dict) and p.get("source") == "path"]
        if ids:  # every path parameter is an id
            return error_response(400, Code.INVALID_ID, f"{', '.join(ids)} is not a valid id (a UUID)", problems)
        return error_response(400, Code.INVALID_REQUEST, exc.detail, exc.extra or None)
    status = exc.status_code
    if status >= 500 and exc.detail != CLIENT_GONE:
        log.error("server error %s: %s", status, exc.detail, exc_info=exc)
    if status == 500 and exc.detail == CLIENT_GONE:  # Litestar's word for it, raised reading the body
        log.warning("the client disconnected before its request body was read")
        return error_response(499, Code.CLIENT_DISCONNECTED, "the client disconnected before sending its whole body")
    return error_response(status, _code_for(status), exc.detail, headers=dict(exc.headers or {}))


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorResponse]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, Code.INTERNAL_ERROR, "internal server error; the server log has the details")


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    DupdetectError: handle_dupdetect_error,
    StoreUnavailable: handle_store_down,
    OutcomeUnknown: handle_outcome_unknown,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}
