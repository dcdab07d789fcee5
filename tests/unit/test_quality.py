"""What decoding measures of a copy for the keeper rule, on real photos and the copies people
make of them (bench/derived.py): no database, no model."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from bench.derived import DERIVED, original, strip_exif
from dupdetect.embedding.decode import DecodedImage, decode
from dupdetect.embedding.quality import UPSCALED_FROM
from tests.photos import large_photo, photo


def measure(data: bytes) -> DecodedImage:
    return decode(data, size=224, max_pixels=100_000_000, keypoints=False)


@pytest.fixture(scope="module")
def camera_file() -> bytes:
    """A camera's JPEG (quality 92, EXIF) of a real photo at its own size."""
    return original(photo("astronaut"), 1)


def copy(kind: str, raw: bytes) -> DecodedImage:
    return measure(DERIVED[kind](Image.open(io.BytesIO(raw)).convert("RGB"), raw))


def test_a_camera_file_reads_as_the_original(camera_file: bytes) -> None:
    found = measure(camera_file)
    assert found.artefacts == () and found.jpeg_quality == 92 and found.camera_make == "NIKON CORPORATION"
    assert (found.content_width, found.content_height) == (512, 512) and found.detail_scale < UPSCALED_FROM


def test_an_enlarged_camera_file_is_seen_as_one() -> None:
    picture = large_photo()
    if picture is None:
        pytest.skip("needs ../shared/photos (Debian's apt)")
    raw = original(picture, 2)  # 1600 px, as a camera's
    assert measure(raw).artefacts == ()
    grown = copy("upscale-1.5x.jpg", raw)  # its JPEG blocks grew to 12 px with it
    assert "upscaled" in grown.artefacts and grown.detail_scale == 1.5
    assert "upscaled" in copy("upscale-2x.png", raw).artefacts


def test_the_marks_of_editing_are_seen(camera_file: bytes) -> None:
    assert "upscaled" in copy("upscale-2x.png", camera_file).artefacts
    padded = copy("padded-transparent.png", camera_file)
    assert "padded" in padded.artefacts and (padded.content_width, padded.content_height) == (512, 512)
    rotated = copy("rotated-7.jpg", camera_file)
    assert "filled_corners" in rotated.artefacts
    assert rotated.content_width * rotated.content_height < 1.05 * 512 * 512 < rotated.width * rotated.height
    messenger = io.BytesIO()  # a JPEG at a messenger's quality, then kept as PNG: its 8×8 blocks stay
    Image.open(io.BytesIO(camera_file)).save(messenger, "JPEG", quality=80)
    assert "decoded_jpeg" in copy("resave.png", messenger.getvalue()).artefacts
    assert copy("quality-60.jpg", camera_file).jpeg_quality == 60


def test_a_lossless_picture_that_never_was_a_jpeg_is_not_called_a_copy_of_one() -> None:
    buffer = io.BytesIO()
    photo("chelsea").save(buffer, "PNG")
    assert measure(buffer.getvalue()).artefacts == ()


def test_stripping_exif_changes_only_the_metadata(camera_file: bytes) -> None:
    stripped = measure(strip_exif(camera_file))
    kept = measure(camera_file)
    assert stripped.camera_make is None and stripped.taken_at is None and stripped.pixels.tobytes() == kept.pixels.tobytes()
