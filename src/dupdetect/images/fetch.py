"""Fetching image URLs without becoming a proxy into the operator's network (SSRF guard).

Every hop of a redirect chain is checked: the host's addresses must be public (not loopback,
private, link-local/cloud metadata, multicast, reserved) unless inside an allowed network;
the resolver hands aiohttp only checked addresses, and the address actually connected to is
checked once more. Bodies are streamed and cut off at the size limit.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import weakref
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from dupdetect import __version__
from dupdetect.error_codes import Code
from dupdetect.errors import DupdetectError
from dupdetect.settings import FetchSettings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class FetchError(DupdetectError, ValueError):
    """An image URL could not be fetched; the item gets this error."""

    status = 422


class _BlockedAddress(OSError):
    pass


_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[tuple[str, ipaddress.IPv4Address]]:
    """IPv4 addresses an IPv6 address carries, by the form that carries them: a gateway or the
    kernel may route to them, so they must pass the same rules."""
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    found: list[tuple[str, ipaddress.IPv4Address]] = []
    if address.ipv4_mapped is not None:
        found.append(("IPv4-mapped", address.ipv4_mapped))
    if address in _IPV4_COMPATIBLE and int(address) > 1:  # not :: or ::1, judged as themselves
        found.append(("IPv4-compatible", low32))
    if any(address in net for net in _NAT64):
        found.append(("NAT64", low32))
    if address.sixtofour is not None:
        found.append(("6to4", address.sixtofour))
    if address.teredo is not None:
        found += [("Teredo", embedded) for embedded in address.teredo]
    return found


def _ipv4_rule(address: IPAddress) -> str | None:
    """The rule that refuses ``address`` on its own, or None."""
    for rule, applies in (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local (cloud metadata)", address.is_link_local),
        ("private network", address.is_private),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("not globally routable", not address.is_global),
    ):
        if applies:
            return rule
    return None


class AddressPolicy:
    def __init__(self, allow: tuple[str, ...]) -> None:
        self.allow: list[Network] = [ipaddress.ip_network(net, strict=False) for net in allow]

    def _allowed(self, address: IPAddress) -> bool:
        return any(address.version == net.version and address in net for net in self.allow)

    def refusal(self, address: IPAddress) -> str | None:
        """Why ``address`` may not be fetched from (the rule, for the error message), or None."""
        if self._allowed(address):
            return None
        if isinstance(address, ipaddress.IPv6Address):
            for form, embedded in _embedded_ipv4(address):
                rule = None if self._allowed(embedded) else _ipv4_rule(embedded)
                if rule is not None:
                    return f"{form} address embedding a {rule} IPv4 address"
            if address.ipv4_mapped is not None:
                return None  # judged as the IPv4 address it is
        return _ipv4_rule(address)

    def permits(self, address: IPAddress) -> bool:
        return self.refusal(address) is None

    def check(self, host: str, address: str) -> None:
        """Raises naming the rule, not the address: errors must not map the operator's network."""
        rule = self.refusal(ipaddress.ip_address(address.split("%")[0]))
        if rule is not None:
            raise _BlockedAddress(f"{host} resolves to a non-public address ({rule})")


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
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, _BlockedAddress):
            return cause
        cause = getattr(cause, "os_error", None) or cause.__cause__
    return None


CONNECTIONS = 32
"""Fetch connections in all."""
CALLER_CONNECTIONS = CONNECTIONS // 2
"""Of which one caller's requests hold at most this many together: the rest are other callers'."""


