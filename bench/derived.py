"""An original photo and the copies people make of it, for the keeper benchmark: each copy is
derived from the original, so the original is the one to keep.

The original is a camera JPEG (quality 92, with make, model and date taken in EXIF). The copies
are what editors, messengers and backup tools leave behind: upscales, padding, a rotation with
filled corners, lossless re-saves, lower-quality JPEGs, crops, captions, stripped metadata,
and (for some originals) dozens of near copies.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageEnhance

CAMERAS = [("Canon", "Canon EOS 80D"), ("NIKON CORPORATION", "NIKON D750"), ("FUJIFILM", "X-T3"), ("Apple", "iPhone 13")]


def _exif(index: int) -> Image.Exif:
    exif = Image.Exif()
    make, model = CAMERAS[index % len(CAMERAS)]
    exif[0x010F], exif[0x0110] = make, model
    exif.get_ifd(0x8769)[0x9003] = f"2019:0{1 + index % 9}:1{index % 10} 10:{index % 60:02d}:00"
    return exif


def _save(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def original(photo: Image.Image, index: int, *, max_side: int = 1600) -> bytes:
    """The camera's file: at most ``max_side`` px, JPEG quality 92, camera EXIF."""
    picture = photo.convert("RGB")
    picture.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return _save(picture, "JPEG", quality=92, exif=_exif(index))


def strip_exif(jpeg: bytes) -> bytes:
    """The same JPEG without its APP1 (EXIF) segment: identical pixels, no provenance."""
    out, at = bytearray(jpeg[:2]), 2
    while at + 4 <= len(jpeg) and jpeg[at] == 0xFF and jpeg[at + 1] not in (0xDA, 0xD9):
        length = int.from_bytes(jpeg[at + 2 : at + 4], "big")
        if jpeg[at + 1] != 0xE1:
            out += jpeg[at : at + 2 + length]
        at += 2 + length
    return bytes(out + jpeg[at:])


def captioned(picture: Image.Image) -> Image.Image:
    """``picture`` above a white band with a line of dark strokes, as a caption adds."""
    band = max(24, picture.height // 7)
    canvas = Image.new("RGB", (picture.width, picture.height + band), "white")
    canvas.paste(picture, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for i in range(0, picture.width // 2, 12):  # a line of "text": dark strokes on the band
        draw.rectangle((24 + i, picture.height + band // 3, 30 + i, picture.height + 2 * band // 3), fill=(20, 20, 20))
    return canvas


def _padded(picture: Image.Image) -> bytes:
    canvas = Image.new("RGBA", (picture.width + 400, picture.height + 400), (0, 0, 0, 0))
    canvas.paste(picture, (200, 200))
    return _save(canvas, "PNG")


Derive = Callable[[Image.Image, bytes], bytes]

DERIVED: dict[str, Derive] = {
    "upscale-2x.png": lambda p, raw: _save(p.resize((p.width * 2, p.height * 2), Image.Resampling.LANCZOS), "PNG"),
    "upscale-1.5x.jpg": lambda p, raw: _save(
        p.resize((p.width * 3 // 2, p.height * 3 // 2), Image.Resampling.BICUBIC), "JPEG", quality=95
    ),
    "padded-transparent.png": lambda p, raw: _padded(p),
    "rotated-7.jpg": lambda p, raw: _save(p.rotate(7, Image.Resampling.BICUBIC, expand=True), "JPEG", quality=95),
    "resave.png": lambda p, raw: _save(p, "PNG"),
    "resave.tif": lambda p, raw: _save(p, "TIFF", compression="tiff_deflate"),
    "quality-60.jpg": lambda p, raw: _save(p, "JPEG", quality=60, exif=Image.open(io.BytesIO(raw)).getexif()),
    "crop-80.jpg": lambda p, raw: _save(
        p.crop((p.width // 10, p.height // 10, p.width - p.width // 10, p.height - p.height // 10)),
        "JPEG",
        quality=92,
        exif=Image.open(io.BytesIO(raw)).getexif(),
    ),
    "caption.jpg": lambda p, raw: _save(captioned(p), "JPEG", quality=92),
    "no-exif.jpg": lambda p, raw: strip_exif(raw),
}


def near_copies(picture: Image.Image, count: int, seed: int) -> list[bytes]:
    """``count`` mild copies (smaller, recompressed, slightly cropped or retouched), none of them
    better than the original: what a phone's shares and a messenger's downloads accumulate."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        copy = picture
        scale = rng.uniform(0.4, 0.95)
        copy = copy.resize((max(64, round(copy.width * scale)), max(64, round(copy.height * scale))), Image.Resampling.BICUBIC)
        if rng.random() < 0.4:
            dx, dy = round(copy.width * rng.uniform(0, 0.08)), round(copy.height * rng.uniform(0, 0.08))
            copy = copy.crop((dx, dy, copy.width - dx, copy.height - dy))
        if rng.random() < 0.3:
            copy = ImageEnhance.Brightness(copy).enhance(rng.uniform(0.85, 1.15))
        out.append(_save(copy, "JPEG", quality=rng.randint(45, 90)))
    return out


@dataclass
class Folder:
    files: dict[str, bytes]
    """Relative name → bytes."""
    originals: dict[str, str]
    """Each file's original (its own name for an original)."""


def photo_folder(photos: list[bytes], *, near: tuple[int, int] = (16, 50), near_every: int = 3) -> Folder:
    """Per photo, its original and every derived copy in a folder of its own; every
    ``near_every``-th photo also gets between ``near[0]`` and ``near[1]`` near copies."""
    files: dict[str, bytes] = {}
    originals: dict[str, str] = {}
    rng = random.Random(7)
    for index, payload in enumerate(photos):
        raw = original(Image.open(io.BytesIO(payload)), index)
        picture = Image.open(io.BytesIO(raw)).convert("RGB")
        name = f"photo{index:02d}/original.jpg"
        files[name] = raw
        originals[name] = name
        for suffix, derive in DERIVED.items():
            files[f"photo{index:02d}/{suffix}"] = derive(picture, raw)
            originals[f"photo{index:02d}/{suffix}"] = name
        if index % near_every == 0:
            for n, data in enumerate(near_copies(picture, rng.randint(*near), seed=index)):
                files[f"photo{index:02d}/near/{n:02d}.jpg"] = data
                originals[f"photo{index:02d}/near/{n:02d}.jpg"] = name
    return Folder(files=files, originals=originals)
