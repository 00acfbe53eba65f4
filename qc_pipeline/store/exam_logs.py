"""The hospitals' exam logs (RIS/HIS exports): one row per exam the hospital performed.

Compared with the studies in the cloud they give the upload rate and the exams never uploaded
(``qc_pipeline.exam_logs``). ORM class on ``qc_pipeline.store.models.Base``; the schema is created
by migration 0011.
"""

from __future__ import annotations

import datetime as dt
from typing import Final

from sqlalchemy import Date, Integer, String, Text, Time, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from qc_pipeline.store.models import Base

EXAM_LOG_TABLE: Final = "exam_log_entries"


class ExamLogEntry(Base):
    """One exam of a hospital's log. ``entry_key`` identifies the exam within its institution
    (the accession number, else patient id + exam date + modality), so importing the same log
    twice adds nothing."""

    __tablename__ = EXAM_LOG_TABLE

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    institution: Mapped[str] = mapped_column(Text)
    entry_key: Mapped[str] = mapped_column(String(200))
    accession_number: Mapped[str | None] = mapped_column(Text)
    patient_id: Mapped[str | None] = mapped_column(Text)
    item_text: Mapped[str | None] = mapped_column(Text)
    modality: Mapped[str | None] = mapped_column(String(8))
    exam_date: Mapped[dt.date] = mapped_column(Date, index=True)
    exam_time: Mapped[dt.time | None] = mapped_column(Time)
    source_file: Mapped[str | None] = mapped_column(Text)
    imported_at: Mapped[dt.datetime]

    __table_args__ = (UniqueConstraint("institution", "entry_key"),)
