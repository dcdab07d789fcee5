"""Keep/trash marks: what a person decided to do with each copy, for export.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE marks (
            image_id   uuid PRIMARY KEY REFERENCES images (id) ON DELETE CASCADE,
            mark       text NOT NULL CHECK (mark IN ('keep', 'trash')),
            marked_at  timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        "COMMENT ON TABLE marks IS 'A person''s decision per image: keep it or trash it (POST /marks, GET /marks exports)'"
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS marks")
