"""The image record through Pinecone's metadata and back: every field of it, whatever Pinecone
does to types (numbers as floats, no nulls, 64-bit hashes as strings)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import numpy as np

from dupdetect.store.base import ImageFacts, NewImage, RequestInfo
from dupdetect.store.pinecone import _image, _metadata


def _through_pinecone(meta: dict[str, object]) -> dict[str, object]:
    """JSON, with every integer as a float, as Pinecone's numbers come back."""
    return json.loads(json.dumps(meta), parse_int=float)


def test_every_field_comes_back_as_stored_and_what_is_empty_stays_empty() -> None:
    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    request = RequestInfo(id=uuid.uuid4(), created_at=now, submitted=3, added=2)
    full = NewImage(
        id=uuid.uuid4(),
        position=4,
        filename="a.jpg",
        url="https://example.com/a.jpg",
        byte_size=123_456,
        width=4000,
        height=3000,
        format="JPEG",
        sha256="ab" * 32,
        phash=2**64 - 1,
        thumbnail=b"t",
        vector=np.ones(4, np.float32),
        taken_at=datetime(2019, 5, 1, 10, 0),
        camera_make="Canon",
        camera_model="EOS 80D",
        content_width=3990,
        content_height=2990,
        jpeg_quality=92,
        detail_scale=2.0,
        artefacts=["padded", "upscaled"],
    )
    bare = NewImage(
        id=uuid.uuid4(),
        position=0,
        filename=None,
        url=None,
        byte_size=1,
        width=1,
        height=1,
        format="PNG",
        sha256="cd" * 32,
        phash=None,
        thumbnail=None,
        vector=np.ones(4, np.float32),
    )
    for image in (full, bare):
        meta = _metadata(image, request, "m", now)
        assert None not in meta.values()
        back = _image(_through_pinecone(meta))
        assert back == image.stored(request.id, "m", now)
    assert set(ImageFacts.__struct_fields__) - {"id"} <= set(_metadata(full, request, "m", now))  # nothing left out
