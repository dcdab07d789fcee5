"""The duplicate rules, pure (no store, no I/O), in one place for every store and entry point:
which candidates count, of which kind, in which order, how many, and how the images of one
request pair up. :mod:`dupdetect.images.duplicates` runs them against a store.

Stores fetch candidates (the nearest descriptors, the same bytes, a shared hash band); this
module decides, in two stages:

1. Cheap gates. ``exact``: the same bytes (similarity 1.0). Otherwise the descriptors'
   cosine similarity must reach ``Rules.near`` (a request's ``threshold``). A *hash match*
   (perceptual hashes within ``Rules.near_exact`` bits, both hashes informative, similarity at
   least ``Rules.near_exact_floor``) at ``Rules.trusted`` or above is *trusted*: it is
   ``near_exact`` unless the geometric check finds that the images differ (screenshots of one
   app, pages of one template hash alike).
2. Geometric verification (:mod:`dupdetect.embedding.geometry`) of everything else: the pair is kept when
   one homography maps enough keypoints of one image onto the other and the overlap looks the
   same (``matched_points``), as ``near_exact`` if the hashes matched, else ``near``. Images
   too plain for keypoints, or more than 3× smaller than the other (beyond ORB's scale range),
   pair only on a hash match; pairs whose keypoints are not stored (Pinecone, older rows) fall
   back to the descriptor alone at ``Rules.unverified``.

A pair is reported once, as its strongest kind. Pairs are symmetric: if B duplicates A, A
duplicates B.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping

import msgspec
import numpy as np

from dupdetect.embedding import geometry
from dupdetect.embedding.perceptual import hamming
from dupdetect.settings import DuplicateSettings
from dupdetect.store.base import Candidate, Kind, Match, NewImage, Pair, Query, StoredImage

_TIER: dict[Kind, int] = {"exact": 0, "near_exact": 1, "near": 2}
WEAK_DESCRIPTOR = 0.7
"""Below this similarity the descriptors barely agree, so a pair must pass the full geometric
rule (:data:`geometry.MIN_INLIERS` points on one plane); the few-points rule
(:data:`geometry.FEW_INLIERS`) needs a descriptor that agrees too. bench/quality.py: captions
with stickers and phone screenshots of a photo read 0.53–0.69 and keep 25–39 points (once
refused, when this took 40); of 273,000 pairs of a copy with another photo or a hard negative,
none is confirmed on any number of points."""
MAX_CHECKS = 12
"""Failed geometric checks per image at most (about 1 ms each): an image without duplicates
in a large collection has many candidates above the similarity floor, and a copy, when there is
one, is nearly always among the most similar. Checks that confirm a pair do not count (a
request of many copies of one photo checks them all)."""
RECORDED = 100
"""Pairs recorded per image at most: ``top_k`` limits what a response lists, not what groups
are made of, so that every copy of a picture shot or shared fifty times lands in one group."""
NEIGHBOURS = 64
"""Nearest descriptors fetched per image at least (more when ``top_k`` asks for more)."""
TRUSTED_BITS = 2
"""A hash match this close (and at ``Rules.trusted`` similarity) needs no agreeing keypoints,
only none that show a difference: heavy JPEG or blur leaves copies too few corners, and
different pages of text reach similarity 0.98 but stay 8 bits apart or more."""


class Rules(msgspec.Struct, frozen=True, kw_only=True):
    """When a candidate counts as a duplicate, and how many to report per image."""

    near: float
    """Cosine similarity floor of every non-exact pair."""
    near_exact: int
    """Largest Hamming distance between perceptual hashes for a hash match."""
    top_k: int
    """Duplicates reported per image (up to :data:`RECORDED` are recorded)."""
    near_exact_floor: float = 0.6
    """Similarity a hash match needs as well."""
    trusted: float = 0.95
    """A hash match within :data:`TRUSTED_BITS` bits and this similar needs no agreeing keypoints."""
    unverified: float = 0.85
    """Similarity a pair needs when no keypoints are stored for it."""

    @classmethod
    def from_settings(cls, settings: DuplicateSettings, *, near: float | None = None, top_k: int | None = None) -> Rules:
        """The configured rules, or a request's own similarity floor and limit."""
        return cls(
            near=settings.near_threshold if near is None else near,
            near_exact=settings.near_exact_distance,
            top_k=settings.top_k if top_k is None else top_k,
            near_exact_floor=settings.near_exact_similarity,
            trusted=settings.trusted_similarity,
            unverified=settings.unverified_threshold,
        )

    @property
    def neighbours(self) -> int:
        """Vector neighbours fetched per image: more than ``top_k``, so that a near-exact match
        ranked below several near ones (bursts, series) is still among the candidates, and at
        least :data:`NEIGHBOURS`, so that a picture's many copies all find each other."""
        return max(2 * self.top_k + 1, NEIGHBOURS)


def rank(match: Match) -> tuple[int, float]:
    return _TIER[match.kind], -match.similarity


class Proposal(msgspec.Struct, frozen=True):
    """A candidate through the cheap gates, waiting for the geometric check (or not)."""

    image: StoredImage
    similarity: float
    hash_match: bool
    decided: Kind | None
    """The kind, when it is known without geometry (exact)."""
    trusted: bool = False
    """A hash match close enough that only a geometric difference refutes it."""


