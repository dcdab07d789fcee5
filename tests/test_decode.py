"""Decoding real files: every supported format, EXIF orientation, alpha, GIF frames, and every
error class with a real malformed file."""

import numpy as np
import pytest
from PIL import Image, ImageDraw

from dupdetect.embedding.decode import DecodeError, decode, sniff_format
from tests.photos import (
    corrupt_png,
    encode,
    jpeg,
    not_an_image,
    photo,
    pixel_bomb,
    solid,
    truncated_jpeg,
)

SIZE = 224
LIMIT = 64_000_000


@pytest.mark.parametrize(
    ("fmt", "expected", "options"),
    [
        ("JPEG", "JPEG", {"quality": 90}),
        ("PNG", "PNG", {}),
        ("WEBP", "WEBP", {"quality": 90}),
        ("GIF", "GIF", {}),
        ("BMP", "BMP", {}),
        ("TIFF", "TIFF", {}),
        ("AVIF", "AVIF", {"quality": 80}),
        ("HEIF", "HEIF", {"quality": 80}),
    ],
)
def test_each_format_decodes_to_the_model_input(fmt: str, expected: str, options: dict) -> None:
    original = photo("chelsea")
    image = decode(encode(original, fmt, **options), size=SIZE, max_pixels=LIMIT)
    assert image.format == expected
    assert (image.width, image.height) == original.size
    assert image.pixels.shape == (SIZE, SIZE, 3) and image.pixels.dtype == np.uint8
    reference = np.asarray(original.resize((SIZE, SIZE), Image.Resampling.BILINEAR), dtype=np.float32)
    assert np.abs(image.pixels.astype(np.float32) - reference).mean() < 12  # same picture


def test_format_comes_from_the_bytes_not_the_name() -> None:
    assert sniff_format(encode(photo("coffee"), "PNG")) == "PNG"
    assert sniff_format(jpeg("coffee")) == "JPEG"
    assert sniff_format(b"GIF89a....") == "GIF"
    assert sniff_format(not_an_image()) is None


def test_exif_orientation_is_applied() -> None:
    original = photo("rocket")  # landscape
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: viewers rotate 90° clockwise
    sideways = original.transpose(Image.Transpose.ROTATE_90)
    image = decode(encode(sideways, "JPEG", quality=95, exif=exif), size=SIZE, max_pixels=LIMIT)
    assert (image.width, image.height) == original.size
    upright = np.asarray(original.resize((SIZE, SIZE), Image.Resampling.BILINEAR), dtype=np.float32)
    assert np.abs(image.pixels.astype(np.float32) - upright).mean() < 12


def _drawing(colour: tuple[int, int, int, int], where: tuple[int, int]) -> Image.Image:
    """A mostly transparent wallpaper: one small disc somewhere on 400×300 of transparency."""
    rgba = Image.new("RGBA", (400, 300), (0, 0, 0, 0))
    x, y = where
    ImageDraw.Draw(rgba).ellipse((x, y, x + 60, y + 60), fill=colour)
    return rgba


