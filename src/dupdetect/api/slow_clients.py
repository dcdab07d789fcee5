"""uvicorn waits forever for a request's headers: a client that sends them a byte at a time
(slowloris) holds a connection open indefinitely. This protocol closes a connection whose
request headers are not complete within the limit; the body has its own timeout (images/body)."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


class HeaderDeadline(H11Protocol):
    def __init__(self, *args: Any, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop()
        super().connection_lost(exc)

    def _waiting_for_headers(self) -> bool:
        return self.conn.their_state is h11.IDLE and not self.transport.is_closing()

    def _watch(self) -> None:
        if not self._waiting_for_headers():
            self._stop()
        elif self._deadline is None:
            self._deadline = self.loop.call_later(self.header_timeout, self._expire)

    def _stop(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self._waiting_for_headers():
            self.transport.close()


def with_header_timeout(seconds: float) -> Any:
    """The ``http`` protocol for ``uvicorn.Config``."""
    return functools.partial(HeaderDeadline, header_timeout=seconds)
