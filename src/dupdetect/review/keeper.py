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
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Literal

import msgspec

from dupdetect.store.base import StoredImage

Prefer = Literal["oldest", "newest"]
SIZE_STEPS_PER_OCTAVE = 4
"""Pictures within a quarter octave of area (about 19 %) of the group's largest count as the
same size, so that compression and provenance decide between them."""
QUALITY_STEP = 5
"""JPEG qualities this close count as the same."""
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
    filled corners, divided by its detail scale (an upscale by 2 holds a quarter of its pixels)."""
    width = image.content_width or image.width
    height = image.content_height or image.height
    return max(1.0, width * height / (image.detail_scale or 1.0) ** 2)


def has_camera(image: StoredImage) -> bool:
    return bool(image.camera_make or image.camera_model)


def _quality(image: StoredImage) -> int:
    """Compression as a number: lossless pixels that were never a JPEG count as 100."""
    if image.jpeg_quality is not None:
        return image.jpeg_quality
    return 0 if "decoded_jpeg" in image.artefacts else 100


def _key(image: StoredImage, largest: float, policy: KeeperPolicy) -> tuple[object, ...]:
    """Smaller is better; one term per reason, in order of precedence (see :data:`REASONS`)."""
    taken = image.taken_at
    when = 0.0 if taken is None else taken.timestamp()
    return (
        not policy.in_folder(image),
        policy.format is not None and image.format != policy.format.upper(),
        0 if policy.prefer is None or taken is None else (when if policy.prefer == "oldest" else -when),
        len(image.artefacts),
        math.floor(math.log2(largest / picture_area(image)) * SIZE_STEPS_PER_OCTAVE + 1e-9),
        not has_camera(image),
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
    "more compressed",
    "taken later",
    "smaller picture",
    "smaller file",
    "",
)
"""Why another copy lost to the keeper, per term of the key ("" : not worth saying)."""


def _largest(images: Sequence[StoredImage]) -> float:
    """What sizes are measured against: the largest picture among the least edited copies."""
    fewest = min(len(image.artefacts) for image in images)
    return max(picture_area(image) for image in images if len(image.artefacts) == fewest)


def rank(images: Sequence[StoredImage], policy: KeeperPolicy = DEFAULT_POLICY) -> list[StoredImage]:
    """The copies of one picture, the one to keep first."""
    largest = _largest(images)
    return sorted(images, key=lambda image: _key(image, largest, policy))


def _facts(image: StoredImage) -> str:
    parts = [f"{image.width}×{image.height} {image.format}"]
    if image.jpeg_quality is not None:
        parts.append(f"quality {image.jpeg_quality}")
    if has_camera(image):
        parts.append("camera " + " ".join(p for p in (image.camera_make, image.camera_model) if p))
    if image.taken_at is not None:
        parts.append(f"taken {image.taken_at:%Y-%m-%d}")
    return ", ".join(parts)


def _lost(image: StoredImage, keeper: StoredImage, largest: float, policy: KeeperPolicy) -> str:
    ours, theirs = _key(keeper, largest, policy), _key(image, largest, policy)
    for term, (a, b) in enumerate(zip(ours, theirs, strict=False)):
        if a != b:
            if term == 2:
                return "newer" if policy.prefer == "oldest" else "older"
            if term == 3:
                return ", ".join(a.replace("_", " ") for a in image.artefacts)
            return REASONS[term] if term < len(REASONS) else ""
    return ""


def reason(images: Sequence[StoredImage], policy: KeeperPolicy = DEFAULT_POLICY) -> str:
    """In words: what the keeper is and what the other copies lack, e.g. "kept: 1600×1000 JPEG,
    quality 92, camera Canon EOS 80D; the others: upscaled (1), smaller picture (3)"."""
    ranked = rank(images, policy)
    keeper, largest = ranked[0], _largest(images)
    why = Counter(_lost(image, keeper, largest, policy) or "identical" for image in ranked[1:])
    lead = "in a reference folder, " if policy.in_folder(keeper) else ""
    others = ", ".join(f"{what} ({count})" for what, count in why.most_common())
    return f"kept: {lead}{_facts(keeper)}" + (f"; the others: {others}" if others else "")