class FetchBudget:
    """One request's share of the fetcher: a few connections at a time, within its caller's
    share (others' URLs are not starved), and a byte total under the request limit (URLs are
    not a way around it)."""

    def __init__(self, concurrency: int, max_bytes: int, caller_slots: asyncio.Semaphore) -> None:
        self.slots = asyncio.Semaphore(concurrency)
        self.caller_slots = caller_slots
        self.left = max_bytes
        self.max_bytes = max_bytes

    def spend(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise FetchError(Code.REQUEST_TOO_LARGE, f"the images of this request add up to more than {self.max_bytes:,} bytes")


class Fetcher:
    def __init__(self, settings: FetchSettings, *, max_bytes: int, max_request_bytes: int) -> None:
        self.settings = settings
        self.max_bytes = max_bytes
        self.max_request_bytes = max_request_bytes
        self.policy = AddressPolicy(settings.fetch_allow_networks)
        self._callers: weakref.WeakValueDictionary[str, asyncio.Semaphore] = weakref.WeakValueDictionary()
        """Each caller's share of the connections, alive while a request of theirs holds it."""
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=_GuardedResolver(self.policy), limit=CONNECTIONS),
            timeout=aiohttp.ClientTimeout(
                total=settings.fetch_connect_timeout + settings.fetch_read_timeout,
                sock_connect=settings.fetch_connect_timeout,
                sock_read=settings.fetch_read_timeout,
            ),
            headers={"User-Agent": f"dupdetect/{__version__} (+image duplicate detection)"},
            auto_decompress=False,
            trust_env=False,
        )

    async def close(self) -> None:
        await self._session.close()

    def _check_url(self, url: URL) -> None:
        if url.scheme not in ("http", "https") or not url.host:
            raise FetchError(Code.INVALID_URL, f"only http and https URLs with a host can be fetched: {url}")
        try:
            literal = ipaddress.ip_address(url.host.strip("[]"))
        except ValueError:
            return  # a name: the resolver checks its addresses
        rule = self.policy.refusal(literal)
        if rule is not None:
            raise FetchError(Code.URL_NOT_ALLOWED, f"{url.host} is a non-public address ({rule})")

    def budget(self, caller: str) -> FetchBudget:
        shared = self._callers.get(caller)
        if shared is None:
            shared = self._callers[caller] = asyncio.Semaphore(CALLER_CONNECTIONS)
        return FetchBudget(self.settings.fetch_concurrency, self.max_request_bytes, shared)

    async def fetch(self, raw_url: str, budget: FetchBudget | None = None) -> bytes:
        """The body of ``raw_url``, following at most ``fetch_max_redirects`` redirects."""
        budget = budget or self.budget("")
        async with budget.slots, budget.caller_slots:
            return await self._fetch(raw_url, budget)

    async def _fetch(self, raw_url: str, budget: FetchBudget) -> bytes:
        try:
            url = URL(raw_url)
        except (ValueError, TypeError) as exc:
            raise FetchError(Code.INVALID_URL, f"not a URL: {raw_url!r}") from exc
        for _ in range(self.settings.fetch_max_redirects + 1):
            self._check_url(url)
            try:
                async with self._session.get(url, allow_redirects=False) as response:
                    self._check_peer(url, response)
                    if response.status in (301, 302, 303, 307, 308) and "Location" in response.headers:
                        url = url.join(URL(response.headers["Location"]))
                        continue
                    if response.status != 200:
                        raise FetchError(Code.FETCH_FAILED, f"{url} answered HTTP {response.status}")
                    return await self._read(url, response, budget)
            except FetchError:
                raise
            except TimeoutError as exc:
                raise FetchError(Code.FETCH_TIMEOUT, f"{url} did not answer in time") from exc
            except ValueError as exc:  # e.g. a redirect to something that is not a URL
                raise FetchError(Code.FETCH_FAILED, f"cannot follow {url}: {exc}") from exc
            except (aiohttp.ClientError, OSError) as exc:
                blocked = _blocked_cause(exc)
                if blocked is not None:
                    raise FetchError(Code.URL_NOT_ALLOWED, str(blocked)) from exc
                raise FetchError(Code.FETCH_FAILED, f"cannot fetch {url}: {exc}") from exc
        raise FetchError(Code.TOO_MANY_REDIRECTS, f"more than {self.settings.fetch_max_redirects} redirects from {raw_url}")

    def _check_peer(self, url: URL, response: aiohttp.ClientResponse) -> None:
        connection: Any = response.connection
        peer = connection.transport.get_extra_info("peername") if connection and connection.transport else None
        if peer:
            try:
                self.policy.check(url.host or "", peer[0])
            except _BlockedAddress as exc:
                raise FetchError(Code.URL_NOT_ALLOWED, str(exc)) from exc

    async def _read(self, url: URL, response: aiohttp.ClientResponse, budget: FetchBudget) -> bytes:
        if response.content_length is not None and response.content_length > self.max_bytes:
            raise FetchError(Code.IMAGE_TOO_LARGE, f"{url} is {response.content_length:,} bytes; the limit is {self.max_bytes:,}")
        body = bytearray()
        async for chunk in response.content.iter_chunked(1 << 16):
            body += chunk
            budget.spend(len(chunk))
            if len(body) > self.max_bytes:
                raise FetchError(Code.IMAGE_TOO_LARGE, f"{url} is larger than the {self.max_bytes:,}-byte limit")
        return bytes(body)
