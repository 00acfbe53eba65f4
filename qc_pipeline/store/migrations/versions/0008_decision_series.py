"""Keep every series of a study with the role the checks gave it (MR sequence, CT phase, DR view)
beside the decision, so results and the review page show how each series was read.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04

Hand-written and portable (SQLite and PostgreSQL): one nullable JSON column, a list of
``SeriesSummary.as_dict()``. Decisions stored before it have none and read back with no series.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("series", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.drop_column("series")
