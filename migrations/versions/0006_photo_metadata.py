"""Photo metadata people sort by: when and with what camera it was taken (EXIF).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE images ADD COLUMN taken_at timestamp, ADD COLUMN camera_make text, ADD COLUMN camera_model text")
    op.execute("COMMENT ON COLUMN images.taken_at IS 'EXIF DateTimeOriginal (else DateTime): the camera''s local time'")
    op.execute("COMMENT ON COLUMN images.camera_make IS 'EXIF Make'")
    op.execute("COMMENT ON COLUMN images.camera_model IS 'EXIF Model'")


def downgrade() -> None:
    op.execute("ALTER TABLE images DROP COLUMN taken_at, DROP COLUMN camera_make, DROP COLUMN camera_model")
