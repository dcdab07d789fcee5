"""Geometric verification: does one image contain the other, up to scale, rotation, crop, mirror?

A global descriptor says "two pages of text" or "two blue gradients" and stops there; a copy
shares *geometry* with its original. Each image keeps up to :data:`KEYPOINTS` ORB keypoints
(found on a grey version of at most :data:`SIDE` px, once more on its mirror image); a
candidate pair is confirmed when a RANSAC homography maps at least :data:`MIN_INLIERS` matched
keypoints of one onto the other (or :data:`FEW_INLIERS`, when nearly all matches agree; or,
when a heavy crop leaves too few matches but most of them on one plane, :data:`MIN_INLIERS`
keypoints matched again where that plane puts them, :data:`GUIDED_SHARE`).
Different documents match a few letters, never a consistent
plane; gradients and flat images have no keypoints at all (:class:`Verdict` ``textureless``).

Keypoints that agree are not enough when they agree on only a part: two screenshots of one
viewer share its chrome and filmstrip, two logos their wordmark. So each image also keeps a
64×64 grey map, and a confirmed pair must look the same across the overlap the homography
gives (``differs`` otherwise); crops still pass, since only the overlap is compared.

Smooth pictures (wallpapers, skies) have corners only along soft edges, which fit one plane
less tightly: a pair of them needs fewer matches on the plane and more of the overlap alike
(:data:`SMOOTH_INLIER_SHARE`).

Cost (docs/benchmarks.md): 11–13 ms per image to extract from a 1024-px grey image (content and
mirror); per pair ~1.6 ms to confirm a copy and ~1.2 ms to refute a pair that is none, most of
it matching the 256 keypoints of each side twice (the picture and its mirror image).
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
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
SPARSE = 128
SPARSE_FAST_THRESHOLD = 4
SPARSE_MARGIN = 0.15
"""An image with fewer than :data:`SPARSE` corners at :data:`FAST_THRESHOLD` is looked at again
at this contrast: smooth wallpapers, skies and illustrations then get keypoints that survive
crops, overlays and grey copies (bench/quality.py: 1,768 → 1,922 of 2,035 copies confirmed,
no new false pair). That second look stretches the grey levels of the picture without this
share of it on each side, where captions, letterboxes, frames and padding sit: a white caption
band under a dark photo otherwise sets the range, and the photo keeps its dull levels
(bench/keeper.py: such a copy 27 → 256 keypoints, then confirmed)."""
MIN_KEYPOINTS = 24
"""Fewer keypoints than this on either side: too little texture to verify anything."""
MIN_INLIERS = 25
MIN_INLIER_SHARE = 0.55
"""Of the matches that pass the ratio test, at least this share must fit the homography: a
copy's matches agree on one plane; repeated letters, or the same window chrome around
different text, leave most matches outside it (bench/quality.py: 0.43–0.52 for those, 0.7 and
up for nearly every copy)."""
FEW_INLIERS = 15
FEW_INLIER_SHARE = 0.8
"""Fewer than :data:`MIN_INLIERS` on the plane, but at least this many and this share of the
matches: a heavy crop, a phone screenshot or stickers leave a copy only a few corners in common,
and nearly all of them agree (bench/quality.py: such copies keep 0.8–0.9 on the plane). What
shares that few points by chance shares them loosely (window chrome, small drawings on
transparency: 0.70 and under once the overlap also looks alike), so such a pair needs
:data:`SMOOTH_MIN_ALIKE` of the overlap alike, and the rules a close descriptor."""
RATIO = 0.8
"""Lowe's ratio test: a match must be clearly better than the second best."""
GUIDED_SHARE = 0.6
GUIDED_HAMMING = 64
"""A pair refuted with few matches but at least :data:`GUIDED_SHARE` of them on one plane is
matched again where that plane puts each keypoint: a keypoint of the other image within
:data:`REPROJECTION_PX` of it, at most this many of ORB's 256 bits apart, without the ratio test
(which throws away most true matches of a heavy crop, whose second best is as near). At
:data:`MIN_INLIERS` such matches on one plane, and :data:`SMOOTH_MIN_ALIKE` of the overlap
alike, it is a copy (bench/quality.py: 40–50 % crops and phone screenshots of photos, 12–24
points on the plane, then 26–58; pages of text, whose letters make planes at 0.52 of the
matches, stay under the share)."""
REPROJECTION_PX = 6.0
"""A match fits the homography when it lands within this many pixels of where it maps."""
HOMOGRAPHY_METHOD = cv2.USAC_ACCURATE
"""OpenCV's USAC (graph-cut RANSAC) rather than its classic RANSAC: on a pair that is no copy,
classic RANSAC runs all its 2,000 rounds and took 15 ms, which made the check most of an
upload's time in a collection of alike pictures (a one-picture upload 370 → 106 ms);
USAC settles such a pair in 0.2 ms and finds as many inliers on copies (bench/quality.py:
the same 13 false pairs, recall mild 0.989 → 0.991, hard 0.954 → 0.957)."""
CONTRADICTING_MATCHES = 40
CONTRADICTING_SHARE = 0.3
"""At least :data:`CONTRADICTING_MATCHES` matches, under this share of them on one plane: the
images share pieces, they are not copies (bench/quality.py: the chat screenshots of one app,
60–74 matches and 0.15–0.23 on a plane; copies whose check is refuted with as many matches keep
0.25–0.55, and those whose hashes agree 0.41 and more)."""
MIN_ALIKE = 0.8
LEVEL_TOLERANCE = 24
"""Once the keypoints agree, at least :data:`MIN_ALIKE` of the overlap must show the same grey
level on both sides: within :data:`LEVEL_TOLERANCE` of 255, plus how much the level changes
from one cell to the next there (a copy's cells never align exactly with the original's), after
one brightness, contrast and vignette fit. Matches confined to window chrome, a filmstrip or a
wordmark say nothing about the pictures around them (bench/quality.py: 0.57–0.78 for
screenshots of different pictures in one viewer, 0.58 for one wordmark under a circle and a
square; 1 of 1,940 copies whose keypoints agree falls below; bench/keeper.py's near copies of
a dense photo 0.77 and up)."""
MIN_OVERLAP_CELLS = 16
SMOOTH_GRADIENT = 12.0
SMOOTH_INLIER_SHARE = 0.35
SMOOTH_MIN_ALIKE = 0.9
"""Smooth pictures (wallpapers, skies, soft gradients: on both grey maps nine cells in ten change
by at most :data:`SMOOTH_GRADIENT` levels from the next) have keypoints only along soft edges,
where ORB places them a few pixels apart from one copy to the next: a copy's matches then fit
one plane at 0.38–0.55, under :data:`MIN_INLIER_SHARE`. What that share guards against, repeated
letters and shared chrome around different text, needs sharp content, which such maps do not
have (bench/quality.py: pages, invoices and screenshots 18 and up). So a smooth pair needs only
this share of its matches on the plane, and then at least :data:`SMOOTH_MIN_ALIKE` of the
overlap alike (bench/keeper.py: 14 near copies, a rotation and a crop of a smooth wallpaper
found; no new false pair in bench/quality.py)."""
_PATCH = 32  # ORB's patch: smaller images have no keypoints (and its pyramid would fail)
_SCALE = 16  # keypoint coordinates are stored as uint16 sixteenths of a pixel
_VERSION = 3
APPEARANCE = 64
"""Side of the grey map stored beside the keypoints (box-averaged cells of the keypoints'
image), for the appearance check."""
MAX_SCALE = 3.0
"""ORB's pyramid (8 levels × 1.2) spans 3.6×: an image more than 3× smaller than the other (a
thumbnail of a few hundred pixels against a 512-px one) cannot be matched; such pairs are left
to the hash and the descriptor, like images without texture."""
UNPACKED = 512
"""Images whose unpacked keypoints and grey-map statistics :func:`verify` keeps (~45 kB each): a
folder's pair pass checks each image against every copy of it, 37 times in a cluster of 38, and
made them anew for each pair (a quarter of a check's time)."""

