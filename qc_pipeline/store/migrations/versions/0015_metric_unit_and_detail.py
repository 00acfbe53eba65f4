"""Keep each stored measurement's unit and how it was measured.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05

Hand-written and portable (SQLite and PostgreSQL). ``metrics.unit`` is the unit the metric
reports (``HU``, ``%``, ``DI``, ``1``...), ``metrics.detail`` how or where it was measured (the
slices used, the header tag read, the model and its version). Both are None for rows stored
before this revision and for study-level numbers, which carry neither.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("metrics") as batch:
        batch.add_column(sa.Column("unit", sa.Text(), nullable=True))
        batch.add_column(sa.Column("detail", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("metrics") as batch:
        batch.drop_column("detail")
        batch.drop_column("unit")
