"""Fetching image URLs without becoming a proxy into the operator's network (SSRF guard).

Every hop of a redirect chain is checked: the host's addresses must be public (not loopback,
private, link-local/cloud metadata, multicast, reserved) unless inside an allowed network;
the resolver hands aiohttp only checked addresses, and the address actually connected to is
checked once more. Bodies are streamed and cut off at the size limit.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from dupdetect.settings import FetchSettings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class FetchError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _BlockedAddress(OSError):
    pass


class AddressPolicy:
    def __init__(self, allow: tuple[str, ...]) -> None:
        self.allow: list[Network] = [ipaddress.ip_network(net, strict=False) for net in allow]

    def permits(self, address: IPAddress) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in net for net in self.allow):
            return True
        return address.is_global and not address.is_multicast

    def check(self, host: str, address: str) -> None:
        if not self.permits(ipaddress.ip_address(address.split("%")[0])):
            raise _BlockedAddress(f"{host} resolves to {address}, a non-public address")


class _GuardedResolver(AbstractResolver):
    """Resolves like aiohttp does, then drops every address the policy forbids."""

    def __init__(self, policy: AddressPolicy) -> None:
        self._policy = policy
        self._inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = [r for r in results if self._policy.permits(ipaddress.ip_address(r["host"]))]
        if not allowed:
            self._policy.check(host, results[0]["host"])  # raises with the first address named
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def _blocked_cause(exc: BaseException) -> _BlockedAddress | None:
    while exc is not None:
        if isinstance(exc, _BlockedAddress):
            return exc
        exc = getattr(exc, "os_error", None) or exc.__cause__  # type: ignore[assignment]
    return None


class Fetcher:
    def __init__(self, settings: FetchSettings, *, max_bytes: int) -> None:
        self.settings = settings
        self.max_bytes = max_bytes
        self.policy = AddressPolicy(settings.fetch_allow_networks)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=_GuardedResolver(self.policy), limit=32),
            timeout=aiohttp.ClientTimeout(
                total=settings.fetch_connect_timeout + settings.fetch_read_timeout,
                sock_connect=settings.fetch_connect_timeout,
                sock_read=settings.fetch_read_timeout,
            ),
            headers={"User-Agent": "dupdetect/0.1 (+image duplicate detection)"},
            auto_decompress=False,
            trust_env=False,
        )

    async def close(self) -> None:
        await self._session.close()

    def _check_url(self, url: URL) -> None:
        if url.scheme not in ("http", "https") or not url.host:
            raise FetchError("invalid_url", f"only http and https URLs with a host can be fetched: {url}")
        try:
            literal = ipaddress.ip_address(url.host.strip("[]"))
        except ValueError:
            return  # a name: the resolver checks its addresses
        if not self.policy.permits(literal):
            raise FetchError("url_not_allowed", f"{url.host} is a non-public address")

    async def fetch(self, raw_url: str) -> bytes:
        """The body of ``raw_url``, following at most ``fetch_max_redirects`` redirects."""
        try:
            url = URL(raw_url)
        except (ValueError, TypeError) as exc:
            raise FetchError("invalid_url", f"not a URL: {raw_url!r}") from exc
        for _ in range(self.settings.fetch_max_redirects + 1):
            self._check_url(url)
            try:
                async with self._session.get(url, allow_redirects=False) as response:
                    self._check_peer(url, response)
                    if response.status in (301, 302, 303, 307, 308) and "Location" in response.headers:
                        url = url.join(URL(response.headers["Location"]))
                        continue
                    if response.status != 200:
                        raise FetchError("fetch_failed", f"{url} answered HTTP {response.status}")
                    return await self._read(url, response)
            except FetchError:
                raise
            except TimeoutError as exc:
                raise FetchError("fetch_timeout", f"{url} did not answer in time") from exc
            except ValueError as exc:  # e.g. a redirect to something that is not a URL
                raise FetchError("fetch_failed", f"cannot follow {url}: {exc}") from exc
            except (aiohttp.ClientError, OSError) as exc:
                blocked = _blocked_cause(exc)
                if blocked is not None:
                    raise FetchError("url_not_allowed", str(blocked)) from exc
                raise FetchError("fetch_failed", f"cannot fetch {url}: {exc}") from exc
        raise FetchError("too_many_redirects", f"more than {self.settings.fetch_max_redirects} redirects from {raw_url}")

    def _check_peer(self, url: URL, response: aiohttp.ClientResponse) -> None:
        connection: Any = response.connection
        peer = connection.transport.get_extra_info("peername") if connection and connection.transport else None
        if peer:
            try:
                self.policy.check(url.host or "", peer[0])
            except _BlockedAddress as exc:
                raise FetchError("url_not_allowed", str(exc)) from exc

    async def _read(self, url: URL, response: aiohttp.ClientResponse) -> bytes:
        if response.content_length is not None and response.content_length > self.max_bytes:
            raise FetchError(
                "image_too_large", f"{url} is {response.content_length:,} bytes; the limit is {self.max_bytes:,}"
            )
        body = bytearray()
        async for chunk in response.content.iter_chunked(1 << 16):
            body += chunk
            if len(body) > self.max_bytes:
                raise FetchError("image_too_large", f"{url} is larger than the {self.max_bytes:,}-byte limit")
        return bytes(body)
