"""Duplicate pairs → groups: every copy of one picture in one group, each member explained by
a verified pair, and no chains of unrelated pictures.

Images are taken best copy first (:func:`dupdetect.review.keeper.rank`). Each image joins the
best-ranked of its duplicates that ranks above it, and with it that duplicate's group, as long
as the path to the group's best copy crosses at most :data:`MAX_NEAR_LINKS` ``near`` pair
(crops, rotations, overlays): exact and near-exact pairs are the same picture, so they pass
freely. A collage pairs with each of its photos, but it ranks below them, so it cannot pull
them together: it joins one, and a photo left without members leads a group of its own
duplicates (the collage then sits in two groups, as it holds both). An image left alone that
way, whose duplicates all sit in one group and two or more of them rank above it, joins that
group (a captioned copy of two crops of one photo): it pairs with more than one of the group's
members, so it is not a chain through one partial match, and a photo whose only duplicates are
collages (which rank below it) still leads its own group.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Sequence

import msgspec

from dupdetect.review.keeper import DEFAULT_POLICY, KeeperPolicy, enlarged_from, rank, reason
from dupdetect.store.base import DuplicateGroup, GroupMember, Kind, Pair, StoredImage

MAX_NEAR_LINKS = 1
"""``near`` pairs (partial matches: crops, rotations, collages) between a member and its
group's best copy. Through a copy of the same picture (exact, near-exact) a member joins; through
a partial match it does not, since a collage matches two photos that do not match each other."""
CORROBORATING = 2
"""Members of one group an image must pair with to join it past :data:`MAX_NEAR_LINKS`."""


class Link(msgspec.Struct, frozen=True, kw_only=True):
    """A verified pair, seen from one of its images: ``via`` is the other."""

    via: uuid.UUID
    kind: Kind
    similarity: float
    matched_points: int | None


def _links(pairs: Iterable[Pair]) -> dict[uuid.UUID, dict[uuid.UUID, Link]]:
    links: dict[uuid.UUID, dict[uuid.UUID, Link]] = {}
    for p in pairs:
        for a, b in ((p.image_id, p.duplicate_id), (p.duplicate_id, p.image_id)):
            known = links.setdefault(a, {}).get(b)
            if known is None or (known.kind != "exact" and p.kind == "exact"):
                links[a][b] = Link(via=b, kind=p.kind, similarity=p.similarity, matched_points=p.matched_points)
    return links


def groups(images: Sequence[StoredImage], pairs: Iterable[Pair], policy: KeeperPolicy = DEFAULT_POLICY) -> list[DuplicateGroup]:
    """The groups of ``images`` (those with pairs), largest first. ``policy`` orders the members
    of each group (and so picks its keeper); membership depends on the pairs alone."""
    known = {image.id for image in images}
    links = _links(p for p in pairs if p.image_id in known and p.duplicate_id in known)
    linked = [image for image in images if image.id in links]
    by_id = {image.id: image for image in linked}
    # An enlargement is told from its source among its copies of the same picture (exact and
    # near-exact pairs), not among crops and collages (near), nor across the whole collection.
    sources = {
        image.id: source
        for image in linked
        if (source := enlarged_from(image, [by_id[o] for o, link in links[image.id].items() if link.kind != "near"]))
    }
    ranked = rank(linked, sources=sources)
    position = {image.id: n for n, image in enumerate(ranked)}
    leader: dict[uuid.UUID, uuid.UUID] = {}
    near_links: dict[uuid.UUID, int] = {}
    joined: dict[uuid.UUID, Link] = {}
    for image in ranked:
        better = sorted(
            (link for other, link in links[image.id].items() if other in position and position[other] < position[image.id]),
            key=lambda link: position[link.via],
        )
        for link in better:
            crossed = near_links[link.via] + (link.kind == "near")
            if crossed <= MAX_NEAR_LINKS:
                leader[image.id], near_links[image.id], joined[image.id] = leader[link.via], crossed, link
                break
        else:
            leader[image.id], near_links[image.id] = image.id, 0
    led = Counter(leader.values())
    for image in ranked:  # alone, though all its duplicates sit in one group: it joins that group
        better = [link for other, link in links[image.id].items() if position[other] < position[image.id]]
        if led[image.id] == 1 and len(better) >= CORROBORATING and len({leader[o] for o in links[image.id]}) == 1:
            link = min(better, key=lambda link: position[link.via])
            leader[image.id], joined[image.id] = leader[link.via], link
    members: dict[uuid.UUID, list[uuid.UUID]] = {}
    for image in ranked:
        members.setdefault(leader[image.id], []).append(image.id)
    found: list[DuplicateGroup] = []
    for head, ids in members.items():
        if len(ids) == 1:  # its duplicates all joined better copies: it leads a group of them
            ids = [head, *sorted(links[head], key=position.__getitem__)]
            link_of = {i: None if i == head else links[i][head] for i in ids}
        else:
            link_of = {i: joined.get(i) for i in ids}
        inside = {i: sources[i] for i in ids if i in sources and sources[i].id in link_of}
        ordered = rank([by_id[i] for i in ids], policy, sources=inside)
        found.append(
            DuplicateGroup(
                id=head,
                members=[_member(image, link_of[image.id]) for image in ordered],
                reason=reason(ordered, policy, sources=inside),
            )
        )
    found.sort(key=lambda g: (-len(g.members), position[g.id]))
    return found


def _member(image: StoredImage, link: Link | None) -> GroupMember:
    if link is None:
        return GroupMember(image=image)
    return GroupMember(
        image=image, via=link.via, joined_as=link.kind, similarity=link.similarity, matched_points=link.matched_points
    )


def redundant(groups: Sequence[DuplicateGroup], chosen: Sequence[DuplicateGroup], policy: KeeperPolicy) -> list[StoredImage]:
    """The copies one pass of "keep the best, trash the rest" removes from ``chosen`` (some of
    ``groups``), each once: never a keeper of any group (a collage's photos keep their own),
    nor a copy in a reference folder."""
    keepers = {group.keep.id for group in groups}
    found = {
        m.image.id: m.image
        for group in chosen
        for m in group.members
        if m.image.id not in keepers and not policy.in_folder(m.image)
    }
    return list(found.values())
