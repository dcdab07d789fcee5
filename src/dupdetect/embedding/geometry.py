"""Geometric verification: does one image contain the other, up to scale, rotation, crop, mirror?

A global descriptor says "two pages of text" or "two blue gradients" and stops there; a copy
shares *geometry* with its original. Each image keeps up to :data:`KEYPOINTS` ORB keypoints
(found on a grey version of at most :data:`SIDE` px, once more on its mirror image); a
candidate pair is confirmed when a RANSAC homography maps at least :data:`MIN_INLIERS` matched
keypoints of one onto the other. Different documents match a few letters, never a consistent
plane; gradients and flat images have no keypoints at all (:class:`Verdict` ``textureless``).

Cost (measured by bench/quality.py): about 2–3 ms per image to extract (content and mirror),
about 0.6 ms per pair to check.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from PIL import Image

SIDE = 512
KEYPOINTS = 256
FAST_THRESHOLD = 10
"""Corner contrast (grey levels) for a keypoint: half ORB's default, so that smooth
illustrations and soft-focus photos get keypoints too (bench/quality.py: a third of the
desktop backgrounds had fewer than 24 at the default)."""
MIN_KEYPOINTS = 24
"""Fewer keypoints than this on either side: too little texture to verify anything."""
MIN_INLIERS = 25
MIN_INLIER_SHARE = 0.55
"""Of the matches that pass the ratio test, at least this share must fit the homography: a
copy's matches agree on one plane; repeated letters, or the same window chrome around
different text, leave most matches outside it (bench/quality.py: 0.43–0.52 for those, 0.7 and
up for nearly every copy)."""
RATIO = 0.8
"""Lowe's ratio test: a match must be clearly better than the second best."""
_PATCH = 32  # ORB's patch: smaller images have no keypoints (and its pyramid would fail)
_SCALE = 16  # keypoint coordinates are stored as uint16 sixteenths of a pixel
_VERSION = 2
MAX_SCALE = 3.0
"""ORB's pyramid (8 levels × 1.2) spans 3.6×: an image more than 3× smaller than the other (a
thumbnail of a few hundred pixels against a 512-px one) cannot be matched; such pairs are left
to the hash and the descriptor, like images without texture."""

Verdict = Literal["confirmed", "refuted", "textureless", "out_of_scale"]

cv2.setNumThreads(1)  # called from decode workers and the event loop's executor, one pair at a time


@dataclass(frozen=True)
class Keypoints:
    points: np.ndarray
    """float32 (n, 2), pixels of the grey image."""
    descriptors: np.ndarray
    """uint8 (n, 32), ORB."""


_NONE = Keypoints(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8))


def _keypoints(found: Sequence[cv2.KeyPoint], descriptors: np.ndarray | None) -> Keypoints:
    if not found or descriptors is None:
        return _NONE
    return Keypoints(np.array([k.pt for k in found], np.float32).reshape(-1, 2), descriptors)


def _orb_views(grey: np.ndarray) -> tuple[Keypoints, Keypoints]:
    """ORB keypoints of ``grey`` and of its mirror image. The mirror's are the same corners,
    mirrored (position and orientation) and described on the mirrored pixels: no second
    detection, which is most of ORB's cost (decode workers spend ~1 ms less per image)."""
    if min(grey.shape) < _PATCH:
        return _NONE, _NONE
    orb = cv2.ORB.create(nfeatures=KEYPOINTS, fastThreshold=FAST_THRESHOLD)
    found, descriptors = orb.detectAndCompute(grey, None)
    if not found:
        return _NONE, _NONE
    right = grey.shape[1] - 1
    mirrored = tuple(
        cv2.KeyPoint(right - k.pt[0], k.pt[1], k.size, (180.0 - k.angle) % 360.0, k.response, k.octave, k.class_id) for k in found
    )
    kept, mirror_descriptors = orb.compute(np.ascontiguousarray(grey[:, ::-1]), mirrored)
    return _keypoints(found, descriptors), _keypoints(kept, mirror_descriptors)


def extract(image: Image.Image) -> bytes:
    """The packed keypoints of ``image`` and of its mirror image (stored per image)."""
    grey = image.convert("L")
    grey.thumbnail((SIDE, SIDE), Image.Resampling.BILINEAR)
    out = [struct.pack("<BHH", _VERSION, *grey.size)]
    for points in _orb_views(np.asarray(grey)):
        coords = np.clip(np.round(points.points * _SCALE), 0, 65535).astype("<u2")
        out += [struct.pack("<H", len(coords)), coords.tobytes(), points.descriptors.tobytes()]
    return b"".join(out)


def unpack(blob: bytes) -> tuple[Keypoints, Keypoints, int]:
    """(keypoints of the image, keypoints of its mirror image, the longer side they were found on)."""
    version, width, height = struct.unpack_from("<BHH", blob)
    if version != _VERSION:
        raise ValueError(f"unknown keypoint format {version}")
    offset, views = 5, []
    for _ in range(2):
        (n,) = struct.unpack_from("<H", blob, offset)
        offset += 2
        coords = np.frombuffer(blob, "<u2", 2 * n, offset).reshape(n, 2).astype(np.float32) / _SCALE
        offset += 4 * n
        descriptors = np.frombuffer(blob, np.uint8, 32 * n, offset).reshape(n, 32)
        offset += 32 * n
        views.append(Keypoints(coords, descriptors))
    return views[0], views[1], max(width, height)


def inliers(a: Keypoints, b: Keypoints) -> int:
    """Matched keypoints of ``a`` and ``b`` that one homography explains (0 if it explains too
    small a share of the matches)."""
    matches = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(a.descriptors, b.descriptors, k=2)
    best: dict[int, cv2.DMatch] = {}  # one-to-one: a plain keypoint of b must not absorb many of a
    for pair in matches:
        if len(pair) == 2 and pair[0].distance < RATIO * pair[1].distance:
            match = pair[0]
            if match.trainIdx not in best or match.distance < best[match.trainIdx].distance:
                best[match.trainIdx] = match
    good = list(best.values())
    if len(good) < MIN_INLIERS:
        return 0
    source = a.points[[m.queryIdx for m in good]]
    target = b.points[[m.trainIdx for m in good]]
    mask: np.ndarray | None = cv2.findHomography(source, target, cv2.RANSAC, 6.0)[1]
    if mask is None:  # no homography (degenerate points): the stubs do not say so
        return 0
    count = int(mask.sum())
    return count if count >= MIN_INLIER_SHARE * len(good) else 0


def verify(a: bytes, b: bytes) -> tuple[Verdict, int]:
    """Whether ``b`` is a geometric copy of ``a`` (or of its mirror image), and how many
    keypoints agree."""
    a_view, a_mirror, a_side = unpack(a)
    b_view, _, b_side = unpack(b)
    if min(len(a_view.points), len(b_view.points)) < MIN_KEYPOINTS:
        return "textureless", 0
    if max(a_side, b_side) > MAX_SCALE * max(1, min(a_side, b_side)):
        return "out_of_scale", 0
    count = inliers(a_view, b_view)
    if count < MIN_INLIERS and len(a_mirror.points) >= MIN_KEYPOINTS:  # a mirrored copy?
        count = max(count, inliers(a_mirror, b_view))
    return ("confirmed" if count >= MIN_INLIERS else "refuted"), count
