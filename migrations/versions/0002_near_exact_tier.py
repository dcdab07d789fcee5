"""Near-exact tier: a 64-bit perceptual hash per image, indexed by byte for Hamming search.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BANDS = 8  # two hashes within Hamming distance 7 share at least one of their 8 bytes


def _band(i: int) -> str:
    return f"((phash >> {8 * (BANDS - 1 - i)}) & 255)"


def upgrade() -> None:
    op.execute("ALTER TABLE images ADD COLUMN phash bigint")
    op.execute(
        "COMMENT ON COLUMN images.phash IS '64-bit DCT perceptual hash (imagehash phash bits, signed);"
        " NULL for images stored before revision 0002'"
    )
    for i in range(BANDS):
        op.execute(f"CREATE INDEX images_phash_band{i}_idx ON images ({_band(i)}) WHERE phash IS NOT NULL")
    op.execute("ALTER TABLE duplicates DROP CONSTRAINT duplicates_kind_check")
    op.execute("ALTER TABLE duplicates ADD CONSTRAINT duplicates_kind_check CHECK (kind IN ('exact', 'near_exact', 'near'))")


def downgrade() -> None:
    op.execute("DELETE FROM duplicates WHERE kind = 'near_exact'")
    op.execute("ALTER TABLE duplicates DROP CONSTRAINT duplicates_kind_check")
    op.execute("ALTER TABLE duplicates ADD CONSTRAINT duplicates_kind_check CHECK (kind IN ('exact', 'near'))")
    for i in range(BANDS):
        op.execute(f"DROP INDEX IF EXISTS images_phash_band{i}_idx")
    op.execute("ALTER TABLE images DROP COLUMN phash")
