"""A lease per study so that no study is judged twice at once (several workers share one backlog).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23

Hand-written and portable (SQLite and PostgreSQL); the ORM class is
``qc_pipeline.store.leases.StudyLease``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "study_leases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_study_leases"),
        sa.UniqueConstraint("study_instance_uid", name="uq_study_leases_study_instance_uid"),
    )


def downgrade() -> None:
    op.drop_table("study_leases")
