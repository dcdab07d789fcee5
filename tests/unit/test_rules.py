"""The duplicate rules on plain values: candidates and keypoints in, decisions out. No database,
no model; keypoints are ORB's on generated textures (milliseconds)."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime

import numpy as np
import pytest
from PIL import Image

from dupdetect.embedding import geometry
from dupdetect.images.rules import (
    MAX_CHECKS,
    RECORDED,
    WEAK_DESCRIPTOR,
    Decided,
    Rules,
    as_pairs,
    decide,
    propose,
    within_request,
)
from dupdetect.store.base import Candidate, NewImage, Query, StoredImage

RULES = Rules(near=0.5, near_exact=8, top_k=10)
REQUEST = uuid.uuid4()


def stored(sha256: str = "", phash: int | None = None) -> StoredImage:
    return StoredImage(
        id=uuid.uuid4(),
        position=0,
        filename=None,
        url=None,
        byte_size=1,
        width=640,
        height=480,
        format="JPEG",
        sha256=sha256 or uuid.uuid4().hex,
        phash=phash,
        request_id=REQUEST,
        model="m",
        created_at=datetime.now(UTC),
    )


def query(sha256: str = "q", phash: int | None = None, keypoints: bytes | None = None) -> Query:
    return Query(vector=np.zeros(4, np.float32), sha256=sha256, phash=phash, keypoints=keypoints)


def texture(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (60, 80), dtype=np.uint8)).resize((640, 480), Image.Resampling.NEAREST)


ORIGINAL = texture(1)
KEYPOINTS = geometry.extract(ORIGINAL)
COPY = geometry.extract(ORIGINAL.crop((40, 30, 600, 450)).resize((480, 360)))  # cropped and shrunk
OTHER = geometry.extract(texture(2))
PLAIN = geometry.extract(Image.new("L", (640, 480), 128))


def test_the_same_bytes_are_exact_whatever_the_descriptors_say_and_win_over_other_candidates() -> None:
    image = stored(sha256="q")
    proposals = propose(query(), [Candidate(image=image, similarity=0.3), Candidate(image=image, similarity=0.2)], RULES)
    assert [(p.image.id, p.similarity, p.decided) for p in proposals] == [(image.id, 1.0, "exact")]
    [match] = decide(query(), proposals, {}, RULES)
    assert (match.kind, match.similarity) == ("exact", 1.0)


def test_below_the_floor_or_the_image_itself_is_no_candidate() -> None:
    itself, far, near = stored(), stored(), stored()
    q = Query(vector=np.zeros(4, np.float32), sha256="q", phash=None, exclude=itself.id)
    candidates = [
        Candidate(image=itself, similarity=1.0),
        Candidate(image=far, similarity=0.49),
        Candidate(image=near, similarity=0.5),
    ]
    assert [p.image.id for p in propose(q, candidates, RULES)] == [near.id]


def test_a_close_hash_at_high_similarity_is_near_exact_without_agreeing_keypoints() -> None:
    image = stored(phash=0b11)
    proposals = propose(query(phash=0b0, keypoints=KEYPOINTS), [Candidate(image=image, similarity=0.96)], RULES)
    assert proposals[0].trusted
    [match] = decide(query(phash=0b0, keypoints=KEYPOINTS), proposals, {image.id: OTHER}, RULES)  # too little agrees
    assert match.kind == "near_exact" and match.matched_points is None


def test_a_close_hash_is_refused_when_the_keypoints_show_the_images_differ() -> None:
    """Screenshots of one chat app: the same bars and bubbles hash alike, the messages differ."""
    from bench.hard_negatives import chats

    first, second = (geometry.extract(Image.open(io.BytesIO(n.data))) for n in chats(range(2)))
    image = stored(phash=0b11)
    q = query(phash=0b0, keypoints=first)
    proposals = propose(q, [Candidate(image=image, similarity=0.97)], RULES)
    assert proposals[0].trusted
    assert decide(q, proposals, {image.id: second}, RULES) == []


def test_without_keypoints_only_a_hash_match_or_the_unverified_similarity_pairs() -> None:
    hashed, strong, weak = stored(phash=0), stored(), stored()
    candidates = [
        Candidate(image=hashed, similarity=0.7),
        Candidate(image=strong, similarity=0.86),
        Candidate(image=weak, similarity=0.84),
    ]
    found = decide(query(phash=0b1111), propose(query(phash=0b1111), candidates, RULES), {}, RULES)
    assert [(m.image.id, m.kind) for m in found] == [(hashed.id, "near_exact"), (strong.id, "near")]


def test_geometry_confirms_a_cropped_copy_and_refutes_a_similar_stranger() -> None:
    copy, stranger = stored(), stored()
    candidates = [Candidate(image=stranger, similarity=0.95), Candidate(image=copy, similarity=0.8)]
    q = query(keypoints=KEYPOINTS)
    [match] = decide(q, propose(q, candidates, RULES), {copy.id: COPY, stranger.id: OTHER}, RULES)
    assert match.image.id == copy.id and match.kind == "near"
    assert match.matched_points is not None and match.matched_points >= geometry.MIN_INLIERS


def test_a_plain_image_pairs_only_on_a_hash_match() -> None:
    hashed, unhashed = stored(phash=0), stored()
    candidates = [Candidate(image=hashed, similarity=0.8), Candidate(image=unhashed, similarity=0.9)]
    q = query(phash=0b1, keypoints=PLAIN)
    found = decide(q, propose(q, candidates, RULES), {hashed.id: PLAIN, unhashed.id: PLAIN}, RULES)
    assert [(m.image.id, m.kind) for m in found] == [(hashed.id, "near_exact")]


def test_a_weak_descriptor_needs_the_full_geometric_rule_not_a_few_points() -> None:
    copy = stored()
    q = query(keypoints=KEYPOINTS)
    few = geometry.extract(ORIGINAL.crop((0, 0, 280, 210)))  # a heavy crop: under 25 points, nearly all on the plane
    many = geometry.extract(ORIGINAL.crop((0, 0, 320, 240)))  # 25 points and more
    assert (
        geometry.FEW_INLIERS <= geometry.verify(KEYPOINTS, few)[1] < geometry.MIN_INLIERS <= geometry.verify(KEYPOINTS, many)[1]
    )

    def found(similarity: float, keypoints: bytes) -> bool:
        return bool(decide(q, propose(q, [Candidate(image=copy, similarity=similarity)], RULES), {copy.id: keypoints}, RULES))

    assert found(WEAK_DESCRIPTOR, few)
    assert not found(WEAK_DESCRIPTOR - 0.01, few)
    assert found(WEAK_DESCRIPTOR - 0.01, many)  # a caption or a phone's bars lower the similarity, not the plane


def test_failed_checks_stop_at_the_limit_but_hash_matches_are_checked_first() -> None:
    strangers = [stored() for _ in range(MAX_CHECKS + 3)]
    late_copy, hashed_copy = stored(), stored(phash=0)
    candidates = [Candidate(image=s, similarity=0.9 - i / 100) for i, s in enumerate(strangers)]
    candidates += [Candidate(image=late_copy, similarity=0.7), Candidate(image=hashed_copy, similarity=0.61)]
    keypoints = {s.id: OTHER for s in strangers} | {late_copy.id: COPY, hashed_copy.id: COPY}
    q = query(phash=0b1, keypoints=KEYPOINTS)
    proposals = propose(q, candidates, RULES)
    assert proposals[0].image.id == hashed_copy.id
    found = decide(q, proposals, keypoints, RULES)
    assert [m.image.id for m in found] == [hashed_copy.id]  # the late copy came after MAX_CHECKS failures


def test_matches_come_strongest_kind_first_and_at_most_the_recorded_number() -> None:
    exact = stored(sha256="q")
    many = [stored() for _ in range(RECORDED + 5)]
    candidates = [Candidate(image=image, similarity=0.9) for image in many] + [Candidate(image=exact, similarity=0.1)]
    found = decide(query(), propose(query(), candidates, RULES), {}, RULES)
    assert len(found) == RECORDED and found[0].image.id == exact.id


def test_pairs_within_a_request_compare_each_image_with_the_earlier_ones() -> None:
    vectors = np.eye(3, dtype=np.float32)
    vectors[2] = vectors[0]
    images = [
        NewImage(
            id=uuid.uuid4(),
            position=i,
            filename=None,
            url=None,
            byte_size=1,
            width=1,
            height=1,
            format="PNG",
            sha256=str(i),
            phash=None,
            thumbnail=None,
            vector=v,
        )
        for i, v in enumerate(vectors)
    ]
    earlier = within_request(images, [stored() for _ in images])
    assert [len(c) for c in earlier] == [0, 1, 2]
    assert [c.similarity for c in earlier[2]] == pytest.approx([1.0, 0.0])


def test_pairs_are_recorded_from_the_image_to_its_duplicate() -> None:
    a, b = uuid.uuid4(), stored()
    found = decide(query(), propose(query(), [Candidate(image=b, similarity=0.9)], RULES), {}, RULES)
    [pair] = as_pairs([a], [found])
    assert (pair.image_id, pair.duplicate_id, pair.kind) == (a, b.id, "near")


def test_a_pass_checks_each_pair_once_and_the_other_side_takes_its_verdict() -> None:
    a, b, stranger = stored(), stored(), stored()
    keypoints = {a.id: KEYPOINTS, b.id: COPY, stranger.id: OTHER}
    decided: Decided = {}
    from_a = Query(vector=np.zeros(4, np.float32), sha256="a", phash=None, exclude=a.id, keypoints=KEYPOINTS)
    candidates = [Candidate(image=b, similarity=0.9), Candidate(image=stranger, similarity=0.9)]
    [found] = decide(from_a, propose(from_a, candidates, RULES), keypoints, RULES, decided)
    assert found.image.id == b.id and found.matched_points
    # From b's side, with keypoints that could not confirm anything (a plain picture), the pair
    # stands as found from a's; the refuted stranger is checked again, and refuted again.
    from_b = Query(vector=np.zeros(4, np.float32), sha256="b", phash=None, exclude=b.id, keypoints=PLAIN)
    back = [Candidate(image=a, similarity=0.9)]
    assert decide(from_b, propose(from_b, back, RULES), keypoints, RULES) == []
    [again] = decide(from_b, propose(from_b, back, RULES), keypoints, RULES, decided)
    assert (again.image.id, again.kind, again.matched_points) == (a.id, found.kind, found.matched_points)
    from_stranger = Query(vector=np.zeros(4, np.float32), sha256="s", phash=None, exclude=stranger.id, keypoints=OTHER)
    assert decide(from_stranger, propose(from_stranger, back, RULES), keypoints, RULES, decided) == []
