"""Tables of the cross-region spot checks: draws, the population each drew from, the
drawn cases, their blinded assignments to reviewers, the grades, and the stored figures.

ORM classes derive from qc_pipeline.store.models.Base; ``migrations/versions/0005_spot_checks.py``
creates them. The logic lives in ``qc_pipeline.spotcheck``.
"""

from __future__ import annotations

import datetime as dt
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, Session, mapped_column

from qc_pipeline.store.models import Base

if TYPE_CHECKING:
    from qc_pipeline.store.repository import ResultStore


class SpotCheckDraw(Base):
    """One draw for a period (one per period: a draw is never made again, only verified).

    ``seed`` and ``config_hash`` with the recorded population reproduce the draw exactly
    (``qc-pipeline spot-check verify``); ``strata`` is the per-stratum report (population, target,
    drawn, under-filled).
    """

    __tablename__ = "spot_check_draws"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    period: Mapped[str] = mapped_column(String(16), unique=True)
    seed: Mapped[str] = mapped_column(String(40))
    config_hash: Mapped[str] = mapped_column(String(64))
    config_version: Mapped[str] = mapped_column(String(64))
    sampling: Mapped[dict[str, Any]] = mapped_column(JSON)
    population_size: Mapped[int] = mapped_column(Integer)
    population_digest: Mapped[str] = mapped_column(String(64))
    n_drawn: Mapped[int] = mapped_column(Integer)
    excluded: Mapped[dict[str, Any]] = mapped_column(JSON)
    strata: Mapped[list[Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime]
    created_by: Mapped[str] = mapped_column(String(128))


class SpotCheckPopulation(Base):
    """A study that was eligible for a draw (the population it drew from), with its stratum."""

    __tablename__ = "spot_check_population"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    draw_id: Mapped[int] = mapped_column(ForeignKey("spot_check_draws.id", ondelete="CASCADE"), index=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"))
    stratum: Mapped[str] = mapped_column(Text)
    verdict: Mapped[str] = mapped_column(String(32))
    """The machine verdict at the draw (its sampling rate)."""
    drawn: Mapped[bool] = mapped_column(Boolean)

    __table_args__ = (UniqueConstraint("draw_id", "study_id"),)


class SpotCheckCase(Base):
    """A drawn study. ``study_id`` is unique: a study is never drawn twice.

    ``machine_verdict``, ``decision_id``, ``institution`` and ``region`` are kept as they were at
    the draw (a later re-scoring does not change what was checked); ``case_code`` and
    ``patient_pseudonym`` are what reviewers see.
    """

    __tablename__ = "spot_check_cases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    draw_id: Mapped[int] = mapped_column(ForeignKey("spot_check_draws.id", ondelete="CASCADE"), index=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), unique=True)
    decision_id: Mapped[int] = mapped_column(ForeignKey("decisions.id"))
    case_code: Mapped[str] = mapped_column(String(16), unique=True)
    patient_pseudonym: Mapped[str] = mapped_column(String(32))
    stratum: Mapped[str] = mapped_column(Text)
    machine_verdict: Mapped[str] = mapped_column(String(32))
    institution: Mapped[str] = mapped_column(Text)
    region: Mapped[str] = mapped_column(String(32))
    modality: Mapped[str | None] = mapped_column(String(16))
    item_code: Mapped[str | None] = mapped_column(String(64))
    sort_key: Mapped[str] = mapped_column(String(64))


class SpotCheckAssignment(Base):
    """A case given to one reviewer: ``reading`` 1 is the cross-region reading, 2 the second
    reading by the study's own region."""

    __tablename__ = "spot_check_assignments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("spot_check_cases.id", ondelete="CASCADE"), index=True)
    reviewer: Mapped[str] = mapped_column(String(128), index=True)
    reviewer_region: Mapped[str] = mapped_column(String(32))
    reading: Mapped[int] = mapped_column(Integer)
    assigned_at: Mapped[dt.datetime]

    __table_args__ = (UniqueConstraint("case_id", "reading"),)


class SpotCheckGrade(Base):
    """The reviewer's answer on an assignment (one per assignment)."""

    __tablename__ = "spot_check_grades"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("spot_check_assignments.id", ondelete="CASCADE"), unique=True)
    grade: Mapped[str] = mapped_column(String(8))
    recognisable: Mapped[bool] = mapped_column(Boolean)
    reasons: Mapped[list[Any]] = mapped_column(JSON)
    comment: Mapped[str] = mapped_column(Text)
    via: Mapped[str] = mapped_column(String(16))
    graded_by: Mapped[str] = mapped_column(String(128))
    graded_at: Mapped[dt.datetime]


class SpotCheckSummary(Base):
    """The agreement figures of a period as last computed (``spot-check summary``), for the
    evaluation report."""

    __tablename__ = "spot_check_summaries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    period: Mapped[str] = mapped_column(String(16), unique=True)
    computed_at: Mapped[dt.datetime]
    figures: Mapped[dict[str, Any]] = mapped_column(JSON)


def read_session(store: ResultStore) -> AbstractContextManager[Session]:
    """A read transaction on the store's database; database errors become ``StoreError``."""
    return store.reading("read the spot checks")


def write_session(store: ResultStore) -> AbstractContextManager[Session]:
    """A write transaction (SQLite: the write lock taken up front); database errors other than
    integrity errors become ``StoreError``."""
    return store.writing("write the spot checks")
