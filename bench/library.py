"""A library-sized folder through ``dupdetect ingest`` (the bulk path): images/s as it fills,
wall time, peak memory, the database on disk.

    python bench/library.py [--photos 100000] [--every 10000] [--folder bench/out/library]

The folder: ``--photos`` JPEGs of about 1 MP, each a picture of its own: two to four panels,
each a random crop of a random real photo (the shared nature photos, KDE Plasma's and GNOME's
wallpapers, scikit-image's), some mirrored, colours shifted. One photo in twenty is a burst: the
photo before, a step to the side and saved again, so there are real copies to find among pictures
that only share a panel's source now and then, as in a library. It is made once and kept
(``--folder``). Then one ``dupdetect ingest FOLDER`` with its own embedded PostgreSQL in a fresh
data folder, EfficientNet-Lite0 (the offline ImageNet weights); its progress line gives the rate
of every ``--every`` photos stored, then the k-NN pass that finds the pairs. Peak memory is the
largest sum of the PSS of the command's processes and PostgreSQL's (bench/peers.py), sampled
every 0.5 s.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.embed import nature_photos, skimage_photos, table, wallpapers  # noqa: E402
from bench.peers import PeakMemory, cpu_name  # noqa: E402

SIDE = (1224, 816)
"""~1 MP, 3:2, landscape (portrait for every fifth photo)."""


def _sources() -> list[Image.Image]:
    return [Image.open(io.BytesIO(p)).convert("RGB") for p in nature_photos() + wallpapers() + skimage_photos()]


def _panel(sources: list[Image.Image], rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """A random crop of a random source, of the panel's shape, resized to fill it."""
    source = sources[int(rng.integers(len(sources)))]
    aspect = size[0] / size[1]
    share = float(rng.uniform(0.3, 0.7))
    w = round(min(source.width, source.height * aspect) * share)
    h = round(w / aspect)
    x, y = int(rng.integers(0, source.width - w + 1)), int(rng.integers(0, source.height - h + 1))
    panel = source.crop((x, y, x + w, y + h)).resize(size, Image.Resampling.BILINEAR)
    return ImageOps.mirror(panel) if rng.random() < 0.5 else panel


def _picture(sources: list[Image.Image], seed: int) -> Image.Image:
    """Two to four panels from different places of the sources: one picture of its own."""
    rng = np.random.default_rng(seed)
    width, height = SIDE
    photo = Image.new("RGB", SIDE)
    split = round(width * float(rng.uniform(0.35, 0.65)))
    for left, right in ((0, split), (split, width)):
        if rng.random() < 0.5:
            photo.paste(_panel(sources, rng, (right - left, height)), (left, 0))
            continue
        cut = round(height * float(rng.uniform(0.35, 0.65)))
        photo.paste(_panel(sources, rng, (right - left, cut)), (left, 0))
        photo.paste(_panel(sources, rng, (right - left, height - cut)), (left, cut))
    if seed % 5 == 0:
        photo = photo.rotate(90, expand=True)
    photo = ImageEnhance.Color(photo).enhance(float(rng.uniform(0.7, 1.3)))
    return ImageEnhance.Brightness(photo).enhance(float(rng.uniform(0.85, 1.15)))


BURST = 0.05
"""The share of photos that are a second shot of the photo before (a burst)."""


def _write(args: tuple[Path, int, int]) -> None:
    """Photos ``start`` … ``stop - 1``, each from its own seed."""
    folder, start, stop = args
    sources = _sources()
    for index in range(start, stop):
        path = folder / f"{index // 1000:03d}" / f"IMG_{index:06d}.jpg"
        if path.exists():
            continue
        rng = np.random.default_rng([index, 1])
        if index > 0 and rng.random() < BURST:  # the same scene, a step to the side
            photo = _picture(sources, index - 1)
            keep = float(rng.uniform(0.9, 0.97))
            w, h = round(photo.width * keep), round(photo.height * keep)
            x, y = int(rng.integers(0, photo.width - w + 1)), int(rng.integers(0, photo.height - h + 1))
            photo = photo.crop((x, y, x + w, y + h)).resize(photo.size, Image.Resampling.BILINEAR)
        else:
            photo = _picture(sources, index)
        path.parent.mkdir(exist_ok=True)
        buffer = io.BytesIO()
        photo.save(buffer, "JPEG", quality=int(rng.integers(80, 96)))
        path.write_bytes(buffer.getvalue())


