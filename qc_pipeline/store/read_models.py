"""What reads from the results store return: frozen, typed rows.

Datetimes are timezone-aware (UTC) and dates are ``datetime.date``; ``as_dict()`` gives the
JSON-ready form (ISO strings) for the command line and the APIs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from qc_pipeline.domain import Verdict


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
