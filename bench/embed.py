"""Embedding throughput: bare model, decode alone, and the whole pipeline, on real photos.

    python bench/embed.py [--models efficientnet_lite0,resnet50] [--images 96]

Prints one table per measurement. ResNet weights cannot be downloaded on offline machines:
their speed is measured with random weights of the right shapes (speed does not depend on the
values). Photos: the 12 nature photos of ../shared/photos/fetch.sh (1920–2560 px JPEGs) when
available, plus scikit-image's photos, at mixed sizes.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import numpy as np
import torch
from PIL import Image
from torchvision import models

from dupdetect.embedding.decode import decode
from dupdetect.embedding.model import Embedder, cpu_has_native_bf16
from dupdetect.embedding.pipeline import EmbeddingPipeline
from dupdetect.embedding.weights import TORCHVISION_MODELS
from dupdetect.settings import ModelSettings, Settings

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench" / "out" / "photos"
BATCHES = (1, 8, 16, 32)


def nature_photos() -> list[bytes]:
    """The shared photo set, fetched once into bench/out (needs Debian's apt; skipped if absent)."""
    script = ROOT.parent / "shared" / "photos" / "fetch.sh"
    if not any(CACHE.glob("*.jpg")) and script.exists():
        subprocess.run(["bash", str(script), str(CACHE)], check=False, capture_output=True)
    return [path.read_bytes() for path in sorted(CACHE.glob("*.jpg"))]


WALLPAPERS = ROOT / "bench" / "out" / "wallpapers"


def wallpapers() -> list[bytes]:
    """Desktop backgrounds of KDE Plasma and GNOME (photos, paintings, abstract art), one per
    design (the largest landscape size, GNOME's light variant), as JPEGs of at most 1920 px;
    fetched once with apt-get into bench/out (skipped if apt is absent)."""
    if not any(WALLPAPERS.glob("*.jpg")):
        WALLPAPERS.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            got = subprocess.run(
                ["apt-get", "download", "plasma-workspace-wallpapers", "gnome-backgrounds"],
                cwd=tmp,
                capture_output=True,
                check=False,
            )
            if got.returncode != 0:
                return []
            for deb in Path(tmp).glob("*.deb"):
                subprocess.run(["dpkg-deb", "-x", str(deb), "x"], cwd=tmp, check=True)
            share = Path(tmp) / "x" / "usr" / "share"
            chosen = [path for path in (share / "backgrounds" / "gnome").glob("*-l.webp") if "vnc" not in path.name]
            for design in sorted((share / "wallpapers").iterdir()):
                sizes = [
                    (int(m[1]), int(m[2]), p)
                    for p in (design / "contents" / "images").glob("*")
                    if (m := re.match(r"(\d+)x(\d+)", p.stem)) and int(m[1]) > int(m[2])
                ]
                if sizes:
                    chosen.append(max(sizes)[2])
            for path in chosen:
                name = path.stem if path.suffix == ".webp" else path.parents[2].name
                with Image.open(path) as image:
                    rgb = image.convert("RGB")
                rgb.thumbnail((1920, 1920), Image.Resampling.LANCZOS)
                rgb.save(WALLPAPERS / f"{name}.jpg", "JPEG", quality=92)
    return [path.read_bytes() for path in sorted(WALLPAPERS.glob("*.jpg"))]


OPENCV = ROOT / "bench" / "out" / "opencv"
OPENCV_PHOTOS = [
    *("Blender_Suzanne1", "aero1", "aloeL", "apple", "baboon", "board", "building", "butterfly", "ela_original"),
    *("fruits", "graf1", "home", "left", "leuvenA", "licenseplate_motion", "messi5", "orange", "rubberwhale1"),
    *("smarties", "squirrel_cls", "starry_night", "stuff"),
]
"""OpenCV's sample photos (people, streets, food, interiors, a painting, a render): the held-out
split of bench/quality.py."""
OPENCV_PICTURES = ["pic1", "pic2", "pic3", "pic4", "pic5", "pic6", "HappyFish"]
"""OpenCV's sample drawings: what the held-out split's viewer screenshots show."""


def opencv_samples() -> tuple[list[bytes], list[bytes]]:
    """(:data:`OPENCV_PHOTOS`, :data:`OPENCV_PICTURES`) from Debian's opencv-doc, fetched once
    with apt-get into bench/out (empty if apt is absent)."""
    if not any(OPENCV.glob("*.jpg")):
        OPENCV.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            got = subprocess.run(["apt-get", "download", "opencv-doc"], cwd=tmp, capture_output=True, check=False)
            if got.returncode != 0:
                return [], []
            for deb in Path(tmp).glob("*.deb"):
                subprocess.run(["dpkg-deb", "-x", str(deb), "x"], cwd=tmp, check=True)
            folder = Path(tmp) / "x" / "usr" / "share" / "doc" / "opencv-doc" / "examples" / "data"
            for name in OPENCV_PHOTOS + OPENCV_PICTURES:
                [path] = [p for p in folder.glob(f"{name}.*") if p.suffix in (".jpg", ".png")]
                with Image.open(path) as image:
                    image.convert("RGB").save(OPENCV / f"{name}.jpg", "JPEG", quality=92)

    def read(names: list[str]) -> list[bytes]:
        return [(OPENCV / f"{name}.jpg").read_bytes() for name in names if (OPENCV / f"{name}.jpg").exists()]

    return read(OPENCV_PHOTOS), read(OPENCV_PICTURES)


def skimage_photos() -> list[bytes]:
    from skimage import data

    out = []
    for name in ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina"):
        buffer = io.BytesIO()
        Image.fromarray(getattr(data, name)()).convert("RGB").save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def mixed_set(count: int) -> list[bytes]:
    """Real photos at their own sizes plus PNG and downscaled variants, cycled to ``count``."""
    base = nature_photos() + skimage_photos()
    variants = list(base)
    for payload in base[: len(base) // 2]:
        image = Image.open(io.BytesIO(payload)).convert("RGB")
        small = image.resize((max(1, image.width // 3), max(1, image.height // 3)))
        buffer = io.BytesIO()
        small.save(buffer, "PNG")
        variants.append(buffer.getvalue())
    return [variants[i % len(variants)] for i in range(count)]


def weights_file(model: str, folder: Path) -> tuple[Path | None, str]:
    if model not in TORCHVISION_MODELS:
        return None, "ImageNet"
    path = folder / f"{model}-random.pth"
    torch.save(getattr(models, model)().state_dict(), path)  # torchvision's layout, as downloaded
    return path, "random (speed only)"


def model_settings(model: str, precision: str, weights: Path | None, batch: int, runtime: str = "auto") -> ModelSettings:
    return ModelSettings(model=model, precision=precision, weights_file=weights, batch_size=batch, runtime=runtime)  # type: ignore[arg-type]


def bare_rate(embedder: Embedder, batch: int, seconds: float) -> float:
    pixels = np.random.default_rng(0).integers(0, 255, (batch, embedder.image_size, embedder.image_size, 3), np.uint8)
    embedder.predict(pixels)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or done < 2 * batch:
        embedder.predict(pixels)
        done += batch
    return done / (time.perf_counter() - start)


def decode_rate(payloads: list[bytes], size: int, workers: int) -> float:
    """Decode + preprocess in worker processes, as the service runs it."""
    import functools
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    work = functools.partial(decode, size=size, max_pixels=10**9, thumbnail=256)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(abs, range(workers)))  # started before the clock
        start = time.perf_counter()
        list(pool.map(work, payloads))
        return len(payloads) / (time.perf_counter() - start)


async def pipeline_rate(settings: Settings, payloads: list[bytes]) -> float:
    pipeline = EmbeddingPipeline(settings, shared=False)
    pipeline.start()
    try:
        await asyncio.gather(*(pipeline.embed(p, "bench") for p in payloads[:8]))  # warm-up
        start = time.perf_counter()
        await asyncio.gather(*(pipeline.embed(p, "bench") for p in payloads))
        return len(payloads) / (time.perf_counter() - start)
    finally:
        pipeline.stop()


def draft_savings() -> tuple[float, float]:
    """ms to decode a 12-megapixel JPEG to the model input, without and with draft mode."""
    big = Image.open(io.BytesIO(skimage_photos()[0])).resize((4000, 3000), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    big.save(buffer, "JPEG", quality=90)
    payload = buffer.getvalue()

    def full() -> None:
        image = Image.open(io.BytesIO(payload))
        image.convert("RGB").resize((224, 224), Image.Resampling.BILINEAR, reducing_gap=2.0)

    def timed(fn: Callable[[], object], n: int = 5) -> float:
        fn()
        start = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - start) / n * 1000

    return timed(full), timed(lambda: decode(payload, size=224, max_pixels=10**9))


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print(f"\n{title}")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="efficientnet_lite0,resnet18,resnet50")
    parser.add_argument("--images", type=int, default=96, help="photos through the whole pipeline")
    parser.add_argument("--seconds", type=float, default=4.0, help="per bare-model measurement")
    args = parser.parse_args()
    models = args.models.split(",")
    payloads = mixed_set(args.images)
    variants = [("fp32", "torch"), ("fp32", "onnx"), ("bf16", "torch")]  # precision, runtime
    cpu = platform.processor() or platform.machine()
    print(
        f"machine: {os.cpu_count()} CPUs ({cpu}), native bf16: {cpu_has_native_bf16()}, "
        f"CUDA: {torch.cuda.is_available()}, torch {torch.__version__}, Python {sys.version.split()[0]}"
    )
    print(f"photos: {len(nature_photos())} nature JPEGs + scikit-image photos, mixed sizes, {len(payloads)} items")

    without, with_draft = draft_savings()
    table(
        "JPEG draft mode, 12-megapixel JPEG → 224×224 (ms per image)",
        ["full decode", "draft decode", "saving"],
        [[f"{without:.0f}", f"{with_draft:.0f}", f"{without / with_draft:.1f}×"]],
    )
    settings = Settings()
    batch = settings.model.batch_size
    workers = settings.model.decode_workers or os.cpu_count() or 1
    rate = decode_rate(payloads, 224, workers)
    table("Decode + preprocess alone (images/s)", ["workers", "images/s"], [[f"{workers} processes", f"{rate:.1f}"]])

    bare_rows, pipe_rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for model in models:
            weights, kind = weights_file(model, Path(tmp))
            rates: dict[tuple[str, str, int], float] = {}
            for precision, runtime in variants:
                embedder = Embedder(model_settings(model, precision, weights, batch, runtime))
                embedder.load()
                for size in BATCHES:
                    rates[precision, runtime, size] = bare_rate(embedder, size, args.seconds)
            bare_rows.append([model, kind] + [f"{rates[p, r, b]:.1f}" for p, r in variants for b in BATCHES])
            full = msgspec.structs.replace(Settings(), model=model_settings(model, "auto", weights, batch))
            chosen = Embedder(full.model)  # what the service runs here
            pipe = asyncio.run(pipeline_rate(full, payloads))
            bare = rates[chosen.precision, chosen.runtime, batch]
            pipe_rows.append([model, f"{chosen.precision} {chosen.runtime}", f"{pipe:.1f}", f"{bare:.1f}", f"{pipe / bare:.2f}"])
    table(
        "Bare model (images/s, 224×224)",
        ["model", "weights"] + [f"{p} {r} b{b}" for p, r in variants for b in BATCHES],
        bare_rows,
    )
    table(
        f"Whole pipeline on real photos (decode → batched model), batch {batch} (the default)",
        ["model", "precision, runtime", "pipeline img/s", f"bare b{batch} img/s", "pipeline ÷ bare"],
        pipe_rows,
    )


if __name__ == "__main__":
    main()
