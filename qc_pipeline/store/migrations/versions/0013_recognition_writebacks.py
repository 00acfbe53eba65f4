"""The quality-control SR versions written back to the source (DICOMweb STOW-RS).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05

Hand-written and portable (SQLite and PostgreSQL).

- ``recognition_writebacks``: one row per version of a study's SR: its SOPInstanceUID (derived
  from the study UID and the version), the fingerprint of what it says, and whether it was sent
  (``pending``/``sent``/``failed``, attempts, last error). A failed one is sent again by a later
  run; the verdict itself is never touched by a write-back.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "recognition_writebacks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("sop_instance_uid", sa.String(64), nullable=False),
        sa.Column("series_instance_uid", sa.String(64), nullable=False),
        sa.Column("source_uri", sa.Text(), nullable=False),
        sa.Column("decision_fingerprint", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_recognition_writebacks"),
        sa.UniqueConstraint("sop_instance_uid", name="uq_recognition_writebacks_sop_instance_uid"),
        sa.UniqueConstraint(
            "study_instance_uid", "version", name="uq_recognition_writebacks_study_instance_uid_version"
        ),
    )
    op.create_index("ix_recognition_writebacks_study_instance_uid", "recognition_writebacks", ["study_instance_uid"])
    op.create_index("ix_recognition_writebacks_status", "recognition_writebacks", ["status"])


def downgrade() -> None:
    op.drop_table("recognition_writebacks")
