"""What one client may send or hold: requests per minute per verified API key (per address
without auth), failed key attempts per address, and requests in flight per address.

Counting happens after the key is checked: a key id is not an identity until its secret
matched, so requests made up in a victim's key id count against their sender's address.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from dupdetect.api.errors import send_error
from dupdetect.error_codes import Code
from dupdetect.errors import DupdetectError

MAX_TRACKED = 100_000
"""Identities counted per minute; past this many (a flood of addresses), the window restarts."""


class MinuteCounter:
    """Hits per identity in the current clock minute (fixed windows: the simplest honest limit)."""

    def __init__(self, per_minute: int, what: str) -> None:
        self.per_minute = per_minute
        self.what = what
        self._minute = 0
        self._hits: collections.Counter[str] = collections.Counter()

    def hit(self, identity: str) -> None:
        """Count one; raises 429 ``too_many_requests`` when over, with Retry-After for the next minute."""
        if self.per_minute:
            self._hits_now()[identity] += 1
            self._refuse_over(identity, self.per_minute)

    def check(self, identity: str) -> None:
        """Raises 429 if ``identity`` has used its minute up, counting nothing."""
        if self.per_minute:
            self._refuse_over(identity, self.per_minute - 1)

    def _hits_now(self) -> collections.Counter[str]:
        minute = int(time.time() // 60)
        if minute != self._minute or len(self._hits) > MAX_TRACKED:
            self._minute, self._hits = minute, collections.Counter()
        return self._hits

    def _refuse_over(self, identity: str, allowed: int) -> None:
        if self._hits_now().get(identity, 0) > allowed:
            retry = max(1, int(60 - time.time() % 60) + 1)
            raise DupdetectError(
                Code.TOO_MANY_REQUESTS,
                f"more than {self.per_minute} {self.what} a minute; retry in {retry} s",
                status=429,
                headers={"Retry-After": str(retry)},
            )


def client_address(client: tuple[str, int] | None) -> str:
    """How limits name a client: its address (behind a proxy, the proxy's)."""
    return f"address:{client[0] if client else 'unknown'}"


def client_limits(
    per_client: int, failures: MinuteCounter, exempt: tuple[str, ...] = ("/health", "/ready")
) -> Callable[[ASGIApp], ASGIApp]:
    """ASGI middleware factory, before any routing: an address over its failed-key limit gets
    429 at once (the cheapest answer there is), and an address with ``per_client`` requests
    running gets 429 for the next one (slow clients cannot hold every connection)."""
    running: collections.Counter[str] = collections.Counter()

    def factory(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP or scope["path"] in exempt:
                await app(scope, receive, send)
                return
            address = client_address(scope.get("client"))
            try:
                failures.check(address)
            except DupdetectError as exc:
                await send_error(send, exc.status, exc.code, exc.message, [(b"retry-after", exc.headers["Retry-After"].encode())])
                return
            if running[address] >= per_client:
                await send_error(
                    send,
                    429,
                    Code.TOO_MANY_REQUESTS_IN_FLIGHT,
                    f"{per_client} requests from this address are still running (DUPDETECT_MAX_REQUESTS_PER_CLIENT)",
                    [(b"retry-after", b"1")],
                )
                return
            running[address] += 1
            try:
                await app(scope, receive, send)
            finally:
                running[address] -= 1
                if not running[address]:
                    del running[address]

        return middleware

    return factory
