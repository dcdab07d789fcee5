"""Who is calling: an API key (``Authorization: Bearer KEY`` or ``X-API-Key: KEY``) opens one
collection, and the services every data handler receives see that collection only.

The key is checked by a guard, before the body is read and before any dependency runs; the
collection it opens is left in the request's state for the dependency providers."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from dupdetect.api.limits import MinuteCounter, client_address
from dupdetect.error_codes import Code
from dupdetect.errors import DupdetectError
from dupdetect.keys import KeyRegistry
from dupdetect.runtime import Runtime
from dupdetect.settings import ServerSettings
from dupdetect.store.base import DEFAULT_COLLECTION


def _presented_key(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return connection.headers.get("x-api-key") or None


async def _collection_of_key(connection: ASGIConnection[Any, Any, Any, Any], keys: KeyRegistry | None) -> tuple[str, str]:
    """The collection a valid key opens, and the key's id; 401 otherwise."""
    key = _presented_key(connection)
    challenge = {"WWW-Authenticate": 'Bearer realm="dupdetect"'}
    if key is None:
        raise DupdetectError(
            Code.MISSING_API_KEY,
            "this service needs an API key: send `Authorization: Bearer KEY` or `X-API-Key: KEY`"
            " (an operator creates one with `dupdetect keys create --collection NAME`)",
            headers=challenge,
            status=401,
        )
    assert keys is not None  # auth on always opens the database
    collection = await keys.collection_for(key)
    if collection is None:
        raise DupdetectError(Code.INVALID_API_KEY, "the API key is unknown or revoked", headers=challenge, status=401)
    return collection, key[4:16]  # the id part of ddk_<id>_<secret>, verified with the secret


class CallerLimits:
    """The per-minute counters of one app (``app.state.caller_limits``)."""

    def __init__(self, server: ServerSettings) -> None:
        self.requests = MinuteCounter(server.rate_limit, "requests")
        """Per verified key; per address when auth is off."""
        self.failures = MinuteCounter(server.auth_failure_limit, "requests with a missing or invalid API key")
        """Per address: over it, the address's requests are refused before any key look-up."""


async def authenticated(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Guard of the data routes (not of those with ``opt={"public": True}``): 401 without a
    valid key when auth is on, 429 over the rate limits; sets ``connection.state.collection``."""
    if handler.opt.get("public"):
        return
    runtime: Runtime = connection.app.state.runtime
    limits: CallerLimits = connection.app.state.caller_limits
    address = client_address(connection.scope.get("client"))
    if not runtime.settings.server.auth_required:
        limits.requests.hit(address)
        connection.state.collection = DEFAULT_COLLECTION
        return
    try:  # (an address over its failure limit was refused before routing: api/limits.client_limits)
        collection, key_id = await _collection_of_key(connection, runtime.keys)
    except DupdetectError:
        limits.failures.hit(address)
        raise
    limits.requests.hit(f"key:{key_id}")
    connection.state.collection = collection


def caller_collection(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The collection the guard found for this request."""
    collection: str = connection.state.collection
    return collection


async def metrics_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """/metrics needs a key (of any collection) unless DUPDETECT_METRICS_PUBLIC is set."""
    runtime: Runtime = connection.app.state.runtime
    server = runtime.settings.server
    if server.auth_required and not server.metrics_public:
        await _collection_of_key(connection, runtime.keys)
