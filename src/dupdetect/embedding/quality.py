"""What a copy really holds, for choosing the one to keep: JPEG quality from the quantisation
tables, and the marks that editing leaves (an enlargement, padding, corners filled after a
rotation, a lossless file decoded from a JPEG). Measured once at decode, on the image alone;
:mod:`dupdetect.review.keeper` compares the copies of one picture with them.

Only clear evidence counts: an enlargement is seen in the JPEG block grid it grew
(:func:`resized_jpeg`), or in detail far below the pixel count (:func:`detail_scale`); a
weaker reading would differ between two encodings of one picture and decide between them.
"""

from __future__ import annotations

import itertools
from typing import Literal

import msgspec
import numpy as np
from PIL import Image

Artefact = Literal["upscaled", "padded", "filled_corners", "decoded_jpeg"]

LOSSLESS = frozenset({"PNG", "TIFF", "BMP", "GIF"})
SHRINKS = (1.25, 1.5, 2.0, 3.0)
CROSSING_SHARE = 0.4
CROSSING_POWER = 1.8
""":func:`detail_scale`: the shrink factors it tries, the share of the 4× loss it looks for, and
how the factor reaching it grows with an enlargement."""
GRID_POWER = (45.0, 250.0)
GRID_PERIODS = (9.0, 20.25)
"""A grown block grid (enlargements by 1.1–2.5) shows at a period of these pixels with at least
this power (against the median) along its weaker and its stronger axis. Measured on 24 photos
(bench/keeper.py): their strongest period there reaches 4–64 on the weaker axis (over 250 on
the stronger only with under 45 on the weaker); their 1.5× enlargements reach 48–2,000 and
267–7,700 (15 of 24 pass both), 2× ones 98–4,000 and 290–13,000."""
COMMON_PERIODS = (12.0, 16.0, 10.0)
COMMON_POWER = (100.0, 150.0, 400.0)
"""At the periods of common enlargements: (weaker, stronger) both reached, or the stronger axis
alone at the last. On 49 photos these periods reach at most 76/181 and 11/340; their 1.5×
enlargements pass 36 of 49 times."""
FLAT_BELOW = 2.0
"""Grey levels of spread under which a window is flat (sky, wall) and says nothing of scale."""
UPSCALED_FROM = 1.85
"""A :func:`detail_scale` from which a copy is called ``upscaled`` on its own: photos at their own
size stay below it (one soft one of bench/keeper.py's 24 reads 1.77), 2× upscales are above.
Below it the reading still counts between copies of one picture (:mod:`dupdetect.review.keeper`)."""
DECODED_JPEG_ABOVE = 1.14
"""Blockiness (see :func:`blockiness`) over which a lossless file carries JPEG's 8×8 grid: PNG
re-saves of JPEGs measure 1.15–2.6 (quality 91 and below), pictures never saved as JPEG 0.99–1.13."""
ANALYSIS_SIDE = (192, 256)
"""Smallest and largest side of the window :func:`detail_scale` reads (a third of the picture's shorter side)."""
_STANDARD_LUMA = np.array(
    [
        16,
        11,
        10,
        16,
        24,
        40,
        51,
        61,
        12,
        12,
        14,
        19,
        26,
        58,
        60,
        55,
        14,
        13,
        16,
        24,
        40,
        57,
        69,
        56,
        14,
        17,
        22,
        29,
        51,
        87,
        80,
        62,
        18,
        22,
        37,
        56,
        68,
        109,
        103,
        77,
        24,
        35,
        55,
        64,
        81,
        104,
        113,
        92,
        49,
        64,
        78,
        87,
        103,
        121,
        120,
        101,
        72,
        92,
        95,
        98,
        112,
        100,
        103,
        99,
    ],
    dtype=np.float64,
)
"""The luminance table of the JPEG standard (Annex K), which encoders scale by quality."""


