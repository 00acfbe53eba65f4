"""What reads from the results store return: frozen, typed rows.

Datetimes are timezone-aware (UTC) and dates are ``datetime.date``; ``as_dict()`` gives the
JSON-ready form (ISO strings) for the command line and the APIs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from qc_pipeline.domain import Finding, ItemRef, Provenance, SeriesSummary, Verdict
from qc_pipeline.rules.verdict import EligibilityReason


def iso(value: dt.date | dt.time | dt.datetime | None) -> str | None:
    """``value.isoformat()``; None stays None."""
    return None if value is None else value.isoformat()


@dataclass(frozen=True, slots=True)
class SourceCursor:
    """How far the last complete run over a source got (``ResultStore.cursor``)."""

    source_uri: str
    kind: str
    """What ``position`` means, e.g. ``orthanc-changes`` (a change sequence number)."""
    position: str
    updated_at: dt.datetime
    run_id: str | None


@dataclass(frozen=True, slots=True)
class StaleStudy:
    """A stored study whose current decision used other thresholds or models (``stale_studies``)."""

    study_instance_uid: str
    source_uri: str | None
    thresholds_version: str
    models: dict[str, str]


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One run as stored (``ResultStore.runs``)."""

    run_id: str
    started_at: dt.datetime
    finished_at: dt.datetime | None
    """None while it runs (or when its process died before ``interrupted`` was recorded)."""
    source_uri: str
    status: str
    """``running``, ``completed``, ``interrupted``, or the status its flow recorded."""
    pipeline_version: str
    thresholds_version: str
    n_studies: int
    n_judged: int
    n_unchanged: int
    n_errors: int
    error_message: str | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the fields by name, times as ISO 8601 strings."""
        return {
            "run_id": self.run_id,
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "source_uri": self.source_uri,
            "status": self.status,
            "pipeline_version": self.pipeline_version,
            "thresholds_version": self.thresholds_version,
            "n_studies": self.n_studies,
            "n_judged": self.n_judged,
            "n_unchanged": self.n_unchanged,
            "n_errors": self.n_errors,
            "error_message": self.error_message,
        }


@dataclass(frozen=True, slots=True)
class DecisionHistoryEntry:
    """One machine decision stored for a study, current or superseded (``ResultStore.history``)."""

    verdict: Verdict
    eligible: bool
    """The machine's own eligibility when it decided (not re-judged now)."""
    decided_at: dt.datetime
    superseded_at: dt.datetime | None
    is_current: bool
    decision_key: str
    content_fingerprint: str
    pipeline_version: str
    thresholds_version: str
    models: Mapping[str, str]
    """Model name -> version used."""
    run_id: str | None
    human_decisions: tuple[dict[str, Any], ...]
    """The radiologists' decisions on this machine decision, oldest first (who, when, why;
    ``stands`` marks the one that counts now), as ``store.review.human_decision_dict`` gives them."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the fields by name, times as ISO 8601 strings."""
        return {
            "verdict": str(self.verdict),
            "eligible": self.eligible,
            "decided_at": iso(self.decided_at),
            "superseded_at": iso(self.superseded_at),
            "is_current": self.is_current,
            "decision_key": self.decision_key,
            "content_fingerprint": self.content_fingerprint,
            "pipeline_version": self.pipeline_version,
            "thresholds_version": self.thresholds_version,
            "models": dict(self.models),
            "run_id": self.run_id,
            "human_decisions": list(self.human_decisions),
        }


@dataclass(frozen=True, slots=True)
class StoredMeasurement:
    """One image-quality measurement of a study's current decision, with what calibration groups
    it by (``ResultStore.measurements``)."""

    metric: str
    """The metric id, e.g. ``ct.noise_hu``."""
    value: float
    unit: str | None
    """The unit the metric reports (``HU``, ``%``, ``DI``, ``1``); None for decisions stored
    before units were kept."""
    detail: str | None
    """How or where it was measured (slices used, header tag, model and version); None when the
    metric gave none or for decisions stored before details were kept."""
    series_instance_uid: str
    study_instance_uid: str
    modality: str | None
    institution: str | None
    study_date: dt.date | None
    item_code: str | None
    verdict: Verdict
    """The machine verdict of the decision it belongs to."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the fields by name, the date as an ISO 8601 string."""
        return {
            "metric": self.metric,
            "value": self.value,
            "unit": self.unit,
            "detail": self.detail,
            "series_instance_uid": self.series_instance_uid,
            "study_instance_uid": self.study_instance_uid,
            "modality": self.modality,
            "institution": self.institution,
            "study_date": iso(self.study_date),
            "item_code": self.item_code,
            "verdict": str(self.verdict),
        }