def test_a_transparent_image_is_compared_on_what_is_drawn() -> None:
    rgba = Image.new("RGBA", (80, 60), (200, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (0, 0, 40, 60))
    pixels = decode(encode(rgba, "PNG"), size=SIZE, max_pixels=LIMIT).pixels
    assert (pixels.reshape(-1, 3).mean(axis=0) > [-1, -1, 200]).all() and pixels[..., :2].mean() < 30  # all blue


def test_white_drawings_on_transparency_do_not_become_blank() -> None:
    disc = decode(encode(_drawing((255, 255, 255, 255), (50, 50)), "PNG"), size=SIZE, max_pixels=LIMIT)
    assert disc.pixels.std() > 60  # a white disc on black, not white on white
    square = Image.new("RGBA", (400, 300), (0, 0, 0, 0))
    ImageDraw.Draw(square).polygon([(200, 100), (260, 160), (140, 160)], fill=(255, 255, 255, 255))
    triangle = decode(encode(square, "PNG"), size=SIZE, max_pixels=LIMIT)
    assert np.abs(disc.pixels.astype(np.int16) - triangle.pixels).mean() > 30  # two drawings, two pictures


def test_an_empty_or_flat_image_has_no_perceptual_hash() -> None:
    for image in (
        Image.new("RGBA", (300, 200), (0, 0, 0, 0)),
        Image.new("RGB", (300, 200), (250, 250, 250)),
        Image.linear_gradient("L").resize((300, 200)).convert("RGB"),
    ):
        assert decode(encode(image, "PNG"), size=SIZE, max_pixels=LIMIT).phash is None
    assert decode(jpeg("chelsea"), size=SIZE, max_pixels=LIMIT).phash is not None


def test_letterbox_padding_is_not_part_of_the_picture() -> None:
    original = photo("chelsea")
    boxed = Image.new("RGB", (original.width, original.width), (0, 0, 0))
    boxed.paste(original, (0, (original.width - original.height) // 2))
    plain = decode(encode(original, "PNG"), size=SIZE, max_pixels=LIMIT)
    padded = decode(encode(boxed, "PNG"), size=SIZE, max_pixels=LIMIT)
    assert np.abs(plain.pixels.astype(np.int16) - padded.pixels).mean() < 6
    assert (padded.width, padded.height) == boxed.size  # the file's own size is still reported


def test_animated_gif_uses_its_first_frame() -> None:
    frames = [solid((255, 0, 0)), solid((0, 255, 0))]
    gif = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    pixels = decode(gif, size=SIZE, max_pixels=LIMIT).pixels
    red, green, _ = pixels.reshape(-1, 3).mean(axis=0)
    assert red > 200 and green < 50


def test_large_jpeg_is_decoded_at_reduced_scale_with_the_same_result() -> None:
    big = photo("astronaut").resize((4000, 3000), Image.Resampling.BICUBIC)  # 12 megapixels
    image = decode(encode(big, "JPEG", quality=90), size=SIZE, max_pixels=LIMIT)
    assert (image.width, image.height) == (4000, 3000)
    full = np.asarray(big.resize((SIZE, SIZE), Image.Resampling.BILINEAR, reducing_gap=2.0), dtype=np.float32)
    assert np.abs(image.pixels.astype(np.float32) - full).mean() < 6


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"", "empty_image"),
        (not_an_image(), "unsupported_format"),
        (b"\x00" * 1000, "unsupported_format"),
        (truncated_jpeg(), "corrupt_image"),
        (corrupt_png(), "corrupt_image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "corrupt_image"),
        (pixel_bomb(), "too_many_pixels"),
    ],
    ids=["empty", "pdf", "zeros", "truncated-jpeg", "corrupt-png", "png-header-only", "pixel-bomb"],
)
def test_bad_bytes_raise_one_typed_error(payload: bytes, code: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode(payload, size=SIZE, max_pixels=LIMIT)
    assert caught.value.code == code
    assert caught.value.message


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP"])
def test_mutated_files_only_ever_raise_decode_errors(fmt: str) -> None:
    """Hostile bytes: flipped bytes, cut-offs and splices of real files never escape as other errors."""
    rng = np.random.default_rng(1)
    original = bytearray(encode(photo("coffee").resize((120, 80)), fmt))
    for trial in range(60):
        data = bytearray(original)
        if trial % 3 == 0:
            data = data[: rng.integers(8, len(data))]
        for _ in range(rng.integers(1, 12)):
            data[rng.integers(0, len(data))] = rng.integers(0, 256)
        try:
            decode(bytes(data), size=64, max_pixels=LIMIT)
        except DecodeError as exc:
            assert exc.code in {"corrupt_image", "unsupported_format", "too_many_pixels"}
