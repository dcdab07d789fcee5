"""Which copy of a group to keep, and why, in words.

The copy the others derive from holds the most: the largest picture once padding is trimmed,
no marks of editing (an upscale, padding, a rotation's filled corners, a lossless file holding
a JPEG's pixels), the camera's metadata, the least compression, the earliest date taken. A
header's claim counts for nothing: sizes are what was decoded. A user's policy (reference
folders, a format, the oldest or newest) comes before all of that; the largest file decides
only when nothing else does.
"""

from __future__ import annotations

import math
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

import msgspec
import numpy as np

from dupdetect.store.base import StoredImage

Prefer = Literal["oldest", "newest"]
SIZE_STEPS_PER_OCTAVE = 4
"""Pictures within a quarter octave of area (about 19 %) of the group's largest count as the
same size, so that compression and provenance decide between them."""
QUALITY_STEP = 5
"""JPEG qualities this close count as the same."""
ENLARGED_FROM = 1.3
"""A copy this many times larger (in width) than another, or more, may be an enlargement of it."""
ENLARGED_READS = 0.8
"""…and is one when its detail reading (pixels per pixel of detail) is higher by at least this
share of that factor: an enlargement by u reads about u times its source (1.25–1.9 times for
1.5× on bench/keeper.py's photos), an original about as high as its smaller copies (one of 142
near copies 1.3× smaller or more made its original read as an enlargement)."""
VECTORISE_FROM = 32
"""Copies from which the enlargement rule runs on arrays (a group of thousands stays fast)."""
_NEVER = datetime.max


class KeeperPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """What the user prefers, before what the copies hold."""

    folders: tuple[str, ...] = ()
    """Reference folders (name prefixes): a copy in one is kept, never trashed, if the group has one."""
    format: str | None = None
    """A format to keep (``JPEG``, ``PNG``, …) when the group has it."""
    prefer: Prefer | None = None
    """The oldest or the newest date taken."""

    def in_folder(self, image: StoredImage) -> bool:
        name = _name(image)
        return any(name == folder.rstrip("/") or name.startswith(folder.rstrip("/") + "/") for folder in self.folders)


DEFAULT_POLICY = KeeperPolicy()


def _name(image: StoredImage) -> str:
    """The file name or URL a reference folder is matched against (and ties are broken by)."""
    return image.filename or image.url or ""


def picture_area(image: StoredImage) -> float:
    """What the picture holds, in pixels of real detail: inside padding, without a rotation's
    filled corners, divided by its detail scale when it is clearly upscaled (an upscale by 2
    holds a quarter of its pixels)."""
    width = image.content_width or image.width
    height = image.content_height or image.height
    scale = (image.detail_scale or 1.0) if "upscaled" in image.artefacts else 1.0
    return max(1.0, width * height / scale**2)


def _reading(image: StoredImage) -> float:
    return image.detail_scale or 1.0


def _enlarges(area: Any, reading: Any, areas: Any, readings: Any) -> Any:
    """The rule, on one copy's numbers or on arrays of them: ``areas``/``readings`` are the
    candidate sources'."""
    factor = (area / areas) ** 0.5
    return (factor >= ENLARGED_FROM) & (reading / readings >= ENLARGED_READS * factor)


def _sources(image: StoredImage, copies: Sequence[StoredImage]) -> list[bool]:
    """Which of ``copies`` ``image`` reads as an enlargement of. A file with camera metadata is
    never one: cameras do not enlarge, and heavy JPEG compression reads sharper than it is, so a
    camera original can read as an enlargement of its own smaller, blockier copies."""
    if has_camera(image):
        return [False] * len(copies)
    area, reading = picture_area(image), _reading(image)
    if len(copies) <= VECTORISE_FROM:  # most images have a few copies: plain floats are faster
        return [bool(_enlarges(area, reading, picture_area(c), _reading(c))) for c in copies]
    areas = np.array([picture_area(copy) for copy in copies])
    readings = np.array([_reading(copy) for copy in copies])
    return [bool(flag) for flag in _enlarges(area, reading, areas, readings)]


def enlarged_from(image: StoredImage, copies: Sequence[StoredImage]) -> StoredImage | None:
    """The largest of ``copies`` (of the same picture) that ``image`` reads as an enlargement of:
    an upscale that shows no block grid and reads below
    :data:`dupdetect.embedding.quality.UPSCALED_FROM` is still told apart from its source."""
    found = [copy for copy, source in zip(copies, _sources(image, copies), strict=True) if source]
    return max(found, key=picture_area, default=None)


def enlarged_sources(images: Sequence[StoredImage]) -> dict[uuid.UUID, StoredImage]:
    """:func:`enlarged_from` for each of ``images`` (one picture's copies) among the others."""
    return {image.id: source for image in images if (source := enlarged_from(image, images)) is not None}


