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
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

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


def png(image: Image.Image) -> bytes:
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
    out = [Negative(f"flat-{i}", "flat", png(Image.new("RGB", (1600, 1000), c))) for i, c in enumerate(colours)]
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
        out.append(Negative(f"logo-{i}", "logo", png(image)))
    return out


def transparent() -> list[Negative]:
    """Mostly transparent wallpapers and stickers: a small drawing on transparency, each different."""
    out = []
    for i in range(7):
        image = Image.new("RGBA", (1600, 1000), (0, 0, 0, 0))
        draw = ImageDraw.Draw(image)
        colour = [(255, 255, 255, 255), (20, 20, 20, 255), (40, 120, 220, 255), (230, 200, 30, 200)][i % 4]
        _logo(draw, (400 + 130 * i, 300 + 60 * (i % 3)), 60 + 15 * i, 10 + i, colour)
        out.append(Negative(f"transparent-{i}", "transparent", png(image)))
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
        out.append(Negative(f"text-screenshot-{i}", "document", png(shot)))
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


# The false pairs of issue #24: images that share a region (window chrome, a template, a
# wordmark, lines of text) and differ in the rest. A copy shares the whole picture.


def photo_viewer(picture: Image.Image, folder: list[Image.Image], name: str, index: int) -> Image.Image:
    """A photo viewer's window around ``picture``: title bar, toolbar, the folder's filmstrip,
    status bar."""
    window = Image.new("RGB", (1600, 1000), (40, 40, 43))
    draw = ImageDraw.Draw(window)
    draw.rectangle((0, 0, 1600, 34), fill=(28, 28, 30))
    draw.text((800, 17), f"{name} — Photos", fill=(230, 230, 230), font=_font(15), anchor="mm")
    for k, colour in enumerate(((236, 95, 90), (245, 190, 80), (98, 200, 85))):
        draw.ellipse((14 + 22 * k, 11, 26 + 22 * k, 23), fill=colour)
    draw.rectangle((0, 34, 1600, 86), fill=(52, 52, 56))
    for k, label in enumerate(("Back", "Rotate", "Crop", "Adjust", "Share", "Delete", "Info", "Zoom 100%")):
        x = 20 + 120 * k
        draw.rounded_rectangle((x, 44, x + 26, 76), 6, outline=(200, 200, 200), width=2)
        draw.text((x + 34, 60), label, fill=(210, 210, 210), font=_font(14), anchor="lm")
    draw.rectangle((0, 960, 1600, 1000), fill=(28, 28, 30))
    status = f"{index + 1} of 248    {picture.width}×{picture.height}    {1.2 + 0.37 * index:.1f} MB    ISO {100 * (index + 1)}"
    draw.text((20, 980), status, fill=(190, 190, 190), font=_font(14), anchor="lm")
    x, k = 20, 0
    while x < 1450:  # the folder's thumbnails, this one highlighted
        thumb = folder[k % len(folder)].copy()
        thumb.thumbnail((150, 100), Image.Resampling.LANCZOS)
        if k == index:
            draw.rectangle((x - 4, 846, x + thumb.width + 3, 846 + thumb.height + 7), fill=(70, 140, 240))
        window.paste(thumb, (x, 850))
        x, k = x + thumb.width + 12, k + 1
    shown = ImageOps.contain(picture, (1560, 744), Image.Resampling.LANCZOS)
    window.paste(shown, ((1600 - shown.width) // 2, 92 + (744 - shown.height) // 2))
    return window


def soft_art(seed: int, count: int) -> list[Image.Image]:
    """Smooth abstract backgrounds, each different: few corners of their own."""
    rng = np.random.default_rng(seed)
    return [
        Image.fromarray((rng.random((3, 5, 3)) * 255).astype(np.uint8)).resize((1500, 900), Image.Resampling.BICUBIC)
        for _ in range(count)
    ]


def viewer_photos(pictures: list[Image.Image]) -> list[Negative]:
    """Screenshots of different pictures in the same viewer window: the chrome matches, nothing
    else does (a real screenshot copy shares its picture with the original)."""
    return [
        Negative(f"viewer-{i}", "viewer", png(photo_viewer(p, pictures, f"IMG_{4021 + 7 * i}.JPG", i)))
        for i, p in enumerate(pictures)
    ]


def _invoice(seed: int) -> Image.Image:
    """One company's invoice template: logo, address, table, totals; the numbers and items differ."""
    rng = random.Random(seed)
    page = Image.new("RGB", (1240, 1754), (255, 255, 255))
    draw = ImageDraw.Draw(page)
    draw.rectangle((90, 90, 190, 190), fill=(20, 80, 160))
    draw.text((140, 140), "N", fill=(255, 255, 255), font=_font(64, bold=True), anchor="mm")
    draw.text((215, 100), "Northwind Supplies Ltd", fill=(20, 20, 20), font=_font(34, bold=True))
    draw.text((215, 150), "12 Harbour Road, Leith · VAT GB 123 4567 89", fill=(90, 90, 90), font=_font(20))
    draw.text((1150, 100), "INVOICE", fill=(20, 80, 160), font=_font(48, bold=True), anchor="ra")
    customer = " ".join(rng.choice(WORDS) for _ in range(2)).title()
    fields = (
        ("Invoice no.", f"{rng.randint(10000, 99999)}"),
        ("Date", f"{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/2026"),
        ("Customer", f"{customer} & Co"),
        ("Order ref.", f"PO-{rng.randint(1000, 9999)}"),
    )
    for k, (label, value) in enumerate(fields):
        draw.text((90, 260 + 40 * k), label, fill=(90, 90, 90), font=_font(22))
        draw.text((330, 260 + 40 * k), value, fill=(20, 20, 20), font=_font(22))
    top = 470
    draw.rectangle((90, top, 1150, top + 50), fill=(230, 236, 245))
    for x, head in ((100, "Description"), (700, "Qty"), (820, "Unit price"), (1000, "Amount")):
        draw.text((x, top + 12), head, fill=(20, 20, 20), font=_font(22, bold=True))
    total = 0.0
    rows = rng.randint(6, 14)
    for k in range(rows):
        y = top + 60 + 46 * k
        qty, price = rng.randint(1, 40), rng.randint(100, 99900) / 100
        total += qty * price
        item = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 5))).capitalize()
        draw.text((100, y), item, fill=(30, 30, 30), font=_font(21))
        draw.text((700, y), str(qty), fill=(30, 30, 30), font=_font(21))
        draw.text((820, y), f"{price:,.2f}", fill=(30, 30, 30), font=_font(21))
        draw.text((1000, y), f"{qty * price:,.2f}", fill=(30, 30, 30), font=_font(21))
        draw.line((90, y + 38, 1150, y + 38), fill=(215, 215, 215), width=1)
    y = top + 80 + 46 * rows
    for k, (label, amount) in enumerate((("Subtotal", total), ("VAT 20 %", total * 0.2), ("Total due", total * 1.2))):
        draw.text((820, y + 40 * k), label, fill=(20, 20, 20), font=_font(22, bold=k == 2))
        draw.text((1000, y + 40 * k), f"{amount:,.2f}", fill=(20, 20, 20), font=_font(22, bold=k == 2))
    draw.line((90, 1600, 1150, 1600), fill=(20, 80, 160), width=3)
    footer = "Payment within 30 days · IBAN GB00 NWBK 6016 1331 9268 19"
    draw.text((620, 1640), footer, fill=(90, 90, 90), font=_font(18), anchor="mm")
    return page


