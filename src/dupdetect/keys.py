"""API keys: each opens one collection. A key is ``ddk_<id>_<secret>``; only the SHA-256 of
the secret is stored (the secret is 256 random bits, so a fast hash is enough)."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime

import asyncpg
import msgspec

from dupdetect.database import CONNECTION_LOST
from dupdetect.errors import OperatorError
from dupdetect.store.base import unavailable_on

COLLECTION_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_TOKEN = re.compile(r"^ddk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


class InvalidCollection(OperatorError):
    pass


class ApiKey(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    collection: str
    label: str
    created_at: datetime
    revoked_at: datetime | None


class IssuedKey(msgspec.Struct, frozen=True, kw_only=True):
    key: ApiKey
    token: str
    """Shown once: only its hash is kept."""


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def check_collection(name: str) -> str:
    if not COLLECTION_NAME.match(name):
        raise InvalidCollection(
            f"collection {name!r} is not valid: 1–63 characters of a–z, 0–9, '_' and '-', starting with a letter or digit"
        )
    return name


@unavailable_on(*CONNECTION_LOST)
class KeyRegistry:
    """Reads and writes ``api_keys`` (and creates collections on first use)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def create(self, collection: str, label: str = "") -> IssuedKey:
        key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("INSERT INTO collections (name) VALUES ($1) ON CONFLICT DO NOTHING", check_collection(collection))
            row = await conn.fetchrow(
                "INSERT INTO api_keys (id, collection, secret_sha256, label) VALUES ($1, $2, $3, $4)"
                " RETURNING id, collection, label, created_at, revoked_at",
                key_id,
                collection,
                _digest(secret),
                label,
            )
        return IssuedKey(key=ApiKey(**dict(row)), token=f"ddk_{key_id}_{secret}")

    async def list(self) -> list[ApiKey]:
        rows = await self.pool.fetch("SELECT id, collection, label, created_at, revoked_at FROM api_keys ORDER BY created_at")
        return [ApiKey(**dict(row)) for row in rows]

    async def revoke(self, key_id: str) -> bool:
        revoked = await self.pool.fetchval(
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 RETURNING true", key_id
        )
        return revoked is not None

    async def collection_for(self, token: str) -> str | None:
        """The collection a presented key opens; None for a malformed, unknown or revoked key."""
        match = _TOKEN.match(token)
        if match is None:
            return None
        key_id, secret = match.groups()
        row = await self.pool.fetchrow(
            "SELECT collection, secret_sha256 FROM api_keys WHERE id = $1 AND revoked_at IS NULL", key_id
        )
        if row is None or not hmac.compare_digest(bytes(row["secret_sha256"]), _digest(secret)):
            return None
        return str(row["collection"])