def propose(query: Query, candidates: Iterable[Candidate], rules: Rules) -> list[Proposal]:
    """The cheap gates, best first; one proposal per image."""
    best: dict[uuid.UUID, Proposal] = {}
    for candidate in candidates:
        image = candidate.image
        if image.id == query.exclude or (image.id in best and best[image.id].decided == "exact"):
            continue
        similarity = min(candidate.similarity, 1.0)
        if image.sha256 == query.sha256:
            best[image.id] = Proposal(image, 1.0, True, "exact")
            continue
        if similarity < rules.near:
            continue
        bits = None if query.phash is None or image.phash is None else hamming(query.phash, image.phash)
        hash_match = bits is not None and bits <= rules.near_exact and similarity >= rules.near_exact_floor
        trusted = hash_match and bits is not None and bits <= TRUSTED_BITS and similarity >= rules.trusted
        best[image.id] = Proposal(image, similarity, hash_match, None, trusted=trusted)
    return sorted(best.values(), key=lambda p: (p.decided != "exact", not p.trusted, not p.hash_match, -p.similarity))


Decided = dict[tuple[uuid.UUID, uuid.UUID], tuple[Kind, int | None]]
"""Pairs one pass over stored images has found so far, (image, its duplicate) → (kind, matched
points), so that the other image of a pair takes the verdict instead of checking it again:
in a picture's cluster of n copies every pair comes up from both sides, n² geometric checks
where n²/2 decide the same pairs. A pair that was not found from one side is still checked
from the other."""


def decide(
    query: Query, proposals: list[Proposal], keypoints: Mapping[uuid.UUID, bytes], rules: Rules, decided: Decided | None = None
) -> list[Match]:
    """The geometric stage: at most :data:`RECORDED` matches, checking the most likely first
    (hash matches, then by similarity) and giving up after :data:`MAX_CHECKS` checks that fail.
    ``decided``: the pairs of the pass so far (read, taken and added to)."""
    found: list[Match] = []
    failed = 0
    for proposal in proposals:
        if len(found) >= RECORDED:
            break
        earlier = decided.pop((proposal.image.id, query.exclude), None) if decided is not None and query.exclude else None
        if earlier is not None:  # found from the other side: the same pair, not checked twice
            found.append(Match(image=proposal.image, similarity=proposal.similarity, kind=earlier[0], matched_points=earlier[1]))
            continue
        theirs = keypoints.get(proposal.image.id)
        checked = proposal.decided is None and query.keypoints is not None and theirs is not None
        if checked and failed == MAX_CHECKS:
            continue
        match = verified(query, proposal, theirs, rules)
        if match is not None:
            found.append(match)
        elif checked:
            failed += 1
    if decided is not None and query.exclude is not None:
        decided.update(((query.exclude, m.image.id), (m.kind, m.matched_points)) for m in found)
    return sorted(found, key=rank)


def verified(query: Query, proposal: Proposal, theirs: bytes | None, rules: Rules) -> Match | None:
    tier: Kind = "near_exact" if proposal.hash_match else "near"
    if proposal.decided is not None:
        return Match(image=proposal.image, similarity=proposal.similarity, kind=proposal.decided)
    if query.keypoints is None or theirs is None:  # nothing to check with: the descriptor alone
        if proposal.hash_match or proposal.similarity >= max(rules.near, rules.unverified):
            return Match(image=proposal.image, similarity=proposal.similarity, kind=tier)
        return None
    verdict, points = geometry.verify(query.keypoints, theirs)
    if proposal.trusted:
        if verdict == "differs":
            return None
        agreed = points if verdict == "confirmed" else None
        return Match(image=proposal.image, similarity=proposal.similarity, kind="near_exact", matched_points=agreed)
    needed = geometry.FEW_INLIERS if proposal.similarity >= WEAK_DESCRIPTOR else geometry.MIN_INLIERS
    if verdict == "confirmed" and points >= needed:
        return Match(image=proposal.image, similarity=proposal.similarity, kind=tier, matched_points=points)
    if verdict in ("textureless", "out_of_scale") and proposal.hash_match:
        return Match(image=proposal.image, similarity=proposal.similarity, kind="near_exact")
    return None


def within_request(images: list[NewImage], stored: list[StoredImage]) -> list[list[Candidate]]:
    """Per image, every earlier image of the same request as a candidate (brute force: a request
    holds at most a few hundred images)."""
    vectors = np.stack([image.vector for image in images])
    similarity = vectors @ vectors.T
    return [[Candidate(image=stored[j], similarity=float(similarity[i, j])) for j in range(i)] for i in range(len(images))]


def as_pairs(images: Iterable[uuid.UUID], found: Iterable[list[Match]]) -> list[Pair]:
    return [
        Pair(
            image_id=image_id,
            duplicate_id=match.image.id,
            similarity=match.similarity,
            kind=match.kind,
            matched_points=match.matched_points,
        )
        for image_id, matches in zip(images, found, strict=True)
        for match in matches
    ]