def invoices(seeds: range) -> list[Negative]:
    return [Negative(f"invoice-{s}", "template", _jpeg(_invoice(s))) for s in seeds]


def _slide(seed: int) -> Image.Image:
    """One deck's template: title band, logo, footer; the title and bullets differ."""
    rng = random.Random(seed)
    slide = Image.new("RGB", (1920, 1080), (250, 250, 252))
    draw = ImageDraw.Draw(slide)
    draw.rectangle((0, 0, 1920, 170), fill=(24, 52, 96))
    title = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 5))).title()
    draw.text((90, 85), title, fill=(255, 255, 255), font=_font(64, bold=True), anchor="lm")
    draw.ellipse((1740, 40, 1830, 130), outline=(255, 200, 40), width=10)
    for k in range(rng.randint(3, 6)):
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 8))).capitalize()
        draw.ellipse((110, 282 + 120 * k, 130, 302 + 120 * k), fill=(24, 52, 96))
        draw.text((160, 292 + 120 * k), line, fill=(30, 30, 30), font=_font(46), anchor="lm")
    draw.line((0, 1010, 1920, 1010), fill=(24, 52, 96), width=4)
    draw.text((90, 1045), "Quarterly review · Internal", fill=(100, 100, 100), font=_font(26), anchor="lm")
    draw.text((1830, 1045), str(rng.randint(2, 40)), fill=(100, 100, 100), font=_font(26), anchor="rm")
    return slide


