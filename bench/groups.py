"""Groups at the scale of a large library: rebuilding them from the pairs, and reading a page.

    python bench/groups.py [--groups 200000] [--size 2]

Loads ``--groups`` × ``--size`` images (no model: small stand-in vectors, the HNSW indexes
dropped, since only groups are measured) and, per group, ``--size - 1`` near-exact pairs with its
first image, into an embedded PostgreSQL; then times what ``GET /groups`` does: rebuilding the
stored groups (``ReviewService.refresh_groups``: the pairs read, grouped in Python, written with
COPY) and reading page 1, a middle page and the last page (paging in SQL, by ``group_rank``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dupdetect.database import DatabaseServer, create_pool  # noqa: E402
from dupdetect.images.rules import Rules  # noqa: E402
from dupdetect.migrate import upgrade  # noqa: E402
from dupdetect.review.service import ReviewService  # noqa: E402
from dupdetect.settings import DatabaseSettings, DuplicateSettings  # noqa: E402
from dupdetect.store.pgvector import SUPPORTED_DIMS, PgVectorStore  # noqa: E402


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line, rule] + ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows])


async def load(store: PgVectorStore, groups: int, size: int) -> None:
    """Images and pairs straight into the tables, in COPY batches."""
    async with store.pool.acquire() as conn:
        for dims in SUPPORTED_DIMS:
            await conn.execute(f"DROP INDEX IF EXISTS images_code_{dims}_hnsw_idx")
        vector = np.full(SUPPORTED_DIMS[0], 0.1, dtype=np.float32)
        batch = 20_000
        for start in range(0, groups, batch):
            request = uuid.uuid4()
            await conn.execute("INSERT INTO requests (id, submitted, added, settled) VALUES ($1, 0, 0, true)", request)
            ids = [[uuid.uuid4() for _ in range(size)] for _ in range(start, min(groups, start + batch))]
            await conn.copy_records_to_table(
                "images",
                columns=[
                    "id",
                    "request_id",
                    "position",
                    "filename",
                    "byte_size",
                    "width",
                    "height",
                    "format",
                    "sha256",
                    "model",
                    "embedding",
                    "content_width",
                    "content_height",
                ],
                records=[
                    (
                        i,
                        request,
                        n * size + k,
                        f"g{start + n}/{k}.jpg",
                        500_000 - k,
                        1600 - k * 100,
                        1000,
                        "JPEG",
                        i.hex * 2,
                        "bench",
                        vector,
                        1600 - k * 100,
                        1000,
                    )
                    for n, group in enumerate(ids)
                    for k, i in enumerate(group)
                ],
            )
            await conn.copy_records_to_table(
                "duplicates",
                columns=["image_id", "duplicate_id", "similarity", "kind", "model"],
                records=[(member, group[0], 0.97, "near_exact", "bench") for group in ids for member in group[1:]],
            )
        await conn.execute(  # what the store does after a write
            "INSERT INTO group_state (collection) VALUES ('default')"
            " ON CONFLICT (collection) DO UPDATE SET version = group_state.version + 1"
        )
        await conn.execute("ANALYZE")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--groups", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dupdetect-bench-groups-") as tmp:
        server = DatabaseServer.start(DatabaseSettings(data_dir=Path(tmp)))
        try:
            await asyncio.to_thread(upgrade, server.dsn)
            pool = await create_pool(server.dsn, DatabaseSettings(), ef_search=40)
            store = PgVectorStore(pool, dims=SUPPORTED_DIMS[0])
            started = time.perf_counter()
            await load(store, args.groups, args.size)
            loaded = time.perf_counter() - started
            review = ReviewService(store, descriptor="bench", rules=Rules.from_settings(DuplicateSettings()))
            started = time.perf_counter()
            await review.refresh_groups()
            rebuilt = time.perf_counter() - started
            rows = [["load images and pairs (COPY)", f"{loaded:.1f} s"], ["rebuild the groups", f"{rebuilt:.1f} s"]]
            pages = max(1, args.groups // 20)
            for page in (1, pages // 2, pages):
                times = []
                for _ in range(5):
                    started = time.perf_counter()
                    found = await review.groups(page=page, page_size=20)
                    times.append(time.perf_counter() - started)
                assert found.total == args.groups and len(found.groups) == 20
                rows.append(
                    [f"GET /groups page {page:,} of {pages:,} (20 groups), median of 5", f"{sorted(times)[2] * 1000:.1f} ms"]
                )
            await pool.close()
        finally:
            server.stop()
    print(f"\n{args.groups:,} groups of {args.size} images ({args.groups * args.size:,} images)")
    print(table(["step", "time"], rows))


if __name__ == "__main__":
    asyncio.run(main())
