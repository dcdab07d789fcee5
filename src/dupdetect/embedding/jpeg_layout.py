"""A JPEG's marker structure, read from the bytes before anything is decoded.

libjpeg decodes what it is given and makes up the rest: a file cut short, or a header that
claims 8000×8000 over a few bytes of data, decodes to a full-size grey picture without an
error. And each progressive scan is a pass over the whole image, so a small file of thousands
of tiny scans holds a decoder for minutes. Both show in the structure, which costs a
millisecond to walk.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

MAX_SCANS = 64
"""Encoders write 1 scan (baseline) or about 10 (progressive; jpegtran/mozjpeg's optimised
scripts stay under 30). Each scan costs a pass over the image."""

_ENTROPY_END = re.compile(rb"\xff[^\x00\xd0-\xd7]")
"""Inside entropy-coded data a 0xFF byte is followed by 0x00 (stuffing) or a restart marker;
anything else ends the scan."""
_STANDALONE = {0x01, *range(0xD0, 0xD8)}
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_PROGRESSIVE = {0xC2, 0xC6, 0xCA, 0xCE}
_ARITHMETIC = {0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


@dataclass(frozen=True)
class JpegLayout:
    width: int
    height: int
    components: int
    progressive: bool
    arithmetic: bool
    scans: int
    entropy_bytes: int
    """Entropy-coded data over all scans: the image data proper."""
    blocks: int
    """8×8 blocks over all components; each is coded in every complete image."""
    complete: bool
    """An end-of-image marker follows the last scan (a file cut short has none)."""

    @property
    def least_entropy_bytes(self) -> int:
        """The fewest bytes a complete image of this size can hold: every block of a sequential
        scan needs a DC code and an end-of-block code (≥ 2 bits), and a progressive image codes
        each block's DC at least once (≥ 1 bit). Arithmetic coding has no such floor."""
        if self.arithmetic or self.height == 0:  # a height of 0 is given later, by a DNL marker
            return 0
        return math.ceil(self.blocks * (1 if self.progressive else 2) / 8)


class LayoutError(ValueError):
    """The markers do not make a JPEG."""


def read_layout(data: bytes) -> JpegLayout:
    """Walks the markers up to the first end-of-image (what follows it, such as a camera's
    second picture, is not ours to decode), or to the scan after MAX_SCANS. Raises LayoutError
    on a broken structure."""
    if not data.startswith(b"\xff\xd8"):
        raise LayoutError("no start-of-image marker")
    pos, end = 2, len(data)
    frame: tuple[int, int, int, bool, bool, int] | None = None
    scans = entropy = 0
    while True:
        while pos < end and data[pos] != 0xFF:  # junk between segments: decoders skip it too
            pos += 1
        while pos < end and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= end:
            break
        marker = data[pos]
        pos += 1
        if marker == 0xD9:
            return _layout(frame, scans, entropy, complete=True)
        if marker in _STANDALONE or marker == 0xD8:
            continue
        if pos + 2 > end:
            break
        length = int.from_bytes(data[pos : pos + 2])
        if length < 2:
            raise LayoutError(f"a segment of length {length}")
        segment = data[pos + 2 : pos + length]
        pos += length
        if marker in _SOF and frame is None:
            frame = _frame(marker, segment)
        elif marker == 0xDA:
            scans += 1
            if scans > MAX_SCANS:  # the count is all that matters now
                return _layout(frame, scans, entropy, complete=False)
            found = _ENTROPY_END.search(data, pos)
            stop = found.start() if found else end
            entropy += stop - pos
            pos = stop
    return _layout(frame, scans, entropy, complete=False)


def _frame(marker: int, segment: bytes) -> tuple[int, int, int, bool, bool, int]:
    if len(segment) < 6:
        raise LayoutError("a short frame header")
    height, width, count = int.from_bytes(segment[1:3]), int.from_bytes(segment[3:5]), segment[5]
    sampling = [(b >> 4, b & 15) for b in segment[7 : 6 + 3 * count : 3]]
    if len(sampling) != count or count == 0 or any(h == 0 or v == 0 for h, v in sampling):
        raise LayoutError("a malformed frame header")
    h_max, v_max = max(h for h, _ in sampling), max(v for _, v in sampling)
    blocks = sum(math.ceil(math.ceil(width * h / h_max) / 8) * math.ceil(math.ceil(height * v / v_max) / 8) for h, v in sampling)
    return width, height, count, marker in _PROGRESSIVE, marker in _ARITHMETIC, blocks


def _layout(frame: tuple[int, int, int, bool, bool, int] | None, scans: int, entropy: int, *, complete: bool) -> JpegLayout:
    if frame is None:
        raise LayoutError("no frame header")
    width, height, components, progressive, arithmetic, blocks = frame
    return JpegLayout(
        width=width,
        height=height,
        components=components,
        progressive=progressive,
        arithmetic=arithmetic,
        scans=scans,
        entropy_bytes=entropy,
        blocks=blocks,
        complete=complete,
    )
