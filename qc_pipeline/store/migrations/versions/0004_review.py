"""Radiologist review: accounts, sessions' audit, review claims and human decisions, negative-list flags.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23

Hand-written and portable (SQLite and PostgreSQL); names follow
``qc_pipeline.store.models.NAMING_CONVENTION``; the ORM classes are in ``qc_pipeline.store.review``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _users_fk(table: str, column: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], ["review_users.id"], name=f"fk_{table}_{column}_review_users")


def _studies_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["study_id"], ["studies.id"], name=f"fk_{table}_study_id_studies")


def upgrade() -> None:
    op.create_table(
        "review_users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("password_changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_review_users"),
        sa.UniqueConstraint("username", name="uq_review_users_username"),
    )

    op.create_table(
        "review_claims",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_review_claims"),
        _studies_fk("review_claims"),
        _users_fk("review_claims", "user_id"),
        # One claim per study: two reviewers racing for it make one fail here.
        sa.UniqueConstraint("study_id", name="uq_review_claims_study_id"),
    )
    op.create_index("ix_review_claims_user_id", "review_claims", ["user_id"])

    op.create_table(
        "human_decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("decision_id", sa.Integer(), nullable=False),
        sa.Column("content_fingerprint", sa.String(128), nullable=False),
        sa.Column("machine_verdict", sa.String(32), nullable=False),
        sa.Column("verdict", sa.String(32), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("reason_code", sa.String(64), nullable=False),
        sa.Column("reason_text", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("eligible", sa.Boolean(), nullable=False),
        sa.Column("eligible_until", sa.Date(), nullable=True),
        sa.Column("is_current", sa.Boolean(), nullable=False),
        sa.Column("superseded_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_human_decisions"),
        _studies_fk("human_decisions"),
        sa.ForeignKeyConstraint(["decision_id"], ["decisions.id"], name="fk_human_decisions_decision_id_decisions"),
        _users_fk("human_decisions", "user_id"),
    )
    op.create_index("ix_human_decisions_study_id", "human_decisions", ["study_id"])
    op.create_index("ix_human_decisions_decision_id", "human_decisions", ["decision_id"])
    op.create_index("ix_human_decisions_user_id", "human_decisions", ["user_id"])
    op.create_index(
        "uq_human_decisions_current_study",
        "human_decisions",
        ["study_id"],
        unique=True,
        sqlite_where=sa.text("is_current = 1"),
        postgresql_where=sa.text("is_current"),
    )

    op.create_table(
        "negative_flags",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("reason_code", sa.String(32), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("set_by", sa.Integer(), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cleared_by", sa.Integer(), nullable=True),
        sa.Column("cleared_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_negative_flags"),
        _studies_fk("negative_flags"),
        _users_fk("negative_flags", "set_by"),
        _users_fk("negative_flags", "cleared_by"),
    )
    op.create_index("ix_negative_flags_study_id", "negative_flags", ["study_id"])
    op.create_index(
        "uq_negative_flags_active_study_reason",
        "negative_flags",
        ["study_id", "reason_code"],
        unique=True,
        sqlite_where=sa.text("cleared_at IS NULL"),
        postgresql_where=sa.text("cleared_at IS NULL"),
    )

    op.create_table(
        "review_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("username", sa.String(64), nullable=True),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_review_events"),
        _users_fk("review_events", "user_id"),
        _studies_fk("review_events"),
    )
    op.create_index("ix_review_events_at", "review_events", ["at"])
    op.create_index("ix_review_events_study_id", "review_events", ["study_id"])


def downgrade() -> None:
    for table in ("review_events", "negative_flags", "human_decisions", "review_claims", "review_users"):
        op.drop_table(table)