Verdict = Literal["confirmed", "refuted", "differs", "textureless", "out_of_scale"]
"""``refuted``: too little agrees to call it a copy. ``differs``: the images share a part (window
chrome, a template, a wordmark) and show different pictures around it."""

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


def _stretched(grey: np.ndarray, sample: np.ndarray | None = None) -> np.ndarray:
    """Grey levels stretched from the 1st to the 99th percentile of ``sample`` (all of ``grey``
    by default), so that a dark or hazy picture has corners at the same threshold as a crisp one.
    ORB describes a corner by comparing pixels, which a stretch keeps: keypoints stored before it
    still match."""
    counts = np.bincount((grey if sample is None else sample).ravel(), minlength=256).cumsum()
    low, high = np.searchsorted(counts, [0.01 * counts[-1], 0.99 * counts[-1]])
    if high - low < 8:  # a flat picture: its noise is not texture
        return grey
    table = np.clip((np.arange(256) - low) * (255.0 / (high - low)), 0, 255).astype(np.uint8)
    return cv2.LUT(grey, table)


def _orb_views(grey: np.ndarray) -> tuple[Keypoints, Keypoints]:
    """ORB keypoints of ``grey`` and of its mirror image. The mirror's are the same corners,
    mirrored (position and orientation) and described on the mirrored pixels: no second
    detection, which is most of ORB's cost (decode workers spend ~1 ms less per image)."""
    if min(grey.shape) < _PATCH:
        return _NONE, _NONE
    picture = grey
    grey = _stretched(picture)
    orb = cv2.ORB.create(nfeatures=KEYPOINTS, fastThreshold=FAST_THRESHOLD)
    found, descriptors = orb.detectAndCompute(grey, None)
    if len(found) < SPARSE:
        rows, cols = (round(SPARSE_MARGIN * side) for side in picture.shape)
        grey = _stretched(picture, picture[rows : picture.shape[0] - rows, cols : picture.shape[1] - cols])
        orb = cv2.ORB.create(nfeatures=KEYPOINTS, fastThreshold=SPARSE_FAST_THRESHOLD)
        found, descriptors = orb.detectAndCompute(grey, None)
    if not found:
        return _NONE, _NONE
    right = grey.shape[1] - 1
    mirrored = tuple(
        cv2.KeyPoint(right - k.pt[0], k.pt[1], k.size, (180.0 - k.angle) % 360.0, k.response, k.octave, k.class_id) for k in found
    )
    kept, mirror_descriptors = orb.compute(np.ascontiguousarray(grey[:, ::-1]), mirrored)
    return _keypoints(found, descriptors), _keypoints(kept, mirror_descriptors)


