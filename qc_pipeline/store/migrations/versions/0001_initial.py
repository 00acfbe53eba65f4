"""Initial schema: runs, studies, decisions (with history), findings, metrics.

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Hand-written and portable: it must run on SQLite and on PostgreSQL. Constraint and index names
follow ``qc_pipeline.store.models.NAMING_CONVENTION``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("source_uri", sa.Text(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("pipeline_version", sa.String(64), nullable=False),
        sa.Column("thresholds_version", sa.String(64), nullable=False),
        sa.Column("n_studies", sa.Integer(), nullable=False),
        sa.Column("n_judged", sa.Integer(), nullable=False),
        sa.Column("n_unchanged", sa.Integer(), nullable=False),
        sa.Column("n_errors", sa.Integer(), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
    )
    op.create_index("ix_runs_started_at", "runs", ["started_at"])

    op.create_table(
        "studies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.Column("patient_id", sa.Text(), nullable=True),
        sa.Column("accession_number", sa.Text(), nullable=True),
        sa.Column("institution", sa.Text(), nullable=True),
        sa.Column("modality", sa.Text(), nullable=True),
        sa.Column("study_date", sa.Date(), nullable=True),
        sa.Column("study_time", sa.Time(), nullable=True),
        sa.Column("study_description", sa.Text(), nullable=True),
        sa.Column("source_uri", sa.Text(), nullable=True),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_studies"),
        sa.UniqueConstraint("study_instance_uid", name="uq_studies_study_instance_uid"),
    )
    op.create_index("ix_studies_study_date", "studies", ["study_date"])

    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(36), nullable=True),
        sa.Column("is_current", sa.Boolean(), nullable=False),
        sa.Column("content_fingerprint", sa.String(128), nullable=False),
        sa.Column("decision_key", sa.String(64), nullable=False),
        sa.Column("verdict", sa.String(32), nullable=False),
        sa.Column("eligible", sa.Boolean(), nullable=False),
        sa.Column("eligible_until", sa.Date(), nullable=True),
        sa.Column("item_code", sa.String(64), nullable=True),
        sa.Column("item_name_zh", sa.Text(), nullable=True),
        sa.Column("item_name_en", sa.Text(), nullable=True),
        sa.Column("pipeline_version", sa.String(64), nullable=False),
        sa.Column("thresholds_version", sa.String(64), nullable=False),
        sa.Column("models", sa.JSON(), nullable=False),
        sa.Column("n_series", sa.Integer(), nullable=False),
        sa.Column("n_instances", sa.Integer(), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("superseded_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_decisions"),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"], name="fk_decisions_study_id_studies"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_decisions_run_id_runs", ondelete="SET NULL"),
    )
    op.create_index("ix_decisions_study_id", "decisions", ["study_id"])
    op.create_index("ix_decisions_run_id", "decisions", ["run_id"])
    op.create_index("ix_decisions_verdict", "decisions", ["verdict"])
    # At most one current decision per study; two writers racing on a study make one fail here.
    op.create_index(
        "uq_decisions_current_study",
        "decisions",
        ["study_id"],
        unique=True,
        sqlite_where=sa.text("is_current = 1"),
        postgresql_where=sa.text("is_current"),
    )

    op.create_table(
        "findings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("decision_id", sa.Integer(), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(128), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("message_zh", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("limit_value", sa.Text(), nullable=True),
        sa.Column("series_instance_uid", sa.Text(), nullable=True),
        sa.Column("sop_instance_uid", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_findings"),
        sa.ForeignKeyConstraint(
            ["decision_id"], ["decisions.id"], name="fk_findings_decision_id_decisions", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_findings_decision_id", "findings", ["decision_id"])
    op.create_index("ix_findings_code", "findings", ["code"])
    op.create_index("ix_findings_category", "findings", ["category"])

    op.create_table(
        "metrics",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("decision_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("series_instance_uid", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_metrics"),
        sa.ForeignKeyConstraint(
            ["decision_id"], ["decisions.id"], name="fk_metrics_decision_id_decisions", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_metrics_decision_id", "metrics", ["decision_id"])
    op.create_index("ix_metrics_name", "metrics", ["name"])


def downgrade() -> None:
    for table in ("metrics", "findings", "decisions", "studies", "runs"):
        op.drop_table(table)
