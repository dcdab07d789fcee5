"""What the service needs from a vector store, and the small value types it speaks.

The service and the API import only this module; adapters (pgvector, …) implement
:class:`VectorStore`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal, Protocol

import msgspec
import numpy as np

Kind = Literal["exact", "near_exact", "near"]


class NewImage(msgspec.Struct, frozen=True, kw_only=True):
    """An embedded image about to be stored."""

    id: uuid.UUID
    position: int
    filename: str | None
    url: str | None
    byte_size: int
    width: int
    height: int
    format: str
    sha256: str
    phash: int
    thumbnail: bytes | None
    vector: np.ndarray


class StoredImage(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    request_id: uuid.UUID
    position: int
    filename: str | None
    url: str | None
    byte_size: int
    width: int
    height: int
    format: str
    sha256: str
    phash: int | None
    """64-bit perceptual hash; None for images stored before the near-exact tier existed."""
    model: str
    created_at: datetime


class RequestInfo(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    created_at: datetime
    submitted: int
    added: int


class Match(msgspec.Struct, frozen=True, kw_only=True):
    """``image`` duplicates the image it was found for."""

    image: StoredImage
    similarity: float
    kind: Kind


class SearchQuery(msgspec.Struct, frozen=True, kw_only=True):
    """Find the stored duplicates of one image (exact by SHA-256, near by cosine)."""

    vector: np.ndarray
    sha256: str
    phash: int | None
    exclude: uuid.UUID | None = None
    """The image itself, when it is stored."""


class Thresholds(msgspec.Struct, frozen=True, kw_only=True):
    """When a candidate counts as a duplicate, and how many to report per image."""

    near: float
    """Cosine similarity floor of the near tier."""
    near_exact: int
    """Largest Hamming distance between perceptual hashes for the near-exact tier."""
    limit: int


class RequestNotFound(LookupError):
    pass


class Unsupported(NotImplementedError):
    """The configured store cannot do this (e.g. Pinecone has no groups)."""


class ModelMismatch(RuntimeError):
    """Stored vectors come from another descriptor; the message says what to do."""


class VectorStore(Protocol):
    async def check_model(self, model: str, allow_change: bool) -> None:
        """Raise ModelMismatch if vectors of another model are stored (unless allowed)."""

    async def add_request(
        self,
        request_id: uuid.UUID,
        submitted: int,
        images: list[NewImage],
        *,
        model: str,
        rules: Thresholds,
    ) -> list[list[Match]]:
        """Store a request's images and record, per image, its duplicates among everything
        stored before it (other requests and earlier items of this one): one transaction."""

    async def recorded_duplicates(self, request_id: uuid.UUID) -> list[tuple[StoredImage, list[Match]]]:
        """Per image of the request, in upload order, the pairs recorded at ingest (both directions).
        Raises RequestNotFound."""

    async def search(self, queries: list[SearchQuery], *, model: str, rules: Thresholds) -> list[list[Match]]:
        """Live search among all stored images, per query, best first."""

    async def get_request(self, request_id: uuid.UUID) -> RequestInfo | None: ...

    async def request_images(self, request_id: uuid.UUID) -> list[tuple[StoredImage, np.ndarray]]:
        """The request's images with their vectors, in upload order. Raises RequestNotFound."""

    async def get_image(self, image_id: uuid.UUID) -> StoredImage | None: ...

    async def delete_image(self, image_id: uuid.UUID) -> bool:
        """True if it existed; its recorded pairs go with it."""

    async def delete_request(self, request_id: uuid.UUID) -> bool:
        """True if it existed; its images and their recorded pairs go with it."""

    async def thumbnail(self, image_id: uuid.UUID) -> bytes | None: ...

    async def known_sha256(self, hashes: list[str]) -> set[str]:
        """Which of these SHA-256s are stored (resumable folder ingests)."""

    async def mark_not_duplicate(self, a: uuid.UUID, b: uuid.UUID) -> bool:
        """Record a person's decision; later searches and groups leave the pair out.
        False if either image does not exist. May raise Unsupported."""

    async def recorded_pairs(self) -> list[tuple[uuid.UUID, uuid.UUID]]:
        """Every recorded duplicate pair, once. May raise Unsupported."""

    async def get_images(self, ids: list[uuid.UUID]) -> list[StoredImage]: ...

    async def ping(self) -> None:
        """Raise if the store cannot answer."""