@dataclass(frozen=True)
class Stored:
    """What :func:`extract` keeps of an image."""

    view: Keypoints
    mirror: Keypoints
    """The same corners on the mirror image."""
    size: tuple[int, int]
    """Width and height of the grey image they were found on."""
    appearance: np.ndarray | None
    """uint8 (APPEARANCE, APPEARANCE) grey map of that image; None in rows stored before it."""

    @cached_property
    def slack(self) -> np.ndarray | None:
        """float32 (APPEARANCE, APPEARANCE): how much the grey map's level changes a cell away,
        which a copy's cells, never aligned exactly with the original's, may differ by."""
        if self.appearance is None:
            return None
        rows, cols = np.gradient(self.appearance.astype(np.float32))
        slack: np.ndarray = np.hypot(rows, cols)
        return slack

    @cached_property
    def smooth(self) -> bool:
        """Whether the picture has no sharp detail (see :data:`SMOOTH_GRADIENT`); False for rows
        stored before the grey maps."""
        return self.slack is not None and float(np.percentile(self.slack, 90)) <= SMOOTH_GRADIENT


def extract(image: Image.Image) -> bytes:
    """The packed keypoints of ``image`` and of its mirror image, and its grey map (stored per image)."""
    grey = image.convert("L")
    grey.thumbnail((SIDE, SIDE), Image.Resampling.BILINEAR)
    out = [struct.pack("<BHH", _VERSION, *grey.size)]
    for points in _orb_views(np.asarray(grey)):
        coords = np.clip(np.round(points.points * _SCALE), 0, 65535).astype("<u2")
        out += [struct.pack("<H", len(coords)), coords.tobytes(), points.descriptors.tobytes()]
    out.append(grey.resize((APPEARANCE, APPEARANCE), Image.Resampling.BOX).tobytes())
    return b"".join(out)


def unpack(blob: bytes) -> Stored:
    version, width, height = struct.unpack_from("<BHH", blob)
    if version not in (2, _VERSION):
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
    appearance = None
    if version >= 3:
        appearance = np.frombuffer(blob, np.uint8, APPEARANCE * APPEARANCE, offset).reshape(APPEARANCE, APPEARANCE)
    return Stored(views[0], views[1], (width, height), appearance)


_unpacked = functools.lru_cache(maxsize=UNPACKED)(unpack)


@dataclass(frozen=True)
class _Fit:
    matches: int
    """Matches through the ratio test, one-to-one."""
    inliers: int
    """Of those, how many one homography explains."""
    homography: np.ndarray | None

    def agrees(self, share: float = MIN_INLIER_SHARE) -> bool:
        return self.inliers >= MIN_INLIERS and self.inliers >= share * self.matches

    @property
    def agrees_closely(self) -> bool:
        """Few matches, nearly all on the plane (see :data:`FEW_INLIERS`)."""
        return self.inliers >= FEW_INLIERS and self.inliers >= FEW_INLIER_SHARE * self.matches

    def holds(self, share: float) -> bool:
        return self.agrees(share) or self.agrees_closely

    @property
    def contradicts(self) -> bool:
        """Many keypoints match, and one plane explains few of them: the pictures share pieces
        (an app's bars and bubbles, letters), not a geometry."""
        return self.matches >= CONTRADICTING_MATCHES and self.inliers < CONTRADICTING_SHARE * self.matches


