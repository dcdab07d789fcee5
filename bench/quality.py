"""Detection quality on real photos and hard negatives: our rules against the seed's rule and
imagededup's PHash.

    python bench/quality.py [--model efficientnet_lite0] [--thresholds 0.4,0.5,0.6,0.7] [--splits tuning,held-out]

Originals: the nature photos of ../shared/photos, scikit-image's photos and the desktop
backgrounds of KDE Plasma and GNOME (bench/embed.py fetches them once with apt). Half of them
are stored; the other half are held back, so their copies are distractor queries that must
match nothing. Every original gets every edit of bench/transforms.py. The hard negatives of
bench/hard_negatives.py (flat, gradient, logo, transparent, document, texture images, and
images that share a part and differ in the rest: one viewer's screenshots of different
pictures, invoices and slides of one template, one chat app, one wordmark under different
marks, scrolled text) are stored too: any pair with one of them is a false pair. Labels are
known by construction.

Two splits: *tuning*, what the defaults were chosen on, and *held-out*, never tuned on:
OpenCV's sample photos (people, streets, food, animals, interiors, a painting; Debian's
opencv-doc, fetched once) and the shared-region families drawn anew.

Our rules run through the real service path: decode → embed → store (an embedded PostgreSQL)
→ candidates → cheap gates → geometric check.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.embed import nature_photos, opencv_samples, skimage_photos, table, wallpapers  # noqa: E402
from bench.hard_negatives import Negative, hard_negatives, shared_regions  # noqa: E402
from bench.transforms import EDITS, Edit  # noqa: E402
from dupdetect.database import DatabaseServer, create_pool  # noqa: E402
from dupdetect.embedding import weights  # noqa: E402
from dupdetect.embedding.backbones import BACKBONES  # noqa: E402
from dupdetect.embedding.pipeline import EmbeddingPipeline  # noqa: E402
from dupdetect.images.body import Item  # noqa: E402
from dupdetect.images.duplicates import search  # noqa: E402
from dupdetect.images.fetch import Fetcher  # noqa: E402
from dupdetect.images.prepare import prepare  # noqa: E402
from dupdetect.images.rules import Rules  # noqa: E402
from dupdetect.images.service import ImageService  # noqa: E402
from dupdetect.migrate import upgrade  # noqa: E402
from dupdetect.settings import DatabaseSettings, ModelSettings, Settings  # noqa: E402
from dupdetect.store.base import Kind, Match  # noqa: E402
from dupdetect.store.pgvector import PgVectorStore  # noqa: E402

DIFFICULTIES = ("mild", "moderate", "hard")
BATCH = 64


@dataclass
class Copy:
    original: int
    """Index into the photos; stored when even."""
    edit: Edit
    data: bytes

    @property
    def stored(self) -> bool:
        return self.original % 2 == 0


def copies(photos: list[bytes]) -> list[Copy]:
    out = []
    for index, payload in enumerate(photos):
        image = Image.open(io.BytesIO(payload)).convert("RGB")
        out += [Copy(index, edit, edit.apply(image)) for edit in EDITS]
    return out


@dataclass
class Verdicts:
    """What a method found: per copy, the stored items it called duplicates (photo index, or
    ``-1 - n`` for hard negative n) with their kind; and the pairs among the stored items."""

    name: str
    found: list[dict[int, str]]
    stored_pairs: list[tuple[int, int]]


def is_true(copy: Copy, item: int) -> bool:
    return item == copy.original


def score(v: Verdicts, dataset: list[Copy], bursts: set[int], *, tier: str | None = None) -> dict[str, float]:
    """Precision over every pair reported (copies' and stored items' own), recall over the
    copies of stored photos; by difficulty. Pairs within ``bursts`` are left out (see README)."""

    def keep(kind: str) -> bool:
        return tier is None or kind == tier

    tp = sum(1 for c, f in zip(dataset, v.found, strict=True) if c.original in f and keep(f[c.original]))
    fp = sum(1 for c, f in zip(dataset, v.found, strict=True) for item, kind in f.items() if not is_true(c, item) and keep(kind))
    fp += sum(1 for a, b in v.stored_pairs if not {a, b} <= bursts) if tier is None else 0
    positives = [c for c in dataset if c.stored]
    out = {"precision": tp / (tp + fp) if tp + fp else 1.0, "recall": tp / len(positives), "tp": tp, "fp": fp}
    for level in DIFFICULTIES:
        group = [c.original in f for c, f in zip(dataset, v.found, strict=True) if c.stored and c.edit.difficulty == level]
        out[level] = sum(group) / len(group)
    p, r = out["precision"], out["recall"]
    out["f1"] = 2 * p * r / (p + r) if p + r else 0.0
    return out


def _matches(found: list[list[Match]], ids: dict[object, int]) -> list[dict[int, str]]:
    return [{ids[m.image.id]: m.kind for m in matches if m.image.id in ids} for matches in found]


async def ours(
    settings: Settings, stored: list[tuple[int, bytes]], dataset: list[Copy], workdir: Path, thresholds: list[float]
) -> tuple[dict[float, Verdicts], dict[str, float]]:
    """The service path at each similarity floor; also the time spent per stage."""
    server = DatabaseServer.start(DatabaseSettings(data_dir=workdir))
    pipeline = EmbeddingPipeline(settings, shared=False)
    pipeline.start()
    timing: dict[str, float] = {}
    try:
        await asyncio.to_thread(upgrade, server.dsn)
        pool = await create_pool(server.dsn, settings.database, ef_search=settings.duplicates.ef_search)
        store = PgVectorStore(pool, dims=pipeline.dims)
        limits = settings.limits
        fetcher = Fetcher(settings.fetch, max_bytes=limits.max_image_bytes, max_request_bytes=limits.max_request_bytes)
        service = ImageService(store, pipeline, fetcher, settings.duplicates, caller="bench")
        ids: dict[object, int] = {}
        stored_pairs = []
        for start in range(0, len(stored), BATCH):
            chunk = stored[start : start + BATCH]
            items = [Item(index=i, filename=f"item-{label}", data=data) for i, (label, data) in enumerate(chunk)]
            result = await service.ingest(items)
            for outcome in result.outcomes:
                ids[outcome.image_id] = chunk[outcome.index][0]
            stored_pairs += [(chunk[o.index][0], ids[m.image.id]) for o in result.outcomes for m in o.duplicates]
        started = time.perf_counter()
        images = []
        for start in range(0, len(dataset), BATCH):
            items = [Item(index=i, filename=None, data=c.data) for i, c in enumerate(dataset[start : start + BATCH])]
            images += (await prepare(items, pipeline=pipeline, fetcher=fetcher, caller="bench"))[0]
        timing["decode + embed, ms per image"] = 1000 * (time.perf_counter() - started) / len(dataset)
        verdicts = {}
        for threshold in thresholds:
            at = Rules.from_settings(settings.duplicates, near=threshold)
            started = time.perf_counter()
            found = []
            for start in range(0, len(images), BATCH):
                found += await search(store, images[start : start + BATCH], model=pipeline.descriptor, rules=at)
            if threshold == settings.duplicates.near_threshold:
                timing["search + verify, ms per image"] = 1000 * (time.perf_counter() - started) / len(images)
            verdicts[threshold] = Verdicts(f"dupdetect, similarity ≥ {threshold}", _matches(found, ids), stored_pairs)
        await pool.close()
        await fetcher.close()
    finally:
        pipeline.stop()
        server.stop()
    return verdicts, timing


def _embedder(model: str):  # type: ignore[no-untyped-def]
    from torchvision import transforms

    spec = BACKBONES[model]
    trunk = spec.build()
    trunk.load_state_dict(weights.load_state_dict(weights.locate(model, None, allow_download=False), model))
    trunk.eval()
    prep = transforms.Compose(
        [
            transforms.Resize(256),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(spec.mean, spec.std),
        ]
    )

    def embed(payloads: list[bytes]) -> np.ndarray:
        out = []
        for start in range(0, len(payloads), 32):
            batch = torch.stack([prep(Image.open(io.BytesIO(p)).convert("RGB")) for p in payloads[start : start + 32]])
            with torch.inference_mode():
                out.append(torch.nn.functional.normalize(trunk(batch).mean(dim=(2, 3)), dim=1).numpy())
        return np.concatenate(out)

    return embed


def seed_rule(model: str, stored: list[tuple[int, bytes]], dataset: list[Copy]) -> Verdicts:
    """The seed: average-pooled features after Resize(256) + CenterCrop(224), cosine ≥ 0.9, top 5."""
    embed = _embedder(model)
    base, queries = embed([d for _, d in stored]), embed([c.data for c in dataset])
    labels = [label for label, _ in stored]
    found = [{labels[j]: "near" for j in np.argsort(-row)[:5] if row[j] >= 0.9} for row in queries @ base.T]
    among = base @ base.T
    pairs = [(labels[a], labels[b]) for a in range(len(stored)) for b in range(a + 1, len(stored)) if among[a, b] >= 0.9]
    return Verdicts(f"seed rule ({model} avg-pool, crop, ≥ 0.9, top 5)", found, pairs)


def imagededup_phash(stored: list[tuple[int, bytes]], dataset: list[Copy]) -> Verdicts:
    from imagededup.methods import PHash

    hasher = PHash(verbose=False)

    def encode(payload: bytes) -> str:
        return hasher.encode_image(image_array=np.asarray(Image.open(io.BytesIO(payload)).convert("RGB")))

    base = [(label, encode(d)) for label, d in stored]
    queries = [encode(c.data) for c in dataset]
    found = [{label: "near_exact" for label, b in base if hasher.hamming_distance(q, b) <= 10} for q in queries]
    pairs = [(a, b) for i, (a, ha) in enumerate(base) for b, hb in base[i + 1 :] if hasher.hamming_distance(ha, hb) <= 10]
    return Verdicts("imagededup PHash (distance ≤ 10)", found, pairs)


def _pictures(payloads: list[bytes]) -> list[Image.Image]:
    return [Image.open(io.BytesIO(p)).convert("RGB") for p in payloads]


def tuning_split() -> tuple[list[bytes], list[Negative]]:
    """What the defaults were chosen on: photos, wallpapers and every hard-negative family."""
    from skimage import data
    from sklearn.datasets import load_sample_images  # installed with imagededup (the bench extra)

    shown = [Image.fromarray(a) for a in load_sample_images().images]
    shown += [Image.fromarray(data.immunohistochemistry()), Image.fromarray(data.camera()).convert("RGB")]
    return nature_photos() + skimage_photos() + wallpapers(), hard_negatives() + shared_regions(shown, seed=0)


def held_out_split() -> tuple[list[bytes], list[Negative]]:
    """Never tuned on: OpenCV's sample photos, and the shared-region families drawn anew."""
    photos, drawings = opencv_samples()
    return photos, shared_regions(_pictures(drawings), seed=1)


