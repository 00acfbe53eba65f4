"""Tokens of hospital systems using the recognition API, the recognition events they post, and
the audit of every call.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05

Hand-written and portable (SQLite and PostgreSQL).

- ``recognition_tokens``: one per hospital system; only the SHA-256 of the bearer token is kept.
- ``recognition_events``: what a receiving hospital did with a study (recognised or not, with a
  negative-list reason), idempotent on the caller's ``event_id``.
- ``recognition_api_calls``: one row per call (token name, route, status, a SHA-256 of the query
  values: no patient identifier in clear).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "recognition_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("institution", sa.Text(), nullable=False),
        sa.Column("scopes", sa.String(64), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_recognition_tokens"),
        sa.UniqueConstraint("name", name="uq_recognition_tokens_name"),
        sa.UniqueConstraint("token_hash", name="uq_recognition_tokens_token_hash"),
    )
    op.create_table(
        "recognition_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("body_hash", sa.String(64), nullable=False),
        sa.Column("token_name", sa.String(64), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=True),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reason_code", sa.String(48), nullable=True),
        sa.Column("receiving_institution", sa.Text(), nullable=False),
        sa.Column("department", sa.Text(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("non_recognition_id", sa.Integer(), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_recognition_events"),
        sa.UniqueConstraint("event_id", name="uq_recognition_events_event_id"),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"], name="fk_recognition_events_study_id_studies"),
        sa.ForeignKeyConstraint(
            ["non_recognition_id"],
            ["non_recognitions.id"],
            name="fk_recognition_events_non_recognition_id_non_recognitions",
        ),
    )
    op.create_index("ix_recognition_events_study_instance_uid", "recognition_events", ["study_instance_uid"])
    op.create_table(
        "recognition_api_calls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("token_name", sa.String(64), nullable=True),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("route", sa.String(128), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("query_hash", sa.String(64), nullable=True),
        sa.Column("client", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_recognition_api_calls"),
    )
    op.create_index("ix_recognition_api_calls_at", "recognition_api_calls", ["at"])
    op.create_index("ix_studies_accession_number", "studies", ["accession_number"])


def downgrade() -> None:
    op.drop_index("ix_studies_accession_number", table_name="studies")
    op.drop_table("recognition_api_calls")
    op.drop_table("recognition_events")
    op.drop_table("recognition_tokens")
