"""The geometric check on rendered images that share a part and differ in the rest (issue #24's
false pairs), and on copies that must still pass. Keypoints come from the decoder, as in the
service (padding trimmed); no database, no model."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

from bench.derived import captioned
from bench.hard_negatives import Negative, chats, documents, invoices, photo_viewer, soft_art, wordmarks
from bench.transforms import EDITS
from dupdetect.embedding import geometry
from dupdetect.embedding.decode import decode
from tests.photos import PHOTOS, photo

FOLDER = [photo(name) for name in PHOTOS[:4]]


def keypoints(image: Image.Image | Negative) -> bytes:
    if isinstance(image, Negative):
        data = image.data
    else:
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        data = buffer.getvalue()
    found = decode(data, size=224, max_pixels=50_000_000).keypoints
    assert found is not None
    return found


def jpeg(image: Image.Image, quality: int) -> Negative:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Negative("copy", "copy", buffer.getvalue())


def wallpaper(seed: int) -> Image.Image:
    """A soft abstract background crossed by blurred light arcs, like a desktop wallpaper: its
    only keypoints lie along soft edges."""
    base = soft_art(seed, 1)[0]
    arcs = Image.new("L", base.size, 0)
    draw = ImageDraw.Draw(arcs)
    rng = np.random.default_rng(seed)
    for _ in range(5):
        x, y, radius = int(rng.integers(-800, 400)), int(rng.integers(-300, 600)), int(rng.integers(500, 1400))
        draw.ellipse((x, y, x + 2 * radius, y + radius), outline=255, width=int(rng.integers(20, 60)))
    light = arcs.filter(ImageFilter.GaussianBlur(25)).point(lambda v: int(v * 0.35))
    return Image.composite(Image.new("RGB", base.size, (255, 255, 255)), base, light)


def test_screenshots_of_different_pictures_in_one_viewer_differ_though_the_chrome_matches() -> None:
    first, second = soft_art(3, 2)
    verdict, points = geometry.verify(
        keypoints(photo_viewer(first, FOLDER, "IMG_0001.JPG", 0)), keypoints(photo_viewer(second, FOLDER, "IMG_0002.JPG", 1))
    )
    assert points >= geometry.MIN_INLIERS  # the toolbar and filmstrip agree on one plane ...
    assert verdict == "differs"  # ... and the pictures around them do not


def test_a_screenshot_of_a_photo_in_that_viewer_is_still_its_copy() -> None:
    picture = photo("astronaut")
    verdict, _ = geometry.verify(keypoints(picture), keypoints(photo_viewer(picture, FOLDER, "IMG_0001.JPG", 0)))
    assert verdict == "confirmed"


def test_crops_and_mirror_images_still_pass_the_appearance_check() -> None:
    picture = photo("coffee")
    crop = picture.crop((100, 60, 100 + int(picture.width * 0.6), 60 + int(picture.height * 0.6)))
    for copy in (crop, ImageOps.mirror(picture), ImageOps.grayscale(picture)):
        assert geometry.verify(keypoints(picture), keypoints(copy))[0] == "confirmed"


def test_one_wordmark_under_different_marks_differs() -> None:
    circle, square, _ = (keypoints(n) for n in wordmarks("ACME", 0))
    assert geometry.verify(circle, square)[0] == "differs"


def test_many_matches_off_one_plane_say_the_images_differ() -> None:
    first, second = (keypoints(n) for n in chats(range(2)))
    assert geometry.verify(first, second) == ("differs", 0)


def test_keypoints_stored_before_the_grey_map_still_verify() -> None:
    picture = photo("chelsea")
    current = keypoints(picture)
    older = bytes([2]) + current[1 : -(geometry.APPEARANCE**2)]  # format 2: no grey map
    assert geometry.unpack(older).appearance is None
    assert geometry.verify(older, keypoints(picture.resize((400, 300))))[0] == "confirmed"


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "retina"])
def test_a_soft_low_contrast_photo_has_keypoints_and_its_crop_and_grey_copy_are_confirmed(name: str) -> None:
    soft = ImageEnhance.Contrast(photo(name).filter(ImageFilter.GaussianBlur(8))).enhance(0.4)
    crop = soft.crop((0, 0, int(soft.width * 0.75), int(soft.height * 0.75)))
    original = keypoints(soft)
    assert len(geometry.unpack(original).view.points) >= geometry.SPARSE
    assert geometry.verify(original, keypoints(crop))[0] == "confirmed"
    assert geometry.verify(original, keypoints(ImageOps.grayscale(soft).convert("RGB")))[0] == "confirmed"


def test_only_smooth_pictures_count_as_smooth() -> None:
    assert geometry.unpack(keypoints(wallpaper(4))).smooth
    sharp: list[Image.Image | Negative] = [*chats(range(1)), *documents()[:1], *invoices(range(1)), photo("coffee")]
    assert not any(geometry.unpack(keypoints(image)).smooth for image in sharp)


def test_a_crop_of_a_smooth_wallpaper_is_confirmed_though_few_of_its_matches_fit_one_plane() -> None:
    picture = wallpaper(4)
    width, height = picture.size
    crop = picture.crop((width // 10, height // 10, width - width // 10, height - height // 10))
    original, copy = keypoints(jpeg(picture, 92)), keypoints(jpeg(crop, 92))
    assert geometry.verify(original, copy)[0] == "confirmed"
    assert geometry.verify(copy, original)[0] == "confirmed"


def test_a_dark_photo_with_a_white_caption_band_is_still_its_copy() -> None:
    dull = ImageEnhance.Contrast(photo("chelsea").filter(ImageFilter.GaussianBlur(8))).enhance(0.4)
    picture = ImageEnhance.Brightness(dull).enhance(0.5)
    original, copy = keypoints(jpeg(picture, 92)), keypoints(jpeg(captioned(picture), 92))
    assert len(geometry.unpack(copy).view.points) >= geometry.SPARSE  # the band does not set the levels
    assert geometry.verify(original, copy)[0] == "confirmed"
    assert geometry.verify(copy, original)[0] == "confirmed"


@pytest.mark.parametrize(("name", "corner", "enlarged"), [("rocket", (0, 0), False), ("chelsea", (0, 1), True)])
def test_a_crop_of_four_tenths_is_confirmed_where_its_plane_puts_the_keypoints(
    name: str, corner: tuple[int, int], enlarged: bool
) -> None:
    picture = photo(name)
    width, height = (int(side * 0.4**0.5) for side in picture.size)
    left, top = (picture.width - width) * corner[0], (picture.height - height) * corner[1]
    crop = picture.crop((left, top, left + width, top + height))
    copy = keypoints(crop.resize(picture.size) if enlarged else crop)
    verdict, points = geometry.verify(keypoints(picture), copy)
    assert (verdict, points >= geometry.MIN_INLIERS) == ("confirmed", True)


def test_a_copy_under_stickers_is_confirmed_on_a_few_matches_that_nearly_all_agree() -> None:
    picture = photo("astronaut")
    stickered = next(edit for edit in EDITS if edit.name == "caption-stickers").apply(picture)
    verdict, points = geometry.verify(keypoints(picture), keypoints(Negative("copy", "copy", stickered)))
    assert verdict == "confirmed"
    assert geometry.FEW_INLIERS <= points < geometry.MIN_INLIERS


def test_few_matches_count_only_when_nearly_all_of_them_fit_the_plane() -> None:
    plane = np.eye(3)
    assert geometry._Fit(matches=20, inliers=17, homography=plane).holds(geometry.MIN_INLIER_SHARE)
    # small drawings on transparency: 23 of 33 on a plane, and little else to tell them apart
    assert not geometry._Fit(matches=33, inliers=23, homography=plane).holds(geometry.MIN_INLIER_SHARE)
    assert not geometry._Fit(matches=14, inliers=14, homography=plane).holds(geometry.MIN_INLIER_SHARE)


def test_a_keypoint_is_matched_once_by_its_closest_and_only_through_the_ratio_test() -> None:
    rng = np.random.default_rng(5)
    theirs = rng.integers(0, 256, (30, 32), dtype=np.uint8)

    def flipped(row: int, bits: int) -> np.ndarray:
        near = np.unpackbits(theirs[row])
        near[:bits] ^= 1
        return np.packbits(near)

    ours = rng.integers(0, 256, (6, 32), dtype=np.uint8)  # rows 3–5: near nothing, so no match
    ours[0], ours[1], ours[2] = flipped(5, 3), flipped(5, 1), theirs[7]
    points = np.zeros((6, 2), np.float32), np.zeros((30, 2), np.float32)
    a, b = geometry.Keypoints(points[0], ours), geometry.Keypoints(points[1], theirs)
    matched = geometry._matches(a, b)
    assert list(zip(*(m.tolist() for m in matched), strict=True)) == [(1, 5), (2, 7)]