@dataclass(frozen=True, slots=True)
class SeriesMeasurement:
    """One image-quality measurement of a study's current decision, on one series or radiograph."""

    metric: str
    value: float
    series_instance_uid: str
    unit: str | None = None
    """None for decisions stored before units were kept (migration 0015)."""
    detail: str | None = None
    """How or where it was measured; None when the metric gave none or before migration 0015."""


@dataclass(frozen=True, slots=True)
class StudyResult:
    """A study's current decision as read now (``ResultStore.study_results``).

    ``verdict`` is the machine's; ``eligible``/``eligible_until`` follow a standing human decision
    (``eligibility_basis`` says which), then the recognition window and the institution's
    qualification on ``eligibility_as_of``; the machine's own stored facts are
    ``machine_eligible``/``machine_eligible_until``. ``as_dict()`` is the JSON form that
    ``ResultStore.results``, ``results --format json``, the review app and the SR write-back use.
    """

    study_instance_uid: str
    accession_number: str | None
    patient_id: str | None
    institution: str | None
    modality: str | None
    study_date: dt.date | None
    study_time: dt.time | None
    item: ItemRef | None
    verdict: Verdict
    human_decision: Mapping[str, Any] | None
    """The radiologist's decision that stands, as ``store.review.human_decision_dict`` gives it."""
    final_verdict: Verdict
    """The human decision's verdict where one stands, else the machine's."""
    negative_flags: tuple[Mapping[str, Any], ...]
    """Study-level negative-list flags (``store.review.flag_dict``)."""
    eligible: bool
    eligible_until: dt.date | None
    eligibility_basis: str
    """``human`` or ``machine``."""
    eligibility_as_of: dt.date
    eligibility_reasons: tuple[EligibilityReason, ...]
    recognition_mark: str | None
    registered_institution: str | None
    """The register's name for ``institution``; None when it is not registered."""
    machine_eligible: bool
    machine_eligible_until: dt.date | None
    findings: tuple[Finding, ...]
    metrics: Mapping[str, float]
    """Study-level numbers by name."""
    measurements: tuple[SeriesMeasurement, ...]
    """The image-quality metrics, one per series (or radiograph) and metric."""
    provenance: Provenance
    decided_at: dt.datetime
    source_uri: str | None
    content_fingerprint: str
    n_series: int
    n_instances: int
    history_count: int
    """How many decisions are stored for the study, this one included."""
    series: tuple[SeriesSummary, ...]
    """Empty for decisions stored before series roles were kept."""

    def as_dict(self) -> dict[str, Any]:
        """The JSON form: dates and times as ISO strings, the item, findings, measurements and
        series as dicts (the measurements without unit and detail, as ``results`` has always
        given them)."""
        item = self.item
        return {
            "study_instance_uid": self.study_instance_uid,
            "accession_number": self.accession_number,
            "patient_id": self.patient_id,
            "institution": self.institution,
            "modality": self.modality,
            "study_date": iso(self.study_date),
            "study_time": iso(self.study_time),
            "item": None if item is None else {"code": item.code, "name_zh": item.name_zh, "name_en": item.name_en},
            "verdict": str(self.verdict),
            "human_decision": None if self.human_decision is None else dict(self.human_decision),
            "final_verdict": str(self.final_verdict),
            "negative_flags": [dict(f) for f in self.negative_flags],
            "eligible": self.eligible,
            "eligible_until": iso(self.eligible_until),
            "eligibility_basis": self.eligibility_basis,
            "eligibility_as_of": self.eligibility_as_of.isoformat(),
            "eligibility_reasons": [r.as_dict() for r in self.eligibility_reasons],
            "recognition_mark": self.recognition_mark,
            "registered_institution": self.registered_institution,
            "machine_eligible": self.machine_eligible,
            "machine_eligible_until": iso(self.machine_eligible_until),
            "findings": [f.as_dict() for f in self.findings],
            "metrics": dict(self.metrics),
            "measurements": [
                {"metric": m.metric, "value": m.value, "series_instance_uid": m.series_instance_uid}
                for m in self.measurements
            ],
            "provenance": self.provenance.as_dict(),
            "decided_at": iso(self.decided_at),
            "source_uri": self.source_uri,
            "content_fingerprint": self.content_fingerprint,
            "n_series": self.n_series,
            "n_instances": self.n_instances,
            "history_count": self.history_count,
            "series": [s.as_dict() for s in self.series],
        }
