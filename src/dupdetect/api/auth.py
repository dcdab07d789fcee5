"""Who is calling: an API key (``Authorization: Bearer KEY`` or ``X-API-Key: KEY``) opens one
collection, and the services every data handler receives see that collection only."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from dupdetect.errors import DupdetectError
from dupdetect.keys import KeyRegistry
from dupdetect.runtime import Runtime
from dupdetect.store.base import DEFAULT_COLLECTION


def _presented_key(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return connection.headers.get("x-api-key") or None


async def _collection_of_key(connection: ASGIConnection[Any, Any, Any, Any], keys: KeyRegistry | None) -> str:
    key = _presented_key(connection)
    challenge = {"WWW-Authenticate": 'Bearer realm="dupdetect"'}
    if key is None:
        raise DupdetectError(
            "missing_api_key",
            "this service needs an API key: send `Authorization: Bearer KEY` or `X-API-Key: KEY`"
            " (an operator creates one with `dupdetect keys create --collection NAME`)",
            headers=challenge, status=401,
        )
    assert keys is not None  # auth on always opens the database
    collection = await keys.collection_for(key)
    if collection is None:
        raise DupdetectError("invalid_api_key", "the API key is unknown or revoked", headers=challenge, status=401)
    return collection


async def caller_collection(connection: ASGIConnection[Any, Any, Any, Any], runtime: Runtime) -> str:
    """The collection the caller's key opens (``default`` when auth is off); 401 without a valid key."""
    if not runtime.settings.server.auth_required:
        return DEFAULT_COLLECTION
    return await _collection_of_key(connection, runtime.keys)


async def metrics_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """/metrics needs a key (of any collection) unless DUPDETECT_METRICS_PUBLIC is set."""
    runtime: Runtime = connection.app.state.runtime
    server = runtime.settings.server
    if server.auth_required and not server.metrics_public:
        await _collection_of_key(connection, runtime.keys)


def rate_limit_identity(request: Request[Any, Any, Any]) -> str:
    """Rate limits count per API key (its id: the key itself is checked later), else per client address."""
    key = _presented_key(request) or ""
    if key.startswith("ddk_") and len(key) > 16:
        return f"key:{key[4:16]}"
    return f"address:{request.client.host if request.client else 'unknown'}"
