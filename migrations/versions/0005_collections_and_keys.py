"""Collections and API keys.

- ``collections``: every request and image belongs to one; a collection never sees or matches
  another's images. ``default`` holds everything stored without authentication.
- ``images.collection`` repeats its request's, so filtered HNSW scans need no join.
- ``api_keys``: a key opens one collection; only the SHA-256 of its secret is kept.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE collections (
            name text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
            created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("INSERT INTO collections (name) VALUES ('default')")
    op.execute(
        "COMMENT ON TABLE collections IS 'Separate sets of images: duplicates are only searched within one."
        " An API key opens one collection.'"
    )
    for table in ("requests", "images"):
        op.execute(f"ALTER TABLE {table} ADD COLUMN collection text NOT NULL DEFAULT 'default' REFERENCES collections")
    op.execute("CREATE INDEX requests_collection_created_idx ON requests (collection, created_at)")
    op.execute("CREATE INDEX images_collection_sha256_idx ON images (collection, sha256)")
    op.execute(
        """
        CREATE TABLE api_keys (
            id text PRIMARY KEY,
            collection text NOT NULL REFERENCES collections,
            secret_sha256 bytea NOT NULL,
            label text NOT NULL DEFAULT '',
            created_at timestamptz NOT NULL DEFAULT now(),
            revoked_at timestamptz
        )
        """
    )
    op.execute(
        "COMMENT ON TABLE api_keys IS 'Keys of the HTTP API (dupdetect keys create/list/revoke); the secret"
        " itself is never stored, only its SHA-256.'"
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS api_keys")
    op.execute("DROP INDEX IF EXISTS images_collection_sha256_idx")
    op.execute("DROP INDEX IF EXISTS requests_collection_created_idx")
    for table in ("images", "requests"):
        op.execute(f"ALTER TABLE {table} DROP COLUMN IF EXISTS collection")
    op.execute("DROP TABLE IF EXISTS collections")
