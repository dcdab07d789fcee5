"""Initial schema: requests, images (halfvec embeddings, HNSW per dimension), duplicates.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# pgvector's HNSW needs a fixed dimension: one partial index per descriptor size we ship
# (resnet18/34: 512, efficientnet_lite0: 1280, resnet50/101/152: 2048). halfvec, because
# `vector` HNSW stops at 2,000 dimensions.
DIMENSIONS = (512, 1280, 2048)


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.execute(
        """
        CREATE TABLE requests (
            id          uuid PRIMARY KEY,
            created_at  timestamptz NOT NULL DEFAULT now(),
            submitted   integer NOT NULL CHECK (submitted >= 0),
            added       integer NOT NULL CHECK (added >= 0)
        )
        """
    )
    op.execute("COMMENT ON TABLE requests IS 'One row per POST /images that stored at least one image'")
    op.execute(
        """
        CREATE TABLE images (
            id          uuid PRIMARY KEY,
            request_id  uuid NOT NULL REFERENCES requests (id) ON DELETE CASCADE,
            position    integer NOT NULL CHECK (position >= 0),
            filename    text,
            url         text,
            byte_size   integer NOT NULL CHECK (byte_size > 0),
            width       integer NOT NULL CHECK (width > 0),
            height      integer NOT NULL CHECK (height > 0),
            format      text NOT NULL,
            sha256      text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
            model       text NOT NULL,
            embedding   halfvec NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now(),
            UNIQUE (request_id, position)
        )
        """
    )
    op.execute("COMMENT ON COLUMN images.position IS 'Index of the image in its POST (0-based, as sent)'")
    op.execute("COMMENT ON COLUMN images.model IS 'Descriptor that produced embedding (backbone/head version)'")
    op.execute("CREATE INDEX images_sha256_idx ON images (sha256)")
    for dims in DIMENSIONS:
        op.execute(
            f"CREATE INDEX images_embedding_{dims}_hnsw_idx ON images"
            f" USING hnsw ((embedding::halfvec({dims})) halfvec_cosine_ops)"
            f" WHERE vector_dims(embedding) = {dims}"
        )
    op.execute(
        """
        CREATE TABLE duplicates (
            image_id      uuid NOT NULL REFERENCES images (id) ON DELETE CASCADE,
            duplicate_id  uuid NOT NULL REFERENCES images (id) ON DELETE CASCADE,
            similarity    real NOT NULL CHECK (similarity BETWEEN -1 AND 1),
            kind          text NOT NULL CHECK (kind IN ('exact', 'near')),
            model         text NOT NULL,
            detected_at   timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (image_id, duplicate_id),
            CHECK (image_id <> duplicate_id)
        )
        """
    )
    op.execute(
        "COMMENT ON TABLE duplicates IS 'One row per pair found at ingest: image_id is the newer"
        " image, duplicate_id the one already stored. image_duplicates lists both directions.'"
    )
    op.execute("CREATE INDEX duplicates_duplicate_id_idx ON duplicates (duplicate_id)")
    op.execute(
        """
        CREATE VIEW image_duplicates AS
            SELECT image_id, duplicate_id, similarity, kind, model, detected_at FROM duplicates
            UNION ALL
            SELECT duplicate_id, image_id, similarity, kind, model, detected_at FROM duplicates
        """
    )


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS image_duplicates")
    op.execute("DROP TABLE IF EXISTS duplicates")
    op.execute("DROP TABLE IF EXISTS images")
    op.execute("DROP TABLE IF EXISTS requests")