def _matches(a: Keypoints, b: Keypoints) -> tuple[np.ndarray, np.ndarray]:
    """Indices into ``a`` and ``b`` of the matches through the ratio test, one-to-one (a plain
    keypoint of ``b`` must not absorb many of ``a``: the closest keeps it, the first on a tie),
    in the order their ``b`` keypoint is first reached from ``a``."""
    if len(a.descriptors) == 0 or len(b.descriptors) < 2:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    distances, nearest = cv2.batchDistance(a.descriptors, b.descriptors, cv2.CV_32S, normType=cv2.NORM_HAMMING, K=2)
    ours = np.flatnonzero(distances[:, 0] < RATIO * distances[:, 1])
    theirs, distance = nearest[ours, 0], distances[ours, 0]
    closest = np.lexsort((ours, distance))
    _, best = np.unique(theirs[closest], return_index=True)
    _, reached = np.unique(theirs, return_index=True)
    kept = closest[best][np.argsort(reached)]
    return ours[kept], theirs[kept]


def _fit(a: Keypoints, b: Keypoints) -> _Fit:
    ours, theirs = _matches(a, b)
    if len(ours) < FEW_INLIERS:
        return _Fit(len(ours), 0, None)
    found: tuple[np.ndarray | None, np.ndarray | None] = cv2.findHomography(
        a.points[ours], b.points[theirs], HOMOGRAPHY_METHOD, REPROJECTION_PX
    )
    homography, mask = found
    if mask is None or homography is None:  # no homography (degenerate points): the stubs do not say so
        return _Fit(len(ours), 0, None)
    return _Fit(len(ours), int(mask.sum()), homography)


def _guided(a: Keypoints, b: Keypoints, homography: np.ndarray) -> _Fit:
    """Matches where ``homography`` puts ``a``'s keypoints (see :data:`GUIDED_SHARE`), closest
    descriptors first, one-to-one, and the plane they fit."""
    mapped = cv2.perspectiveTransform(a.points[None], homography)[0]
    ours, theirs = np.nonzero(((mapped[:, None, :] - b.points[None, :, :]) ** 2).sum(axis=2) <= REPROJECTION_PX**2)
    bits = np.unpackbits(a.descriptors[ours] ^ b.descriptors[theirs], axis=1).sum(axis=1)
    close = np.flatnonzero(bits <= GUIDED_HAMMING)
    order = close[np.argsort(bits[close], kind="stable")]
    taken_ours: set[int] = set()
    taken_theirs: set[int] = set()
    kept = []
    for i in order:
        if ours[i] not in taken_ours and theirs[i] not in taken_theirs:
            taken_ours.add(ours[i])
            taken_theirs.add(theirs[i])
            kept.append(i)
    if len(kept) < MIN_INLIERS:
        return _Fit(len(kept), 0, None)
    found: tuple[np.ndarray | None, np.ndarray | None] = cv2.findHomography(
        a.points[ours[kept]], b.points[theirs[kept]], HOMOGRAPHY_METHOD, REPROJECTION_PX
    )
    refit, mask = found
    if mask is None or refit is None:
        return _Fit(len(kept), 0, None)
    return _Fit(len(kept), int(mask.sum()), refit)


_ROWS, _COLS = np.mgrid[0:APPEARANCE, 0:APPEARANCE]
_ACROSS = (_COLS.ravel() + 0.5) / APPEARANCE, (_ROWS.ravel() + 0.5) / APPEARANCE
"""Where each grey-map cell's centre lies, as shares of the width and the height."""
_RADIUS = (4 * ((_ACROSS[0] - 0.5) ** 2 + (_ACROSS[1] - 0.5) ** 2)).astype(np.float32)
"""Each cell's squared distance from the centre: 0 there, 2 in the corners (the vignette's term)."""


