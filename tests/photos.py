"""Real photographs (scikit-image ships them) and the edits and malformed files tests need."""

from __future__ import annotations

import io
import subprocess
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

DATA_DIR = Path(data.__file__).parent
FILES = {
    "astronaut": "astronaut.png",
    "chelsea": "chelsea.png",
    "coffee": "coffee.png",
    "rocket": "rocket.jpg",
    "hubble_deep_field": "hubble_deep_field.jpg",
    "motorcycle_left": "motorcycle_left.png",
    "retina": "retina.jpg",
}
PHOTOS = tuple(FILES)


@cache
def photo(name: str) -> Image.Image:
    with Image.open(DATA_DIR / FILES[name]) as image:
        return image.convert("RGB")


ROOT = Path(__file__).resolve().parents[1]
LARGE_PHOTOS = ROOT / "bench" / "out" / "photos"
"""Where ../shared/photos/fetch.sh puts its 12 nature photos (1920–2560 px), once, for the
benchmarks and the tests that need a photo as large as a camera's."""


@cache
def large_photo() -> Image.Image | None:
    """A real 1920–2560 px photo, fetched with apt on first use; None where that cannot be done."""
    script = ROOT.parent / "shared" / "photos" / "fetch.sh"
    if not any(LARGE_PHOTOS.glob("*.jpg")) and script.exists():
        subprocess.run(["bash", str(script), str(LARGE_PHOTOS)], check=False, capture_output=True)
    found = sorted(LARGE_PHOTOS.glob("*.jpg"))
    if not found:
        return None
    with Image.open(found[1]) as image:
        return image.convert("RGB")


def encode(image: Image.Image, fmt: str = "JPEG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def jpeg(name: str, quality: int = 90) -> bytes:
    return encode(photo(name), "JPEG", quality=quality)


def edited_copy(name: str) -> bytes:
    """A near duplicate as people make them: downscaled to 60 % and re-encoded as a JPEG at q=70."""
    image = photo(name)
    small = image.resize((int(image.width * 0.6), int(image.height * 0.6)), Image.Resampling.LANCZOS)
    return encode(small, "JPEG", quality=70)


def truncated_jpeg() -> bytes:
    full = jpeg("coffee")
    return full[: len(full) // 2]


def corrupt_png() -> bytes:
    """A real PNG whose compressed pixel data has been overwritten: the CRC check fails."""
    raw = bytearray(encode(photo("chelsea"), "PNG"))
    start = raw.index(b"IDAT") + 200
    raw[start : start + 64] = bytes(64)
    return bytes(raw)


def pixel_bomb(side: int = 10_000) -> bytes:
    """A 1-bit PNG of side² pixels that compresses to a few kB: a decompression bomb."""
    return encode(Image.new("1", (side, side)), "PNG")


def not_an_image() -> bytes:
    return b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n"


def solid(color: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> Image.Image:
    return Image.fromarray(np.full((size[1], size[0], 3), color, dtype=np.uint8))
