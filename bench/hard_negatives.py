"""Images that are different from each other but look alike to a global descriptor or a
perceptual hash: the false pairs users reported. Every image here is a distinct original; any
pair among them (or with a photo) is a false pair.

Families: flat colours, gradients, logos on plain backgrounds, mostly transparent PNGs, pages
of text, screenshots of text, low-texture surfaces, and a real near-pair of different shots
(scikit-image's stereo motorcycle: two cameras, one moment).
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONTS = Path("/usr/share/fonts/truetype/dejavu")
WORDS = (  # noqa: SIM905 - a word list reads best as text
    "the of and to in is that for it as with was on be by this are from at or an have not which "
    "but all were when we there can more if will one about up out them their has what so into "
    "time only new some could these two may first then do any like my now over such our man me "
    "even most made after also did many before must through back years where much your way well "
    "down should because each just those people how too little state good very make world still "
    "own see men work long get here between both life being under never day same another know "
    "while last might us great old year off come since against go came right used take three"
).split()


@dataclass(frozen=True)
class Negative:
    name: str
    family: str
    data: bytes


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    path = FONTS / ("DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf")
    return ImageFont.truetype(str(path), size) if path.exists() else ImageFont.load_default(size)


def flats() -> list[Negative]:
    colours = [(255, 255, 255), (250, 250, 245), (0, 0, 0), (30, 60, 120), (200, 40, 40), (128, 128, 128)]
    out = [Negative(f"flat-{i}", "flat", _png(Image.new("RGB", (1600, 1000), c))) for i, c in enumerate(colours)]
    noise = np.random.default_rng(1).normal(0, 3, (1000, 1600, 3))
    for i, c in enumerate(((235, 230, 220), (40, 45, 50))):
        pixels = np.clip(np.array(c) + noise, 0, 255).astype(np.uint8)
        out.append(Negative(f"flat-noisy-{i}", "flat", _jpeg(Image.fromarray(pixels))))
    return out


def gradients() -> list[Negative]:
    out = []
    y, x = np.mgrid[0:1000, 0:1600] / np.array([1000, 1600])[:, None, None]
    specs = [
        ((20, 40, 160), (120, 200, 255), x),
        ((160, 20, 40), (255, 200, 120), x),
        ((20, 120, 40), (200, 255, 120), y),
        ((60, 0, 90), (255, 120, 200), y),
        ((10, 10, 10), (250, 250, 250), (x + y) / 2),
        ((250, 160, 0), (255, 250, 200), (x - y + 1) / 2),
        ((0, 80, 80), (0, 220, 200), np.hypot(x - 0.5, y - 0.5) * 1.4),
        ((90, 90, 90), (180, 180, 200), x**2),
    ]
    for i, (a, b, t) in enumerate(specs):
        pixels = (np.array(a)[None, None] * (1 - t[..., None]) + np.array(b)[None, None] * t[..., None]).astype(np.uint8)
        out.append(Negative(f"gradient-{i}", "gradient", _jpeg(Image.fromarray(pixels))))
    return out


def _logo(draw: ImageDraw.ImageDraw, centre: tuple[int, int], scale: int, seed: int, colour: tuple[int, ...]) -> None:
    """A made-up brand mark: an irregular star or polygon of its own and a word under it."""
    rng = random.Random(seed)
    cx, cy = centre
    corners = rng.randint(3, 9)
    spikes = rng.random() < 0.5
    points = []
    for k in range(corners * (2 if spikes else 1)):
        radius = scale * (rng.uniform(0.35, 0.55) if spikes and k % 2 else rng.uniform(0.8, 1.0))
        angle = 2 * np.pi * k / (corners * (2 if spikes else 1)) + rng.uniform(-0.15, 0.15)
        points.append((cx + radius * np.cos(angle), cy + radius * np.sin(angle)))
    if rng.random() < 0.5:
        draw.polygon(points, fill=colour)
    else:
        draw.line([*points, points[0]], fill=colour, width=max(3, scale // rng.randint(5, 12)))
    name = "".join(rng.choice("ABCDEFGHKLMNPRSTVXZ") for _ in range(rng.randint(4, 7)))
    draw.text((cx, cy + scale + scale // 2), name, fill=colour, font=_font(max(12, scale // 2), bold=True), anchor="mt")


def logos() -> list[Negative]:
    backgrounds = [(255, 255, 255), (245, 245, 240), (20, 20, 30), (230, 235, 245)]
    out = []
    for i in range(8):
        bg = backgrounds[i % len(backgrounds)]
        ink = (30, 30, 30) if sum(bg) > 380 else (240, 240, 240)
        image = Image.new("RGB", (1600, 1000), bg)
        _logo(ImageDraw.Draw(image), (800, 400), 140 + 20 * (i % 3), i, (200, 40, 40) if i % 2 else ink)
        out.append(Negative(f"logo-{i}", "logo", _png(image)))
    return out


def transparent() -> list[Negative]:
    """Mostly transparent wallpapers and stickers: a small drawing on transparency, each different."""
    out = []
    for i in range(7):
        image = Image.new("RGBA", (1600, 1000), (0, 0, 0, 0))
        draw = ImageDraw.Draw(image)
        colour = [(255, 255, 255, 255), (20, 20, 20, 255), (40, 120, 220, 255), (230, 200, 30, 200)][i % 4]
        _logo(draw, (400 + 130 * i, 300 + 60 * (i % 3)), 60 + 15 * i, 10 + i, colour)
        out.append(Negative(f"transparent-{i}", "transparent", _png(image)))
    return out


def _page(seed: int, size: tuple[int, int], font_size: int) -> Image.Image:
    rng = random.Random(seed)
    image = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(image)
    margin, y = size[0] // 10, size[1] // 12
    title = " ".join(rng.choice(WORDS) for _ in range(4)).title()
    draw.text((margin, y), title, fill=(0, 0, 0), font=_font(font_size * 2, bold=True))
    y += font_size * 4
    font = _font(font_size)
    while y < size[1] - size[1] // 12:
        line = ""
        while draw.textlength(line + " x", font=font) < size[0] - 2 * margin - font_size * 4:
            line += " " + rng.choice(WORDS)
        if rng.random() < 0.12:
            y += font_size  # paragraph break
            line = line[: len(line) // 2]
        draw.text((margin, y), line.strip(), fill=(20, 20, 20), font=font)
        y += int(font_size * 1.5)
    return image


def documents() -> list[Negative]:
    out = [Negative(f"page-{i}", "document", _jpeg(_page(i, (1240, 1754), 22))) for i in range(8)]
    for i in range(4):  # screenshots of a text editor: same chrome, different text
        shot = Image.new("RGB", (1600, 1000), (250, 250, 250))
        draw = ImageDraw.Draw(shot)
        draw.rectangle((0, 0, 1600, 36), fill=(50, 50, 55))
        draw.rectangle((0, 36, 220, 1000), fill=(238, 238, 240))
        shot.paste(_page(100 + i, (1340, 940), 16), (240, 50))
        out.append(Negative(f"text-screenshot-{i}", "document", _png(shot)))
    return out


def textures() -> list[Negative]:
    """Low-texture and repetitive surfaces, each a different one."""
    from skimage import data

    out = []
    for name in ("brick", "grass", "gravel"):
        out.append(Negative(f"texture-{name}", "texture", _jpeg(Image.fromarray(getattr(data, name)()))))
    rng = np.random.default_rng(7)
    for i in range(3):  # plaster-like noise at different scales
        noise = Image.fromarray((rng.random((250, 400)) * 255).astype(np.uint8)).resize((1600, 1000), Image.Resampling.BICUBIC)
        out.append(Negative(f"texture-plaster-{i}", "texture", _jpeg(noise.filter(ImageFilter.GaussianBlur(1 + 2 * i)))))
    return out


def bursts() -> list[Negative]:
    """Two different shots of one scene, a moment and a few centimetres apart."""
    from skimage import data

    left, right, _ = data.stereo_motorcycle()
    return [
        Negative("motorcycle-left", "burst", _jpeg(Image.fromarray(left))),
        Negative("motorcycle-right", "burst", _jpeg(Image.fromarray(right))),
    ]


def hard_negatives() -> list[Negative]:
    return flats() + gradients() + logos() + transparent() + documents() + textures() + bursts()
