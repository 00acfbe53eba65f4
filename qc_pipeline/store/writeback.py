"""What was written back to the source: one row per version of a study's quality-control SR.

The schema is created by the hand-written migration ``0013_recognition_writebacks.py``; keep the
two in step. A row is made ``pending`` before the report is sent, then ``sent`` or ``failed``
(with the attempts made and the last error). ``decision_fingerprint`` is the SHA-256 of what the
report says (``writeback.decision_fingerprint``): the same fingerprint as the latest sent version
means there is nothing new to send; another one makes the next version.
"""

from __future__ import annotations

import datetime as dt
from typing import Final

from sqlalchemy import Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from qc_pipeline.store.models import UID_LENGTH, Base

PENDING: Final = "pending"
SENT: Final = "sent"
FAILED: Final = "failed"
STATUSES: Final = (PENDING, SENT, FAILED)


class RecognitionWriteback(Base):
    """One version of a study's SR, and whether the source has it."""

    __tablename__ = "recognition_writebacks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(String(UID_LENGTH), index=True)
    version: Mapped[int] = mapped_column(Integer)
    sop_instance_uid: Mapped[str] = mapped_column(String(UID_LENGTH), unique=True)
    series_instance_uid: Mapped[str] = mapped_column(String(UID_LENGTH))
    source_uri: Mapped[str] = mapped_column(Text)
    decision_fingerprint: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    sent_at: Mapped[dt.datetime | None]

    __table_args__ = (UniqueConstraint("study_instance_uid", "version"),)
