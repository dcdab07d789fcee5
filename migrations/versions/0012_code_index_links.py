"""The code indexes with 32 links a node instead of 16, so that a million rows stay navigable.

With 16 links (pgvector's default) the HNSW graph over binary codes found 0.945 of near-copies
at 1M rows (bench/store.py, ef_search 128), though every one of them is the nearest code to its
query: greedy search over Hamming distances, which are coarse, does not reach nodes that few
links point to. A faiss HNSW over the same codes showed the same (0.974) and, with 32 links,
0.999. Twice the links cost about twice the build and 128 more bytes a row in the graph.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

DIMENSIONS = (512, 1280, 2048)


def _rebuild(links: int) -> None:
    op.execute("SET LOCAL maintenance_work_mem = '1GB'")
    for dims in DIMENSIONS:
        op.execute(f"DROP INDEX IF EXISTS images_code_{dims}_hnsw_idx")
        op.execute(
            f"CREATE INDEX images_code_{dims}_hnsw_idx ON images"
            f" USING hnsw ((descriptor_code(embedding::halfvec({dims}))::bit({dims})) bit_hamming_ops)"
            f" WITH (m = {links}, ef_construction = 64) WHERE vector_dims(embedding) = {dims}"
        )


def upgrade() -> None:
    _rebuild(32)


def downgrade() -> None:
    _rebuild(16)
