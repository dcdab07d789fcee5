"""Parallel ingest: no global lock, bounded hash look-ups, pairs recorded once.

- ``images.xact``: the transaction that stored the image. An ingest remembers which
  transactions its search could not see (its snapshot) and, after committing, compares its
  images with the ones those transactions stored, so concurrent uploads still find each other.
- ``requests.settled``: false until every pair of the request is recorded (after that
  comparison, or after the bulk k-NN pass of ``dupdetect ingest``); a restart settles the rest.
- One pair is one row whatever its direction (unique on the unordered pair).
- The perceptual hash is looked up by four 16-bit bands instead of eight 8-bit ones: a hash
  within 3 bits shares a band; each band matches 1/65,536 of the table instead of 1/256.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _band(i: int, bands: int, bits: int) -> str:
    return f"((phash >> {bits * (bands - 1 - i)}) & {(1 << bits) - 1})"


def upgrade() -> None:
    op.execute("ALTER TABLE images ADD COLUMN xact xid8 NOT NULL DEFAULT pg_current_xact_id()")
    op.execute("COMMENT ON COLUMN images.xact IS 'Transaction that stored the image (concurrent ingests compare by it)'")
    op.execute("CREATE INDEX images_xact_idx ON images (xact)")

    op.execute("ALTER TABLE requests ADD COLUMN settled boolean NOT NULL DEFAULT true")
    op.execute("ALTER TABLE requests ALTER COLUMN settled SET DEFAULT false")
    op.execute(
        "COMMENT ON COLUMN requests.settled IS 'All duplicate pairs of the request are recorded"
        " (false for a moment after each ingest, and until the k-NN pass of a bulk load has run)'"
    )
    op.execute("CREATE INDEX requests_unsettled_idx ON requests (created_at) WHERE NOT settled")

    op.execute(
        "DELETE FROM duplicates d USING duplicates e"
        " WHERE d.image_id = e.duplicate_id AND d.duplicate_id = e.image_id AND d.image_id > d.duplicate_id"
    )
    op.execute(
        "CREATE UNIQUE INDEX duplicates_pair_key ON duplicates (LEAST(image_id, duplicate_id), GREATEST(image_id, duplicate_id))"
    )

    for i in range(8):
        op.execute(f"DROP INDEX IF EXISTS images_phash_band{i}_idx")
    for i in range(4):
        op.execute(f"CREATE INDEX images_phash16_band{i}_idx ON images ({_band(i, 4, 16)}) WHERE phash IS NOT NULL")


def downgrade() -> None:
    for i in range(4):
        op.execute(f"DROP INDEX IF EXISTS images_phash16_band{i}_idx")
    for i in range(8):
        op.execute(f"CREATE INDEX images_phash_band{i}_idx ON images ({_band(i, 8, 8)}) WHERE phash IS NOT NULL")
    op.execute("DROP INDEX IF EXISTS duplicates_pair_key")
    op.execute("DROP INDEX IF EXISTS requests_unsettled_idx")
    op.execute("ALTER TABLE requests DROP COLUMN settled")
    op.execute("DROP INDEX IF EXISTS images_xact_idx")
    op.execute("ALTER TABLE images DROP COLUMN xact")
