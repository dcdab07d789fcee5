"""What the service needs from a vector store, and the small value types it speaks.

The service and the API import only this module; adapters (pgvector, …) implement
:class:`VectorStore`.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

import msgspec
import numpy as np

Kind = Literal["exact", "near_exact", "near"]
T = TypeVar("T")


class ImageFacts(msgspec.Struct, frozen=True, kw_only=True):
    """What is known of an image whether it is about to be stored or stored already."""

    id: uuid.UUID
    position: int
    """Its place in the request that brought it."""
    filename: str | None
    url: str | None
    byte_size: int
    width: int
    height: int
    """Of the original, after EXIF orientation."""
    format: str
    sha256: str
    phash: int | None
    """64-bit perceptual hash; None when the image has too little detail for one (and for
    images stored before the near-exact tier existed)."""
    taken_at: datetime | None = None
    """When the photo was taken (EXIF, the camera's local time)."""
    camera_make: str | None = None
    camera_model: str | None = None
    content_width: int | None = None
    content_height: int | None = None
    """The picture inside any padding or transparent border (None: stored before it was measured)."""
    jpeg_quality: int | None = None
    """Estimated from the quantisation tables (JPEG only)."""
    detail_scale: float | None = None
    """Pixels per pixel of real detail, as read: about 1 for a photo at its own size (0.75–1.65),
    about 2 for a 2× upscale. With ``upscaled`` among the artefacts the picture holds the detail of
    ``content_width``×``content_height`` divided by it; below that, it tells copies of one
    picture apart (one larger than another that reads as many times higher was enlarged from
    it). 1 for images stored before it was read this way."""
    artefacts: list[str] = msgspec.field(default_factory=list)
    """Marks of editing: ``upscaled``, ``padded``, ``filled_corners`` (a rotation's filled canvas),
    ``decoded_jpeg`` (a lossless file holding a JPEG's pixels)."""


class NewImage(ImageFacts, frozen=True, kw_only=True):
    """An embedded image about to be stored."""

    thumbnail: bytes | None
    vector: np.ndarray
    keypoints: bytes | None = None
    """Packed local features (:mod:`dupdetect.embedding.geometry`) for geometric verification."""

    def stored(self, request_id: uuid.UUID, model: str, created_at: datetime) -> StoredImage:
        """How the image reads back once stored."""
        facts = {name: getattr(self, name) for name in ImageFacts.__struct_fields__}
        return StoredImage(**facts, request_id=request_id, model=model, created_at=created_at)


class StoredImage(ImageFacts, frozen=True, kw_only=True):
    request_id: uuid.UUID
    model: str
    """The descriptor its vector comes from."""
    created_at: datetime


Mark = Literal["keep", "trash"]


class MarkedImage(msgspec.Struct, frozen=True, kw_only=True):
    image: StoredImage
    mark: Mark
    marked_at: datetime


class PreviousMark(msgspec.Struct, frozen=True, kw_only=True):
    image_id: uuid.UUID
    mark: Mark | None


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
    matched_points: int | None = None
    """Keypoints one homography maps between the two images; None when not checked."""


class Query(msgspec.Struct, frozen=True, kw_only=True):
    """One image whose stored neighbours are wanted."""

    vector: np.ndarray
    sha256: str
    phash: int | None
    exclude: uuid.UUID | None = None
    """The image itself, when it is stored (its not-a-duplicate decisions apply too)."""
    keypoints: bytes | None = None


class Candidate(msgspec.Struct, frozen=True, kw_only=True):
    """A stored image near a query by vector, perceptual hash or bytes; the rules decide."""

    image: StoredImage
    similarity: float
    """Cosine similarity of the descriptors; 0 when the vectors are not comparable."""


class CandidateSearch(msgspec.Struct, frozen=True, kw_only=True):
    found: list[list[Candidate]]
    """Per query, in query order."""
    seen: str | None
    """What the search could see (a PostgreSQL snapshot): ingests committed outside it are
    compared after the write (:meth:`VectorStore.concurrent_candidates`). None: no such check."""


class Pair(msgspec.Struct, frozen=True, kw_only=True):
    """A duplicate pair to record: ``image_id`` was found to duplicate ``duplicate_id``."""

    image_id: uuid.UUID
    duplicate_id: uuid.UUID
    similarity: float
    kind: Kind
    matched_points: int | None = None


class GroupMember(msgspec.Struct, frozen=True, kw_only=True):
    """An image of a group, the pair that put it there, and what a person marked it."""

    image: StoredImage
    via: uuid.UUID | None = None
    """The image it was verified against: the group's best copy or a member joined to it;
    None for the best copy itself."""
    joined_as: Kind | None = None
    similarity: float | None = None
    matched_points: int | None = None
    mark: Mark | None = None


class DuplicateGroup(msgspec.Struct, frozen=True, kw_only=True):
    """Every copy of one picture (:mod:`dupdetect.review.grouping`), the keeper first."""

    id: uuid.UUID
    members: list[GroupMember]
    reason: str
    """Why the first member is the one to keep, in words."""

    @property
    def keep(self) -> StoredImage:
        return self.members[0].image


class StoredGroups(msgspec.Struct, frozen=True, kw_only=True):
    groups: list[DuplicateGroup]
    total: int
    """Groups in the collection."""


class RequestNotFound(LookupError):
    pass


DEFAULT_COLLECTION = "default"
"""Where everything goes without authentication (and everything stored before collections)."""


class OutcomeUnknown(RuntimeError):
    """The database went away during a request's commit: it may or may not be stored."""

    def __init__(self, request_id: uuid.UUID) -> None:
        super().__init__(f"the database failed while storing request {request_id}")
        self.request_id = request_id


class StoreUnavailable(RuntimeError):
    """The store does not answer now (the database is down, frozen or restarting; Pinecone
    answers 5xx or 429): the caller may retry after ``retry_after`` seconds. Adapters raise it
    in place of their driver's errors (:func:`unavailable_on`), so the API answers 503
    ``store_unavailable`` without knowing any driver."""

    def __init__(self, reason: str, *, retry_after: int = 2) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


def unavailable_on(*errors: type[BaseException]) -> Callable[[type[T]], type[T]]:
    """A class decorator for an adapter: ``errors`` raised by any of its public coroutine
    methods become :class:`StoreUnavailable`. What the adapter raises on purpose
    (:class:`OutcomeUnknown`, :class:`ModelMismatch`…) passes as it is."""

    def translate(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(method)
        async def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return await method(*args, **kwargs)
            except errors as exc:
                raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc

        return call

    def decorate(cls: type[T]) -> type[T]:
        for name, member in list(vars(cls).items()):
            if not name.startswith("_") and inspect.iscoroutinefunction(member):
                setattr(cls, name, translate(member))
        return cls

    return decorate


class ModelMismatch(RuntimeError):
    """Stored vectors come from another descriptor; the message says what to do."""


@runtime_checkable  # Litestar checks what dependencies provide
class VectorStore(Protocol):
    """A repository: it searches and writes. What counts as a duplicate is decided by
    :mod:`dupdetect.images.rules`, the same for every store."""

    name: str
    """What /ready reports: ``pgvector`` or ``pinecone``."""

    def scoped(self, collection: str) -> VectorStore:
        """The same store, seeing and writing one collection only (ids from others are unknown)."""

    async def check_model(self, model: str, allow_change: bool) -> None:
        """Raise ModelMismatch if vectors of another model are stored (unless allowed)."""

    async def candidates(self, queries: list[Query], *, model: str, k: int) -> CandidateSearch:
        """For every query in one round trip: the ``k`` nearest stored vectors of ``model``, the
        images with the same bytes and those sharing a perceptual-hash band."""

    async def add_request(
        self, request_id: uuid.UUID, submitted: int, images: list[NewImage], pairs: list[Pair], *, model: str
    ) -> None:
        """Store a request's images and the pairs found for them: one transaction. The request
        stays unsettled until :meth:`settle`. Raises OutcomeUnknown if the connection broke
        before the commit was confirmed."""

    async def concurrent_candidates(
        self, request_id: uuid.UUID, seen: str, *, model: str, k: int
    ) -> dict[uuid.UUID, list[Candidate]]:
        """Per image of the (committed) request, candidates among the images stored by
        ingests that ``seen`` did not include: uploads that ran at the same time."""

    async def settle(self, request_id: uuid.UUID, pairs: list[Pair], *, model: str) -> int:
        """Record late pairs (a pair already recorded either way round is kept as it is) and
        mark the request settled; returns the pairs newly recorded."""

    async def unsettled_requests(self, older_than_s: float) -> list[tuple[str, uuid.UUID]]:
        """(collection, request) of every collection whose pairs may be incomplete (a crash
        after commit, a bulk load)."""

    async def keypoints(self, image_ids: list[uuid.UUID]) -> dict[uuid.UUID, bytes]:
        """The stored local features of these images (those that have them)."""

    async def get_request(self, request_id: uuid.UUID) -> RequestInfo | None: ...

    async def request_images(self, request_id: uuid.UUID) -> list[tuple[StoredImage, np.ndarray]]:
        """The request's images with their vectors, in upload order. Raises RequestNotFound."""

    async def get_image(self, image_id: uuid.UUID) -> StoredImage | None: ...

    async def delete_image(self, image_id: uuid.UUID) -> bool:
        """True if it existed; its recorded pairs go with it."""

    async def delete_request(self, request_id: uuid.UUID) -> bool:
        """True if it existed; its images and their recorded pairs go with it."""

    async def thumbnail(self, image_id: uuid.UUID) -> bytes | None: ...

    async def stored_names(self, hashes: list[str]) -> dict[str, set[str | None]]:
        """For each of these SHA-256s that is stored, the file names it is stored under
        (resumable folder ingests skip a file already stored under its name, not its copies)."""

    async def ping(self) -> None:
        """Raise if the store cannot answer."""


@runtime_checkable
class ReviewStore(VectorStore, Protocol):
    """A store that also keeps what was found and decided (pgvector): recorded pairs, groups,
    people's decisions and marks. The API registers the routes that need them only for such a
    store."""

    def scoped(self, collection: str) -> ReviewStore: ...

    async def recorded_duplicates(self, request_id: uuid.UUID) -> list[tuple[StoredImage, list[Match]]]:
        """Per image of the request, in upload order, the pairs recorded at ingest (both directions).
        Raises RequestNotFound."""

    async def group_inputs(self) -> tuple[int, list[StoredImage], list[Pair]]:
        """What groups are made of: the version of the collection's pairs (every write that
        changes them moves it), the images with pairs, and the pairs."""

    async def groups_built(self) -> bool:
        """Whether the stored groups are those of the current pairs."""

    async def stale_groups(self) -> list[str]:
        """The collections (all of them, whatever the scope) whose stored groups are out of date."""

    async def replace_groups(self, version: int, groups: list[DuplicateGroup]) -> None:
        """Store the groups made from ``version`` (unless newer ones are stored meanwhile)."""

    async def groups(self, *, offset: int, limit: int | None) -> StoredGroups:
        """Stored groups, largest first, with each member's mark."""

    async def mark_not_duplicate(self, a: uuid.UUID, b: uuid.UUID) -> bool:
        """Record a person's decision; later searches and groups leave the pair out.
        False if either image does not exist."""

    async def unmark_not_duplicate(self, a: uuid.UUID, b: uuid.UUID) -> bool:
        """Withdraw a decision; False if there was none."""

    async def set_marks(self, image_ids: list[uuid.UUID], mark: Mark | None) -> int:
        """Mark images keep or trash (None clears); returns how many of them exist."""

    async def marked_images(self) -> list[MarkedImage]:
        """Every marked image, oldest mark first."""

    async def replace_marks(self, keep: list[uuid.UUID], trash: list[uuid.UUID]) -> list[PreviousMark]:
        """Mark these images keep and those trash, in one transaction; returns their marks as
        they were (for an undo)."""


@runtime_checkable
class BulkStore(VectorStore, Protocol):
    """A store whose tables this process owns (pgvector): folders loaded in bulk with the index
    built afterwards, byte-identical copies stored without decoding, re-embedding after a model
    change. The commands that need these refuse other stores."""

    def scoped(self, collection: str) -> BulkStore: ...

    def bulk_load(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Rows added inside go in without the HNSW index, which is built once at the end."""

    async def image_count(self) -> int:
        """Images in every collection (the bulk-load decision is about the whole index)."""

    async def add_copies(self, request_id: uuid.UUID, copies: list[tuple[int, str, str]]) -> None:
        """Store files whose bytes are stored already, as (position, file name, SHA-256), with the
        stored image's vector, hash, keypoints and thumbnail; the request stays unsettled."""

    async def collections(self) -> list[str]: ...

    async def stale_images(self, model: str) -> list[StoredImage]:
        """Images whose vectors come from another model."""

    async def replace_embedding(
        self, image_id: uuid.UUID, vector: np.ndarray, phash: int | None, keypoints: bytes | None, *, model: str
    ) -> None:
        """Swap in a vector of ``model`` (and the hash and keypoints of this version); its near
        pairs go (exact ones stay) until searched again."""
