"""Server-side sessions of the review app, and the client address in its audit trail.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04

Hand-written and portable (SQLite and PostgreSQL). ``review_sessions`` holds one row per sign-in
(the SHA-256 of the cookie's random session id, its absolute end, when it was ended); the audit
table gains a nullable ``client`` column (events recorded before it have none).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "review_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("client", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_review_sessions"),
        sa.ForeignKeyConstraint(["user_id"], ["review_users.id"], name="fk_review_sessions_user_id_review_users"),
        sa.UniqueConstraint("token_hash", name="uq_review_sessions_token_hash"),
    )
    op.create_index("ix_review_sessions_user_id", "review_sessions", ["user_id"])
    with op.batch_alter_table("review_events") as batch:
        batch.add_column(sa.Column("client", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("review_events") as batch:
        batch.drop_column("client")
    op.drop_table("review_sessions")
