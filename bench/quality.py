"""Detection quality on real photos: our tiers against the seed's rule and imagededup's PHash.

    python bench/quality.py [--model efficientnet_lite0] [--sizes 224,288]

Originals: the nature photos of ../shared/photos (fetched once, see bench/embed.py) and
scikit-image's photos. Each original gets every edit of bench/transforms.py; the other
originals are its distractors, so labels are known by construction. Our default runs through
the real service path: decode → embed → store (an embedded PostgreSQL) → search.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.embed import nature_photos, skimage_photos, table  # noqa: E402
from bench.transforms import EDITS, Edit  # noqa: E402
from dupdetect.database import DatabaseServer, create_pool  # noqa: E402
from dupdetect.duplicates import Rules, classify  # noqa: E402
from dupdetect.embedding import weights  # noqa: E402
from dupdetect.embedding.backbones import BACKBONES  # noqa: E402
from dupdetect.embedding.pipeline import EmbeddingPipeline  # noqa: E402
from dupdetect.ingest import ingest  # noqa: E402
from dupdetect.intake import Item  # noqa: E402
from dupdetect.migrate import upgrade  # noqa: E402
from dupdetect.perceptual import hamming  # noqa: E402
from dupdetect.settings import DatabaseSettings, ModelSettings, Settings  # noqa: E402
from dupdetect.store.base import Query  # noqa: E402
from dupdetect.store.pgvector import PgVectorStore  # noqa: E402

DIFFICULTIES = ("mild", "moderate", "hard")


@dataclass
class Copy:
    original: int
    edit: Edit
    data: bytes


def originals() -> list[bytes]:
    return nature_photos() + skimage_photos()


def copies(photos: list[bytes]) -> list[Copy]:
    out = []
    for index, payload in enumerate(photos):
        image = Image.open(io.BytesIO(payload)).convert("RGB")
        out += [Copy(index, edit, edit.apply(image)) for edit in EDITS]
    return out


@dataclass
class Verdicts:
    """Per copy, the originals a method calls duplicates; and false pairs among originals."""

    name: str
    found: list[set[int]]
    original_pairs: int = 0


def score(v: Verdicts, dataset: list[Copy]) -> dict[str, float]:
    tp = sum(c.original in f for c, f in zip(dataset, v.found, strict=True))
    fp = sum(len(f - {c.original}) for c, f in zip(dataset, v.found, strict=True)) + v.original_pairs
    out = {"precision": tp / (tp + fp) if tp + fp else 1.0, "recall": tp / len(dataset)}
    for level in DIFFICULTIES:
        group = [c.original in f for c, f in zip(dataset, v.found, strict=True) if c.edit.difficulty == level]
        out[level] = sum(group) / len(group)
    p, r = out["precision"], out["recall"]
    out["f1"] = 2 * p * r / (p + r) if p + r else 0.0
    return out


async def ours(settings: Settings, photos: list[bytes], dataset: list[Copy], workdir: Path) -> tuple[Verdicts, np.ndarray, np.ndarray]:
    """The service path. Also returns the cosine and Hamming matrices (copies × originals)."""
    server = DatabaseServer.start(DatabaseSettings(data_dir=workdir))
    pipeline = EmbeddingPipeline(settings)
    pipeline.start()
    try:
        await asyncio.to_thread(upgrade, server.dsn)
        pool = await create_pool(server.dsn, settings.database, ef_search=settings.duplicates.ef_search)
        store = PgVectorStore(pool, dims=pipeline.dims)
        rules = Rules.from_settings(settings.duplicates, top_k=len(photos))
        result = await ingest(
            [Item(index=i, filename=f"original-{i}", data=p) for i, p in enumerate(photos)],
            pipeline=pipeline, store=store, fetcher=None, rules=rules,  # type: ignore[arg-type]
        )
        ids = {outcome.image_id: outcome.index for outcome in result.outcomes}
        original_pairs = sum(len(o.duplicates) for o in result.outcomes)
        stored = await store.request_images(result.request_id)
        vectors = np.stack([v for _, v in stored])
        hashes = [img.phash for img, _ in stored]
        embedded = await asyncio.gather(*(pipeline.embed(c.data) for c in dataset))
        queries = [Query(vector=e.vector, sha256=e.image.sha256, phash=e.image.phash) for e in embedded]
        search = await store.candidates(queries, model=pipeline.model_name, k=rules.neighbours)
        found = [classify(q, c, rules) for q, c in zip(queries, search.found, strict=True)]
        await pool.close()
    finally:
        pipeline.stop()
        server.stop()
    verdicts = Verdicts("dupdetect default", [{ids[m.image.id] for m in matches} for matches in found], original_pairs)
    cosine = np.stack([e.vector for e in embedded]) @ vectors.T
    distance = np.array([[hamming(e.image.phash, h) for h in hashes] for e in embedded])
    return verdicts, cosine, distance


def seed_rule(model: str, photos: list[bytes], dataset: list[Copy]) -> Verdicts:
    """The seed: average-pooled features after Resize(256) + CenterCrop(224), cosine ≥ 0.9, top 5."""
    from torchvision import transforms

    spec = BACKBONES[model]
    trunk = spec.build()
    trunk.load_state_dict(weights.load_state_dict(weights.locate(model, None, allow_download=False), model))
    trunk.eval()
    prep = transforms.Compose([
        transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
        transforms.Normalize(spec.mean, spec.std),
    ])

    def embed(payloads: list[bytes]) -> np.ndarray:
        out = []
        for start in range(0, len(payloads), 32):
            batch = torch.stack([prep(Image.open(io.BytesIO(p)).convert("RGB")) for p in payloads[start : start + 32]])
            with torch.inference_mode():
                out.append(torch.nn.functional.normalize(trunk(batch).mean(dim=(2, 3)), dim=1).numpy())
        return np.concatenate(out)

    base, queries = embed(photos), embed([c.data for c in dataset])
    sims = queries @ base.T
    found = [{int(j) for j in np.argsort(-row)[:5] if row[j] >= 0.9} for row in sims]
    among = base @ base.T
    pairs = int(((among >= 0.9).sum() - len(photos)) // 2)
    return Verdicts(f"seed rule ({model} avg-pool, crop, ≥0.9, top 5)", found, pairs)


def imagededup_phash(photos: list[bytes], dataset: list[Copy]) -> Verdicts:
    from imagededup.methods import PHash

    hasher = PHash(verbose=False)

    def encode(payload: bytes) -> str:
        return hasher.encode_image(image_array=np.asarray(Image.open(io.BytesIO(payload)).convert("RGB")))

    base = [encode(p) for p in photos]
    found = [{j for j, b in enumerate(base) if hasher.hamming_distance(encode(c.data), b) <= 10} for c in dataset]
    pairs = sum(hasher.hamming_distance(a, b) <= 10 for i, a in enumerate(base) for b in base[i + 1 :])
    return Verdicts("imagededup PHash (distance ≤ 10)", found, pairs)


def pr_curve(cosine: np.ndarray, dataset: list[Copy]) -> tuple[list[tuple[float, float, float]], float, float | None]:
    labels = np.zeros_like(cosine, dtype=bool)
    for i, c in enumerate(dataset):
        labels[i, c.original] = True
    scores, truth = cosine.ravel(), labels.ravel()
    order = np.argsort(-scores)
    tp = np.cumsum(truth[order])
    precision = tp / np.arange(1, len(order) + 1)
    recall = tp / truth.sum()
    ap = float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))
    points = []
    for t in np.arange(0.50, 1.0, 0.05):
        hit = scores >= t
        p = (hit & truth).sum() / max(hit.sum(), 1)
        points.append((float(t), float(p), float((hit & truth).sum() / truth.sum())))
    at99 = None
    for t in np.arange(0.40, 1.0, 0.005):
        hit = scores >= t
        if hit.sum() and (hit & truth).sum() / hit.sum() >= 0.99:
            at99 = float(t)
            break
    return points, ap, at99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--sizes", default="224", help="input sizes to compare for the descriptor")
    parser.add_argument("--no-baselines", action="store_true", help="skip the seed rule and imagededup")
    args = parser.parse_args()
    photos = originals()
    dataset = copies(photos)
    print(f"{len(photos)} original photos × {len(EDITS)} edits = {len(dataset)} copies; "
          f"{len(dataset) * (len(photos) - 1) + len(photos) * (len(photos) - 1) // 2} negative pairs")

    rows, by_size = [], {}
    for size in (int(s) for s in args.sizes.split(",")):
        settings = msgspec.structs.replace(Settings(), model=ModelSettings(model=args.model, image_size=size))  # type: ignore[arg-type]
        with tempfile.TemporaryDirectory() as tmp:
            verdicts, cosine, distance = asyncio.run(ours(settings, photos, dataset, Path(tmp)))
        verdicts.name = f"dupdetect default ({args.model} GeM, {size}px)"
        by_size[size] = (verdicts, cosine, distance, settings)
    default_size = Settings().model.image_size
    verdicts, cosine, distance, settings = by_size.get(default_size, next(iter(by_size.values())))
    compared = [v for v, *_ in by_size.values()]
    if not args.no_baselines:
        compared = [seed_rule(args.model, photos, dataset), imagededup_phash(photos, dataset), *compared]
    for v in compared:
        s = score(v, dataset)
        rows.append([v.name, f"{s['precision']:.3f}", f"{s['mild']:.3f}", f"{s['moderate']:.3f}", f"{s['hard']:.3f}", f"{s['f1']:.3f}"])
    table("Side by side (precision over all pairs; recall by difficulty)",
          ["method", "precision", "recall mild", "recall moderate", "recall hard", "F1"], rows)

    dup = settings.duplicates
    family_rows = []
    groups: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(dataset):
        groups[c.edit.name].append(i)
    for edit in EDITS:
        idx = groups[edit.name]
        hit = [dataset[i].original in verdicts.found[i] for i in idx]
        wrong = sum(len(verdicts.found[i] - {dataset[i].original}) for i in idx)
        by_hash = [distance[i, dataset[i].original] <= dup.near_exact_distance for i in idx]
        cos = [cosine[i, dataset[i].original] for i in idx]
        recall = float(np.mean(hit))
        precision = sum(hit) / (sum(hit) + wrong) if sum(hit) + wrong else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        family_rows.append([
            edit.name, edit.family, edit.difficulty, f"{precision:.2f}", f"{recall:.2f}", f"{f1:.2f}", str(wrong),
            f"{np.mean(by_hash):.2f}", f"{min(cos):.3f}", str(int(max(distance[i, dataset[i].original] for i in idx))),
        ])
    table(f"dupdetect at its defaults (near ≥ {dup.near_threshold}, near-exact ≤ {dup.near_exact_distance} bits), per edit",
          ["edit", "family", "difficulty", "precision", "recall", "F1", "false pairs", "near-exact share",
           "min cosine", "max bits"],
          family_rows)

    negatives = np.ones_like(cosine, dtype=bool)
    for i, c in enumerate(dataset):
        negatives[i, c.original] = False
    table("How far apart different photos are", ["measure", "value"], [
        ["highest cosine, copy vs another original", f"{cosine[negatives].max():.3f}"],
        ["fewest differing pHash bits, copy vs another original", str(int(distance[negatives].min()))],
    ])
    for size, (_, cos, _, _) in by_size.items():
        points, ap, at99 = pr_curve(cos, dataset)
        table(f"CNN descriptor alone, {size}px: precision–recall (average precision {ap:.3f}; "
              f"threshold for 99 % precision: {at99 if at99 is None else round(at99, 3)})",
              ["cosine ≥", "precision", "recall"], [[f"{t:.2f}", f"{p:.3f}", f"{r:.3f}"] for t, p, r in points])


if __name__ == "__main__":
    main()
