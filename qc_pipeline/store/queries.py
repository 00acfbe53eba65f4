"""Reading the results store: the current decision per study, a study's history, its series,
the stored measurements, and what the checks need about earlier studies."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from qc_pipeline.domain import Category, Finding, ItemRef, PriorStudy, Provenance, SeriesSummary, Severity, Verdict
from qc_pipeline.eligibility import EligibilityPolicy
from qc_pipeline.store.decisions import stored_series
from qc_pipeline.store.engine import StoreSessions
from qc_pipeline.store.models import DecisionRecord, MetricRecord, StudyRecord
from qc_pipeline.store.read_models import DecisionHistoryEntry, SeriesMeasurement, StoredMeasurement, StudyResult
from qc_pipeline.store.review import Overlay, effective_eligibility, human_history, human_overlay

logger = logging.getLogger(__name__)


class StudyQueries(StoreSessions):
    """``ResultStore``'s reads of studies and decisions."""

    def results(
        self,
        *,
        study_instance_uid: str | None = None,
        verdict: str | None = None,
        policy: EligibilityPolicy | None = None,
    ) -> list[dict[str, Any]]:
        """The JSON form (``StudyResult.as_dict()``) of :meth:`study_results`: dates and times as
        ISO strings, the item, findings, measurements and series as dicts."""
        return [
            r.as_dict()
            for r in self.study_results(study_instance_uid=study_instance_uid, verdict=verdict, policy=policy)
        ]

    def study_results(
        self,
        *,
        study_instance_uid: str | None = None,
        verdict: str | None = None,
        policy: EligibilityPolicy | None = None,
    ) -> list[StudyResult]:
        """The current decision of each study, ordered by study date (unknown last), then UID.

        ``eligible`` is computed now, by ``policy`` (default: the site's, today on the site clock):
        a pass whose window has ended, or whose institution was not qualified on the study date,
        is not eligible; ``eligibility_reasons`` says why, ``recognition_mark`` which mark an
        eligible study may carry. The stored facts stay in ``machine_eligible(_until)``.
        """
        if verdict is not None:
            try:
                verdict = str(Verdict(verdict))
            except ValueError:
                allowed = ", ".join(v.value for v in Verdict)
                raise ValueError(f"verdict must be one of {allowed}; got {verdict!r}") from None
        counts = select(DecisionRecord.study_id, func.count(DecisionRecord.id).label("n"))
        if study_instance_uid is not None:  # count one study's decisions, not every study's (lookups)
            counts = counts.where(
                DecisionRecord.study_id.in_(
                    select(StudyRecord.id).where(StudyRecord.study_instance_uid == study_instance_uid)
                )
            )
        history = counts.group_by(DecisionRecord.study_id).subquery()
        stmt = (
            select(DecisionRecord, StudyRecord, history.c.n)
            .join(StudyRecord, StudyRecord.id == DecisionRecord.study_id)
            .join(history, history.c.study_id == DecisionRecord.study_id)
            .where(DecisionRecord.is_current.is_(True))
            .options(selectinload(DecisionRecord.findings), selectinload(DecisionRecord.metrics))
        )
        if study_instance_uid is not None:
            stmt = stmt.where(StudyRecord.study_instance_uid == study_instance_uid)
        if verdict is not None:
            stmt = stmt.where(DecisionRecord.verdict == verdict)
        with self._errors("read the results"), self._read.begin() as session:
            rows = list(session.execute(stmt).tuples().all())
            overlays = human_overlay(session, (s.id for _d, s, _n in rows))
        # Sorted here, not in SQL: NULL placement and text collation differ between backends.
        rows.sort(key=lambda r: (r[1].study_date is None, r[1].study_date or dt.date.min, r[1].study_instance_uid))
        policy = policy if policy is not None else EligibilityPolicy.current()
        return [_study_result(d, s, n, policy, overlays.get(s.id)) for d, s, n in rows]

    def history(self, study_instance_uid: str) -> list[DecisionHistoryEntry]:
        """Every decision stored for the study, oldest first (empty if the study is unknown).

        ``human_decisions`` lists the radiologists' decisions on each machine decision (who,
        when, why; ``stands`` marks the one that counts now).
        """
        with self._errors(f"read the history of study {study_instance_uid}"), self._read.begin() as session:
            rows = session.scalars(
                select(DecisionRecord)
                .join(StudyRecord, StudyRecord.id == DecisionRecord.study_id)
                .where(StudyRecord.study_instance_uid == study_instance_uid)
                .order_by(DecisionRecord.id)
            ).all()
            humans = human_history(session, rows[0].study_id) if rows else {}
        return [
            DecisionHistoryEntry(
                verdict=Verdict(d.verdict),
                eligible=d.eligible,
                decided_at=d.decided_at,
                superseded_at=d.superseded_at,
                is_current=d.is_current,
                decision_key=d.decision_key,
                content_fingerprint=d.content_fingerprint,
                pipeline_version=d.pipeline_version,
                thresholds_version=d.thresholds_version,
                models=dict(d.models),
                run_id=d.run_id,
                human_decisions=tuple(humans.get(d.id, ())),
            )
            for d in rows
        ]

    def series(self, study_instance_uid: str) -> tuple[SeriesSummary, ...]:
        """The series of the study's current decision, with their roles (empty for an unknown
        study or a decision stored before roles were kept)."""
        with self._errors(f"read the series of study {study_instance_uid}"), self._read.begin() as session:
            raw = session.scalar(
                select(DecisionRecord.series)
                .join(StudyRecord, StudyRecord.id == DecisionRecord.study_id)
                .where(StudyRecord.study_instance_uid == study_instance_uid, DecisionRecord.is_current.is_(True))
            )
        return stored_series(raw, study_instance_uid)

    def measurements(self, *, metric: str | None = None) -> list[StoredMeasurement]:
        """Every image-quality measurement of the current decisions, one per series and metric,
        with its unit and how it was measured, and the study's modality, institution, date, item
        and verdict (for calibration: distributions per modality, item and institution).
        Study-level numbers (``metrics`` of ``results``) are not included.
        """
        query = (
            select(MetricRecord, DecisionRecord, StudyRecord)
            .join(DecisionRecord, DecisionRecord.id == MetricRecord.decision_id)
            .join(StudyRecord, StudyRecord.id == DecisionRecord.study_id)
            .where(DecisionRecord.is_current.is_(True), MetricRecord.series_instance_uid.is_not(None))
            .order_by(StudyRecord.study_instance_uid, MetricRecord.id)
        )
        if metric is not None:
            query = query.where(MetricRecord.name == metric)
        with self._errors("read the measurements"), self._read.begin() as session:
            rows = session.execute(query).all()
        return [
            StoredMeasurement(
                metric=m.name,
                value=m.value,
                unit=m.unit,
                detail=m.detail,
                series_instance_uid=m.series_instance_uid,
                study_instance_uid=s.study_instance_uid,
                modality=s.modality,
                institution=s.institution,
                study_date=s.study_date,
                item_code=d.item_code,
                verdict=Verdict(d.verdict),
            )
            for m, d, s in rows
        ]

    def first_seen_at(self, study_instance_uid: str) -> dt.datetime | None:
        """When a run first saw the study (UTC), or None for a study not stored yet."""
        with self._errors(f"read when study {study_instance_uid} was first seen"), self._read.begin() as session:
            seen = session.scalar(
                select(StudyRecord.first_seen_at).where(StudyRecord.study_instance_uid == study_instance_uid)
            )
        return None if seen is None else (seen if seen.tzinfo is not None else seen.replace(tzinfo=dt.UTC))

    def patient_studies(self, patient_id: str, *, exclude_study_uid: str | None = None) -> list[PriorStudy]:
        """The other studies stored for ``patient_id``, with the identity values they recorded."""
        with self._errors("read a patient's studies"), self._read.begin() as session:
            query = select(StudyRecord).where(StudyRecord.patient_id == patient_id)
            if exclude_study_uid is not None:
                query = query.where(StudyRecord.study_instance_uid != exclude_study_uid)
            rows = session.scalars(query.order_by(StudyRecord.study_date, StudyRecord.id)).all()
            return [
                PriorStudy(
                    study_instance_uid=r.study_instance_uid,
                    study_date=r.study_date,
                    patient_sex=r.patient_sex,
                    patient_birth_date=r.patient_birth_date,
                )
                for r in rows
            ]


