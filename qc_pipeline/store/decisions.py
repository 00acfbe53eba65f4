"""Writing decisions: the decision key, validation, and storing a study's new current decision
(the previous one kept as history)."""

from __future__ import annotations

import hashlib
import json
import logging
import math
from enum import StrEnum
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from qc_pipeline.domain import Decision, Finding, Provenance, SeriesSummary
from qc_pipeline.errors import StoreError
from qc_pipeline.store.engine import StoreSessions, error_reason
from qc_pipeline.store.models import (
    FINGERPRINT_LENGTH,
    UID_LENGTH,
    DecisionRecord,
    FindingRecord,
    MetricRecord,
    RunRecord,
    StudyRecord,
    utcnow,
)

logger = logging.getLogger(__name__)


class SaveOutcome(StrEnum):
    """What ``ResultStore.save_decision`` did."""

    INSERTED = "inserted"
    """The study's first decision."""
    SUPERSEDED = "superseded"
    """A new current decision; the previous one is kept as history."""
    UNCHANGED = "unchanged"
    """The current decision has the same decision key: nothing was written."""


def decision_key(content_fingerprint: str, provenance: Provenance) -> str:
    """SHA-256 (hex) of the content fingerprint, pipeline and thresholds versions and sorted models.

    Two decisions with the same key judged the same content with the same code, rules and models.
    """
    payload = json.dumps(
        [
            content_fingerprint,
            provenance.pipeline_version,
            provenance.thresholds_version,
            sorted(provenance.models.items()),
        ],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def stored_series(raw: list[dict[str, Any]] | None, study_instance_uid: str) -> tuple[SeriesSummary, ...]:
    """The typed series of a stored decision; StoreError naming the study when a row does not read."""
    try:
        return tuple(SeriesSummary.from_dict(item) for item in raw or ())
    except ValueError as exc:
        raise StoreError(f"the stored series of study {study_instance_uid} cannot be read: {exc}") from exc


class DecisionWrites(StoreSessions):
    """``ResultStore``'s decision writes."""

    def needs_judging(self, study_instance_uid: str, content_fingerprint: str, provenance: Provenance) -> bool:
        """False iff the study's current decision has the same decision key."""
        key = decision_key(content_fingerprint, provenance)
        with self._errors(f"read study {study_instance_uid}"), self._read.begin() as session:
            current_key = session.scalar(
                select(DecisionRecord.decision_key)
                .join(StudyRecord, StudyRecord.id == DecisionRecord.study_id)
                .where(StudyRecord.study_instance_uid == study_instance_uid, DecisionRecord.is_current.is_(True))
            )
        return current_key != key

    def save_decision(self, decision: Decision, *, run_id: str | None) -> SaveOutcome:
        """Store ``decision`` as the study's current one, in one transaction.

        The previous current decision, if any, is kept with ``is_current`` false. A decision with
        the current one's decision key writes nothing (``UNCHANGED``). Safe against concurrent
        writers on the same study: the loser of a race re-reads and tries once more.
        """
        _validate(decision)
        uid = decision.study_instance_uid
        key = decision_key(decision.content_fingerprint, decision.provenance)
        for attempt in (1, 2):
            try:
                with self._errors(f"save the decision on study {uid}"), self._write.begin() as session:
                    outcome = self._save(session, decision, key, run_id)
            except IntegrityError as exc:
                if attempt == 2:
                    raise StoreError(
                        f"cannot save the decision on study {uid} in {self._masked_url}: "
                        f"it kept changing under concurrent writers ({error_reason(exc, self._engine.url)}); try again"
                    ) from exc
                logger.info("study %s was written concurrently; reading it again", uid)
                continue
            logger.debug("study %s: decision %s (%s)", uid, key[:12], outcome)
            return outcome
        raise AssertionError("unreachable")  # pragma: no cover

    def _current(self, session: Session, study_id: int) -> DecisionRecord | None:
        return session.scalars(
            select(DecisionRecord).where(DecisionRecord.study_id == study_id, DecisionRecord.is_current.is_(True))
        ).one_or_none()

    def _save(self, session: Session, decision: Decision, key: str, run_id: str | None) -> SaveOutcome:
        summary = decision.study
        now = utcnow()
        study = session.scalars(
            select(StudyRecord).where(StudyRecord.study_instance_uid == summary.study_instance_uid)
        ).one_or_none()
        current = None if study is None else self._current(session, study.id)
        if current is not None and current.decision_key == key:
            return SaveOutcome.UNCHANGED
        if run_id is not None and session.get(RunRecord, run_id) is None:
            raise StoreError(f"cannot save the decision on study {summary.study_instance_uid}: no run {run_id!r}")
        if study is None:
            study = StudyRecord(study_instance_uid=summary.study_instance_uid, first_seen_at=now)
            session.add(study)
        study.patient_id = summary.patient_id
        study.patient_sex = summary.patient_sex
        study.patient_birth_date = summary.patient_birth_date
        study.upload_delay_h = summary.upload_delay_h
        study.accession_number = summary.accession_number
        study.institution = summary.institution
        study.modality = summary.modality
        study.study_date = summary.study_date
        study.study_time = summary.study_time
        study.study_description = summary.study_description
        study.source_uri = decision.source_uri
        study.last_seen_at = now
        session.flush()

        outcome = SaveOutcome.INSERTED
        if current is not None:
            # If a concurrent writer superseded it first, this updates nothing and the insert
            # below violates the one-current-decision index: the caller retries.
            session.execute(
                update(DecisionRecord)
                .where(DecisionRecord.id == current.id, DecisionRecord.is_current.is_(True))
                .values(is_current=False, superseded_at=now)
                .execution_options(synchronize_session=False)
            )
            outcome = SaveOutcome.SUPERSEDED

        item = decision.item
        session.add(
            DecisionRecord(
                study_id=study.id,
                run_id=run_id,
                is_current=True,
                content_fingerprint=decision.content_fingerprint,
                decision_key=key,
                verdict=str(decision.verdict),
                eligible=decision.eligible,
                eligible_until=decision.eligible_until,
                item_code=None if item is None else item.code,
                item_name_zh=None if item is None else item.name_zh,
                item_name_en=None if item is None else item.name_en,
                pipeline_version=decision.provenance.pipeline_version,
                thresholds_version=decision.provenance.thresholds_version,
                models=dict(sorted(decision.provenance.models.items())),
                n_series=summary.n_series,
                n_instances=summary.n_instances,
                decided_at=decision.decided_at,
                series=[s.as_dict() for s in decision.series],
                findings=[_finding_record(i, f) for i, f in enumerate(decision.findings)],
                metrics=[MetricRecord(name=name, value=float(value)) for name, value in decision.metrics.items()]
                + [
                    MetricRecord(
                        name=m.metric,
                        value=float(m.value),
                        series_instance_uid=m.series_instance_uid,
                        unit=m.unit,
                        detail=m.detail or None,
                    )
                    for m in decision.measurements
                    if m.value is not None and math.isfinite(m.value)
                ],
            )
        )
        session.flush()
        return outcome


def _validate(decision: Decision) -> None:
    """Refuse what the database would refuse, or would store wrongly, before writing anything."""
    uid = decision.study_instance_uid
    if not uid or len(uid) > UID_LENGTH:
        raise ValueError(f"study_instance_uid must have 1 to {UID_LENGTH} characters, got {uid!r}")
    if not decision.content_fingerprint or len(decision.content_fingerprint) > FINGERPRINT_LENGTH:
        raise ValueError(
            f"content_fingerprint of study {uid} must have 1 to {FINGERPRINT_LENGTH} characters, "
            f"got {len(decision.content_fingerprint)}"
        )
    if decision.decided_at.tzinfo is None or decision.decided_at.utcoffset() is None:
        raise ValueError(
            f"decided_at of study {uid} is a naive datetime ({decision.decided_at.isoformat()}); "
            "give it a time zone, e.g. datetime.now(datetime.UTC)"
        )
    for name, value in decision.metrics.items():
        if not math.isfinite(value):
            raise ValueError(f"metric {name!r} of study {uid} is {value}: only finite values can be stored")


def _finding_record(ordinal: int, finding: Finding) -> FindingRecord:
    return FindingRecord(
        ordinal=ordinal,
        code=finding.code,
        category=str(finding.category),
        severity=str(finding.severity),
        message=finding.message,
        message_zh=finding.message_zh,
        value=finding.value,
        limit_=finding.limit,
        series_instance_uid=finding.series_instance_uid,
        sop_instance_uid=finding.sop_instance_uid,
    )
