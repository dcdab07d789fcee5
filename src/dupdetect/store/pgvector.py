"""The pgvector adapter: every SQL statement the service runs at request time is in this module.

PostgreSQL is the source of truth: a request's images, vectors and the duplicates found for
them commit in one transaction, so a GET after a POST always sees them.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import numpy as np

from dupdetect.duplicates import merge
from dupdetect.perceptual import BANDS, bands
from dupdetect.store.base import (
    Match,
    ModelMismatch,
    NewImage,
    RequestInfo,
    RequestNotFound,
    SearchQuery,
    StoredImage,
    Thresholds,
)

INGEST_LOCK = 0x64757064  # "dupd": one ingest transaction at a time, so concurrent uploads see each other
SUPPORTED_DIMS = (512, 1280, 2048)
"""One partial HNSW index per size (migration 0001)."""

_IMAGE_COLUMNS = (
    "i.id, i.request_id, i.position, i.filename, i.url, i.byte_size, i.width, i.height,"
    " i.format, i.sha256, i.phash, i.model, i.created_at"
)
# Same expressions as the band indexes of migration 0002, so the planner uses them.
_BAND_MATCH = " OR ".join(f"((i.phash >> {8 * (BANDS - 1 - b)}) & 255) = ${b + 7}" for b in range(BANDS))


def _image(row: asyncpg.Record) -> StoredImage:
    return StoredImage(**{key: row[key] for key in StoredImage.__struct_fields__})


class PgVectorStore:
    def __init__(self, pool: asyncpg.Pool, *, dims: int, ef_search: int) -> None:
        if dims not in SUPPORTED_DIMS:
            raise ValueError(f"no HNSW index for {dims}-dimensional vectors (have {SUPPORTED_DIMS})")
        self.pool = pool
        self.ef_search = ef_search
        # The dimension is part of the indexed expression, so it is spelled out, not a parameter.
        self._nearest_sql = f"""
            WITH nearest AS MATERIALIZED (
                SELECT i.id, i.embedding::halfvec({dims}) <=> $1::halfvec({dims}) AS distance
                FROM images i
                WHERE vector_dims(i.embedding) = {dims} AND i.model = $2
                  AND i.id IS DISTINCT FROM $3
                  AND (i.request_id IS DISTINCT FROM $4 OR i.position < $5)
                ORDER BY distance
                LIMIT $6
            )
            SELECT {_IMAGE_COLUMNS}, 1 - n.distance AS similarity
            FROM nearest n JOIN images i ON i.id = n.id
            ORDER BY n.distance
        """
        # Near-exact candidates: any shared byte of the perceptual hash (all within Hamming
        # distance 7, most beyond), then the exact distance.
        self._hash_sql = f"""
            SELECT {_IMAGE_COLUMNS},
                   CASE WHEN i.model = $2 AND vector_dims(i.embedding) = {dims}
                        THEN 1 - (i.embedding::halfvec({dims}) <=> $1::halfvec({dims})) ELSE 0 END AS similarity
            FROM images i
            WHERE i.phash IS NOT NULL AND ({_BAND_MATCH})
              AND bit_count((i.phash # $6)::bit(64)) <= $15
              AND i.id IS DISTINCT FROM $3
              AND (i.request_id IS DISTINCT FROM $4 OR i.position < $5)
            ORDER BY bit_count((i.phash # $6)::bit(64)), i.created_at
            LIMIT $16
        """

    async def _tune(self, conn: asyncpg.Connection) -> None:
        """Inside the caller's transaction: filtered HNSW scans must iterate, or they return too few rows."""
        await conn.execute(f"SET LOCAL hnsw.ef_search = {int(self.ef_search)}")
        await conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")

    async def ping(self) -> None:
        await self.pool.fetchval("SELECT 1")

    async def check_model(self, model: str, allow_change: bool) -> None:
        rows = await self.pool.fetch(
            "SELECT model, count(*) AS n FROM images WHERE model <> $1 GROUP BY model ORDER BY n DESC", model
        )
        if rows and not allow_change:
            found = ", ".join(f"{row['n']} from {row['model']}" for row in rows)
            raise ModelMismatch(
                f"the database holds vectors of another model ({found}); this service uses {model}. "
                f"Set DUPDETECT_MODEL/DUPDETECT_IMAGE_SIZE back, re-embed them with `dupdetect reembed DIR`, "
                "or set DUPDETECT_ALLOW_MODEL_CHANGE=true to start anyway (they are then never compared)."
            )

    async def _candidates(
        self,
        conn: asyncpg.Connection,
        query: SearchQuery,
        *,
        model: str,
        rules: Thresholds,
        before: tuple[uuid.UUID, int] | None,
    ) -> list[Match]:
        """``before`` = (request, position): only images stored before that one count."""
        request_id, position = before if before is not None else (None, 0)
        limit = rules.limit
        # A new image (``before`` set: ingest) cannot have decisions yet.
        rejected = await self._rejected(conn, query.exclude) if before is None else set()
        exact = await conn.fetch(
            f"SELECT {_IMAGE_COLUMNS} FROM images i WHERE i.sha256 = $1 AND i.id IS DISTINCT FROM $2"
            " AND (i.request_id IS DISTINCT FROM $3 OR i.position < $4) ORDER BY i.created_at LIMIT $5",
            query.sha256, query.exclude, request_id, position, limit,
        )
        candidates = await conn.fetch(
            self._nearest_sql, query.vector, model, query.exclude, request_id, position, limit
        )
        if query.phash is not None:
            candidates += await conn.fetch(
                self._hash_sql,
                query.vector, model, query.exclude, request_id, position, query.phash,
                *bands(query.phash), rules.near_exact, limit,
            )
        return merge(
            query.phash,
            [_image(row) for row in exact if row["id"] not in rejected],
            [(_image(row), float(row["similarity"])) for row in candidates if row["id"] not in rejected],
            rules,
        )

    async def _rejected(self, conn: asyncpg.Connection, image_id: uuid.UUID | None) -> set[uuid.UUID]:
        """Images a person said are not duplicates of ``image_id``."""
        if image_id is None:
            return set()
        rows = await conn.fetch(
            "SELECT image_b AS other FROM not_duplicates WHERE image_a = $1"
            " UNION ALL SELECT image_a FROM not_duplicates WHERE image_b = $1",
            image_id,
        )
        return {row["other"] for row in rows}

    async def mark_not_duplicate(self, a: uuid.UUID, b: uuid.UUID) -> bool:
        first, second = sorted((a, b))
        async with self.pool.acquire() as conn, conn.transaction():
            if await conn.fetchval("SELECT count(*) FROM images WHERE id = ANY($1::uuid[])", [first, second]) < 2:
                return False
            await conn.execute(
                "INSERT INTO not_duplicates (image_a, image_b) VALUES ($1, $2) ON CONFLICT DO NOTHING", first, second
            )
            await conn.execute(
                "DELETE FROM duplicates WHERE (image_id, duplicate_id) IN (($1, $2), ($2, $1))", first, second
            )
        return True

    async def recorded_pairs(self) -> list[tuple[uuid.UUID, uuid.UUID]]:
        rows = await self.pool.fetch("SELECT image_id, duplicate_id FROM duplicates")
        return [(row["image_id"], row["duplicate_id"]) for row in rows]

    async def get_images(self, ids: list[uuid.UUID]) -> list[StoredImage]:
        rows = await self.pool.fetch(f"SELECT {_IMAGE_COLUMNS} FROM images i WHERE i.id = ANY($1::uuid[])", ids)
        return [_image(row) for row in rows]

    async def known_sha256(self, hashes: list[str]) -> set[str]:
        rows = await self.pool.fetch("SELECT DISTINCT sha256 FROM images WHERE sha256 = ANY($1::text[])", hashes)
        return {row["sha256"] for row in rows}

    async def thumbnail(self, image_id: uuid.UUID) -> bytes | None:
        return await self.pool.fetchval("SELECT thumbnail FROM images WHERE id = $1", image_id)

    async def add_request(
        self,
        request_id: uuid.UUID,
        submitted: int,
        images: list[NewImage],
        *,
        model: str,
        rules: Thresholds,
    ) -> list[list[Match]]:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", INGEST_LOCK)
            await conn.execute(
                "INSERT INTO requests (id, submitted, added) VALUES ($1, $2, $3)", request_id, submitted, len(images)
            )
            await conn.copy_records_to_table(
                "images",
                columns=["id", "request_id", "position", "filename", "url", "byte_size", "width", "height",
                         "format", "sha256", "phash", "thumbnail", "model", "embedding"],
                records=[
                    (img.id, request_id, img.position, img.filename, img.url, img.byte_size, img.width,
                     img.height, img.format, img.sha256, img.phash, img.thumbnail, model, img.vector)
                    for img in images
                ],
            )
            await self._tune(conn)
            found: list[list[Match]] = []
            for img in images:
                query = SearchQuery(vector=img.vector, sha256=img.sha256, phash=img.phash, exclude=img.id)
                found.append(
                    await self._candidates(conn, query, model=model, rules=rules, before=(request_id, img.position))
                )
            pairs = [
                (img.id, match.image.id, match.similarity, match.kind, model)
                for img, matches in zip(images, found, strict=True)
                for match in matches
            ]
            if pairs:
                await conn.copy_records_to_table(
                    "duplicates", columns=["image_id", "duplicate_id", "similarity", "kind", "model"], records=pairs
                )
        return found

    async def search(self, queries: list[SearchQuery], *, model: str, rules: Thresholds) -> list[list[Match]]:
        async with self.pool.acquire() as conn, conn.transaction(readonly=True):
            await self._tune(conn)
            return [await self._candidates(conn, query, model=model, rules=rules, before=None) for query in queries]

    async def get_request(self, request_id: uuid.UUID) -> RequestInfo | None:
        row = await self.pool.fetchrow("SELECT id, created_at, submitted, added FROM requests WHERE id = $1", request_id)
        return None if row is None else RequestInfo(**dict(row))

    async def _request_rows(self, conn: asyncpg.Connection, request_id: uuid.UUID, columns: str) -> list[Any]:
        rows = await conn.fetch(
            f"SELECT {columns} FROM images i WHERE i.request_id = $1 ORDER BY i.position", request_id
        )
        if not rows and not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM requests WHERE id = $1)", request_id):
            raise RequestNotFound(str(request_id))
        return rows

    async def request_images(self, request_id: uuid.UUID) -> list[tuple[StoredImage, np.ndarray]]:
        async with self.pool.acquire() as conn:
            rows = await self._request_rows(conn, request_id, f"{_IMAGE_COLUMNS}, i.embedding")
        return [(_image(row), np.asarray(row["embedding"].to_numpy(), dtype=np.float32)) for row in rows]

    async def recorded_duplicates(self, request_id: uuid.UUID) -> list[tuple[StoredImage, list[Match]]]:
        async with self.pool.acquire() as conn, conn.transaction(readonly=True):
            images = [_image(row) for row in await self._request_rows(conn, request_id, _IMAGE_COLUMNS)]
            rows = await conn.fetch(
                f"""
                SELECT d.image_id AS for_id, d.similarity, d.kind, {_IMAGE_COLUMNS}
                FROM image_duplicates d JOIN images i ON i.id = d.duplicate_id
                WHERE d.image_id = ANY($1::uuid[])
                ORDER BY d.kind = 'exact' DESC, d.similarity DESC, i.created_at
                """,
                [image.id for image in images],
            )
        by_image: dict[uuid.UUID, list[Match]] = {image.id: [] for image in images}
        for row in rows:
            by_image[row["for_id"]].append(Match(image=_image(row), similarity=float(row["similarity"]), kind=row["kind"]))
        return [(image, by_image[image.id]) for image in images]

    async def stale_images(self, model: str) -> list[StoredImage]:
        """Images whose vectors come from another model (for ``dupdetect reembed``)."""
        rows = await self.pool.fetch(f"SELECT {_IMAGE_COLUMNS} FROM images i WHERE i.model <> $1", model)
        return [_image(row) for row in rows]

    async def replace_embedding(
        self, image_id: uuid.UUID, vector: np.ndarray, phash: int, *, model: str, rules: Thresholds
    ) -> list[Match]:
        """Swap in a vector of ``model`` and redo the image's near pairs against everything stored."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", INGEST_LOCK)
            sha256 = await conn.fetchval(
                "UPDATE images SET embedding = $2, model = $3, phash = $4 WHERE id = $1 RETURNING sha256",
                image_id, vector, model, phash,
            )
            await conn.execute(
                "DELETE FROM duplicates WHERE kind <> 'exact' AND (image_id = $1 OR duplicate_id = $1)", image_id
            )
            await self._tune(conn)
            query = SearchQuery(vector=vector, sha256=sha256, phash=phash, exclude=image_id)
            matches = await self._candidates(conn, query, model=model, rules=rules, before=None)
            await conn.executemany(
                "INSERT INTO duplicates (image_id, duplicate_id, similarity, kind, model) SELECT $1, $2, $3, $4, $5"
                " WHERE NOT EXISTS (SELECT 1 FROM duplicates WHERE (image_id, duplicate_id) IN (($1, $2), ($2, $1)))",
                [(image_id, m.image.id, m.similarity, m.kind, model) for m in matches],
            )
        return matches

    async def get_image(self, image_id: uuid.UUID) -> StoredImage | None:
        row = await self.pool.fetchrow(f"SELECT {_IMAGE_COLUMNS} FROM images i WHERE i.id = $1", image_id)
        return None if row is None else _image(row)

    async def delete_image(self, image_id: uuid.UUID) -> bool:
        """The request row stays (with its other images); its ``added`` count records history."""
        return await self.pool.fetchval("DELETE FROM images WHERE id = $1 RETURNING true", image_id) is not None

    async def delete_request(self, request_id: uuid.UUID) -> bool:
        return await self.pool.fetchval("DELETE FROM requests WHERE id = $1 RETURNING true", request_id) is not None
