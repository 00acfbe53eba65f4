"""Per-finding review: a radiologist confirms or rejects each finding with the artifact seen.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05

Hand-written and portable (SQLite and PostgreSQL); the ORM class is
``qc_pipeline.store.review.FindingReview``.

- ``finding_reviews``: one row per judgement of a finding (``confirm``/``reject`` and a reason
  code), with the reviewer, their role, the time, the content fingerprint of the study and whether
  the study was an audit sample; the latest per finding is current (partial unique index).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "finding_reviews",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("decision_id", sa.Integer(), nullable=False),
        sa.Column("finding_id", sa.Integer(), nullable=True),
        sa.Column("finding_code", sa.String(128), nullable=False),
        sa.Column("finding_severity", sa.String(16), nullable=False),
        sa.Column("series_instance_uid", sa.Text(), nullable=True),
        sa.Column("model", sa.Text(), nullable=True),
        sa.Column("content_fingerprint", sa.String(128), nullable=False),
        sa.Column("judgement", sa.String(16), nullable=False),
        sa.Column("reason_code", sa.String(32), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("reviewer_role", sa.String(16), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("audit_sample", sa.Boolean(), nullable=False),
        sa.Column("is_current", sa.Boolean(), nullable=False),
        sa.Column("superseded_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"], name="fk_finding_reviews_study_id_studies"),
        sa.ForeignKeyConstraint(["decision_id"], ["decisions.id"], name="fk_finding_reviews_decision_id_decisions"),
        sa.ForeignKeyConstraint(
            ["finding_id"], ["findings.id"], name="fk_finding_reviews_finding_id_findings", ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(["user_id"], ["review_users.id"], name="fk_finding_reviews_user_id_review_users"),
        sa.PrimaryKeyConstraint("id", name="pk_finding_reviews"),
    )
    op.create_index("ix_finding_reviews_study_id", "finding_reviews", ["study_id"])
    op.create_index("ix_finding_reviews_decision_id", "finding_reviews", ["decision_id"])
    op.create_index("ix_finding_reviews_user_id", "finding_reviews", ["user_id"])
    op.create_index(
        "uq_finding_reviews_current_finding",
        "finding_reviews",
        ["finding_id"],
        unique=True,
        sqlite_where=sa.text("is_current = 1"),
        postgresql_where=sa.text("is_current"),
    )


def downgrade() -> None:
    op.drop_table("finding_reviews")