def jpeg_quality(image: Image.Image) -> int | None:
    """The IJG quality (1–100) whose scaled standard table is closest to the file's luminance
    table; None for other formats. Order of the table does not matter for the mean."""
    tables = getattr(image, "quantization", None)
    if not tables or 0 not in tables:
        return None
    luma = np.asarray(tables[0], dtype=np.float64)[:64]
    scale = float(np.mean(luma / _STANDARD_LUMA[: len(luma)])) * 100
    quality = 100 - scale / 2 if scale <= 100 else 5000 / scale
    return int(np.clip(round(quality), 1, 100))


def _typical_window(grey: np.ndarray) -> np.ndarray:
    """Of five windows inside the middle of the picture (where captions, borders and watermarks
    are not), the one of median detail at full resolution: neither a flat sky nor lettering."""
    h, w = grey.shape
    side = min(h, w, max(ANALYSIS_SIDE[0], min(h, w) // 3), ANALYSIS_SIDE[1])  # the same share of any copy
    spots = [
        (min(h - side, max(0, round(fy * h) - side // 2)), min(w - side, max(0, round(fx * w) - side // 2)))
        for fy, fx in ((0.5, 0.5), (0.35, 0.35), (0.35, 0.65), (0.65, 0.35), (0.65, 0.65))
    ]
    windows = [grey[y : y + side, x : x + side] for y, x in spots]
    windows.sort(key=lambda window: float(np.abs(np.diff(window[::4, ::4].astype(np.int16), axis=1)).mean()))
    return windows[len(windows) // 2].astype(np.float32)


def detail_scale(grey: np.ndarray) -> float:
    """Pixels per pixel of real detail: about 1 for a photo at its own size, 2 for a 2× upscale.

    Shrinking a part of the picture (at full resolution) by a factor f and back loses some
    detail; as a share of what shrinking by 4 loses, it grows with f in about the same way for
    any photo (natural pictures look alike across scales), crossing :data:`CROSSING_SHARE` near
    f = 1.5. An upscale by u loses almost nothing until f nears u, so it crosses later; the
    crossing moves as u to the power 1 / :data:`CROSSING_POWER` (measured on real photos and
    their 1.5× and 2× upscales, bench/keeper.py). Photos read 0.75–1.65 (soft ones high: they do
    hold less), and a copy made larger by u reads about u times its source. An estimate of what
    a copy holds, for comparing copies of one picture, not a verdict on one image."""
    if min(grey.shape) < 64:  # too small for a window worth reading
        return 1.0
    crop = _typical_window(grey)
    picture = Image.fromarray(crop)
    h, w = crop.shape

    def lost(factor: float) -> float:
        small = picture.resize((max(1, round(w / factor)), max(1, round(h / factor))), Image.Resampling.LANCZOS)
        back = np.asarray(small.resize((w, h), Image.Resampling.LANCZOS), dtype=np.float32)
        return float(np.abs(crop - back)[8:-8, 8:-8].mean())

    if float(crop.std()) < FLAT_BELOW:  # flat pictures show no scale at all
        return 1.0
    quarter = lost(4)
    if quarter < 0.2:  # a picture that loses nothing even at a quarter of its size
        return round(float((4.0 / 1.5) ** CROSSING_POWER), 2)
    points = itertools.chain([(1.0, 0.0)], ((f, lost(f) / quarter) for f in SHRINKS), [(4.0, 1.0)])
    for (f0, r0), (f1, r1) in itertools.pairwise(points):  # lazily: a photo crosses by 1.5 or 2, the rest is not computed
        if r1 >= CROSSING_SHARE:
            crossing = f0 + (f1 - f0) * (CROSSING_SHARE - r0) / max(r1 - r0, 1e-6)
            return round(float((crossing / 1.5) ** CROSSING_POWER), 2)
    return round(float((4.0 / 1.5) ** CROSSING_POWER), 2)


def _period_power(profile: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Power by period of a profile of steps between neighbouring columns (or rows), against
    its median: a grid of block edges every P pixels shows as a peak at P."""
    detrended = profile - np.convolve(profile, np.ones(33) / 33, mode="same")
    power = np.abs(np.fft.rfft(detrended * np.hanning(len(profile)))) ** 2
    freqs = np.fft.rfftfreq(len(profile))
    floor = float(np.median(power[(freqs > 0.02) & (freqs < 0.5)])) or 1e-9
    return freqs, power / floor


def _at(spectrum: tuple[np.ndarray, np.ndarray], period: float) -> float:
    freqs, power = spectrum
    i = int(np.argmin(np.abs(freqs - 1 / period)))
    return float(power[max(0, i - 1) : i + 2].max())


BAND = 256
"""Rows read at a time for the step profiles: a 64-megapixel grey image costs a band, not four
copies of itself."""


def _step_profiles(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean absolute step between neighbouring columns, over every other row, and between
    neighbouring rows, over every other column; read in bands of rows."""
    h, w = grey.shape
    column_sum = np.zeros(w - 1)
    row_means = np.empty(h - 1)
    for top in range(0, h, BAND):  # BAND is even: a band's every other row is the image's
        band = grey[top : min(h, top + BAND + 1)].astype(np.int16)  # one row of overlap for the row steps
        column_sum += np.abs(np.diff(band[:BAND:2], axis=1)).sum(axis=0)
        row_means[top : top + len(band) - 1] = np.abs(np.diff(band[:, ::2], axis=0)).mean(axis=1)
    return column_sum / len(range(0, h, 2)), row_means


def resized_jpeg(grey: np.ndarray) -> float | None:
    """The factor a JPEG was enlarged by before this file was saved, from its 8×8 block grid
    grown with it (12 px after 1.5×, 16 after 2×), strong along one axis and present along the
    other; None when there is no such grid (a camera's file, a picture never saved as JPEG)."""
    h, w = grey.shape
    if min(h, w) < 128:
        return None
    # Every other row (column): the grid runs through all of them, and a wide average lifts it
    # above the picture's own edges (a band of 512 rows finds a third fewer, bench/keeper.py).
    column_steps, row_steps = _step_profiles(grey)
    columns, rows = _period_power(column_steps), _period_power(row_steps)
    periods = [p for p in np.arange(*GRID_PERIODS, 0.25) if min(abs(1 / p - k / 8) for k in range(1, 5)) >= 0.004]
    for period in COMMON_PERIODS:  # the enlargements people use: 1.25×, 1.5×, 2×
        weaker, stronger = sorted((_at(columns, period), _at(rows, period)))
        if stronger >= COMMON_POWER[2] or (weaker >= COMMON_POWER[0] and stronger >= COMMON_POWER[1]):
            return period / 8
    weaker, stronger, found = max((min(_at(columns, p), _at(rows, p)), max(_at(columns, p), _at(rows, p)), p) for p in periods)
    if stronger >= GRID_POWER[1] and weaker >= GRID_POWER[0]:
        return float(found) / 8
    return None


def upscale(grey: np.ndarray, *, from_camera: bool = False) -> tuple[float, bool]:
    """Pixels per pixel of real detail, and whether the copy was clearly enlarged: a JPEG's block
    grid grown with it (:func:`resized_jpeg`, then its factor), or a :func:`detail_scale` of
    :data:`UPSCALED_FROM` or more (no photo at its own size reads so high). A weaker reading is
    no verdict on one image (between copies of one picture it varies by a fifth with their
    encoding alone), but it is kept: a copy larger than another that reads as many times higher
    was enlarged from it. A file ``from_camera`` (its EXIF names one) is not called upscaled on
    its reading alone: a soft or digitally zoomed photo reads high and is still the original."""
    grown = resized_jpeg(grey)
    if grown is not None and grown > 1.1:
        return round(grown, 2), True
    scale = detail_scale(grey)
    return scale, scale >= UPSCALED_FROM and not from_camera


BLOCKINESS_SIDE = 1024
"""The corner whose block edges are measured (the grid starts at the top left)."""


def blockiness(grey: np.ndarray) -> float:
    """Mean step across JPEG's 8-pixel block edges against the mean step elsewhere: 1 for a
    picture never saved as JPEG at this alignment."""
    side_h, side_w = min(BLOCKINESS_SIDE, grey.shape[0] // 8 * 8), min(BLOCKINESS_SIDE, grey.shape[1] // 8 * 8)
    if side_h < 16 or side_w < 16:
        return 1.0
    crop = grey[:side_h, :side_w].astype(np.int16)
    cols = np.abs(np.diff(crop, axis=1)).mean(axis=0)
    rows = np.abs(np.diff(crop, axis=0)).mean(axis=1)
    edges = cols[7::8].mean() + rows[7::8].mean()
    inside = np.delete(cols, np.s_[7::8]).mean() + np.delete(rows, np.s_[7::8]).mean()
    return float(edges / inside) if inside > 0.1 else 1.0


def _uniform(patch: np.ndarray, tolerance: float) -> bool:
    return bool(np.ptp(patch.reshape(-1, patch.shape[-1]), axis=0).max() <= tolerance)


def filled_share(rgb: np.ndarray) -> float:
    """The share of the image that a rotation's filled canvas takes: all four corners one flat
    colour while the picture is not, as a rotation by a few degrees leaves them (``rgb``: about
    128 px, padding already trimmed, so a plain border is not mistaken for it); 0 if not so."""
    h, w = rgb.shape[:2]
    c = max(2, min(h, w) // 40)
    corners = [rgb[:c, :c], rgb[:c, -c:], rgb[-c:, :c], rgb[-c:, -c:]]
    if not all(_uniform(p, 10) for p in corners):
        return 0.0
    colours = np.array([p.reshape(-1, p.shape[-1]).mean(axis=0) for p in corners])
    if np.ptp(colours, axis=0).max() > 10:
        return 0.0
    off = np.abs(rgb.astype(np.float32) - colours.mean(axis=0)).max(axis=2) > 12
    centre = off[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4]
    return float(1 - off.mean()) if centre.mean() > 0.5 else 0.0


class Assessment(msgspec.Struct, frozen=True):
    width: int
    height: int
    """The picture, in the pixels of the image assessed: padding trimmed, a rotation's filled
    corners left out."""
    upscale: float
    """:func:`upscale`'s reading: pixels per pixel of real detail (about 1 at a photo's own size)."""
    artefacts: list[Artefact]


def assess(kind: str, canvas: Image.Image, content: Image.Image, *, grey: Image.Image, from_camera: bool = False) -> Assessment:
    """The marks of editing on this image and the size of what it holds. ``canvas``: the decoded
    RGB image; ``content``: the picture inside its padding; ``grey``: its grey pixels at their
    stored size (for a reduced JPEG decode, where an upscale cannot be seen, decoded again)."""
    found: list[Artefact] = []
    width, height = float(content.width), float(content.height)
    scale, enlarged = upscale(np.asarray(grey), from_camera=from_camera)
    if enlarged:
        found.append("upscaled")
    if content.width * content.height < 0.95 * canvas.width * canvas.height:
        found.append("padded")
    small = np.asarray(content.reduce(max(1, max(content.size) // 128)))
    filled = filled_share(small) if min(small.shape[:2]) >= 16 else 0.0
    if filled:
        found.append("filled_corners")
        width, height = width * (1 - filled) ** 0.5, height * (1 - filled) ** 0.5
    # On the file's own pixel grid, where a JPEG it was decoded from left its blocks.
    corner = canvas.crop((0, 0, min(canvas.width, BLOCKINESS_SIDE), min(canvas.height, BLOCKINESS_SIDE)))
    if kind in LOSSLESS and blockiness(np.asarray(corner.convert("L"))) > DECODED_JPEG_ABOVE:
        found.append("decoded_jpeg")
    return Assessment(max(1, round(width)), max(1, round(height)), scale, found)
