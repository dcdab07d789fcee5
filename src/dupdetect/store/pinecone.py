"""The Pinecone adapter, on the official SDK's async data-plane client.

What differs from pgvector, by Pinecone's nature:

- Eventual consistency: a write becomes visible to queries, fetches and listings a moment
  later. A request's images are compared with what is already visible plus, in memory, with
  the request's own earlier items; after an upsert or a delete the adapter waits until fetches
  reflect it (up to ``VISIBILITY_TIMEOUT``), so a GET right after a POST sees the new images.
  Two POSTs of the same photo within that moment may miss each other (pgvector compares
  concurrent ingests after they commit; Pinecone cannot say what a query did not see).
- No SQL and no recorded ``duplicates`` table: GET /duplicates without a threshold runs a live
  search at the default threshold, which gives the same pairs as recording them would.
- No transactions: a request's vectors are upserted in batches; a failure between batches can
  leave part of a request stored (the POST then fails and the request can be deleted by id).

Vector ids are ``{request_id}#{position:05d}#{image_id}``, so a request's images are listed by
id prefix in upload order; everything else lives in metadata (Pinecone stores no nulls, so
absent fields are left out).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import msgspec
import numpy as np
from pinecone import AsyncIndex, AsyncPinecone, ServerlessSpec
from pinecone.exceptions import RateLimitException, ServiceException

from dupdetect.embedding.perceptual import bands
from dupdetect.settings import StoreSettings
from dupdetect.store.base import (
    DEFAULT_COLLECTION,
    Candidate,
    CandidateSearch,
    ImageFacts,
    ModelMismatch,
    NewImage,
    Pair,
    Query,
    RequestInfo,
    RequestNotFound,
    StoredImage,
    unavailable_on,
)

log = logging.getLogger(__name__)

MAX_UPSERT_BYTES = 2 * 1024 * 1024
"""Pinecone's per-request limit; batches are sized to stay well under it."""
FETCH_IDS_PER_CALL = 40
"""Fetch takes ids in the query string: 40 of our ~90-character ids keep the URL under 4 kB."""
VISIBILITY_TIMEOUT = 15.0


def vector_id(request_id: uuid.UUID, position: int, image_id: uuid.UUID) -> str:
    return f"{request_id}#{position:05d}#{image_id}"


def _band_terms(phash: int) -> list[str]:
    """The hash's bytes as strings, so a ``$in`` filter finds images sharing any of them."""
    return [f"{i}:{value}" for i, value in enumerate(bands(phash))]


def _metadata(image: NewImage, request: RequestInfo, model: str, created_at: datetime) -> dict[str, Any]:
    """The image record (:class:`ImageFacts`, every field) and its request, in the types Pinecone
    keeps: strings, numbers, lists of strings, and no nulls."""
    fields: dict[str, Any] = {name: getattr(image, name) for name in ImageFacts.__struct_fields__}
    fields |= {
        "image_id": fields.pop("id"),
        "request_id": request.id,
        # 64-bit integers do not survive Pinecone's float numbers
        "phash": None if image.phash is None else str(image.phash),
        "phash_bands": None if image.phash is None else _band_terms(image.phash),
        "artefacts": image.artefacts or None,
        "model": model,
        "created_at": created_at,
        "request_created_at": request.created_at,
        "submitted": request.submitted,
        "added": request.added,
    }
    return {key: _plain(value) for key, value in fields.items() if value is not None}


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else str(value) if isinstance(value, uuid.UUID) else value


def _image(meta: dict[str, Any]) -> StoredImage:
    """What :func:`_metadata` wrote, read back (numbers come back as floats, the hash as a string,
    and what was null not at all)."""
    fields = {name: meta.get(name) for name in StoredImage.__struct_fields__}
    fields |= {"id": meta["image_id"], "artefacts": meta.get("artefacts", [])}
    return msgspec.convert(fields, StoredImage, strict=False)


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


UNAVAILABLE: tuple[type[BaseException], ...] = (ServiceException, RateLimitException, aiohttp.ClientError, OSError)
"""Pinecone answering 5xx or 429, or not reachable: a 503 with Retry-After for the caller."""


