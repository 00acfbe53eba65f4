"""Hospitals' exam logs, and non-recognitions recorded at a receiving hospital.

Revision ID: 0011
Revises: 0009
Create Date: 2026-12-04

Hand-written and portable (SQLite and PostgreSQL).

- ``exam_log_entries``: the exams a hospital says it performed (RIS/HIS export), to measure what
  reached the cloud.
- ``non_recognitions``: a receiving doctor re-examines despite a recognisable result, for one of
  the ten situations of the Yubei plan §4(三). These concern the receiving visit, not the study.
  The study-level ``negative_flags`` of the review app are no longer set; their rows stay as they
  are (readable history) and no longer withdraw a study from recognition.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "exam_log_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("institution", sa.Text(), nullable=False),
        sa.Column("entry_key", sa.String(200), nullable=False),
        sa.Column("accession_number", sa.Text(), nullable=True),
        sa.Column("patient_id", sa.Text(), nullable=True),
        sa.Column("item_text", sa.Text(), nullable=True),
        sa.Column("modality", sa.String(8), nullable=True),
        sa.Column("exam_date", sa.Date(), nullable=False),
        sa.Column("exam_time", sa.Time(), nullable=True),
        sa.Column("source_file", sa.Text(), nullable=True),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_exam_log_entries"),
        sa.UniqueConstraint("institution", "entry_key", name="uq_exam_log_entries_institution_entry_key"),
    )
    op.create_index("ix_exam_log_entries_exam_date", "exam_log_entries", ["exam_date"])
    op.create_table(
        "non_recognitions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=True),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.Column("receiving_institution", sa.Text(), nullable=False),
        sa.Column("reason_code", sa.String(48), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("recorded_by", sa.Text(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_non_recognitions"),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"], name="fk_non_recognitions_study_id_studies"),
    )
    op.create_index("ix_non_recognitions_study_instance_uid", "non_recognitions", ["study_instance_uid"])


def downgrade() -> None:
    op.drop_table("non_recognitions")
    op.drop_table("exam_log_entries")
