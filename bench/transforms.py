"""Edits people make to photos, by family and difficulty, for the quality benchmark and its
CI subset. Each takes and returns a PIL RGB image, or encoded bytes for format changes."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps


@dataclass(frozen=True)
class Edit:
    name: str
    family: str
    difficulty: str
    """mild, moderate or hard, as the README's operating points group them."""
    apply: Callable[[Image.Image], bytes]


def _jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _encoded(fmt: str, **options: object) -> Callable[[Image.Image], bytes]:
    def encode(image: Image.Image) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, fmt, **options)
        return buffer.getvalue()

    return encode


def _then_jpeg(edit: Callable[[Image.Image], Image.Image]) -> Callable[[Image.Image], bytes]:
    return lambda image: _jpeg(edit(image))


def _resize(scale: float) -> Callable[[Image.Image], Image.Image]:
    return lambda im: im.resize((max(8, round(im.width * scale)), max(8, round(im.height * scale))), Image.Resampling.LANCZOS)


def _crop(keep_area: float) -> Callable[[Image.Image], Image.Image]:
    """Keep ``keep_area`` of the area, off-centre (people crop towards a subject)."""
    side = keep_area**0.5

    def crop(im: Image.Image) -> Image.Image:
        w, h = round(im.width * side), round(im.height * side)
        x, y = (im.width - w) // 3, (im.height - h) // 3
        return im.crop((x, y, x + w, y + h))

    return crop


def _pad(im: Image.Image) -> Image.Image:
    """Letterbox into a square on black."""
    side = max(im.size)
    canvas = Image.new("RGB", (side, side))
    canvas.paste(im, ((side - im.width) // 2, (side - im.height) // 2))
    return canvas


def _screenshot(im: Image.Image) -> Image.Image:
    """Re-rendered on a screen: scaled to 70 %, inside a grey window frame with a title bar."""
    small = _resize(0.7)(im)
    canvas = Image.new("RGB", (small.width + 40, small.height + 80), (236, 236, 236))
    ImageDraw.Draw(canvas).rectangle((0, 0, canvas.width, 30), fill=(60, 60, 60))
    canvas.paste(small, (20, 50))
    return canvas


def _overlay(im: Image.Image) -> Image.Image:
    out = im.copy()
    draw = ImageDraw.Draw(out)
    h = max(12, im.height // 12)
    draw.rectangle((im.width // 20, im.height - 2 * h, im.width // 20 + im.width // 3, im.height - h // 2), fill=(255, 255, 255))
    draw.text((im.width // 20 + 4, im.height - 2 * h + 2), "© dupdetect 2026", fill=(0, 0, 0))
    draw.ellipse((im.width - 3 * h, h // 2, im.width - h, 2 * h + h // 2), fill=(220, 30, 30))  # a logo
    return out


def _noise(im: Image.Image) -> Image.Image:
    pixels = np.asarray(im, dtype=np.int16)
    noisy = pixels + np.random.default_rng(0).normal(0, 10, pixels.shape).astype(np.int16)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def _rotate(degrees: float) -> Callable[[Image.Image], Image.Image]:
    return lambda im: im.rotate(degrees, resample=Image.Resampling.BICUBIC, expand=degrees % 90 == 0)


EDITS: tuple[Edit, ...] = (
    Edit("resize-75", "resize", "mild", _then_jpeg(_resize(0.75))),
    Edit("resize-50", "resize", "mild", _then_jpeg(_resize(0.5))),
    Edit("resize-25", "resize", "mild", _then_jpeg(_resize(0.25))),
    Edit("jpeg-q90", "re-encode", "mild", lambda im: _jpeg(im, 90)),
    Edit("jpeg-q50", "re-encode", "mild", lambda im: _jpeg(im, 50)),
    Edit("jpeg-q10", "re-encode", "mild", lambda im: _jpeg(im, 10)),
    Edit("png", "format", "mild", _encoded("PNG")),
    Edit("webp-q80", "format", "mild", _encoded("WEBP", quality=80)),
    Edit("brightness+30%", "colour", "mild", _then_jpeg(lambda im: ImageEnhance.Brightness(im).enhance(1.3))),
    Edit("contrast-30%", "colour", "mild", _then_jpeg(lambda im: ImageEnhance.Contrast(im).enhance(0.7))),
    Edit("saturation+50%", "colour", "mild", _then_jpeg(lambda im: ImageEnhance.Color(im).enhance(1.5))),
    Edit("blur-r2", "blur", "mild", _then_jpeg(lambda im: im.filter(ImageFilter.GaussianBlur(2)))),
    Edit("noise-s10", "noise", "mild", _then_jpeg(_noise)),
    Edit("crop-95", "crop", "moderate", _then_jpeg(_crop(0.95))),
    Edit("crop-80", "crop", "moderate", _then_jpeg(_crop(0.80))),
    Edit("letterbox", "padding", "moderate", _then_jpeg(_pad)),
    Edit("grayscale", "grayscale", "moderate", _then_jpeg(lambda im: ImageOps.grayscale(im).convert("RGB"))),
    Edit("text-logo", "overlay", "moderate", _then_jpeg(_overlay)),
    Edit("screenshot", "screenshot", "moderate", _then_jpeg(_screenshot)),
    Edit("crop-60", "crop", "hard", _then_jpeg(_crop(0.60))),
    Edit("crop-50", "crop", "hard", _then_jpeg(_crop(0.50))),
    Edit("flip", "flip", "hard", _then_jpeg(ImageOps.mirror)),
    Edit("rotate+10", "rotation", "hard", _then_jpeg(_rotate(10))),
    Edit("rotate-10", "rotation", "hard", _then_jpeg(_rotate(-10))),
    Edit("rotate-90", "rotation", "hard", _then_jpeg(_rotate(90))),
)
