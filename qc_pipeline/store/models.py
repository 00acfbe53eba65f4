"""Tables of the results database (SQLAlchemy 2.0 typed ORM).

The schema itself is created by the Alembic migrations in ``migrations/versions/``, written by
hand to run on SQLite and PostgreSQL alike; keep these classes and the migrations in step
(``tests/store`` compares them).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    Time,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

UID_LENGTH = 64
"""Maximum length of a DICOM UID (PS3.5 section 9.1)."""

FINGERPRINT_LENGTH = 128

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

CURRENT_DECISION_INDEX = "uq_decisions_current_study"
"""Partial unique index: at most one decision per study has ``is_current`` true."""


def utcnow() -> dt.datetime:
    """Now, timezone-aware UTC: what the store writes into its ``UTCDateTime`` columns."""
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware datetime, stored in UTC, read back as an aware UTC datetime.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so the UTC wall time is stored.
    Naive datetimes are refused: their meaning depends on the machine that wrote them.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                f"naive datetime {value.isoformat()} cannot be stored: give it a time zone (e.g. datetime.UTC)"
            )
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dt.datetime: UTCDateTime(), dict[str, Any]: JSON()}


class RunRecord(Base):
    """One QC run over a source."""

    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    started_at: Mapped[dt.datetime] = mapped_column(index=True)
    finished_at: Mapped[dt.datetime | None]
    source_uri: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(32))
    pipeline_version: Mapped[str] = mapped_column(String(64))
    thresholds_version: Mapped[str] = mapped_column(String(64))
    n_studies: Mapped[int] = mapped_column(Integer, default=0)
    n_judged: Mapped[int] = mapped_column(Integer, default=0)
    n_unchanged: Mapped[int] = mapped_column(Integer, default=0)
    n_errors: Mapped[int] = mapped_column(Integer, default=0)
    error_message: Mapped[str | None] = mapped_column(Text)
    holder: Mapped[str | None] = mapped_column(String(200))
    """``host:pid:run id`` of the process running it (migration 0007; None for older runs)."""


class StudyRecord(Base):
    """A study, with the header values of its latest decision."""

    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(String(UID_LENGTH), unique=True)
    patient_id: Mapped[str | None] = mapped_column(Text, index=True)
    patient_sex: Mapped[str | None] = mapped_column(String(16))
    patient_birth_date: Mapped[dt.date | None] = mapped_column(Date)
    upload_delay_h: Mapped[float | None] = mapped_column(Float)
    accession_number: Mapped[str | None] = mapped_column(Text, index=True)
    """Indexed (migration 0012): the recognition API looks studies up by accession number."""
    institution: Mapped[str | None] = mapped_column(Text)
    modality: Mapped[str | None] = mapped_column(Text)
    study_date: Mapped[dt.date | None] = mapped_column(Date, index=True)
    study_time: Mapped[dt.time | None] = mapped_column(Time)
    study_description: Mapped[str | None] = mapped_column(Text)
    source_uri: Mapped[str | None] = mapped_column(Text)
    first_seen_at: Mapped[dt.datetime]
    last_seen_at: Mapped[dt.datetime]


class DecisionRecord(Base):
    """A decision on a study; the current one has ``is_current`` set, the others are history."""

    __tablename__ = "decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"), index=True)
    is_current: Mapped[bool] = mapped_column(Boolean)
    content_fingerprint: Mapped[str] = mapped_column(String(FINGERPRINT_LENGTH))
    decision_key: Mapped[str] = mapped_column(String(64))
    verdict: Mapped[str] = mapped_column(String(32), index=True)
    eligible: Mapped[bool] = mapped_column(Boolean)
    eligible_until: Mapped[dt.date | None] = mapped_column(Date)
    item_code: Mapped[str | None] = mapped_column(String(64))
    item_name_zh: Mapped[str | None] = mapped_column(Text)
    item_name_en: Mapped[str | None] = mapped_column(Text)
    pipeline_version: Mapped[str] = mapped_column(String(64))
    thresholds_version: Mapped[str] = mapped_column(String(64))
    models: Mapped[dict[str, Any]]
    n_series: Mapped[int] = mapped_column(Integer)
    n_instances: Mapped[int] = mapped_column(Integer)
    decided_at: Mapped[dt.datetime]
    superseded_at: Mapped[dt.datetime | None]
    series: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    """Each series with its role, ``SeriesSummary.as_dict()`` (migration 0008; None for older decisions)."""

    findings: Mapped[list[FindingRecord]] = relationship(order_by="FindingRecord.ordinal", lazy="raise")
    metrics: Mapped[list[MetricRecord]] = relationship(order_by="MetricRecord.id", lazy="raise")

    __table_args__ = (
        Index(
            CURRENT_DECISION_INDEX,
            "study_id",
            unique=True,
            sqlite_where=text("is_current = 1"),
            postgresql_where=text("is_current"),
        ),
    )


class FindingRecord(Base):
    """One finding of a decision; ``ordinal`` keeps the order the checks produced."""

    __tablename__ = "findings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    decision_id: Mapped[int] = mapped_column(ForeignKey("decisions.id", ondelete="CASCADE"), index=True)
    ordinal: Mapped[int] = mapped_column(Integer)
    code: Mapped[str] = mapped_column(String(128), index=True)
    category: Mapped[str] = mapped_column(String(32), index=True)
    severity: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    message_zh: Mapped[str] = mapped_column(Text)
    value: Mapped[str | None] = mapped_column(Text)
    limit_: Mapped[str | None] = mapped_column("limit_value", Text)
    series_instance_uid: Mapped[str | None] = mapped_column(Text)
    sop_instance_uid: Mapped[str | None] = mapped_column(Text)


class MetricRecord(Base):
    """One numeric measurement of a decision (study-level when ``series_instance_uid`` is None)."""

    __tablename__ = "metrics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    decision_id: Mapped[int] = mapped_column(ForeignKey("decisions.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128), index=True)
    value: Mapped[float] = mapped_column(Float)
    series_instance_uid: Mapped[str | None] = mapped_column(Text)
    unit: Mapped[str | None] = mapped_column(Text)
    """The unit the metric reports (``Measurement.unit``; migration 0015). None for study-level
    numbers and for rows stored before."""
    detail: Mapped[str | None] = mapped_column(Text)
    """How or where it was measured (``Measurement.detail``: slices used, header tag read, model
    and version; migration 0015). None when the metric gave none, for study-level numbers and for
    rows stored before."""


class SourceCursorRecord(Base):
    """How far the last complete run over a source got (one row per source URI).

    ``position`` is opaque to the store; its meaning depends on ``kind`` (e.g. the last Orthanc
    change sequence number seen, or a QIDO-RS StudyDate window). It is moved only after every
    study up to it has been stored, so a run that dies half-way loses nothing.
    """

    __tablename__ = "source_cursors"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_uri: Mapped[str] = mapped_column(Text, unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    position: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[dt.datetime]
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