def slides(seeds: range) -> list[Negative]:
    return [Negative(f"slide-{s}", "template", png(_slide(s))) for s in seeds]


def _chat(seed: int) -> Image.Image:
    """A phone's messaging app: the same bars and bubbles' places, different messages."""
    rng = random.Random(seed)
    shot = Image.new("RGB", (1080, 2340), (236, 229, 221))
    draw = ImageDraw.Draw(shot)
    draw.rectangle((0, 0, 1080, 90), fill=(7, 94, 84))
    draw.text((40, 45), "09:41", fill=(255, 255, 255), font=_font(32), anchor="lm")
    draw.rectangle((0, 90, 1080, 250), fill=(7, 94, 84))
    draw.ellipse((100, 120, 200, 220), fill=(200, 200, 200))
    draw.text((230, 170), "Family", fill=(255, 255, 255), font=_font(44, bold=True), anchor="lm")
    y = 300
    while y < 2000:
        mine = rng.random() < 0.5
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 7)))
        width = min(860, int(draw.textlength(words, font=_font(38))) + 60)
        x = 1080 - 40 - width if mine else 40
        draw.rounded_rectangle((x, y, x + width, y + 100), 24, fill=(220, 248, 198) if mine else (255, 255, 255))
        draw.text((x + 30, y + 50), words, fill=(20, 20, 20), font=_font(38), anchor="lm")
        y += 140
    draw.rectangle((0, 2180, 1080, 2340), fill=(240, 240, 240))
    draw.rounded_rectangle((30, 2210, 900, 2300), 45, fill=(255, 255, 255))
    draw.text((80, 2255), "Message", fill=(150, 150, 150), font=_font(38), anchor="lm")
    draw.ellipse((930, 2210, 1030, 2310), fill=(7, 94, 84))
    return shot


def chats(seeds: range) -> list[Negative]:
    return [Negative(f"chat-{s}", "app", png(_chat(s))) for s in seeds]


def wordmarks(word: str, seed: int) -> list[Negative]:
    """One brand's wordmark under different marks: a red circle, a blue square, a green star."""
    marks = []
    for shape, colour in (("circle", (210, 40, 40)), ("square", (40, 70, 200)), ("star", (30, 150, 60))):
        image = Image.new("RGB", (1200, 900), (255, 255, 255))
        draw = ImageDraw.Draw(image)
        box = (450, 160, 750, 460)
        if shape == "circle":
            draw.ellipse(box, fill=colour)
        elif shape == "square":
            draw.rectangle(box, fill=colour)
        else:
            draw.regular_polygon((600, 310, 160), 5, rotation=seed % 30, fill=colour)
        draw.text((600, 600), word, fill=(20, 20, 20), font=_font(120, bold=True), anchor="mm")
        marks.append(Negative(f"wordmark-{word}-{shape}", "wordmark", png(image)))
    return marks


def _lines(lines: list[str]) -> Image.Image:
    page = Image.new("RGB", (1600, 1000), (255, 255, 255))
    draw = ImageDraw.Draw(page)
    for k, line in enumerate(lines):
        draw.text((120, 140 + 160 * k), line, fill=(10, 10, 10), font=_font(56))
    return page


def shifted_text(seed: int) -> list[Negative]:
    """Two pages of five lines that share four, one line apart (scrolling a text by one line)."""
    rng = random.Random(seed)
    lines = [" ".join(rng.choice(WORDS) for _ in range(6)).capitalize() for _ in range(6)]
    return [
        Negative(f"lines-{seed}-first", "shifted-text", png(_lines(lines[:5]))),
        Negative(f"lines-{seed}-next", "shifted-text", png(_lines(lines[1:]))),
    ]


def shared_regions(pictures: list[Image.Image], *, seed: int) -> list[Negative]:
    """Every family of images that share a region and differ in the rest (viewer chrome over
    ``pictures``, an invoice and a slide template, a chat app, a wordmark, scrolled text)."""
    seeds = range(100 * seed, 100 * seed + 6)
    word = "ACME" if seed == 0 else "NORDA"
    viewers = viewer_photos(pictures + soft_art(seed, 4))
    return viewers + invoices(seeds) + slides(seeds) + chats(seeds[:4]) + wordmarks(word, seed) + shifted_text(seed)