def _alike_from(
    a: np.ndarray,
    slack: np.ndarray,
    b: np.ndarray,
    homography: np.ndarray,
    a_size: tuple[int, int],
    b_size: tuple[int, int],
) -> float:
    """Share of ``a``'s grey-map cells inside the overlap whose level ``b`` shows at the same
    place, give or take ``slack``, after one least-squares fit of brightness, contrast and a
    vignette (colour edits, grey copies, filters that darken the corners)."""
    side = a.shape[0]
    centres = np.stack([_ACROSS[0] * a_size[0], _ACROSS[1] * a_size[1]], 1)
    mapped = cv2.perspectiveTransform(centres.astype(np.float32)[None], homography)[0]
    u = mapped[:, 0] * side / b_size[0] - 0.5  # in b's cells
    v = mapped[:, 1] * side / b_size[1] - 0.5
    inside = (u >= 0) & (u <= side - 1) & (v >= 0) & (v <= side - 1)
    if inside.sum() < MIN_OVERLAP_CELLS:
        return 1.0
    seen = cv2.remap(b.astype(np.float32), u[None].astype(np.float32), v[None].astype(np.float32), cv2.INTER_LINEAR)[0]
    theirs, ours = seen[inside], a.ravel()[inside].astype(np.float32)
    levels = np.stack([ours, ours * _RADIUS[inside], np.ones_like(ours)], 1)
    # The normal equations: 3 × 3, solved in microseconds where lstsq over every cell took 0.2 ms.
    coefficients = np.linalg.lstsq(levels.T @ levels, levels.T @ theirs, rcond=None)[0]
    return float((np.abs(theirs - levels @ coefficients) <= LEVEL_TOLERANCE + slack.ravel()[inside]).mean())


def alike(a: Stored, b: Stored, homography: np.ndarray, *, mirrored: bool) -> float:
    """How much of the overlap looks the same in both images, the lower of the two ways round
    (1.0 when a row predates the grey maps)."""
    if a.appearance is None or b.appearance is None or a.slack is None or b.slack is None:
        return 1.0
    ours, slack = (a.appearance[:, ::-1], a.slack[:, ::-1]) if mirrored else (a.appearance, a.slack)
    share = _alike_from(ours, slack, b.appearance, homography, a.size, b.size)
    try:
        back = np.linalg.inv(homography)
    except np.linalg.LinAlgError:
        return share
    return min(share, _alike_from(b.appearance, b.slack, ours, back, b.size, a.size))


def _second_chance(one: Stored, other: Stored, fits: list[tuple[_Fit, Keypoints, bool]]) -> tuple[Verdict, int]:
    """A refuted pair matched again where its best plane puts the keypoints (see
    :data:`GUIDED_SHARE`): confirmed, or still refuted, never ``differs`` (a hash match that the
    first fit left standing stands)."""
    guided = [
        (_guided(view, other.view, fit.homography), mirrored)
        for fit, view, mirrored in fits
        if fit.homography is not None and fit.inliers >= GUIDED_SHARE * fit.matches
    ]
    best, mirrored = max(guided, key=lambda found: found[0].inliers, default=(_Fit(0, 0, None), False))
    if best.inliers < MIN_INLIERS or best.homography is None:
        return "refuted", 0
    if alike(one, other, best.homography, mirrored=mirrored) < SMOOTH_MIN_ALIKE:
        return "refuted", 0
    return "confirmed", best.inliers


def verify(a: bytes, b: bytes) -> tuple[Verdict, int]:
    """Whether ``b`` is a geometric copy of ``a`` (or of its mirror image), and how many
    keypoints agree."""
    one, other = _unpacked(a), _unpacked(b)
    if min(len(one.view.points), len(other.view.points)) < MIN_KEYPOINTS:
        return "textureless", 0
    sides = max(one.size), max(other.size)
    if max(sides) > MAX_SCALE * max(1, min(sides)):
        return "out_of_scale", 0
    share = SMOOTH_INLIER_SHARE if one.smooth and other.smooth else MIN_INLIER_SHARE
    fit, mirrored = _fit(one.view, other.view), False
    fits = [(fit, one.view, False)]
    if not fit.holds(share) and len(one.mirror.points) >= MIN_KEYPOINTS:  # a mirrored copy?
        flipped = _fit(one.mirror, other.view)
        fits.append((flipped, one.mirror, True))
        if flipped.holds(share) or flipped.inliers > fit.inliers:
            fit, mirrored = flipped, True
    if not fit.holds(share) or fit.homography is None:
        return ("differs", 0) if fit.contradicts else _second_chance(one, other, fits)
    needed = MIN_ALIKE if fit.agrees() else SMOOTH_MIN_ALIKE
    if alike(one, other, fit.homography, mirrored=mirrored) < needed:
        return "differs", fit.inliers
    return "confirmed", fit.inliers
