"""Studies keep patient sex and birth date (cross-study consistency) and the upload delay.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("studies") as batch:
        batch.add_column(sa.Column("patient_sex", sa.String(16), nullable=True))
        batch.add_column(sa.Column("patient_birth_date", sa.Date(), nullable=True))
        batch.add_column(sa.Column("upload_delay_h", sa.Float(), nullable=True))
        batch.create_index("ix_studies_patient_id", ["patient_id"])


def downgrade() -> None:
    with op.batch_alter_table("studies") as batch:
        batch.drop_index("ix_studies_patient_id")
        batch.drop_column("upload_delay_h")
        batch.drop_column("patient_birth_date")
        batch.drop_column("patient_sex")