@unavailable_on(*UNAVAILABLE)
class PineconeStore:
    name = "pinecone"

    def __init__(self, index: AsyncIndex, *, dims: int, namespace: str, model: str) -> None:
        self.index = index
        self.base_namespace = self.namespace = namespace
        self.model = model
        # JSON floats are ~10 bytes each; leave room for metadata and the envelope.
        self.batch_size = max(1, min(1000, MAX_UPSERT_BYTES // 2 // (dims * 12 + 1024)))
        self._probe = np.zeros(dims, dtype=np.float32)
        self._probe[0] = 1.0  # Pinecone rejects all-zero query vectors: metadata lookups use this

    @classmethod
    async def open(cls, settings: StoreSettings, *, dims: int, model: str) -> PineconeStore:
        assert settings.pinecone_api_key
        if settings.pinecone_host:
            index = AsyncIndex(host=settings.pinecone_host, api_key=settings.pinecone_api_key)
        else:
            async with AsyncPinecone(api_key=settings.pinecone_api_key) as pc:
                if not await pc.has_index(settings.pinecone_index):
                    log.info("creating Pinecone index %s (%d dims, cosine)", settings.pinecone_index, dims)
                    await pc.create_index(
                        name=settings.pinecone_index,
                        dimension=dims,
                        metric="cosine",
                        spec=ServerlessSpec(cloud=settings.pinecone_cloud, region=settings.pinecone_region),
                    )
                host = (await pc.describe_index(settings.pinecone_index)).host
            if not host:
                raise ConnectionError(f"Pinecone reports no host for index {settings.pinecone_index}")
            index = AsyncIndex(host=host, api_key=settings.pinecone_api_key)
        store = cls(index, dims=dims, namespace=settings.pinecone_namespace, model=model)
        stats = await index.describe_index_stats()
        if stats.dimension is not None and stats.dimension != dims:
            await index.close()
            raise ModelMismatch(
                f"the Pinecone index has {stats.dimension} dimensions; the model makes {dims}. "
                "Use another DUPDETECT_PINECONE_INDEX or the model the index was made for."
            )
        return store

    def scoped(self, collection: str) -> PineconeStore:
        """A collection is a namespace: ``DUPDETECT_PINECONE_NAMESPACE`` itself for ``default``,
        with ``-<collection>`` appended for the others."""
        view = copy.copy(self)
        base = self.base_namespace
        view.namespace = base if collection == DEFAULT_COLLECTION else f"{base}-{collection}"
        return view

    async def close(self) -> None:
        await self.index.close()

    async def ping(self) -> None:
        await self.index.describe_index_stats()

    async def _query(self, vector: np.ndarray, top_k: int, metadata_filter: dict[str, Any]) -> list[tuple[StoredImage, float]]:
        if not np.any(vector):
            return []
        response = await self.index.query(
            vector=vector.tolist(), top_k=top_k, filter=metadata_filter, include_metadata=True, namespace=self.namespace
        )
        return [(_image(dict(m.metadata or {})), float(m.score)) for m in response.matches]

    async def check_model(self, model: str, allow_change: bool) -> None:
        other = await self._query(self._probe, 1, {"model": {"$ne": model}})
        if other and not allow_change:
            raise ModelMismatch(
                f"the Pinecone index holds vectors of another model ({other[0][0].model}); this service uses "
                f"{model}. Set DUPDETECT_MODEL/DUPDETECT_IMAGE_SIZE back, re-index into a new index, or set "
                "DUPDETECT_ALLOW_MODEL_CHANGE=true to start anyway (they are then never compared)."
            )

    async def _candidates(self, query: Query, *, model: str, k: int) -> list[Candidate]:
        same = {"model": {"$eq": model}}  # vectors of another descriptor are never compared, as in pgvector
        lookups = [
            self._query(query.vector, k, {"sha256": {"$eq": query.sha256}, **same}),
            self._query(query.vector, k, same),
        ]
        if query.phash is not None:
            lookups.append(self._query(query.vector, k, {"phash_bands": {"$in": _band_terms(query.phash)}, **same}))
        found = await asyncio.gather(*lookups)
        return [Candidate(image=image, similarity=score) for hits in found for image, score in hits]

    async def candidates(self, queries: list[Query], *, model: str, k: int) -> CandidateSearch:
        """Pinecone has no batched query: the lookups run concurrently instead."""
        found = await asyncio.gather(*(self._candidates(query, model=model, k=k) for query in queries))
        return CandidateSearch(found=list(found), seen=None)

    async def add_request(
        self, request_id: uuid.UUID, submitted: int, images: list[NewImage], pairs: list[Pair], *, model: str
    ) -> None:
        """``pairs`` are not kept: Pinecone has no table for them (reads search live)."""
        now = datetime.now(UTC)
        request = RequestInfo(id=request_id, created_at=now, submitted=submitted, added=len(images))
        ids = [vector_id(request_id, img.position, img.id) for img in images]
        await self.index.upsert(
            vectors=[
                {"id": vid, "values": img.vector.tolist(), "metadata": _metadata(img, request, model, now)}
                for vid, img in zip(ids, images, strict=True)
            ],
            namespace=self.namespace,
            batch_size=self.batch_size,
            show_progress=False,
        )
        await self._await_visibility(ids, present=True)

    async def concurrent_candidates(
        self, request_id: uuid.UUID, seen: str, *, model: str, k: int
    ) -> dict[uuid.UUID, list[Candidate]]:
        """Never asked: :meth:`candidates` reports no snapshot."""
        return {}

    async def settle(self, request_id: uuid.UUID, pairs: list[Pair], *, model: str) -> int:
        """Nothing to record: pairs are searched live."""
        return 0

    async def unsettled_requests(self, older_than_s: float) -> list[tuple[str, uuid.UUID]]:
        return []

    async def _await_visibility(self, ids: list[str], *, present: bool) -> None:
        """Read-after-write: wait until fetches see the write (or the delete)."""
        deadline = time.monotonic() + VISIBILITY_TIMEOUT
        pending = list(ids)
        while pending:
            seen: set[str] = set()
            for chunk in _chunks(pending, FETCH_IDS_PER_CALL):
                seen |= set((await self.index.fetch(ids=chunk, namespace=self.namespace)).vectors)
            pending = [vid for vid in pending if (vid in seen) != present]
            if pending and time.monotonic() > deadline:
                log.warning("%d Pinecone writes not visible after %.0fs", len(pending), VISIBILITY_TIMEOUT)
                return
            if pending:
                await asyncio.sleep(0.1)

    async def _list_ids(self, prefix: str) -> list[str]:
        ids: list[str] = []
        token: str | None = None
        while True:
            page = await self.index.list_paginated(prefix=prefix, limit=100, pagination_token=token, namespace=self.namespace)
            ids += [item.id for item in page.vectors if item.id]
            token = page.pagination.next if page.pagination else None
            if not token:
                return sorted(ids)

    async def _fetch(self, ids: list[str]) -> list[tuple[dict[str, Any], np.ndarray]]:
        out = []
        for chunk in _chunks(ids, FETCH_IDS_PER_CALL):
            vectors = (await self.index.fetch(ids=chunk, namespace=self.namespace)).vectors
            out += [
                (dict(vectors[vid].metadata or {}), np.asarray(vectors[vid].values, np.float32))
                for vid in chunk
                if vid in vectors
            ]
        return out

    async def request_images(self, request_id: uuid.UUID) -> list[tuple[StoredImage, np.ndarray]]:
        rows = await self._fetch(await self._list_ids(f"{request_id}#"))
        if not rows:
            raise RequestNotFound(str(request_id))
        return sorted(((_image(meta), vector) for meta, vector in rows), key=lambda pair: pair[0].position)

    async def get_request(self, request_id: uuid.UUID) -> RequestInfo | None:
        ids = await self._list_ids(f"{request_id}#")
        if not ids:
            return None
        meta, _ = (await self._fetch(ids[:1]))[0]
        return RequestInfo(
            id=request_id,
            created_at=datetime.fromisoformat(meta["request_created_at"]),
            submitted=int(meta["submitted"]),
            added=int(meta["added"]),
        )

    async def keypoints(self, image_ids: list[uuid.UUID]) -> dict[uuid.UUID, bytes]:
        """Keypoints (17 kB an image) are not kept in Pinecone's 40 kB of metadata: its pairs are
        judged on descriptor and hash alone (``DUPDETECT_UNVERIFIED_THRESHOLD``)."""
        return {}

    async def thumbnail(self, image_id: uuid.UUID) -> bytes | None:
        """Thumbnails are not kept in Pinecone (metadata is limited to 40 kB a vector)."""
        return None

    async def stored_names(self, hashes: list[str]) -> dict[str, set[str | None]]:
        found = await self._query(self._probe, min(10_000, 10 * len(hashes) + 1), {"sha256": {"$in": hashes}})
        names: dict[str, set[str | None]] = {}
        for image, _ in found:
            names.setdefault(image.sha256, set()).add(image.filename)
        return names

    async def _find(self, image_id: uuid.UUID) -> StoredImage | None:
        hits = await self._query(self._probe, 1, {"image_id": {"$eq": str(image_id)}})
        return hits[0][0] if hits else None

    async def get_image(self, image_id: uuid.UUID) -> StoredImage | None:
        return await self._find(image_id)

    async def delete_image(self, image_id: uuid.UUID) -> bool:
        image = await self._find(image_id)
        if image is None:
            return False
        ids = [vector_id(image.request_id, image.position, image.id)]
        await self.index.delete(ids=ids, namespace=self.namespace)
        await self._await_visibility(ids, present=False)
        return True

    async def delete_request(self, request_id: uuid.UUID) -> bool:
        ids = await self._list_ids(f"{request_id}#")
        for chunk in _chunks(ids, 1000):
            await self.index.delete(ids=chunk, namespace=self.namespace)
        await self._await_visibility(ids, present=False)
        return bool(ids)
