"""Requests a browser could be tricked into sending: a foreign Host (DNS rebinding) or a
write from another site's page (a cross-site form needs no key on a loopback service)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from urllib.parse import urlsplit

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from dupdetect.api.errors import send_error
from dupdetect.error_codes import Code
from dupdetect.settings import ServerSettings

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def _hostname(authority: str) -> str:
    """``host[:port]`` or ``[v6]:port`` -> the host, lower case."""
    return (urlsplit(f"//{authority}").hostname or "").lower()


def allowed_hosts(server: ServerSettings) -> tuple[str, ...]:
    """DUPDETECT_ALLOWED_HOSTS, or by default the loopback names when listening on loopback
    (where rebinding matters: no key is needed) and any host otherwise."""
    if server.allowed_hosts:
        return tuple(host.lower() for host in server.allowed_hosts)
    try:
        loopback = server.host == "localhost" or ipaddress.ip_address(server.host).is_loopback
    except ValueError:
        loopback = False
    return LOOPBACK_NAMES if loopback else ("*",)


def _host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    return any(
        pattern == "*" or host == pattern or (pattern.startswith("*.") and host.endswith(pattern[1:])) for pattern in allowed
    )


def _same_origin(origin: str | None, host: str) -> bool:
    if origin is None:  # not sent by a browser's cross-site machinery (curl, SDKs, same-origin GETs)
        return True
    # "null": a sandboxed frame or a file:// page, hiding where it comes from
    return origin != "null" and urlsplit(origin).netloc.lower() == host.lower()


def trusted_requests(server: ServerSettings) -> Callable[[ASGIApp], ASGIApp]:
    allowed = allowed_hosts(server)

    def middleware_factory(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
            host = headers.get("host", "")
            if not _host_allowed(_hostname(host), allowed):
                await send_error(
                    send,
                    400,
                    Code.HOST_NOT_ALLOWED,
                    f"the Host header {host!r} is not one this service answers to (DUPDETECT_ALLOWED_HOSTS)",
                )
                return
            if scope["method"] not in _SAFE_METHODS and not _same_origin(headers.get("origin"), host):
                await send_error(
                    send,
                    403,
                    Code.CROSS_ORIGIN_WRITE,
                    "writes from another site's page are refused; call the API directly",
                )
                return
            await app(scope, receive, send)

        return middleware

    return middleware_factory
