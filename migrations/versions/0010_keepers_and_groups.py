"""Keepers that are the original, and groups that hold every copy.

- ``images`` gains what a copy really holds: ``content_width``/``content_height`` (the picture
  inside padding), ``jpeg_quality`` (from the quantisation tables) and ``artefacts`` (marks of
  editing: upscaled, padded, filled_corners, decoded_jpeg). Rows stored before keep NULL sizes
  (the keeper rule then uses width and height) until ``dupdetect reembed``; ``detail_scale``
  (how many times the picture was enlarged, where that shows: 2 for a 2× upscale; else 1).
- ``group_members``: the groups, computed by the service from the pairs
  (:mod:`dupdetect.review.grouping`) and refreshed when ``group_state.version`` (bumped by every
  write that changes pairs or images) has moved past ``built``. Paging reads ``group_rank``.
- ``duplicate_groups`` now reads ``group_members``, so analysts and ``GET /groups`` see the same
  groups; new columns: ``joined_via`` (the member or best copy the pair is with),
  ``keeper_reason`` and the copy's measured facts.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

import importlib.util
from pathlib import Path

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE images
            ADD COLUMN content_width integer,
            ADD COLUMN content_height integer,
            ADD COLUMN jpeg_quality smallint,
            ADD COLUMN detail_scale real,
            ADD COLUMN artefacts text[] NOT NULL DEFAULT '{}'
        """
    )
    for column, text in (
        ("content_width", "Width of the picture inside any padding or transparent border (NULL: not measured)"),
        ("content_height", "Height of the picture inside any padding or transparent border"),
        ("jpeg_quality", "JPEG quality (1-100) estimated from the quantisation tables; NULL for other formats"),
        ("detail_scale", "How many times the picture was enlarged, where that shows clearly (2 for a 2x upscale); else 1"),
        (
            "artefacts",
            "Marks of editing: upscaled, padded, filled_corners (a rotation), decoded_jpeg (a lossless"
            " file holding a JPEG''s pixels); the suggested keeper avoids them",
        ),
    ):
        op.execute(f"COMMENT ON COLUMN images.{column} IS '{text}'")
    op.execute(
        """
        CREATE TABLE group_members (
            collection            text NOT NULL,
            group_id              uuid NOT NULL,
            group_rank            integer NOT NULL,
            group_size            integer NOT NULL,
            image_id              uuid NOT NULL REFERENCES images (id) ON DELETE CASCADE,
            position              integer NOT NULL,
            suggested_keep        boolean NOT NULL,
            joined_via            uuid,
            joined_as             text,
            joined_similarity     real,
            joined_matched_points integer,
            keeper_reason         text NOT NULL,
            PRIMARY KEY (group_id, image_id)
        )
        """
    )
    op.execute("CREATE INDEX group_members_page_idx ON group_members (collection, group_rank, position)")
    op.execute(
        "COMMENT ON TABLE group_members IS 'Duplicate groups (dupdetect.review.grouping), one row per member;"
        " refreshed from the pairs when group_state says they changed'"
    )
    op.execute(
        """
        CREATE TABLE group_state (
            collection text PRIMARY KEY,
            version    bigint NOT NULL DEFAULT 1,
            built      bigint NOT NULL DEFAULT 0
        )
        """
    )
    op.execute("COMMENT ON TABLE group_state IS 'Writes bump version; group_members were built from version built'")
    op.execute("INSERT INTO group_state (collection) SELECT DISTINCT collection FROM images")
    op.execute(
        """
        CREATE OR REPLACE VIEW duplicate_groups AS
        SELECT g.group_id, g.group_size::bigint AS group_size, g.suggested_keep,
               i.collection, i.id AS image_id, coalesce(i.filename, i.url) AS image, i.width, i.height,
               i.byte_size, i.taken_at, i.camera_make, i.camera_model, lpad(to_hex(i.phash), 16, '0') AS phash,
               i.format, g.joined_as, g.joined_similarity, g.joined_matched_points,
               g.joined_via, g.keeper_reason, i.content_width, i.content_height, i.jpeg_quality, i.detail_scale,
               i.artefacts,
               g.group_rank, g.position
        FROM group_members g JOIN images i ON i.id = g.image_id
        """
    )
    op.execute(
        "COMMENT ON VIEW duplicate_groups IS 'Groups of duplicates (GET /groups and dupdetect scan read the same):"
        " every copy of one picture, each member joined by a verified pair (joined_as/joined_similarity/"
        "joined_matched_points) with joined_via, the best copy or a member joined to it. suggested_keep: the"
        " copy to keep (the original: largest picture inside padding, no edits, camera metadata, least"
        " compression, earliest taken); keeper_reason says why in words.'"
    )


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS duplicate_groups")
    op.execute("DROP TABLE IF EXISTS group_members")
    op.execute("DROP TABLE IF EXISTS group_state")
    op.execute(
        "ALTER TABLE images DROP COLUMN content_width, DROP COLUMN content_height, DROP COLUMN jpeg_quality,"
        " DROP COLUMN detail_scale, DROP COLUMN artefacts"
    )
    spec = importlib.util.spec_from_file_location("revision_0009", Path(__file__).with_name("0009_geometric_verification.py"))
    assert spec is not None and spec.loader is not None
    revision_0009 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(revision_0009)
    revision_0009.create_groups_view()
