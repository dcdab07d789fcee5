"""A 64-bit perceptual hash (pHash): the near-exact tier.

Grayscale 32×32 → 2-D DCT → the 8×8 lowest frequencies → one bit each, above or below their
median (the DCT of imagehash's ``phash``, so hashes agree with it). Mild edits (resize,
re-encode, colour, blur) move few bits; different photos differ in about half of them.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

_N = 32
_DCT = np.cos(np.pi * (2 * np.arange(_N)[None, :] + 1) * np.arange(_N)[:, None] / (2 * _N))
BANDS = 4
BAND_BITS = 16
"""The hash is indexed as four 16-bit bands (migration 0004): two hashes within Hamming
distance 3 share at least one, and one band value matches about 1/65,536 of a table."""
BAND_MASK = (1 << BAND_BITS) - 1


MIN_DETAIL = 0.25
"""Grey levels by which the typical low-frequency term must stand off the median. Below it
most bits are decided by noise: flat colours, gradients and nearly empty images all hash
alike (measured on bench/hard_negatives.py: 0.00–0.02 for flat and gradient images, 0.46
and up for the photos)."""


def detail(low: np.ndarray) -> float:
    """How firmly the hash's bits are set: the median distance of the 64 terms from their
    median, in grey levels."""
    return float(np.median(np.abs(low - np.median(low)))) / (_N * _N / 4)


def phash(image: Image.Image) -> int | None:
    """Signed 64-bit, as PostgreSQL's bigint stores it; None when the image has too little
    detail for the bits to mean anything (such images never pair on the hash)."""
    # reducing_gap: box-reduce to ~3× the hash's 32 px first, then Lanczos: a third of the time
    # of Lanczos over the full image, hashes within 2 bits of it (bench: 0.5 bits on average).
    grey = image.convert("L").resize((_N, _N), Image.Resampling.LANCZOS, reducing_gap=3.0)
    pixels = np.asarray(grey, dtype=np.float64)
    low = (_DCT @ pixels @ _DCT.T)[:8, :8]
    if detail(low) < MIN_DETAIL:
        return None
    bits = (low > np.median(low)).flatten()
    value = int("".join("1" if b else "0" for b in bits), 2)
    return value - (1 << 64) if value >= 1 << 63 else value


def hamming(a: int, b: int) -> int:
    return ((a ^ b) & ((1 << 64) - 1)).bit_count()


def band_shift(band: int) -> int:
    return BAND_BITS * (BANDS - 1 - band)


def bands(value: int) -> list[int]:
    unsigned = value & ((1 << 64) - 1)
    return [(unsigned >> band_shift(i)) & BAND_MASK for i in range(BANDS)]
