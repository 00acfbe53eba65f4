"""Record which process runs a run, so that a run whose process died is marked interrupted
instead of staying ``running`` for ever (a worker killed mid-run).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23

Hand-written and portable (SQLite and PostgreSQL). Runs recorded before it have no holder.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("holder", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("holder")
