"""The keeper rule and the grouping rule, on plain values: no database, no model."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import msgspec

from dupdetect.review import grouping
from dupdetect.review.keeper import KeeperPolicy, enlarged_from, rank, reason
from dupdetect.store.base import Kind, Pair, StoredImage

REQUEST = uuid.uuid4()


def image(
    name: str,
    width: int = 1600,
    height: int = 1000,
    *,
    fmt: str = "JPEG",
    quality: int | None = 92,
    byte_size: int = 500_000,
    camera: bool = True,
    artefacts: tuple[str, ...] = (),
    content: tuple[int, int] | None = None,
    taken: datetime | None = datetime(2019, 5, 1, 10, 0),
) -> StoredImage:
    cw, ch = content or (width, height)
    return StoredImage(
        id=uuid.uuid4(),
        position=0,
        filename=name,
        url=None,
        byte_size=byte_size,
        width=width,
        height=height,
        format=fmt,
        sha256=name,
        phash=None,
        request_id=REQUEST,
        model="m",
        created_at=datetime.now(UTC),
        taken_at=taken if camera else None,
        camera_make="Canon" if camera else None,
        camera_model="EOS 80D" if camera else None,
        content_width=cw,
        content_height=ch,
        jpeg_quality=quality if fmt == "JPEG" else None,
        artefacts=list(artefacts),
    )


ORIGINAL = image("original.jpg")
COPIES = [
    image(
        "upscale.png",
        3200,
        2000,
        fmt="PNG",
        byte_size=9_000_000,
        camera=False,
        artefacts=("upscaled", "decoded_jpeg"),
        content=(1600, 1000),
    ),
    image("upscale.jpg", 2400, 1500, quality=95, byte_size=900_000, camera=False, artefacts=("upscaled",), content=(1600, 1000)),
    image(
        "padded.png",
        2000,
        1400,
        fmt="PNG",
        byte_size=3_000_000,
        camera=False,
        artefacts=("padded", "decoded_jpeg"),
        content=(1600, 1000),
    ),
    image(
        "rotated.jpg",
        1710,
        1188,
        quality=95,
        byte_size=900_000,
        camera=False,
        artefacts=("filled_corners",),
        content=(1526, 1060),
    ),
    image("resave.png", fmt="PNG", byte_size=3_500_000, camera=False, artefacts=("decoded_jpeg",)),
    image("resave-clean.tif", fmt="TIFF", byte_size=4_800_000, camera=False),  # blocks too faint to see
    image("quality-60.jpg", quality=60, byte_size=200_000),  # kept the camera's EXIF
    image("crop.jpg", 1280, 800, byte_size=350_000),
    image("caption.jpg", 1600, 1142, byte_size=560_000, camera=False),
    image("no-exif.jpg", camera=False, byte_size=480_000),
    image("small.jpg", 800, 500, quality=95, byte_size=150_000),
]


def test_the_original_is_kept_over_every_kind_of_derived_copy() -> None:
    for copy in COPIES:
        assert rank([copy, ORIGINAL])[0] is ORIGINAL, copy.filename
    assert rank([*COPIES, ORIGINAL])[0] is ORIGINAL


def test_a_header_or_a_bigger_file_does_not_win() -> None:
    bigger_file = image("bigger.jpg", quality=92, byte_size=900_000, camera=False)
    assert rank([bigger_file, ORIGINAL])[0] is ORIGINAL
    # Two copies alike in everything a picture holds: then the larger file decides.
    a, b = image("a.jpg", byte_size=100, camera=False), image("b.jpg", byte_size=200, camera=False)
    assert rank([a, b])[0] is b


def test_the_reason_says_what_the_keeper_is_and_what_the_others_lack() -> None:
    text = reason([*COPIES, ORIGINAL])
    assert text.startswith("kept: 1600×1000 JPEG, quality 92, camera Canon EOS 80D, taken 2019-05-01")
    for words in ("upscaled", "padded", "filled corners", "smaller picture", "more compressed", "no camera metadata"):
        assert words in text, words


def test_a_policy_comes_before_what_the_copies_hold() -> None:
    backup = image("backup/original.jpg", 800, 500, camera=False)
    assert rank([ORIGINAL, backup], KeeperPolicy(folders=("backup",)))[0] is backup
    assert rank([ORIGINAL, backup], KeeperPolicy(folders=("back",)))[0] is ORIGINAL  # a folder, not a prefix of a name
    [tiff] = [copy for copy in COPIES if copy.format == "TIFF"]
    assert rank([ORIGINAL, tiff], KeeperPolicy(format="tiff"))[0] is tiff
    old, new = image("old.jpg", taken=datetime(2001, 1, 1)), image("new.jpg", taken=datetime(2021, 1, 1))
    assert rank([new, old], KeeperPolicy(prefer="oldest"))[0] is old
    assert rank([old, new], KeeperPolicy(prefer="newest"))[0] is new
    assert reason([ORIGINAL, backup], KeeperPolicy(folders=("backup",))).startswith("kept: in a reference folder")


def pair(a: StoredImage, b: StoredImage, kind: Kind = "near_exact") -> Pair:
    return Pair(image_id=a.id, duplicate_id=b.id, similarity=0.9, kind=kind, matched_points=None if kind != "near" else 50)


def test_fifty_copies_make_one_group_even_when_few_pair_with_the_original() -> None:
    copies = [image(f"copy{n:02d}.jpg", 1000, 625, quality=80) for n in range(50)]
    pairs = [pair(copies[0], ORIGINAL)] + [pair(copies[n], copies[n - 1]) for n in range(1, 50)]  # a chain of re-saves
    [group] = grouping.groups([ORIGINAL, *copies], pairs)
    assert group.keep is ORIGINAL and len(group.members) == 51
    # Each member is explained by a verified pair with one already in the group.
    inside = {ORIGINAL.id}
    for member in group.members[1:]:
        assert member.via in {m.image.id for m in group.members} and member.joined_as == "near_exact"
        inside.add(member.image.id)
    assert len(inside) == 51


def test_a_collage_does_not_chain_two_photos_and_partial_matches_do_not_chain() -> None:
    cat, coffee = image("cat.jpg", 451, 300), image("coffee.jpg", 600, 400)
    collage = image("collage.jpg", 601, 200, quality=90, byte_size=900_000, camera=False)
    found = grouping.groups([cat, coffee, collage], [pair(collage, cat, "near"), pair(collage, coffee, "near")])
    assert sorted(sorted(m.image.filename or "" for m in g.members) for g in found) == [
        ["cat.jpg", "collage.jpg"],
        ["coffee.jpg", "collage.jpg"],
    ]
    assert {g.keep.filename for g in found} == {"cat.jpg", "coffee.jpg"}
    # A crop of a crop: one partial match away from the original is in, two are not.
    crop, crop_of_crop = image("crop.jpg", 1200, 750), image("crop2.jpg", 900, 560)
    found = grouping.groups([ORIGINAL, crop, crop_of_crop], [pair(crop, ORIGINAL, "near"), pair(crop_of_crop, crop, "near")])
    assert [[m.image.filename for m in g.members] for g in found] == [["original.jpg", "crop.jpg"], ["crop.jpg", "crop2.jpg"]]


def test_a_copy_of_two_crops_joins_their_group_instead_of_leading_a_second_one() -> None:
    left, right = image("left.jpg", 1200, 750), image("right.jpg", 1180, 740)
    captioned = image("captioned.jpg", 1000, 625, quality=80)
    pairs = [pair(left, ORIGINAL, "near"), pair(right, ORIGINAL, "near")]
    small = image("small.jpg", 400, 250, quality=70)  # ranks below the captioned copy
    pairs += [pair(captioned, left, "near"), pair(captioned, right, "near")]  # not paired with the original itself
    pairs += [pair(small, ORIGINAL), pair(small, captioned, "near")]
    [group] = grouping.groups([ORIGINAL, left, right, captioned, small], pairs)
    assert group.keep is ORIGINAL and {m.image.filename for m in group.members} == {
        "original.jpg",
        "left.jpg",
        "right.jpg",
        "captioned.jpg",
        "small.jpg",
    }
    assert next(m for m in group.members if m.image is captioned).via in {left.id, right.id}


def test_every_image_is_in_one_group_unless_it_holds_two_pictures() -> None:
    copies = [image(f"c{n}.jpg", 1000 - n, 625, quality=80) for n in range(12)]
    pairs = [pair(c, ORIGINAL) for c in copies[:6]] + [pair(copies[n], copies[n - 6]) for n in range(6, 12)]
    found = grouping.groups([ORIGINAL, *copies], pairs)
    assert len(found) == 1 and len(found[0].members) == 13


def read(copy: StoredImage, detail: float) -> StoredImage:
    """``copy`` with a detail reading (pixels per pixel of detail) below the ``upscaled`` verdict."""
    return msgspec.structs.replace(copy, detail_scale=detail)


def test_an_enlargement_without_a_block_grid_loses_to_the_copy_it_was_made_from() -> None:
    original = read(ORIGINAL, 0.9)
    enlarged = read(image("upscale.jpg", 2400, 1500, quality=95, byte_size=900_000, camera=False), 1.35)
    assert rank([enlarged, original])[0] is original
    plain = read(image("original.png", fmt="PNG", camera=False), 0.9)  # neither has camera metadata
    assert rank([enlarged, plain])[0] is plain
    assert reason([enlarged, plain]).endswith("the others: enlarged from a smaller copy (1)")
    # The same larger copy reading as sharp as the smaller one holds more: it is not an enlargement.
    sharper = read(image("bigger.jpg", 2400, 1500, quality=95, byte_size=900_000, camera=False), 0.95)
    assert rank([sharper, original])[0] is sharper


def test_a_camera_original_is_never_taken_for_an_enlargement_of_its_copies() -> None:
    soft = read(ORIGINAL, 1.6)
    downscaled = read(image("small.jpg", 1120, 700, quality=80, byte_size=200_000, camera=False), 1.0)
    blocky = read(image("quality-60.jpg", quality=60), 0.73)  # heavy compression reads sharp
    assert rank([downscaled, blocky, soft])[0] is soft
    stripped = read(image("stripped.jpg", camera=False), 1.0)
    with_exif = read(image("small-exif.jpg", 1000, 625, quality=90, byte_size=200_000), 0.9)
    assert rank([with_exif, stripped])[0] is stripped  # a smaller copy does not win by its metadata


def test_enlargements_are_told_among_copies_of_one_picture_not_through_a_collage() -> None:
    photo = read(image("coffee.jpg", 600, 400, camera=False), 1.2)
    collage = read(image("collage.jpg", 601, 200, quality=90, camera=False), 0.8)  # its half is the photo, smaller
    [group] = grouping.groups([photo, collage], [pair(collage, photo, "near")])
    assert group.keep.id == photo.id  # the photo reads as an enlargement of the collage, which it is not
    enlarged = read(image("coffee-big.jpg", 900, 600, quality=95, camera=False), 1.8)
    [group] = grouping.groups([photo, enlarged], [pair(enlarged, photo, "near_exact")])
    assert group.keep.id == photo.id and "enlarged from a smaller copy" in group.reason


def test_the_rule_reads_the_same_for_a_few_copies_and_for_many() -> None:
    source = read(image("source.png", fmt="PNG", camera=False), 0.9)
    enlarged = read(image("enlarged.jpg", 2400, 1500, quality=95, camera=False), 1.35)
    small = [read(image(f"small{n}.jpg", 800, 500, quality=70, camera=False), 1.0) for n in range(40)]
    assert enlarged_from(enlarged, [source]) is source
    assert enlarged_from(enlarged, [*small, source]) is source  # the largest it reads as enlarged from
    assert rank([enlarged, *small, source])[0] is source
