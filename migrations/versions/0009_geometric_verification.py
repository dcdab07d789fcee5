"""Geometric verification and groups that explain themselves.

- ``image_keypoints``: each image's packed ORB keypoints (its own table, so that ``images``
  stays readable for analysts and its rows stay small).
- ``duplicates.matched_points``: how many keypoints one homography mapped between the pair
  (NULL: not checked: exact copies, pairs trusted on hash and descriptor, older rows).
- ``duplicate_pairs`` gains ``matched_points``; ``duplicate_groups`` is rebuilt with the rule the
  API uses (``GET /groups`` and ``dupdetect scan`` read this view): every image joins its best-ranked duplicate that
  ranks above it, so each group is one best copy and images paired with it directly, with the
  pair that put each one there. No chains: a group never holds two images that are linked only
  through others. An image that ranks above all its duplicates while each of them joined a
  better copy leads a group of them (so every image with a duplicate is in some group).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25
"""

import importlib.util
from pathlib import Path

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

RANK = "i.width::bigint * i.height DESC, i.byte_size DESC, i.taken_at NULLS LAST, coalesce(i.filename, i.url), i.id"
"""The keeper order (the group's best copy, the API's ``keep``): largest resolution, largest file,
earliest taken, name."""


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE image_keypoints (
            image_id   uuid PRIMARY KEY REFERENCES images (id) ON DELETE CASCADE,
            keypoints  bytea NOT NULL
        )
        """
    )
    op.execute("ALTER TABLE image_keypoints ALTER COLUMN keypoints SET STORAGE EXTERNAL")  # already compact
    op.execute(
        "COMMENT ON TABLE image_keypoints IS 'Up to 256 ORB keypoints per image and its mirror image"
        " (dupdetect.embedding.geometry format), for geometric verification of candidate pairs'"
    )
    op.execute("ALTER TABLE duplicates ADD COLUMN matched_points integer")
    op.execute(
        "COMMENT ON COLUMN duplicates.matched_points IS 'Keypoints that one homography maps between the two"
        " images (geometric verification); NULL when the pair was not checked'"
    )
    # CREATE OR REPLACE with columns appended: the grants of analyst roles stay.
    op.execute(
        """
        CREATE OR REPLACE VIEW image_duplicates AS
            SELECT image_id, duplicate_id, similarity, kind, model, detected_at, matched_points FROM duplicates
            UNION ALL
            SELECT duplicate_id, image_id, similarity, kind, model, detected_at, matched_points FROM duplicates
        """
    )
    op.execute(
        """
        CREATE OR REPLACE VIEW duplicate_pairs AS
        SELECT d.kind, d.similarity, d.detected_at, a.collection,
               a.id AS image_id, coalesce(a.filename, a.url) AS image, a.width AS image_width,
               a.height AS image_height, a.taken_at AS image_taken_at,
               lpad(to_hex(a.phash), 16, '0') AS image_phash,
               b.id AS duplicate_id, coalesce(b.filename, b.url) AS duplicate, b.width AS duplicate_width,
               b.height AS duplicate_height, b.taken_at AS duplicate_taken_at,
               lpad(to_hex(b.phash), 16, '0') AS duplicate_phash,
               d.matched_points
        FROM duplicates d JOIN images a ON a.id = d.image_id JOIN images b ON b.id = d.duplicate_id
        """
    )
    create_groups_view()


def create_groups_view() -> None:
    """The rank-based groups of this revision (0010 replaces them; its downgrade calls this)."""
    op.execute(
        f"""
        CREATE OR REPLACE VIEW duplicate_groups AS
        WITH ranked AS (
            SELECT i.id, row_number() OVER (ORDER BY {RANK}) AS rank
            FROM images i
            WHERE EXISTS (SELECT 1 FROM duplicates d WHERE d.image_id = i.id)
               OR EXISTS (SELECT 1 FROM duplicates d WHERE d.duplicate_id = i.id)
        ), joined AS (
            SELECT DISTINCT ON (d.image_id) d.image_id, d.duplicate_id AS group_id, d.kind, d.similarity,
                   d.matched_points
            FROM image_duplicates d JOIN ranked a ON a.id = d.image_id JOIN ranked b ON b.id = d.duplicate_id
            WHERE b.rank < a.rank
            ORDER BY d.image_id, b.rank
        ), unclaimed AS (  -- duplicates only of images that joined better copies: it leads them
            SELECT d.image_id, d.duplicate_id AS group_id, d.kind, d.similarity, d.matched_points
            FROM image_duplicates d JOIN ranked r ON r.id = d.duplicate_id
            WHERE NOT EXISTS (SELECT 1 FROM joined j WHERE j.image_id = d.duplicate_id OR j.group_id = d.duplicate_id)
        ), linked AS (
            SELECT * FROM joined UNION ALL SELECT * FROM unclaimed
        ), members AS (
            SELECT group_id, image_id, kind, similarity, matched_points FROM linked
            UNION ALL
            SELECT DISTINCT group_id, group_id, NULL::text, NULL::real, NULL::integer FROM linked
        )
        SELECT m.group_id, count(*) OVER (PARTITION BY m.group_id) AS group_size,
               m.image_id = m.group_id AS suggested_keep,
               i.collection, i.id AS image_id, coalesce(i.filename, i.url) AS image, i.width, i.height,
               i.byte_size, i.taken_at, i.camera_make, i.camera_model, lpad(to_hex(i.phash), 16, '0') AS phash,
               i.format, m.kind AS joined_as, m.similarity AS joined_similarity, m.matched_points AS joined_matched_points
        FROM members m JOIN images i ON i.id = m.image_id
        """
    )
    op.execute(
        "COMMENT ON VIEW duplicate_groups IS 'Groups of duplicates, each led by its best copy (group_id ="
        " that image, suggested_keep: largest resolution, then file, then earliest taken). Every other member"
        " is a direct duplicate of it: joined_as/joined_similarity/joined_matched_points give that pair. An"
        " image joins the best-ranked of its duplicates that ranks above it, so groups never chain; an image"
        " can lead its own group and be a member of a better copy''s group.'"
    )


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS duplicate_groups")
    op.execute("DROP VIEW IF EXISTS duplicate_pairs")
    op.execute("DROP VIEW IF EXISTS image_duplicates")
    op.execute(
        """
        CREATE VIEW image_duplicates AS
            SELECT image_id, duplicate_id, similarity, kind, model, detected_at FROM duplicates
            UNION ALL
            SELECT duplicate_id, image_id, similarity, kind, model, detected_at FROM duplicates
        """
    )
    op.execute("ALTER TABLE duplicates DROP COLUMN matched_points")
    op.execute("DROP TABLE IF EXISTS image_keypoints")
    spec = importlib.util.spec_from_file_location("revision_0007", Path(__file__).with_name("0007_analyst_views.py"))
    assert spec is not None and spec.loader is not None
    revision_0007 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(revision_0007)
    revision_0007.create_views()