def has_camera(image: StoredImage) -> bool:
    return bool(image.camera_make or image.camera_model)


def _quality(image: StoredImage) -> int:
    """Compression as a number: lossless pixels that were never a JPEG count as 100."""
    if image.jpeg_quality is not None:
        return image.jpeg_quality
    return 0 if "decoded_jpeg" in image.artefacts else 100


def _key(
    image: StoredImage, sources: Mapping[uuid.UUID, StoredImage], largest: float, policy: KeeperPolicy
) -> tuple[object, ...]:
    """Smaller is better; one term per reason, in order of precedence (see :data:`REASONS`). An
    enlargement of another copy holds what that copy holds, and loses to it when nothing before
    says otherwise."""
    taken = image.taken_at
    when = 0.0 if taken is None else taken.timestamp()
    source = sources.get(image.id)
    held = picture_area(source if source is not None else image)
    return (
        not policy.in_folder(image),
        policy.format is not None and image.format != policy.format.upper(),
        0 if policy.prefer is None or taken is None else (when if policy.prefer == "oldest" else -when),
        len(image.artefacts),
        math.floor(math.log2(largest / held) * SIZE_STEPS_PER_OCTAVE + 1e-9),
        not has_camera(image),
        source is not None,
        -(_quality(image) // QUALITY_STEP),
        taken or _NEVER,
        -picture_area(image),
        -image.byte_size,
        _name(image),
        str(image.id),
    )


REASONS = (
    "not in a reference folder",
    "not the preferred format",
    "",
    "edited",
    "smaller picture",
    "no camera metadata",
    "enlarged from a smaller copy",
    "more compressed",
    "taken later",
    "smaller picture",
    "smaller file",
    "",
)
"""Why another copy lost to the keeper, per term of the key ("" : not worth saying)."""


def _largest(images: Sequence[StoredImage], sources: Mapping[uuid.UUID, StoredImage]) -> float:
    """What sizes are measured against: the largest picture among the least edited copies (an
    enlargement of another copy counting as that one)."""
    fewest = min(len(image.artefacts) for image in images)
    return max(picture_area(sources.get(image.id, image)) for image in images if len(image.artefacts) == fewest)


def rank(
    images: Sequence[StoredImage],
    policy: KeeperPolicy = DEFAULT_POLICY,
    *,
    sources: Mapping[uuid.UUID, StoredImage] | None = None,
) -> list[StoredImage]:
    """The copies of one picture, the one to keep first. ``sources``: what each copy reads as
    enlarged from (:func:`enlarged_sources`), when the caller knows better which images are
    copies of one another than "all of ``images``"."""
    if sources is None:
        sources = enlarged_sources(images)
    largest = _largest(images, sources)
    return sorted(images, key=lambda image: _key(image, sources, largest, policy))


def _facts(image: StoredImage) -> str:
    parts = [f"{image.width}×{image.height} {image.format}"]
    if image.jpeg_quality is not None:
        parts.append(f"quality {image.jpeg_quality}")
    if has_camera(image):
        parts.append("camera " + " ".join(p for p in (image.camera_make, image.camera_model) if p))
    if image.taken_at is not None:
        parts.append(f"taken {image.taken_at:%Y-%m-%d}")
    return ", ".join(parts)


def _lost(
    image: StoredImage, keeper: StoredImage, sources: Mapping[uuid.UUID, StoredImage], largest: float, policy: KeeperPolicy
) -> str:
    ours, theirs = _key(keeper, sources, largest, policy), _key(image, sources, largest, policy)
    for term, (a, b) in enumerate(zip(ours, theirs, strict=False)):
        if a != b:
            if term == 2:
                return "newer" if policy.prefer == "oldest" else "older"
            if term == 3:
                return ", ".join(a.replace("_", " ") for a in image.artefacts)
            return REASONS[term] if term < len(REASONS) else ""
    return ""


def reason(
    images: Sequence[StoredImage],
    policy: KeeperPolicy = DEFAULT_POLICY,
    *,
    sources: Mapping[uuid.UUID, StoredImage] | None = None,
) -> str:
    """In words: what the keeper is and what the other copies lack, e.g. "kept: 1600×1000 JPEG,
    quality 92, camera Canon EOS 80D; the others: upscaled (1), smaller picture (3)"."""
    if sources is None:
        sources = enlarged_sources(images)
    ranked = rank(images, policy, sources=sources)
    keeper, largest = ranked[0], _largest(images, sources)
    why = Counter(_lost(image, keeper, sources, largest, policy) or "identical" for image in ranked[1:])
    lead = "in a reference folder, " if policy.in_folder(keeper) else ""
    others = ", ".join(f"{what} ({count})" for what, count in why.most_common())
    return f"kept: {lead}{_facts(keeper)}" + (f"; the others: {others}" if others else "")