def _study_result(
    d: DecisionRecord, s: StudyRecord, history_count: int, policy: EligibilityPolicy, overlay: Overlay | None = None
) -> StudyResult:
    models: Mapping[str, str] = d.models or {}
    stated, eligible_until, basis = effective_eligibility(d.eligible, d.eligible_until, overlay)
    human = None if overlay is None else overlay.human
    final_verdict = d.verdict if human is None else human["verdict"]
    now = policy.judge(
        eligible=stated,
        until=eligible_until,
        final_verdict=final_verdict,
        institution=s.institution,
        study_date=s.study_date,
        item_code=d.item_code,
    )
    registered = policy.register.resolve(s.institution)
    return StudyResult(
        study_instance_uid=s.study_instance_uid,
        accession_number=s.accession_number,
        patient_id=s.patient_id,
        institution=s.institution,
        modality=s.modality,
        study_date=s.study_date,
        study_time=s.study_time,
        item=None if d.item_code is None else ItemRef(d.item_code, d.item_name_zh or "", d.item_name_en or ""),
        verdict=Verdict(d.verdict),
        human_decision=human,
        final_verdict=Verdict(final_verdict),
        negative_flags=() if overlay is None else tuple(overlay.flags),
        eligible=now.eligible,
        eligible_until=eligible_until,
        eligibility_basis=basis,
        eligibility_as_of=now.as_of,
        eligibility_reasons=tuple(now.reasons),
        recognition_mark=now.mark,
        registered_institution=None if registered is None else registered.name,
        machine_eligible=d.eligible,
        machine_eligible_until=d.eligible_until,
        findings=tuple(
            Finding(
                code=f.code,
                category=Category(f.category),
                severity=Severity(f.severity),
                message=f.message,
                message_zh=f.message_zh,
                value=f.value,
                limit=f.limit_,
                series_instance_uid=f.series_instance_uid,
                sop_instance_uid=f.sop_instance_uid,
            )
            for f in d.findings
        ),
        metrics={m.name: m.value for m in d.metrics if m.series_instance_uid is None},
        measurements=tuple(
            SeriesMeasurement(m.name, m.value, m.series_instance_uid, m.unit, m.detail)
            for m in d.metrics
            if m.series_instance_uid is not None
        ),
        provenance=Provenance(d.pipeline_version, d.thresholds_version, dict(sorted(models.items()))),
        decided_at=d.decided_at,
        source_uri=s.source_uri,
        content_fingerprint=d.content_fingerprint,
        n_series=d.n_series,
        n_instances=d.n_instances,
        history_count=int(history_count),
        series=stored_series(d.series, s.study_instance_uid),
    )
