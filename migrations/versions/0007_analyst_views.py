"""For SQL analysts: every column described (COMMENT ON), and views for the common joins so
nobody needs a recursive query: pairs with both files, and duplicate groups.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

COMMENTS = {
    "requests.id": "The request_id POST /images answered",
    "requests.collection": "The collection (API key scope) it was stored in",
    "requests.created_at": "When it was stored",
    "requests.submitted": "Items sent in the POST, valid or not",
    "requests.added": "Images stored from it (failed items are not)",
    "requests.settled": "All its duplicate pairs are recorded (false for a moment after each ingest)",
    "images.id": "The image_id the API answers",
    "images.request_id": "The POST it came in",
    "images.collection": "Its request's collection",
    "images.filename": "The upload's file name (relative path for folder ingests)",
    "images.url": "Where it was fetched from, for URL items",
    "images.byte_size": "Size of the file as sent, in bytes",
    "images.width": "Pixels, after EXIF orientation",
    "images.height": "Pixels, after EXIF orientation",
    "images.format": "JPEG, PNG, WEBP, GIF, BMP, TIFF, HEIF or AVIF, from the bytes",
    "images.sha256": "Hex SHA-256 of the bytes: equal means exact duplicates",
    "images.phash": "64-bit perceptual hash (signed); the views show it as 16 hex digits",
    "images.thumbnail": "A small JPEG for review pages",
    "images.embedding": "The CNN descriptor (halfvec, L2-normalised): cosine similarity = 1 - (a <=> b)",
    "images.created_at": "When it was stored",
    "images.xact": "The transaction that stored it (concurrent ingests find each other by it)",
    "duplicates.image_id": "The image whose search found the pair",
    "duplicates.duplicate_id": "The other image of the pair",
    "duplicates.similarity": "Cosine similarity of the descriptors; 1.0 for exact",
    "duplicates.kind": "exact (same bytes), near_exact (perceptual hash), near (descriptor)",
    "duplicates.model": "The descriptor that found it",
    "duplicates.detected_at": "When it was found",
    "not_duplicates.image_a": "The smaller image id of a pair a person marked not a duplicate",
    "not_duplicates.image_b": "The larger image id",
    "not_duplicates.decided_at": "When",
}


def upgrade() -> None:
    for column, text in COMMENTS.items():
        quoted = text.replace("'", "''")
        op.execute(f"COMMENT ON COLUMN {column} IS '{quoted}'")
    create_views()


def create_views() -> None:
    """The two views as this revision defines them (0009's downgrade restores them)."""
    op.execute(
        """
        CREATE VIEW duplicate_pairs AS
        SELECT d.kind, d.similarity, d.detected_at, a.collection,
               a.id AS image_id, coalesce(a.filename, a.url) AS image, a.width AS image_width,
               a.height AS image_height, a.taken_at AS image_taken_at,
               lpad(to_hex(a.phash), 16, '0') AS image_phash,
               b.id AS duplicate_id, coalesce(b.filename, b.url) AS duplicate, b.width AS duplicate_width,
               b.height AS duplicate_height, b.taken_at AS duplicate_taken_at,
               lpad(to_hex(b.phash), 16, '0') AS duplicate_phash
        FROM duplicates d JOIN images a ON a.id = d.image_id JOIN images b ON b.id = d.duplicate_id
        """
    )
    op.execute("COMMENT ON VIEW duplicate_pairs IS 'Each recorded pair once, with both files'' names and sizes'")
    op.execute(
        """
        CREATE VIEW duplicate_groups AS
        WITH RECURSIVE reach (image_id, member) AS (
            SELECT image_id, image_id FROM (SELECT image_id FROM duplicates UNION SELECT duplicate_id FROM duplicates) s
            UNION
            SELECT r.image_id, p.other
            FROM reach r
            JOIN (SELECT image_id AS one, duplicate_id AS other FROM duplicates
                  UNION ALL SELECT duplicate_id, image_id FROM duplicates) p ON p.one = r.member
        ), grouped AS (
            SELECT image_id, min(member::text)::uuid AS group_id FROM reach GROUP BY image_id
        )
        SELECT g.group_id, count(*) OVER (PARTITION BY g.group_id) AS group_size,
               row_number() OVER (
                   PARTITION BY g.group_id
                   ORDER BY i.width::bigint * i.height DESC, i.byte_size DESC, i.taken_at NULLS LAST,
                            coalesce(i.filename, i.url)
               ) = 1 AS suggested_keep,
               i.collection,
               i.id AS image_id, coalesce(i.filename, i.url) AS image, i.width, i.height, i.byte_size,
               i.taken_at, i.camera_make, i.camera_model, lpad(to_hex(i.phash), 16, '0') AS phash
        FROM grouped g JOIN images i ON i.id = g.image_id
        """
    )
    op.execute(
        "COMMENT ON VIEW duplicate_groups IS 'Every image that has a duplicate, with its group (images linked"
        " by pairs, directly or through others): group_id is the smallest image id in it; suggested_keep marks"
        " the copy to keep (largest resolution, then file, then earliest taken)'"
    )


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS duplicate_groups")
    op.execute("DROP VIEW IF EXISTS duplicate_pairs")
    for column in COMMENTS:
        op.execute(f"COMMENT ON COLUMN {column} IS NULL")
