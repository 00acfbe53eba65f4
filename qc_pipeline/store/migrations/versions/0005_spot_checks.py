"""Cross-region spot checks: draws, blinded assignments, grades (cross-QC between Chongqing and Sichuan, seed 004 §6.8).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23

Tables: spot_check_draws (one per period, with seed, config hash and the per-stratum report),
spot_check_population (the eligible studies a draw drew from), spot_check_cases (drawn studies;
a study is drawn at most once), spot_check_assignments (blinded reviewer assignments),
spot_check_grades (one answer per assignment), spot_check_summaries (figures per period).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "spot_check_draws",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("period", sa.String(16), nullable=False),
        sa.Column("seed", sa.String(40), nullable=False),
        sa.Column("config_hash", sa.String(64), nullable=False),
        sa.Column("config_version", sa.String(64), nullable=False),
        sa.Column("sampling", sa.JSON(), nullable=False),
        sa.Column("population_size", sa.Integer(), nullable=False),
        sa.Column("population_digest", sa.String(64), nullable=False),
        sa.Column("n_drawn", sa.Integer(), nullable=False),
        sa.Column("excluded", sa.JSON(), nullable=False),
        sa.Column("strata", sa.JSON(), nullable=False),
        _ts("created_at"),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_spot_check_draws"),
        sa.UniqueConstraint("period", name="uq_spot_check_draws_period"),
    )
    op.create_table(
        "spot_check_population",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("draw_id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("stratum", sa.Text(), nullable=False),
        sa.Column("verdict", sa.String(32), nullable=False),
        sa.Column("drawn", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["draw_id"],
            ["spot_check_draws.id"],
            name="fk_spot_check_population_draw_id_spot_check_draws",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"], name="fk_spot_check_population_study_id_studies"),
        sa.PrimaryKeyConstraint("id", name="pk_spot_check_population"),
        sa.UniqueConstraint("draw_id", "study_id", name="uq_spot_check_population_draw_id_study_id"),
    )
    op.create_index("ix_spot_check_population_draw_id", "spot_check_population", ["draw_id"])
    op.create_table(
        "spot_check_cases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("draw_id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("decision_id", sa.Integer(), nullable=False),
        sa.Column("case_code", sa.String(16), nullable=False),
        sa.Column("patient_pseudonym", sa.String(32), nullable=False),
        sa.Column("stratum", sa.Text(), nullable=False),
        sa.Column("machine_verdict", sa.String(32), nullable=False),
        sa.Column("institution", sa.Text(), nullable=False),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("modality", sa.String(16), nullable=True),
        sa.Column("item_code", sa.String(64), nullable=True),
        sa.Column("sort_key", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(
            ["draw_id"],
            ["spot_check_draws.id"],
            name="fk_spot_check_cases_draw_id_spot_check_draws",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"], name="fk_spot_check_cases_study_id_studies"),
        sa.ForeignKeyConstraint(["decision_id"], ["decisions.id"], name="fk_spot_check_cases_decision_id_decisions"),
        sa.PrimaryKeyConstraint("id", name="pk_spot_check_cases"),
        sa.UniqueConstraint("study_id", name="uq_spot_check_cases_study_id"),
        sa.UniqueConstraint("case_code", name="uq_spot_check_cases_case_code"),
    )
    op.create_index("ix_spot_check_cases_draw_id", "spot_check_cases", ["draw_id"])
    op.create_table(
        "spot_check_assignments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("reviewer", sa.String(128), nullable=False),
        sa.Column("reviewer_region", sa.String(32), nullable=False),
        sa.Column("reading", sa.Integer(), nullable=False),
        _ts("assigned_at"),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["spot_check_cases.id"],
            name="fk_spot_check_assignments_case_id_spot_check_cases",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_spot_check_assignments"),
        sa.UniqueConstraint("case_id", "reading", name="uq_spot_check_assignments_case_id_reading"),
    )
    op.create_index("ix_spot_check_assignments_case_id", "spot_check_assignments", ["case_id"])
    op.create_index("ix_spot_check_assignments_reviewer", "spot_check_assignments", ["reviewer"])
    op.create_table(
        "spot_check_grades",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("assignment_id", sa.Integer(), nullable=False),
        sa.Column("grade", sa.String(8), nullable=False),
        sa.Column("recognisable", sa.Boolean(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("via", sa.String(16), nullable=False),
        sa.Column("graded_by", sa.String(128), nullable=False),
        _ts("graded_at"),
        sa.ForeignKeyConstraint(
            ["assignment_id"],
            ["spot_check_assignments.id"],
            name="fk_spot_check_grades_assignment_id_spot_check_assignments",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_spot_check_grades"),
        sa.UniqueConstraint("assignment_id", name="uq_spot_check_grades_assignment_id"),
    )
    op.create_table(
        "spot_check_summaries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("period", sa.String(16), nullable=False),
        _ts("computed_at"),
        sa.Column("figures", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_spot_check_summaries"),
        sa.UniqueConstraint("period", name="uq_spot_check_summaries_period"),
    )


def downgrade() -> None:
    op.drop_table("spot_check_summaries")
    op.drop_table("spot_check_grades")
    op.drop_index("ix_spot_check_assignments_reviewer", table_name="spot_check_assignments")
    op.drop_index("ix_spot_check_assignments_case_id", table_name="spot_check_assignments")
    op.drop_table("spot_check_assignments")
    op.drop_index("ix_spot_check_cases_draw_id", table_name="spot_check_cases")
    op.drop_table("spot_check_cases")
    op.drop_index("ix_spot_check_population_draw_id", table_name="spot_check_population")
    op.drop_table("spot_check_population")
    op.drop_table("spot_check_draws")
