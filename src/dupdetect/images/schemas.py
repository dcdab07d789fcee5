"""The JSON of the image routes, as msgspec Structs (also what /schema documents)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

import msgspec
from litestar.openapi.spec import OpenAPIFormat, OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema

from dupdetect.images.body import ItemError
from dupdetect.images.prepare import Outcome
from dupdetect.store.base import Match, RequestInfo, StoredImage


class IngestItem(msgspec.Struct, omit_defaults=True, kw_only=True):
    """One item of the POST, by its position: stored (``image_id``) or refused (``error``)."""

    index: int
    image_id: uuid.UUID | None = None
    error: ItemError | None = None
    duplicates: int | None = None
    """How many stored images it duplicates (see GET /duplicates/{request_id})."""

    @classmethod
    def of(cls, outcome: Outcome) -> IngestItem:
        """An item's outcome as the API (and the folder commands) report it."""
        if outcome.error is not None:
            return cls(index=outcome.index, error=outcome.error)
        return cls(index=outcome.index, image_id=outcome.image_id, duplicates=len(outcome.duplicates))


class IngestResponse(msgspec.Struct, kw_only=True):
    request_id: uuid.UUID
    added: int
    items: list[IngestItem]


class Duplicate(msgspec.Struct, kw_only=True):
    image_id: uuid.UUID
    request_id: uuid.UUID
    filename: str | None
    """The upload's file name, or the URL it was fetched from."""
    similarity: float
    """Cosine similarity of the descriptors; 1.0 for exact (byte-identical) duplicates."""
    kind: Literal["exact", "near_exact", "near"]
    """exact: same bytes; near_exact: the perceptual hashes agree as well; near: the
    descriptors agree and the geometry confirms it."""
    matched_points: int | None
    """Keypoints one homography maps between the two images (the geometric check); null when
    the pair was not checked (exact copies, near-exact pairs with a similarity ≥ 0.95,
    images without texture or without stored keypoints)."""


class ImageDuplicates(msgspec.Struct, kw_only=True):
    image_id: uuid.UUID
    filename: str | None
    duplicates: list[Duplicate]


class DuplicatesResponse(msgspec.Struct, kw_only=True):
    request_id: uuid.UUID
    images: list[ImageDuplicates]
    message: str


class SearchItem(msgspec.Struct, omit_defaults=True, kw_only=True):
    """One item of POST /search, by its position: its duplicates among the stored images, or its error."""

    index: int
    duplicates: list[Duplicate]
    """Strongest first; empty when none, or when the item has an ``error``."""
    error: ItemError | None = None


class SearchResponse(msgspec.Struct, kw_only=True):
    items: list[SearchItem]
    message: str


Sha256 = Annotated[str, msgspec.Meta(pattern="^[0-9a-fA-F]{64}$", description="hex SHA-256 of a file")]


class KnownHashes(msgspec.Struct, kw_only=True):
    sha256: Annotated[list[Sha256], msgspec.Meta(max_length=1000)]
    """Hex SHA-256s of files."""


class KnownFiles(msgspec.Struct, kw_only=True):
    sha256: list[str]
    """Those of the hashes asked about that are stored."""
    filenames: dict[str, list[str]]
    """Per stored hash, the file names it is stored under (a copy under another name is new)."""


class RequestOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    created_at: datetime
    submitted: int
    added: int
    images: list[StoredImage]


def shown_name(image: StoredImage) -> str | None:
    """How an image is named in answers: its file name, else the URL it was fetched from."""
    return image.filename if image.filename is not None else image.url


def request_out(info: RequestInfo, images: list[StoredImage]) -> RequestOut:
    return RequestOut(**msgspec.structs.asdict(info), images=images)


def duplicate_out(match: Match) -> Duplicate:
    return Duplicate(
        image_id=match.image.id,
        request_id=match.image.request_id,
        filename=shown_name(match.image),
        similarity=round(match.similarity, 4),
        kind=match.kind,
        matched_points=match.matched_points,
    )


_STRING = Schema(type=OpenAPIType.STRING)
_ENTRY = Schema(
    type=OpenAPIType.OBJECT,
    description="Exactly one of base64 or url.",
    properties={
        "base64": Schema(type=OpenAPIType.STRING, description="Image bytes; a data:image/…;base64, prefix is allowed."),
        "url": Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.URI, description="http(s) URL to fetch the image from."),
        "filename": _STRING,
    },
    additional_properties=False,
)
_IMAGES_BODY = RequestBody(
    required=True,
    description="Up to DUPDETECT_MAX_IMAGES_PER_REQUEST images of at most DUPDETECT_MAX_IMAGE_BYTES each.",
    content={
        "multipart/form-data": OpenAPIMediaType(
            schema=Schema(
                type=OpenAPIType.OBJECT,
                properties={
                    "files": Schema(type=OpenAPIType.ARRAY, items=Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY))
                },
                required=["files"],
            )
        ),
        "application/json": OpenAPIMediaType(
            schema=Schema(
                type=OpenAPIType.OBJECT,
                properties={"images": Schema(type=OpenAPIType.ARRAY, items=_ENTRY)},
                required=["images"],
            )
        ),
    },
)


@dataclass
class ImagesOperation(Operation):
    """POST /images reads its body as a stream (to cut oversized uploads off), so its two body
    forms are documented here rather than inferred from a handler parameter."""

    def __post_init__(self) -> None:
        self.request_body = _IMAGES_BODY
