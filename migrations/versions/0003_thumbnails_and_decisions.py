"""Thumbnails for review, and people's "not a duplicate" decisions.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE images ADD COLUMN thumbnail bytea")
    op.execute("COMMENT ON COLUMN images.thumbnail IS 'Small JPEG for review pages; NULL when thumbnails are off'")
    op.execute(
        """
        CREATE TABLE not_duplicates (
            image_a     uuid NOT NULL REFERENCES images (id) ON DELETE CASCADE,
            image_b     uuid NOT NULL REFERENCES images (id) ON DELETE CASCADE,
            decided_at  timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (image_a, image_b),
            CHECK (image_a < image_b)
        )
        """
    )
    op.execute(
        "COMMENT ON TABLE not_duplicates IS 'Pairs a person marked as not duplicates; searches and groups"
        " leave them out. image_a < image_b.'"
    )
    op.execute("CREATE INDEX not_duplicates_image_b_idx ON not_duplicates (image_b)")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS not_duplicates")
    op.execute("ALTER TABLE images DROP COLUMN thumbnail")