def make_folder(folder: Path, photos: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    step = 500
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(_write, [(folder, start, min(photos, start + step)) for start in range(0, photos, step)]))


PROGRESS = re.compile(r"(ingest|duplicates) \[[#.]*\] (\d+)/(\d+)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=100_000)
    parser.add_argument("--every", type=int, default=10_000)
    parser.add_argument("--folder", type=Path, default=ROOT / "bench" / "out" / "library")
    args = parser.parse_args()

    started = time.time()
    make_folder(args.folder, args.photos)
    files = sorted(args.folder.rglob("IMG_*.jpg"))[: args.photos]
    print(f"{len(files)} photos in {args.folder} ({time.time() - started:.0f} s to make)", file=sys.stderr)
    if len(files) < args.photos:
        sys.exit(f"only {len(files)} photos in {args.folder}")
    with tempfile.TemporaryDirectory(prefix="dupdetect-library-") as data:
        env = {**os.environ, "DUPDETECT_MODEL": "efficientnet_lite0", "DUPDETECT_DATA_DIR": data}
        command = [str(Path(sys.executable).with_name("dupdetect")), "ingest", str(args.folder)]
        started = time.time()
        summary = Path(data) / "summary.txt"  # the command's last words: what it did, what failed
        with summary.open("wb") as said_file:
            child = subprocess.Popen(command, env=env, stdout=said_file, stderr=subprocess.PIPE)
        memory = PeakMemory(child.pid, started, every=0.5)
        marks: list[tuple[str, int, float]] = []  # (stage, photos, seconds since start)
        buffer = b""
        assert child.stderr is not None
        while chunk := os.read(child.stderr.fileno(), 4096):
            buffer += chunk
            *lines, buffer = re.split(rb"[\r\n]", buffer)
            for line in lines:
                if found := PROGRESS.search(line.decode(errors="replace")):
                    stage, count = found[1], int(found[2])
                    last = next((n for s, n, _ in reversed(marks) if s == stage), 0)
                    if count > last and (count // args.every > last // args.every or count == int(found[3])):
                        marks.append((stage, count, time.time() - started))
        child.wait()
        wall = time.time() - started
        peak = memory.stop()
        database = sum(f.stat().st_size for f in Path(data).rglob("*") if f.is_file())
        said = summary.read_text(errors="replace").splitlines()
    if child.returncode not in (0, 1):  # 1: it ran, and some files failed (listed)
        sys.exit(f"dupdetect ingest failed ({child.returncode}): {buffer.decode(errors='replace')[-800:]}")

    rows, previous = [], {"ingest": (0, 0.0), "duplicates": (0, 0.0)}
    for stage, count, at in marks:
        before, since = previous[stage]
        if stage == "duplicates" and since == 0.0:  # the pass starts where ingest ended
            since = max(t for s, _, t in marks if s == "ingest")
        rows.append([stage, f"{count:,}", f"{(count - before) / max(at - since, 1e-9):.1f}", f"{at:.0f}"])
        previous[stage] = (count, at)
    table(
        f"dupdetect ingest of {len(files):,} photos of ~1 MP, {os.cpu_count()} cores ({cpu_name()})",
        ["stage", "photos done", "img/s over the last step", "s since start"],
        rows,
    )
    print(f"\nwall {wall:.0f} s, peak memory {peak / 2**20:,.0f} MB, database on disk {database / 2**30:.2f} GB")
    print("\n".join(said[:6]) + (f"\n  … {len(said) - 6} more lines" if len(said) > 6 else ""))


if __name__ == "__main__":
    main()
