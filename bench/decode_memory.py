"""What decoding hostile images really costs: the estimate made before decoding, the outcome,
and the decode worker's peak memory above what it holds idle.

    python bench/decode_memory.py [--budget-mb 256]

Each file is decoded by a fresh decode worker (the service's own, with its memory cap), so its
peak (VmHWM) is that one decode's. Target (issue 22): no decode peaks above the budget; what
the estimate lets through, it lets through under the budget.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
from collections.abc import Callable
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.embed import table  # noqa: E402
from dupdetect.embedding.decode import DecodeError, _decode_cost, _draft_box, _jpeg_layout  # noqa: E402
from dupdetect.embedding.decoders import DecoderPool  # noqa: E402
from tests.photos import jpeg  # noqa: E402

MB = 1024 * 1024


def _saved(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


CASES: list[tuple[str, Callable[[], bytes]]] = [
    ("6000² RGBA PNG", lambda: _saved(Image.new("RGBA", (6000, 6000), (40, 90, 160, 255)), "PNG")),
    ("8000² progressive grey JPEG", lambda: _saved(Image.new("L", (8000, 8000), 128), "JPEG", progressive=True)),
    ("7000² progressive colour JPEG", lambda: _saved(Image.new("RGB", (7000, 7000), (9, 80, 9)), "JPEG", progressive=True)),
    ("10000×6000 palette BMP", lambda: _saved(Image.new("P", (10000, 6000), 3), "BMP")),
    ("5000² RGB TIFF (deflate)", lambda: _saved(Image.new("RGB", (5000, 5000), (9, 9, 9)), "TIFF", compression="tiff_deflate")),
    ("4000² RGB PNG", lambda: _saved(Image.new("RGB", (4000, 4000), (200, 9, 9)), "PNG")),
    ("600×400 photo (JPEG)", lambda: jpeg("coffee")),
]


def _peak_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _estimate_mb(data: bytes) -> float:
    image = Image.open(io.BytesIO(data))
    layout = _jpeg_layout(data) if image.format == "JPEG" else None
    stored = image.size
    if image.format == "JPEG":
        image.draft("RGB", _draft_box(stored, 224, True))
    return _decode_cost(image, stored, layout) / MB


async def run(budget: int) -> None:
    options = {"size": 224, "max_pixels": 64_000_000, "max_decode_bytes": budget, "thumbnail": 256, "keypoints": True}
    rows = []
    for name, make in CASES:
        data = make()
        pool = DecoderPool(1, options, timeout=120, memory=budget)
        await asyncio.to_thread(pool.start)
        process = pool._workers[0].process
        assert process is not None
        idle = _peak_mb(process.pid)
        try:
            await pool.decode(data, "bench")
            outcome = "decoded"
        except DecodeError as exc:
            outcome = exc.code
        peak = _peak_mb(process.pid) - idle
        pool.stop()
        rows.append([name, f"{len(data) / 1024:,.0f}", f"{_estimate_mb(data):,.0f}", outcome, f"{peak:,.0f}"])
    table(
        f"Decoding with a {budget // MB} MB budget (one fresh worker per file; peak above the idle worker)",
        ["file", "kB", "estimate MB", "outcome", "peak MB"],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-mb", type=int, default=256)
    args = parser.parse_args()
    asyncio.run(run(args.budget_mb * MB))


if __name__ == "__main__":
    main()
