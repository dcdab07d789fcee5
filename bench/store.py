"""The database alone, at scale: bulk load, index build, incremental ingest, GET latency, recall.

    python bench/store.py [--rows 10000,100000,1000000] [--dims 2048] [--clients 8] [--batch 64]

Vectors are drawn from a Gaussian fitted to real photo descriptors (EfficientNet-Lite0, the
offline ImageNet weights, over a few thousand random crops of real photos), so neighbours are
spread as photos' are; uniform random vectors are far harder for HNSW than photos. For 2048-d
the 1280-d samples are mapped by a fixed random orthonormal matrix (cosines unchanged). 5 % of
the rows are near-copies of another row (cosine ≈ 0.95), so duplicates exist as in life.

At each row count: the table is filled up to it in bulk (COPY without the HNSW index, then one
parallel index build), then measured through the service's own code: incremental ingest
(``duplicates.record_request``: one-round-trip search, write, concurrent check) with
``--clients`` concurrent clients of ``--batch`` images; GET /duplicates for 10-image requests
(recorded pairs, and the live search behind ``?threshold``), p50/p99; recall@10 of the service's
search (the binary-code HNSW index, its shortlist ranked by exact cosine) against exact search.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.embed import nature_photos, skimage_photos, table  # noqa: E402
from dupdetect.database import DatabaseServer, create_pool  # noqa: E402
from dupdetect.images import duplicates  # noqa: E402
from dupdetect.images.rules import Rules  # noqa: E402
from dupdetect.migrate import upgrade  # noqa: E402
from dupdetect.settings import DatabaseSettings, DuplicateSettings, ModelSettings  # noqa: E402
from dupdetect.store.base import NewImage, Query  # noqa: E402
from dupdetect.store.pgvector import HNSW_OPTIONS, MAINTENANCE_TIMEOUT_S, SHORTLIST, PgVectorStore  # noqa: E402

OUT = ROOT / "bench" / "out"
MODEL = "bench/gaussian"
LOAD_CHUNK = 2000
MAINTENANCE_MEM = "10GB"
"""The HNSW build is fast while the graph fits in maintenance_work_mem (1M 2048-d rows: ~8 GB)."""
NEAR_COPY_SHARE = 0.05
NEAR_COPY_PROBES = 600
"""Enough to tell 0.995 of near-copies found from 0.990."""


def real_descriptors(count: int) -> np.ndarray:
    """EfficientNet-Lite0 descriptors of random crops of real photos (cached in bench/out)."""
    cache = OUT / f"descriptors-{count}.npy"
    if cache.exists():
        return np.load(cache)
    from dupdetect.embedding.model import Embedder

    embedder = Embedder(ModelSettings(model="efficientnet_lite0"))
    embedder.load()
    photos = [Image.open(io.BytesIO(data)).convert("RGB") for data in nature_photos() + skimage_photos()]
    rng = np.random.default_rng(0)
    batch, vectors = [], []
    for _ in range(count):
        photo = photos[rng.integers(len(photos))]
        side = rng.uniform(0.15, 0.7) * min(photo.size)
        x, y = rng.uniform(0, photo.width - side), rng.uniform(0, photo.height - side)
        crop = photo.crop((int(x), int(y), int(x + side), int(y + side))).resize((224, 224))
        batch.append(np.asarray(crop))
        if len(batch) == 32:
            vectors.append(embedder.predict(np.stack(batch)))
            batch = []
    if batch:
        vectors.append(embedder.predict(np.stack(batch)))
    out = np.concatenate(vectors)
    OUT.mkdir(parents=True, exist_ok=True)
    np.save(cache, out)
    return out


class VectorSource:
    """Unit vectors from a Gaussian fitted to real descriptors, with near-copies."""

    def __init__(self, real: np.ndarray, dims: int, seed: int = 1) -> None:
        self.rng = np.random.default_rng(seed)
        self.mean = real.mean(axis=0)
        values, vectors = np.linalg.eigh(np.cov(real, rowvar=False))
        self.factor = vectors * np.sqrt(np.clip(values, 0, None))
        basis = np.linalg.qr(np.random.default_rng(7).normal(size=(dims, real.shape[1])))[0]
        self.lift = basis if dims != real.shape[1] else np.eye(dims)

    def draw(self, count: int) -> np.ndarray:
        raw = self.mean + self.rng.normal(size=(count, self.factor.shape[1])) @ self.factor.T
        copies = self.rng.random(count) < NEAR_COPY_SHARE
        noise = 0.25 * raw.std()
        for i in np.flatnonzero(copies)[np.flatnonzero(copies) > 0]:  # a noisy copy of an earlier row
            raw[i] = raw[self.rng.integers(i)] + self.rng.normal(scale=noise, size=raw.shape[1])
        lifted = (raw / np.linalg.norm(raw, axis=1, keepdims=True)) @ self.lift.T
        return (lifted / np.linalg.norm(lifted, axis=1, keepdims=True)).astype(np.float32)


def images(vectors: np.ndarray, start: int) -> list[NewImage]:
    rng = np.random.default_rng(start)
    return [
        NewImage(
            id=uuid.uuid4(),
            position=i,
            filename=f"{start + i}.jpg",
            url=None,
            byte_size=1000,
            width=640,
            height=480,
            format="JPEG",
            sha256=f"{start + i:064x}",
            phash=int(rng.integers(-(2**63), 2**63 - 1)),
            thumbnail=None,
            vector=vector,
        )
        for i, vector in enumerate(vectors)
    ]


async def fill(store: PgVectorStore, source: VectorSource, target: int, hnsw: str) -> tuple[float, float]:
    """Bulk-load up to ``target`` rows; returns (rows per second loaded, index build seconds)."""
    have = start = await store.image_count()
    started = time.perf_counter()
    async with store.bulk_load(maintenance_mem=MAINTENANCE_MEM, options=hnsw):
        while have < target:
            vectors = source.draw(min(LOAD_CHUNK, target - have))
            await store.add_request(uuid.uuid4(), len(vectors), images(vectors, have), [], model=MODEL)
            have += len(vectors)
        loaded = time.perf_counter()
    return (have - start) / max(loaded - started, 1e-9), time.perf_counter() - loaded


async def ingest_rate(
    store: PgVectorStore, source: VectorSource, rules: Rules, clients: int, batch: int, seconds: float
) -> float:
    deadline = time.perf_counter() + seconds
    counts = [0] * clients

    async def client(n: int) -> None:
        while time.perf_counter() < deadline:
            vectors = source.draw(batch)
            start = 10**9 + n * 10**7 + counts[n]
            await duplicates.record_request(store, uuid.uuid4(), batch, images(vectors, start), model=MODEL, rules=rules)
            counts[n] += batch

    started = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(clients)))
    return sum(counts) / (time.perf_counter() - started)


async def latency(store: PgVectorStore, rules: Rules, request_ids: list[uuid.UUID]) -> tuple[list[float], list[float]]:
    recorded: list[float] = []
    live: list[float] = []
    for request_id in request_ids:
        for out, is_live in ((recorded, False), (live, True)):
            started = time.perf_counter()
            await duplicates.for_request(store, request_id, model=MODEL, rules=rules, live=is_live)
            out.append((time.perf_counter() - started) * 1000)
    return recorded, live


async def copies_found(store: PgVectorStore, count: int, k: int) -> float:
    """Share of near-copies (cosine ≈ 0.9–0.97) of stored rows whose original the search returns."""
    rows = await store.pool.fetch(
        "SELECT id, embedding FROM images TABLESAMPLE SYSTEM (10) REPEATABLE (3) WHERE model = $1 LIMIT $2", MODEL, count
    )
    rng = np.random.default_rng(3)
    queries = []
    for row in rows:
        vector = np.asarray(row["embedding"].to_numpy(), dtype=np.float32)
        noisy = vector + rng.normal(scale=0.006, size=vector.shape)
        queries.append(Query(vector=(noisy / np.linalg.norm(noisy)).astype(np.float32), sha256="-", phash=None))
    found = [
        f for at in range(0, len(queries), 100) for f in (await store.candidates(queries[at : at + 100], model=MODEL, k=k)).found
    ]
    return sum(row["id"] in {c.image.id for c in hits} for row, hits in zip(rows, found, strict=True)) / len(rows)


async def exact_top10(store: PgVectorStore, queries: np.ndarray) -> list[set[uuid.UUID]]:
    """The true 10 nearest rows of each query: a sequential scan, slower than the service's query
    timeout at 1M rows, so it runs once per probe set and every ef_search is scored against it."""
    sql = (
        f"SELECT id FROM images WHERE vector_dims(embedding) = {store.dims} AND model = $1"
        f" ORDER BY embedding::halfvec({store.dims}) <=> $2::halfvec({store.dims}) LIMIT 10"
    )
    async with store.pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_indexscan = off")
        return [{row["id"] for row in await conn.fetch(sql, MODEL, query, timeout=MAINTENANCE_TIMEOUT_S)} for query in queries]


async def recall_at_10(store: PgVectorStore, queries: np.ndarray, truth: list[set[uuid.UUID]], k: int) -> float:
    """The 10 most similar of the ``k`` neighbours the service fetches, against exact search."""
    search = await store.candidates([Query(vector=q, sha256="-", phash=None) for q in queries], model=MODEL, k=k)
    hits = 0
    for exact, found in zip(truth, search.found, strict=True):
        best = sorted(found, key=lambda candidate: -candidate.similarity)[:10]
        hits += len(exact & {candidate.image.id for candidate in best})
    return hits / (10 * len(queries))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="10000,100000", help="row counts to measure at (ascending)")
    parser.add_argument("--dims", type=int, default=2048)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=20.0, help="incremental ingest per row count")
    parser.add_argument("--ef-search", type=int, default=DuplicateSettings().ef_search)
    parser.add_argument("--hnsw", default=HNSW_OPTIONS, help="index options of the bulk build")
    parser.add_argument("--tune", default="40,100,200", help="ef_search values for the recall table")
    args = parser.parse_args()
    checkpoints = [int(r) for r in args.rows.split(",")]
    source = VectorSource(real_descriptors(3000), args.dims)
    rules = Rules.from_settings(DuplicateSettings())
    rows: list[list[str]] = []
    tuning: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="dupdetect-bench-store-") as tmp:
        server = DatabaseServer.start(DatabaseSettings(data_dir=Path(tmp)))
        try:
            await asyncio.to_thread(upgrade, server.dsn)
            pool = await create_pool(server.dsn, DatabaseSettings(pool_max_size=args.clients + 2), ef_search=args.ef_search)
            store = PgVectorStore(pool, dims=args.dims)
            for target in checkpoints:
                load_rate, build_s = await fill(store, source, target, args.hnsw)
                size = await pool.fetchval(f"SELECT pg_relation_size('images_code_{args.dims}_hnsw_idx') / 1048576.0")
                await pool.execute("VACUUM ANALYZE images")
                rate = await ingest_rate(store, source, rules, args.clients, args.batch, args.seconds)
                ids = [uuid.uuid4() for _ in range(30)]
                for n, request_id in enumerate(ids):
                    vectors = source.draw(10)
                    await duplicates.record_request(
                        store, request_id, 10, images(vectors, 2 * 10**9 + 100 * n), model=MODEL, rules=rules
                    )
                recorded, live = await latency(store, rules, ids)
                print(f"{target:,} rows: build {build_s:.1f} s, index {size:,.0f} MB, ingest {rate:,.0f} img/s", flush=True)
                probes = source.draw(50 if target <= 100_000 else 30)  # exact search scans the whole table
                truth = await exact_top10(store, probes)
                recall = await recall_at_10(store, probes, truth, rules.neighbours)
                for ef in (int(e) for e in args.tune.split(",")):
                    tuned_pool = await create_pool(server.dsn, DatabaseSettings(), ef_search=ef)
                    tuned = PgVectorStore(tuned_pool, dims=args.dims)
                    _, tuned_live = await latency(tuned, rules, ids[:10])
                    tuning.append(
                        [
                            f"{target:,}",
                            str(ef),
                            f"{await recall_at_10(tuned, probes, truth, rules.neighbours):.3f}",
                            f"{await copies_found(tuned, NEAR_COPY_PROBES, rules.neighbours):.3f}",
                            f"{np.percentile(tuned_live, 50):.1f}",
                        ]
                    )
                    print(tuning[-1], flush=True)
                    await tuned_pool.close()
                rows.append(
                    [
                        f"{target:,}",
                        f"{load_rate:,.0f}",
                        f"{build_s:.1f}",
                        f"{size:,.0f}",
                        f"{rate:,.0f}",
                        f"{np.percentile(recorded, 50):.1f} / {np.percentile(recorded, 99):.1f}",
                        f"{np.percentile(live, 50):.1f} / {np.percentile(live, 99):.1f}",
                        f"{recall:.3f}",
                    ]
                )
                print(rows[-1], flush=True)
            await pool.close()
        finally:
            server.stop()
    table(
        f"bench/store.py: {args.dims}-d, HNSW over {args.dims}-bit codes (shortlist {SHORTLIST}× neighbours),"
        f" {os.cpu_count()} cores ({platform.machine()}), ef_search {args.ef_search},"
        f" {args.clients} clients × {args.batch} images",
        [
            "rows",
            "bulk load rows/s",
            "index build s",
            "index MB",
            "ingest img/s",
            "GET recorded p50/p99 ms",
            "GET live p50/p99 ms",
            "recall@10",
        ],
        rows,
    )
    table(
        f"ef_search against recall (index: {args.hnsw})",
        ["rows", "ef_search", "recall@10", "near-copies found", "GET live p50 ms"],
        tuning,
    )


if __name__ == "__main__":
    asyncio.run(main())
