"""Migrations against a real PostgreSQL with pgvector: up, what an analyst sees, and down."""

import asyncio

import asyncpg

from dupdetect import migrate
from dupdetect.embedding.backbones import BACKBONES
from dupdetect.embedding.perceptual import BAND_MASK, BANDS, band_shift
from dupdetect.store.pgvector import SUPPORTED_DIMS


async def _tables(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
    return {row["table_name"] for row in rows}


async def test_upgrade_creates_tables_indexes_and_view(empty_dsn: str) -> None:
    dsn = empty_dsn
    await migrate.upgrade_async(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        assert {"requests", "images", "duplicates", "image_duplicates"} <= await _tables(conn)
        indexes = {
            row["indexname"]: row["indexdef"]
            for row in await conn.fetch("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'")
        }
        assert "USING btree (sha256)" in indexes["images_sha256_idx"]
        assert '(request_id, "position")' in indexes["images_request_id_position_key"]
        for band in range(BANDS):  # the bands the store looks up are the bands indexed
            definition = indexes[f"images_phash16_band{band}_idx"]
            assert f"(phash >> {band_shift(band)}) & ({BAND_MASK})::bigint" in definition
        assert not any(name.startswith("images_phash_band") for name in indexes)
        assert "UNIQUE INDEX" in indexes["duplicates_pair_key"]  # a pair is one row, either way round
        hnsw = {int(name.split("_")[2]) for name in indexes if name.endswith("_hnsw_idx")}
        assert hnsw == set(SUPPORTED_DIMS)  # the store's list is the migration's
        assert {spec.dims for spec in BACKBONES.values()} <= hnsw  # every backbone has its index
        for dims in SUPPORTED_DIMS:  # binary codes of the descriptors, not the descriptors again
            definition = indexes[f"images_code_{dims}_hnsw_idx"]
            assert "USING hnsw" in definition and f"descriptor_code((embedding)::halfvec({dims}))" in definition
            assert f"::bit({dims})) bit_hamming_ops" in definition
            assert "m='32'" in definition  # enough links to reach every near-copy at 1M rows
        columns = {
            row["column_name"]: row["data_type"]
            for row in await conn.fetch(
                "SELECT column_name, udt_name AS data_type FROM information_schema.columns WHERE table_name = 'images'"
            )
        }
        assert columns["embedding"] == "halfvec"
        assert {
            "id",
            "request_id",
            "position",
            "filename",
            "url",
            "byte_size",
            "width",
            "height",
            "format",
            "sha256",
            "phash",
            "model",
            "created_at",
        } <= columns.keys()
        assert await migrate.current_revision(dsn) == migrate.head_revision()
    finally:
        await conn.close()


async def test_upgrade_is_idempotent_and_downgrade_empties(empty_dsn: str) -> None:
    dsn = empty_dsn
    await migrate.upgrade_async(dsn)
    await migrate.upgrade_async(dsn)
    await asyncio.to_thread(migrate.downgrade, dsn, "base")
    conn = await asyncpg.connect(dsn)
    try:
        assert await _tables(conn) <= {"alembic_version"}
    finally:
        await conn.close()
    assert await migrate.current_revision(dsn) is None
    await migrate.upgrade_async(dsn)  # and back up again
    assert await migrate.current_revision(dsn) == migrate.head_revision()
