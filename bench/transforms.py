"""Edits people make to photos, by family and difficulty, for the quality benchmark and its
CI subset. Each takes and returns a PIL RGB image, or encoded bytes for format changes."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps


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


def _encoded_after(edit: Callable[[Image.Image], Image.Image], fmt: str) -> Callable[[Image.Image], bytes]:
    return lambda image: _encoded(fmt)(edit(image))


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


def _pad(colour: tuple[int, int, int], aspect: float = 1.0) -> Callable[[Image.Image], Image.Image]:
    """Letterbox (or pillarbox) into ``aspect`` on a plain colour, as phones and video editors do."""

    def pad(im: Image.Image) -> Image.Image:
        width = max(im.width, round(im.height * aspect))
        height = max(im.height, round(width / aspect))
        canvas = Image.new("RGB", (width, height), colour)
        canvas.paste(im, ((width - im.width) // 2, (height - im.height) // 2))
        return canvas

    return pad


def _phone_screenshot(im: Image.Image) -> Image.Image:
    """Viewed full-width on a phone: status bar, app bar and buttons around it, portrait canvas."""
    width = 1080
    shown = im.resize((width, round(im.height * width / im.width)), Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (width, max(2340, shown.height + 600)), (18, 18, 18))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, width, 90), fill=(0, 0, 0))
    draw.text((40, 30), "12:41", fill=(255, 255, 255))
    draw.rectangle((0, 90, width, 240), fill=(33, 33, 33))
    draw.text((40, 150), "< Photos", fill=(255, 255, 255))
    top = (canvas.height - shown.height) // 2
    canvas.paste(shown, (0, top))
    for k in range(4):
        draw.ellipse((120 + 240 * k, canvas.height - 200, 180 + 240 * k, canvas.height - 140), fill=(200, 200, 200))
    return canvas


def _stickers(im: Image.Image) -> Image.Image:
    """A caption across the picture and two stickers, as messaging apps add them."""
    out = im.copy()
    draw = ImageDraw.Draw(out)
    s = min(im.size)
    draw.text(
        (im.width // 2, im.height // 6),
        "HAPPY HOLIDAYS",
        fill=(255, 255, 255),
        anchor="mm",
        stroke_width=3,
        stroke_fill=(0, 0, 0),
        font=ImageFont.load_default(s // 12),
    )
    draw.ellipse((im.width // 10, im.height // 2, im.width // 10 + s // 5, im.height // 2 + s // 5), fill=(250, 210, 40))
    draw.regular_polygon((im.width * 3 // 4, im.height * 2 // 3, s // 9), 5, fill=(220, 40, 120))
    return out


def _sepia(im: Image.Image) -> Image.Image:
    grey = np.asarray(ImageOps.grayscale(im), dtype=np.float32)[..., None]
    return Image.fromarray(np.clip(grey * np.array([1.07, 0.74, 0.43]) + np.array([30, 20, 10]), 0, 255).astype(np.uint8))


def _warm_vignette(im: Image.Image) -> Image.Image:
    """An 'Instagram' filter: warmer, more contrast, dark corners."""
    pixels = np.asarray(ImageEnhance.Contrast(im).enhance(1.25), dtype=np.float32) * np.array([1.08, 1.0, 0.85])
    y, x = np.ogrid[-1 : 1 : im.height * 1j, -1 : 1 : im.width * 1j]
    fall = 1 - 0.45 * np.clip(x**2 + y**2 - 0.3, 0, None)
    return Image.fromarray(np.clip(pixels * fall[..., None], 0, 255).astype(np.uint8))


def _resize_chain(im: Image.Image) -> Image.Image:
    """Shared three times: down, up, down again, re-encoded at every step."""
    for scale, quality in ((0.5, 80), (1.6, 75), (0.6, 70)):
        im = Image.open(io.BytesIO(_jpeg(_resize(scale)(im), quality))).convert("RGB")
    return im


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


def _rotated_crop(im: Image.Image) -> Image.Image:
    """Straightened by 5° and cropped to 70 % to hide the corners, as photo editors do."""
    return _crop(0.70)(im.rotate(5, resample=Image.Resampling.BICUBIC))


EDITS: tuple[Edit, ...] = (
    Edit("resize-75", "resize", "mild", _then_jpeg(_resize(0.75))),
    Edit("resize-50", "resize", "mild", _then_jpeg(_resize(0.5))),
    Edit("resize-25", "resize", "mild", _then_jpeg(_resize(0.25))),
    Edit("resize-chain", "resize", "mild", _then_jpeg(_resize_chain)),
    Edit("jpeg-q90", "re-encode", "mild", lambda im: _jpeg(im, 90)),
    Edit("jpeg-q50", "re-encode", "mild", lambda im: _jpeg(im, 50)),
    Edit("jpeg-q10", "re-encode", "mild", lambda im: _jpeg(im, 10)),
    Edit("png", "format", "mild", _encoded("PNG")),
    Edit("webp-q80", "format", "mild", _encoded("WEBP", quality=80)),
    Edit("brightness+30%", "colour", "mild", _then_jpeg(lambda im: ImageEnhance.Brightness(im).enhance(1.3))),
    Edit("contrast-30%", "colour", "mild", _then_jpeg(lambda im: ImageEnhance.Contrast(im).enhance(0.7))),
    Edit("saturation+50%", "colour", "mild", _then_jpeg(lambda im: ImageEnhance.Color(im).enhance(1.5))),
    Edit("sepia", "colour", "mild", _then_jpeg(_sepia)),
    Edit("warm-vignette", "colour", "mild", _then_jpeg(_warm_vignette)),
    Edit("blur-r2", "blur", "mild", _then_jpeg(lambda im: im.filter(ImageFilter.GaussianBlur(2)))),
    Edit("noise-s10", "noise", "mild", _then_jpeg(_noise)),
    Edit("crop-95", "crop", "moderate", _then_jpeg(_crop(0.95))),
    Edit("crop-80", "crop", "moderate", _then_jpeg(_crop(0.80))),
    Edit("crop-70", "crop", "moderate", _then_jpeg(_crop(0.70))),
    Edit("letterbox-black", "padding", "moderate", _then_jpeg(_pad((0, 0, 0)))),
    Edit("letterbox-white", "padding", "moderate", _then_jpeg(_pad((255, 255, 255)))),
    Edit("pillarbox-9:16", "padding", "moderate", _then_jpeg(_pad((0, 0, 0), 9 / 16))),
    Edit("grayscale", "grayscale", "moderate", _then_jpeg(lambda im: ImageOps.grayscale(im).convert("RGB"))),
    Edit("text-logo", "overlay", "moderate", _then_jpeg(_overlay)),
    Edit("caption-stickers", "overlay", "moderate", _then_jpeg(_stickers)),
    Edit("screenshot", "screenshot", "moderate", _then_jpeg(_screenshot)),
    Edit("phone-screenshot", "screenshot", "moderate", _encoded_after(_phone_screenshot, "PNG")),
    Edit("crop-60", "crop", "hard", _then_jpeg(_crop(0.60))),
    Edit("crop-50", "crop", "hard", _then_jpeg(_crop(0.50))),
    Edit("crop-40", "crop", "hard", _then_jpeg(_crop(0.40))),
    Edit("flip", "flip", "hard", _then_jpeg(ImageOps.mirror)),
    Edit("rotate+10", "rotation", "hard", _then_jpeg(_rotate(10))),
    Edit("rotate-10", "rotation", "hard", _then_jpeg(_rotate(-10))),
    Edit("rotate-90", "rotation", "hard", _then_jpeg(_rotate(90))),
    Edit("rotate-180", "rotation", "hard", _then_jpeg(_rotate(180))),
    Edit("rotate-270", "rotation", "hard", _then_jpeg(_rotate(270))),
    Edit("straighten-crop", "rotation", "hard", _then_jpeg(_rotated_crop)),
)