SPLITS = {"tuning": tuning_split, "held-out": held_out_split}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--thresholds", default="0.4,0.5,0.6,0.7,0.8", help="similarity floors for the operating-point table")
    parser.add_argument("--no-baselines", action="store_true", help="skip the seed rule and imagededup")
    parser.add_argument("--splits", default="tuning,held-out", help="which splits to run (tuning, held-out)")
    args = parser.parse_args()
    settings = msgspec.structs.replace(Settings(), model=ModelSettings(model=args.model))
    summary = []
    for name in args.splits.split(","):
        photos, negatives = SPLITS[name]()
        print(f"\n## {name} split")
        summary.append([name, *evaluate(photos, negatives, settings, args)])
    table(
        "Tuning and held-out splits side by side (dupdetect defaults)",
        ["split", "photos", "queries", "negatives", "precision", "recall mild", "recall moderate", "recall hard", "false pairs"],
        summary,
    )


def evaluate(photos: list[bytes], negatives: list[Negative], settings: Settings, args: argparse.Namespace) -> list[str]:
    """Every table of one split; returns its summary row."""
    dataset = copies(photos)
    stored = [(i, p) for i, p in enumerate(photos) if i % 2 == 0] + [(-1 - n, neg.data) for n, neg in enumerate(negatives)]
    bursts = {-1 - n for n, neg in enumerate(negatives) if neg.family == "burst"}
    print(
        f"{len(photos)} photos ({len(photos[::2])} stored, the rest held back as distractors) × {len(EDITS)} edits"
        f" = {len(dataset)} queries; {len(negatives)} hard negatives stored"
    )
    default = settings.duplicates.near_threshold
    thresholds = sorted({default, *(float(t) for t in args.thresholds.split(","))})
    with tempfile.TemporaryDirectory() as tmp:
        verdicts, timing = asyncio.run(ours(settings, stored, dataset, Path(tmp), thresholds))
    ours_default = verdicts[default]
    ours_default.name = f"dupdetect defaults ({args.model})"
    compared = [ours_default]
    if not args.no_baselines:
        compared = [seed_rule(args.model, stored, dataset), imagededup_phash(stored, dataset), ours_default]
    rows = []
    for v in compared:
        s = score(v, dataset, bursts)
        rows.append(
            [
                v.name,
                f"{s['precision']:.3f}",
                f"{s['mild']:.3f}",
                f"{s['moderate']:.3f}",
                f"{s['hard']:.3f}",
                f"{s['recall']:.3f}",
                f"{s['f1']:.3f}",
                str(int(s["fp"])),
            ]
        )
    table(
        "Side by side (precision over every pair reported; recall over copies of stored photos)",
        ["method", "precision", "recall mild", "recall moderate", "recall hard", "recall", "F1", "false pairs"],
        rows,
    )

    tiers: list[Kind] = ["exact", "near_exact", "near"]
    table(
        "dupdetect defaults, per tier",
        ["tier", "true pairs", "false pairs", "precision"],
        [
            [tier, str(int(s["tp"])), str(int(s["fp"])), f"{s['precision']:.3f}"]
            for tier in tiers
            for s in [score(ours_default, dataset, bursts, tier=tier)]
        ],
    )

    by_family: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(dataset):
        by_family[c.edit.family].append(i)
    family_rows = []
    for family, idx in by_family.items():
        positives = [i for i in idx if dataset[i].stored]
        hit = sum(dataset[i].original in ours_default.found[i] for i in positives)
        wrong = sum(1 for i in idx for item in ours_default.found[i] if not is_true(dataset[i], item))
        recall = hit / len(positives)
        precision = hit / (hit + wrong) if hit + wrong else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        edits = sorted({dataset[i].edit.name for i in idx})
        kinds = Counter(
            ours_default.found[i][dataset[i].original] for i in positives if dataset[i].original in ours_default.found[i]
        )
        family_rows.append(
            [
                family,
                ", ".join(edits),
                dataset[idx[0]].edit.difficulty,
                f"{precision:.3f}",
                f"{recall:.3f}",
                f"{f1:.3f}",
                str(wrong),
                " ".join(f"{k}:{n}" for k, n in sorted(kinds.items())),
            ]
        )
    table(
        "dupdetect defaults, per edit family",
        ["family", "edits", "difficulty", "precision", "recall", "F1", "false pairs", "found as"],
        family_rows,
    )

    per_edit = []
    for edit in EDITS:
        idx = [i for i, c in enumerate(dataset) if c.edit.name == edit.name and c.stored]
        per_edit.append([edit.name, f"{np.mean([dataset[i].original in ours_default.found[i] for i in idx]):.3f}"])
    table("dupdetect defaults, recall per edit", ["edit", "recall"], per_edit)

    missed = Counter(c.original for c, f in zip(dataset, ours_default.found, strict=True) if c.stored and c.original not in f)
    print(
        "photos whose copies were missed most (photo index: copies missed of",
        len(EDITS),
        "):",
        ", ".join(f"{i}: {n}" for i, n in missed.most_common(6)),
    )

    negative_pairs: Counter[str] = Counter()
    label_family = {-1 - n: neg.family for n, neg in enumerate(negatives)}
    for a, b in ours_default.stored_pairs:
        for item in (a, b):
            if item in label_family:
                negative_pairs[label_family[item]] += 1
    for f in ours_default.found:
        for item in f:
            if item in label_family:
                negative_pairs[label_family[item]] += 1
    families = sorted({neg.family for neg in negatives})
    table(
        "Hard negatives: pairs reported that involve one (bursts are a real near-pair of two shots: reported,"
        " not counted as false)",
        ["family", "images", "pairs reported"],
        [[f, str(sum(n.family == f for n in negatives)), str(negative_pairs[f])] for f in families],
    )

    curve = []
    for threshold in thresholds:
        s = score(verdicts[threshold], dataset, bursts)
        curve.append(
            [
                f"{threshold:.2f}" + (" (default)" if threshold == default else ""),
                f"{s['precision']:.3f}",
                f"{s['recall']:.3f}",
                f"{s['hard']:.3f}",
                f"{s['f1']:.3f}",
            ]
        )
    table(
        "Operating points: the similarity floor (DUPDETECT_NEAR_THRESHOLD), other rules at their defaults",
        ["similarity ≥", "precision", "recall", "recall hard", "F1"],
        curve,
    )
    table("Cost", ["stage", "value"], [[k, f"{v:.1f}"] for k, v in timing.items()])
    s = score(ours_default, dataset, bursts)
    return [
        str(len(photos)),
        str(len(dataset)),
        str(len(negatives)),
        *(f"{s[k]:.3f}" for k in ("precision", *DIFFICULTIES)),
        str(int(s["fp"])),
    ]


if __name__ == "__main__":
    main()
