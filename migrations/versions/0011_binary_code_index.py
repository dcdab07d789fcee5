"""A light vector index: HNSW over a binary code of each descriptor, re-ranked by exact cosine.

The halfvec HNSW graph held every 2048-d descriptor again: 7.8 GB at 1M rows, more than the
shared buffers, so ingest slowed 2.3× from 10k to 1M rows and the build took 19 minutes.

- ``descriptor_code(halfvec)``: one bit per channel, set where the next channel (cyclically) is
  larger. Comparisons of two channels need no centring (GeM over ReLU features is non-negative,
  so the signs alone would be all ones) and no fitted statistics, so the descriptors, their
  model version and every stored row stay as they are. The Hamming distance between two codes
  follows the angle between the descriptors; the store searches the codes for a shortlist and
  ranks it by the exact cosine of the stored halfvec (``bench/store.py`` measures both).
- One partial HNSW index per size on ``descriptor_code(embedding::halfvec(n))::bit(n)``
  (``bit_hamming_ops``), instead of the halfvec ones: 256 bytes a row for 2048-d instead of 4 kB.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from alembic import op
from sqlalchemy import text

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

DIMENSIONS = (512, 1280, 2048)


def upgrade() -> None:
    # Index builds and ANALYZE run functions with a safe search_path (PostgreSQL 17+), so the
    # function names the schema of pgvector's operators and functions.
    schema = (
        op.get_bind()
        .execute(text("SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'vector'"))
        .scalar_one()
    )
    op.execute(
        f"""
        CREATE FUNCTION descriptor_code(v halfvec) RETURNS bit
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = {schema}, pg_catalog
        AS $$ SELECT binary_quantize((subvector(v, 2, vector_dims(v) - 1) || subvector(v, 1, 1)) - v) $$
        """
    )
    op.execute(
        "COMMENT ON FUNCTION descriptor_code(halfvec) IS 'Bit j is set where channel j+1 of the descriptor"
        " (cyclically) exceeds channel j; the HNSW indexes hold these codes. Nearest by code:"
        " ORDER BY descriptor_code(embedding::halfvec(n))::bit(n) <~> descriptor_code(q)::bit(n),"
        " then rank a few times more rows than needed by embedding <=> q'"
    )
    op.execute("SET LOCAL maintenance_work_mem = '1GB'")  # 1M rows' graph: ~0.5 GB, built in memory
    for dims in DIMENSIONS:
        op.execute(
            f"CREATE INDEX images_code_{dims}_hnsw_idx ON images"
            f" USING hnsw ((descriptor_code(embedding::halfvec({dims}))::bit({dims})) bit_hamming_ops)"
            f" WHERE vector_dims(embedding) = {dims}"
        )
        op.execute(f"DROP INDEX IF EXISTS images_embedding_{dims}_hnsw_idx")


def downgrade() -> None:
    for dims in DIMENSIONS:
        op.execute(
            f"CREATE INDEX IF NOT EXISTS images_embedding_{dims}_hnsw_idx ON images"
            f" USING hnsw ((embedding::halfvec({dims})) halfvec_cosine_ops)"
            f" WHERE vector_dims(embedding) = {dims}"
        )
        op.execute(f"DROP INDEX IF EXISTS images_code_{dims}_hnsw_idx")
    op.execute("DROP FUNCTION descriptor_code(halfvec)")
