"""The pgvector adapter: every SQL statement the service runs at request time is in this module.

PostgreSQL is the source of truth: a request's images, vectors and the duplicates found for
them commit in one transaction, so a GET after a POST always sees them.
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import numpy as np
from pgvector import HalfVector

from dupdetect.database import CONNECTION_LOST
from dupdetect.embedding.perceptual import BAND_MASK, BANDS, band_shift
from dupdetect.store.base import (
    DEFAULT_COLLECTION,
    Candidate,
    CandidateSearch,
    DuplicateGroup,
    GroupMember,
    ImageFacts,
    Mark,
    MarkedImage,
    Match,
    ModelMismatch,
    NewImage,
    OutcomeUnknown,
    Pair,
    PreviousMark,
    Query,
    RequestInfo,
    RequestNotFound,
    StoredGroups,
    StoredImage,
    unavailable_on,
)

MAINTENANCE_TIMEOUT_S = 86_400.0
"""Statements that may rightly take long (an index build, a collection's groups) are not held to
DUPDETECT_QUERY_TIMEOUT."""

SUPPORTED_DIMS = (512, 1280, 2048)
"""One partial HNSW index per size (migrations 0011 and 0012; tests/test_schema.py checks both against
pg_indexes and every backbone's size against this)."""
HNSW_OPTIONS = "m = 32, ef_construction = 64"
"""As migration 0012 builds the indexes: 32 links a node, twice pgvector's default, which left
the graph over codes unable to reach 5 % of near-copies at 1M rows. For the halfvec index before
migration 0011, bench/store.py found ef_construction 32 15 % faster to ingest into, but missing
0.5 % of near-copies at 100k rows."""
SHORTLIST = 2
"""The code index returns this many times the neighbours asked for, ranked then by the exact
cosine: on real descriptors 3× keeps 0.999 of the true top 64 above similarity 0.7 (2×: 0.995;
1×: 0.90; bench/store.py measures it at scale)."""


def _code(vector: str, dims: int) -> str:
    """The indexed binary code of a halfvec (migration 0011's ``descriptor_code``)."""
    return f"descriptor_code({vector})::bit({dims})"


_FACTS = ImageFacts.__struct_fields__
"""The image record, defined once (:class:`ImageFacts`): every column list below is made from it;
a new field needs only its migration."""
_IMAGE_COLUMNS = ", ".join(f"i.{name}" for name in StoredImage.__struct_fields__)
_COPIED = [name for name in _FACTS if name not in ("id", "position", "filename", "url")]
"""What a stored copy of a file takes from the stored image with its bytes."""


def _image(row: asyncpg.Record) -> StoredImage:
    return StoredImage(**{key: row[key] for key in StoredImage.__struct_fields__})


_NAMED = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")


class Statement:
    """SQL written with ``:name`` placeholders, numbered once for asyncpg's ``$n``; :meth:`args`
    puts the values in that order, so a statement with many parameters cannot receive them in
    the wrong one (and a missing or extra value is an error, not a shifted argument)."""

    def __init__(self, sql: str) -> None:
        self.names: list[str] = []
        self.text = _NAMED.sub(self._number, sql)

    def _number(self, match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in self.names:
            self.names.append(name)
        return f"${self.names.index(name) + 1}"

    def args(self, **values: Any) -> list[Any]:
        if values.keys() != set(self.names):
            raise TypeError(f"the statement takes {sorted(self.names)}, not {sorted(values)}")
        return [values[name] for name in self.names]


def _candidates_sql(dims: int, queries: str, source: str, scope: str, *, indexed: bool) -> str:
    """Candidates for every row of ``queries`` (``q``: n, vec, sha256, phash, exclude) among
    ``source`` (``i``): the nearest vectors, the same bytes, a shared hash band; one statement.
    Each query yields at least one row (``id`` NULL when nothing is near), all carrying the
    snapshot the statement saw.

    Every lookup takes at most ``:k`` rows, so many copies of one image (or many flat images
    sharing a hash band) cost no more than ``:k`` candidates each. ``indexed``: the nearest
    vectors are the ``:shortlist`` nearest binary codes (the HNSW index) ranked by their exact
    cosine; otherwise (a few rows) the exact cosine ranks them all, and no code is computed.
    ``scope``: a condition on ``i`` every candidate meets (its collection).
    Parameters: ``:model``, ``:k``, ``:shortlist`` if ``indexed``, and those of ``queries`` and ``scope``.
    """
    vec = f"i.embedding::halfvec({dims})"
    comparable = f"vector_dims(i.embedding) = {dims} AND i.model = :model"
    similarity = f"CASE WHEN {comparable} THEN 1 - ({vec} <=> q.vec) ELSE 0 END AS similarity"
    band = "((i.phash >> {shift}) & {mask}) = ((q.phash >> {shift}) & {mask})"
    # Same expression and predicate as the partial HNSW index, so the planner uses it.
    shortlist = (
        f"(SELECT * FROM {source} i WHERE {comparable} AND {scope}"
        f" ORDER BY {_code(vec, dims)} <~> {_code('q.vec', dims)} LIMIT :shortlist) i"
        if indexed
        else f"{source} i WHERE {comparable} AND {scope}"
    )
    lookups = [
        f"SELECT 1 - ({vec} <=> q.vec) AS similarity, {_IMAGE_COLUMNS} FROM {shortlist} ORDER BY similarity DESC LIMIT :k",
        f"SELECT {similarity}, {_IMAGE_COLUMNS} FROM {source} i WHERE i.sha256 = q.sha256 AND {scope} LIMIT :k",
    ] + [
        f"SELECT {similarity}, {_IMAGE_COLUMNS} FROM {source} i WHERE i.phash IS NOT NULL AND {scope}"
        f" AND {band.format(shift=band_shift(b), mask=BAND_MASK)} LIMIT :k"
        for b in range(BANDS)
    ]
    union = " UNION ALL ".join(f"({lookup})" for lookup in lookups)
    return f"""
        SELECT q.n, c.*, pg_current_snapshot()::text AS seen
        FROM {queries}
        LEFT JOIN LATERAL (SELECT DISTINCT ON (u.id) u.* FROM ({union}) u) c ON true
        WHERE c.id IS NULL OR (
            c.id IS DISTINCT FROM q.exclude
            AND NOT EXISTS (SELECT 1 FROM not_duplicates d
                            WHERE d.image_a = LEAST(q.exclude, c.id) AND d.image_b = GREATEST(q.exclude, c.id)))
    """


_SETTLE = Statement("""
    WITH added AS (
        INSERT INTO duplicates (image_id, duplicate_id, similarity, kind, model, matched_points)
        SELECT p.image_id, p.duplicate_id, p.similarity, p.kind, :model, p.matched_points
        FROM unnest(:image_ids::uuid[], :duplicate_ids::uuid[], :similarities::real[], :kinds::text[],
                    :matched_points::int[])
             AS p(image_id, duplicate_id, similarity, kind, matched_points)
        WHERE EXISTS (SELECT 1 FROM images WHERE id = p.duplicate_id)
          AND EXISTS (SELECT 1 FROM images WHERE id = p.image_id)
        ON CONFLICT DO NOTHING  -- found by both sides, or already recorded the other way round
        RETURNING 1
    ), marked AS (UPDATE requests SET settled = true WHERE id = :request_id)
    SELECT count(*) FROM added
""")


_ADD_COPIES = Statement(f"""
    WITH source AS (
        SELECT gen_random_uuid() AS new_id, c.position, c.filename, s.id,
               {", ".join(f"s.{name}" for name in _COPIED)}, s.thumbnail, s.model, s.embedding, s.collection
        FROM unnest(:positions::int[], :filenames::text[], :sha256s::text[]) AS c(position, filename, sha256)
        CROSS JOIN LATERAL (
            SELECT * FROM images i WHERE i.sha256 = c.sha256 AND i.collection = :collection LIMIT 1
        ) s
    ), added AS (
        INSERT INTO images (id, request_id, position, filename, {", ".join(_COPIED)}, thumbnail, model, embedding,
                            collection)
        SELECT new_id, :request_id, position, filename, {", ".join(_COPIED)}, thumbnail, model, embedding, collection
        FROM source
    )
    INSERT INTO image_keypoints (image_id, keypoints)
    SELECT source.new_id, k.keypoints FROM source JOIN image_keypoints k ON k.image_id = source.id
""")
"""Files whose bytes are stored: each row copies a stored image (vector, hash, thumbnail, keypoints)."""


def _grouped(rows: list[asyncpg.Record], keys: list[Any]) -> dict[Any, list[Candidate]]:
    found: dict[Any, list[Candidate]] = {key: [] for key in keys}
    for row in rows:
        if row["id"] is not None:
            found[row["n"]].append(Candidate(image=_image(row), similarity=float(row["similarity"])))
    return found


async def _still_stored(conn: asyncpg.Connection, pairs: list[Pair], new: set[uuid.UUID]) -> list[Pair]:
    """The pairs whose stored image is still there, locked until this transaction ends: an
    image deleted since the search (a concurrent DELETE) loses its pairs instead of failing the
    whole request on the foreign key."""
    if not pairs:
        return pairs
    others = list({image for pair in pairs for image in (pair.image_id, pair.duplicate_id)} - new)
    rows = await conn.fetch("SELECT id FROM images WHERE id = ANY($1::uuid[]) ORDER BY id FOR KEY SHARE", others)
    alive = new | {row["id"] for row in rows}
    return [pair for pair in pairs if pair.image_id in alive and pair.duplicate_id in alive]


@unavailable_on(*CONNECTION_LOST)
class PgVectorStore:
    name = "pgvector"

    def __init__(self, pool: asyncpg.Pool, *, dims: int, collection: str = DEFAULT_COLLECTION) -> None:
        if dims not in SUPPORTED_DIMS:
            raise ValueError(f"no HNSW index for {dims}-dimensional vectors (have {SUPPORTED_DIMS})")
        self.pool = pool
        self.dims = dims
        self.collection = collection
        # The dimension is part of the indexed expression, so it is spelled out, not a parameter.
        self._search = Statement(
            _candidates_sql(
                dims,
                "unnest(:vectors::halfvec[], :sha256s::text[], :phashes::bigint[], :excludes::uuid[])"
                " WITH ORDINALITY AS q(vec, sha256, phash, exclude, n)",
                "images",
                "i.collection = :collection",
                indexed=True,
            )
        )
        # Images stored by transactions that the snapshot :seen did not see: a few, compared directly.
        self._concurrent = Statement(
            (
                "WITH late AS MATERIALIZED (SELECT i.* FROM images i WHERE i.request_id <> :request_id"
                " AND i.collection = :collection AND (i.xact >= pg_snapshot_xmax(:seen::text::pg_snapshot)"
                " OR i.xact = ANY (ARRAY(SELECT pg_snapshot_xip(:seen::text::pg_snapshot)))))"
            )
            + _candidates_sql(
                dims,
                "(SELECT i.embedding AS vec, i.sha256, i.phash, i.id AS exclude, i.id AS n"
                " FROM images i WHERE i.request_id = :request_id AND i.model = :model) q",
                "late",
                "true",
                indexed=False,
            )
        )

    def scoped(self, collection: str) -> PgVectorStore:
        view = copy.copy(self)
        view.collection = collection
        return view

    @contextlib.asynccontextmanager
    async def bulk_load(self, *, maintenance_mem: str = "1GB", options: str = HNSW_OPTIONS) -> AsyncIterator[None]:
        """Load many rows without the HNSW index, then build it in one pass with parallel
        workers: several times faster than inserting into the index row by row. Searches
        meanwhile scan sequentially; meant for a new or mostly empty table."""
        index = f"images_code_{self.dims}_hnsw_idx"
        await self.pool.execute(f"DROP INDEX IF EXISTS {index}")
        try:
            yield
        finally:
            async with self.pool.acquire() as conn:
                await conn.execute(f"SET maintenance_work_mem = '{maintenance_mem}'")
                await conn.execute(f"SET max_parallel_maintenance_workers = {max(1, (os.cpu_count() or 2) - 1)}")
                await conn.execute(
                    f"CREATE INDEX IF NOT EXISTS {index} ON images USING hnsw"
                    f" (({_code(f'embedding::halfvec({self.dims})', self.dims)}) bit_hamming_ops) WITH ({options})"
                    f" WHERE vector_dims(embedding) = {self.dims}",
                    timeout=MAINTENANCE_TIMEOUT_S,
                )
                await conn.execute("RESET maintenance_work_mem; RESET max_parallel_maintenance_workers")

    async def image_count(self) -> int:
        return int(await self.pool.fetchval("SELECT count(*) FROM images"))

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

    async def candidates(self, queries: list[Query], *, model: str, k: int) -> CandidateSearch:
        rows = await self.pool.fetch(
            self._search.text,
            *self._search.args(
                model=model,
                k=k,
                shortlist=SHORTLIST * k,
                vectors=[HalfVector(q.vector) for q in queries],
                sha256s=[q.sha256 for q in queries],
                phashes=[q.phash for q in queries],
                excludes=[q.exclude for q in queries],
                collection=self.collection,
            ),
        )
        found = _grouped(rows, list(range(1, len(queries) + 1)))
        return CandidateSearch(found=list(found.values()), seen=rows[0]["seen"] if rows else None)

    async def concurrent_candidates(
        self, request_id: uuid.UUID, seen: str, *, model: str, k: int
    ) -> dict[uuid.UUID, list[Candidate]]:
        rows = await self.pool.fetch(
            self._concurrent.text,
            *self._concurrent.args(
                model=model,
                k=k,
                request_id=request_id,
                seen=seen,
                collection=self.collection,
            ),
        )
        return _grouped(rows, [row["n"] for row in rows])

    async def mark_not_duplicate(self, a: uuid.UUID, b: uuid.UUID) -> bool:
        first, second = sorted((a, b))
        async with self.pool.acquire() as conn, conn.transaction():
            found = await conn.fetchval(
                "SELECT count(*) FROM images WHERE id = ANY($1::uuid[]) AND collection = $2",
                [first, second],
                self.collection,
            )
            if found < 2:
                return False
            await conn.execute(
                "INSERT INTO not_duplicates (image_a, image_b) VALUES ($1, $2) ON CONFLICT DO NOTHING", first, second
            )
            await conn.execute("DELETE FROM duplicates WHERE (image_id, duplicate_id) IN (($1, $2), ($2, $1))", first, second)
        await self._changed()
        return True

    async def unmark_not_duplicate(self, a: uuid.UUID, b: uuid.UUID) -> bool:
        first, second = sorted((a, b))
        removed = await self.pool.fetchval(
            "DELETE FROM not_duplicates d USING images i WHERE d.image_a = $1 AND d.image_b = $2"
            " AND i.id = d.image_a AND i.collection = $3 RETURNING true",
            first,
            second,
            self.collection,
        )
        return removed is not None

    async def set_marks(self, image_ids: list[uuid.UUID], mark: Mark | None) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            ids = [
                row["id"]
                for row in await conn.fetch(
                    "SELECT id FROM images WHERE id = ANY($1::uuid[]) AND collection = $2", image_ids, self.collection
                )
            ]
            if mark is None:
                await conn.execute("DELETE FROM marks WHERE image_id = ANY($1::uuid[])", ids)
            else:
                await conn.execute(
                    "INSERT INTO marks (image_id, mark) SELECT unnest($1::uuid[]), $2"
                    " ON CONFLICT (image_id) DO UPDATE SET mark = excluded.mark, marked_at = now()",
                    ids,
                    mark,
                )
        return len(ids)

    async def replace_marks(self, keep: list[uuid.UUID], trash: list[uuid.UUID]) -> list[PreviousMark]:
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT i.id, m.mark FROM images i LEFT JOIN marks m ON m.image_id = i.id"
                " WHERE i.id = ANY($1::uuid[]) AND i.collection = $2 FOR UPDATE OF i",
                keep + trash,
                self.collection,
            )
            found = {row["id"] for row in rows}
            marks = [(i, "keep") for i in keep if i in found] + [(i, "trash") for i in trash if i in found]
            await conn.execute(
                "INSERT INTO marks (image_id, mark) SELECT * FROM unnest($1::uuid[], $2::text[])"
                " ON CONFLICT (image_id) DO UPDATE SET mark = excluded.mark, marked_at = now()",
                [i for i, _ in marks],
                [mark for _, mark in marks],
            )
        return [PreviousMark(image_id=row["id"], mark=row["mark"]) for row in rows]

    async def marked_images(self) -> list[MarkedImage]:
        rows = await self.pool.fetch(
            f"SELECT {_IMAGE_COLUMNS}, m.mark, m.marked_at FROM marks m JOIN images i ON i.id = m.image_id"
            " WHERE i.collection = $1 ORDER BY m.marked_at, i.id",
            self.collection,
        )
        return [MarkedImage(image=_image(row), mark=row["mark"], marked_at=row["marked_at"]) for row in rows]

    async def _changed(self) -> None:
        """Pairs or images of this collection changed: the stored groups are out of date."""
        await self.pool.execute(
            "INSERT INTO group_state (collection) VALUES ($1)"
            " ON CONFLICT (collection) DO UPDATE SET version = group_state.version + 1",
            self.collection,
        )

    async def groups_built(self) -> bool:
        return bool(
            await self.pool.fetchval(
                "SELECT coalesce((SELECT built >= version FROM group_state WHERE collection = $1), true)", self.collection
            )
        )

    async def stale_groups(self) -> list[str]:
        rows = await self.pool.fetch("SELECT collection FROM group_state WHERE built < version ORDER BY collection")
        return [row["collection"] for row in rows]

    async def group_inputs(self) -> tuple[int, list[StoredImage], list[Pair]]:
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            version = await conn.fetchval("SELECT version FROM group_state WHERE collection = $1", self.collection)
            pairs = await conn.fetch(
                "SELECT d.image_id, d.duplicate_id, d.similarity, d.kind, d.matched_points FROM duplicates d"
                " JOIN images i ON i.id = d.image_id WHERE i.collection = $1",
                self.collection,
                timeout=MAINTENANCE_TIMEOUT_S,
            )
            rows = await conn.fetch(
                f"SELECT {_IMAGE_COLUMNS} FROM images i WHERE i.collection = $1 AND i.id = ANY($2::uuid[])",
                self.collection,
                list({p["image_id"] for p in pairs} | {p["duplicate_id"] for p in pairs}),
                timeout=MAINTENANCE_TIMEOUT_S,
            )
        return int(version or 0), [_image(row) for row in rows], [Pair(**dict(p)) for p in pairs]

    async def replace_groups(self, version: int, groups: list[DuplicateGroup]) -> None:
        records = [
            (
                self.collection,
                group.id,
                rank,
                len(group.members),
                m.image.id,
                position,
                position == 0,
                m.via,
                m.joined_as,
                m.similarity,
                m.matched_points,
                group.reason,
            )
            for rank, group in enumerate(groups, 1)
            for position, m in enumerate(group.members)
        ]
        async with self.pool.acquire() as conn, conn.transaction():
            built = await conn.fetchval(
                "INSERT INTO group_state (collection, version, built) VALUES ($1, $2, 0) ON CONFLICT (collection)"
                " DO UPDATE SET version = group_state.version RETURNING built",  # locks the row: one writer at a time
                self.collection,
                version,
            )
            if built >= version:
                return
            await conn.execute("DELETE FROM group_members WHERE collection = $1", self.collection, timeout=MAINTENANCE_TIMEOUT_S)
            if records:
                await conn.copy_records_to_table(
                    "group_members",
                    records=records,
                    timeout=MAINTENANCE_TIMEOUT_S,
                    columns=[
                        "collection",
                        "group_id",
                        "group_rank",
                        "group_size",
                        "image_id",
                        "position",
                        "suggested_keep",
                        "joined_via",
                        "joined_as",
                        "joined_similarity",
                        "joined_matched_points",
                        "keeper_reason",
                    ],
                )
            await conn.execute("UPDATE group_state SET built = $2 WHERE collection = $1", self.collection, version)

    async def groups(self, *, offset: int, limit: int | None) -> StoredGroups:
        last = 2**31 - 1 if limit is None else offset + limit
        async with self.pool.acquire() as conn, conn.transaction(readonly=True):
            total = await conn.fetchval(
                "SELECT coalesce(max(group_rank), 0) FROM group_members WHERE collection = $1", self.collection
            )
            rows = await conn.fetch(
                f"SELECT g.group_id, g.keeper_reason, g.joined_via, g.joined_as, g.joined_similarity,"
                f" g.joined_matched_points, m.mark, {_IMAGE_COLUMNS}"
                " FROM group_members g JOIN images i ON i.id = g.image_id LEFT JOIN marks m ON m.image_id = i.id"
                " WHERE g.collection = $1 AND g.group_rank > $2 AND g.group_rank <= $3"
                " ORDER BY g.group_rank, g.position",
                self.collection,
                offset,
                last,
            )
        members: dict[uuid.UUID, list[GroupMember]] = {}
        reasons: dict[uuid.UUID, str] = {}
        for row in rows:
            reasons[row["group_id"]] = row["keeper_reason"]
            members.setdefault(row["group_id"], []).append(
                GroupMember(
                    image=_image(row),
                    via=row["joined_via"],
                    joined_as=row["joined_as"],
                    similarity=row["joined_similarity"],
                    matched_points=row["joined_matched_points"],
                    mark=row["mark"],
                )
            )
        return StoredGroups(
            groups=[DuplicateGroup(id=key, members=group, reason=reasons[key]) for key, group in members.items()],
            total=int(total),
        )

    async def stored_names(self, hashes: list[str]) -> dict[str, set[str | None]]:
        rows = await self.pool.fetch(
            "SELECT DISTINCT sha256, filename FROM images WHERE collection = $2 AND sha256 = ANY($1::text[])",
            hashes,
            self.collection,
        )
        found: dict[str, set[str | None]] = {}
        for row in rows:
            found.setdefault(row["sha256"], set()).add(row["filename"])
        return found

    async def thumbnail(self, image_id: uuid.UUID) -> bytes | None:
        data: bytes | None = await self.pool.fetchval(
            "SELECT thumbnail FROM images WHERE id = $1 AND collection = $2", image_id, self.collection
        )
        return data

    async def add_request(
        self, request_id: uuid.UUID, submitted: int, images: list[NewImage], pairs: list[Pair], *, model: str
    ) -> None:
        try:
            await self._add_request(request_id, submitted, images, pairs, model=model)
        except CONNECTION_LOST as exc:
            raise OutcomeUnknown(request_id) from exc
        if pairs:
            await self._changed()

    async def _add_request(
        self, request_id: uuid.UUID, submitted: int, images: list[NewImage], pairs: list[Pair], *, model: str
    ) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO requests (id, submitted, added, collection) VALUES ($1, $2, $3, $4)",
                request_id,
                submitted,
                len(images),
                self.collection,
            )
            await conn.copy_records_to_table(
                "images",
                columns=[*_FACTS, "request_id", "model", "collection", "thumbnail", "embedding"],
                records=[
                    (*(getattr(img, name) for name in _FACTS), request_id, model, self.collection, img.thumbnail, img.vector)
                    for img in images
                ],
            )
            keypoints = [(img.id, img.keypoints) for img in images if img.keypoints is not None]
            if keypoints:
                await conn.copy_records_to_table("image_keypoints", columns=["image_id", "keypoints"], records=keypoints)
            pairs = await _still_stored(conn, pairs, {img.id for img in images})
            if pairs:
                await conn.copy_records_to_table(
                    "duplicates",
                    columns=["image_id", "duplicate_id", "similarity", "kind", "model", "matched_points"],
                    records=[(p.image_id, p.duplicate_id, p.similarity, p.kind, model, p.matched_points) for p in pairs],
                )

    async def add_copies(self, request_id: uuid.UUID, copies: list[tuple[int, str, str]]) -> None:
        """Store files whose bytes are already stored, as (position, file name, SHA-256): each
        reuses a stored image's vector, hash, thumbnail and metadata, so nothing is decoded or
        embedded. The request stays unsettled: the k-NN pass records the exact pairs."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO requests (id, submitted, added, collection) VALUES ($1, $2, $2, $3)",
                request_id,
                len(copies),
                self.collection,
            )
            await conn.execute(
                _ADD_COPIES.text,
                *_ADD_COPIES.args(
                    request_id=request_id,
                    positions=[c[0] for c in copies],
                    filenames=[c[1] for c in copies],
                    sha256s=[c[2] for c in copies],
                    collection=self.collection,
                ),
            )

    async def settle(self, request_id: uuid.UUID, pairs: list[Pair], *, model: str) -> int:
        arguments = _SETTLE.args(
            request_id=request_id,
            image_ids=[p.image_id for p in pairs],
            duplicate_ids=[p.duplicate_id for p in pairs],
            similarities=[p.similarity for p in pairs],
            kinds=[p.kind for p in pairs],
            model=model,
            matched_points=[p.matched_points for p in pairs],
        )
        try:
            added = int(await self.pool.fetchval(_SETTLE.text, *arguments))
        except asyncpg.ForeignKeyViolationError:  # an image was deleted in between: look again
            added = int(await self.pool.fetchval(_SETTLE.text, *arguments))
        if added:
            await self._changed()
        return added

    async def unsettled_requests(self, older_than_s: float) -> list[tuple[str, uuid.UUID]]:
        rows = await self.pool.fetch(
            "SELECT collection, id FROM requests WHERE NOT settled AND created_at < now() - make_interval(secs => $1)"
            " ORDER BY created_at",
            older_than_s,
        )
        return [(row["collection"], row["id"]) for row in rows]

    async def collections(self) -> list[str]:
        return [row["name"] for row in await self.pool.fetch("SELECT name FROM collections ORDER BY name")]

    async def keypoints(self, image_ids: list[uuid.UUID]) -> dict[uuid.UUID, bytes]:
        rows = await self.pool.fetch(
            "SELECT image_id, keypoints FROM image_keypoints WHERE image_id = ANY($1::uuid[])", image_ids
        )
        return {row["image_id"]: row["keypoints"] for row in rows}

    async def get_request(self, request_id: uuid.UUID) -> RequestInfo | None:
        row = await self.pool.fetchrow(
            "SELECT id, created_at, submitted, added FROM requests WHERE id = $1 AND collection = $2",
            request_id,
            self.collection,
        )
        return None if row is None else RequestInfo(**dict(row))

    async def _request_rows(self, conn: asyncpg.Connection, request_id: uuid.UUID, columns: str) -> list[Any]:
        rows: list[Any] = await conn.fetch(
            f"SELECT {columns} FROM images i WHERE i.request_id = $1 AND i.collection = $2 ORDER BY i.position",
            request_id,
            self.collection,
        )
        if not rows and not await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM requests WHERE id = $1 AND collection = $2)", request_id, self.collection
        ):
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
                SELECT d.image_id AS for_id, d.similarity, d.kind, d.matched_points, {_IMAGE_COLUMNS}
                FROM image_duplicates d JOIN images i ON i.id = d.duplicate_id
                WHERE d.image_id = ANY($1::uuid[])
                ORDER BY d.kind = 'exact' DESC, d.similarity DESC, i.created_at
                """,
                [image.id for image in images],
            )
        by_image: dict[uuid.UUID, list[Match]] = {image.id: [] for image in images}
        for row in rows:
            by_image[row["for_id"]].append(
                Match(
                    image=_image(row),
                    similarity=float(row["similarity"]),
                    kind=row["kind"],
                    matched_points=row["matched_points"],
                )
            )
        return [(image, by_image[image.id]) for image in images]

    async def stale_images(self, model: str) -> list[StoredImage]:
        """Images whose vectors come from another model (for ``dupdetect reembed``)."""
        rows = await self.pool.fetch(
            f"SELECT {_IMAGE_COLUMNS} FROM images i WHERE i.model <> $1 AND i.collection = $2", model, self.collection
        )
        return [_image(row) for row in rows]

    async def replace_embedding(
        self, image_id: uuid.UUID, vector: np.ndarray, phash: int | None, keypoints: bytes | None, *, model: str
    ) -> None:
        """Swap in a vector of ``model`` (and the hash and keypoints of this version); its near
        pairs go (exact ones stay) until searched again."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE images SET embedding = $2, model = $3, phash = $4 WHERE id = $1", image_id, vector, model, phash
            )
            await conn.execute("DELETE FROM image_keypoints WHERE image_id = $1", image_id)
            if keypoints is not None:
                await conn.execute("INSERT INTO image_keypoints (image_id, keypoints) VALUES ($1, $2)", image_id, keypoints)
            await conn.execute("DELETE FROM duplicates WHERE kind <> 'exact' AND (image_id = $1 OR duplicate_id = $1)", image_id)
        await self._changed()

    async def get_image(self, image_id: uuid.UUID) -> StoredImage | None:
        row = await self.pool.fetchrow(
            f"SELECT {_IMAGE_COLUMNS} FROM images i WHERE i.id = $1 AND i.collection = $2", image_id, self.collection
        )
        return None if row is None else _image(row)

    async def delete_image(self, image_id: uuid.UUID) -> bool:
        """The request row stays (with its other images); its ``added`` count records history."""
        deleted = await self.pool.fetchval(
            "DELETE FROM images WHERE id = $1 AND collection = $2 RETURNING true", image_id, self.collection
        )
        if deleted:
            await self._changed()
        return deleted is not None

    async def delete_request(self, request_id: uuid.UUID) -> bool:
        deleted = await self.pool.fetchval(
            "DELETE FROM requests WHERE id = $1 AND collection = $2 RETURNING true", request_id, self.collection
        )
        if deleted:
            await self._changed()
        return deleted is not None
