"""Requests cut off by a shutdown get the JSON error shape, not the server's plain-text 500."""

from __future__ import annotations

import asyncio
import logging

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from dupdetect.api.errors import send_error
from dupdetect.error_codes import Code

log = logging.getLogger(__name__)


def cut_off_answers(app: ASGIApp) -> ASGIApp:
    """ASGI middleware. When the shutdown grace (``DUPDETECT_SHUTDOWN_GRACE``) runs out, the server
    cancels the requests still running; a cancelled request that has not started its response is
    answered 503 ``shutting_down`` here. Its write, if it had begun, finished first
    (``duplicates.record_request``), so the answer never contradicts what is stored."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await app(scope, receive, tracked)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if started or task is None:
                raise
            task.uncancel()  # this request ends here, with an answer
            log.warning("%s %s cut off by the shutdown", scope["method"], scope["path"])
            await send_error(
                send,
                503,
                Code.SHUTTING_DOWN,
                "the server stopped before this request finished; nothing of it was stored, send it again",
                [(b"retry-after", b"5"), (b"connection", b"close")],
            )

    return middleware
