"""One study from source to stored decision: load, check, decide, store.

No Prefect here: ``flows/`` wraps these functions in tasks. Bad data never raises; only a failure
of the source or the store (``SourceError``, ``StoreError``) does, so that it can be retried.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final, Protocol

from qc_pipeline import __version__
from qc_pipeline.catalog import candidates
from qc_pipeline.checks import integrity, metadata
from qc_pipeline.domain import Decision, Finding, Provenance, StudySummary, Verdict
from qc_pipeline.errors import QCError
from qc_pipeline.io.dicom import text
from qc_pipeline.rules import Thresholds, decide_verdict, eligibility, load_thresholds
from qc_pipeline.sources.base import LoadedStudy, StudyEntry, StudySource

logger = logging.getLogger(__name__)

CHECK_ERROR_RULE: Final = "integrity.check.error"


def required_rules() -> frozenset[str]:
    """Every rule id the checks use; ``thresholds/`` must define exactly these."""
    return metadata.RULE_IDS | integrity.RULE_IDS | candidates.RULE_IDS | {CHECK_ERROR_RULE}


def load_pipeline_thresholds(directory: Path | str | None = None) -> Thresholds:
    return load_thresholds(None if directory is None else Path(directory), required_rules=required_rules())


def provenance(thresholds: Thresholds) -> Provenance:
    return Provenance(pipeline_version=__version__, thresholds_version=thresholds.version, models={})


def summarize(study: LoadedStudy, site_tz: dt.tzinfo) -> StudySummary:
    """Study-level header values, from the first image (or the first object if none)."""
    members = study.images or study.instances
    if not members:
        return StudySummary(study_instance_uid=study.study_instance_uid)
    ds = members[0].dataset
    dates = metadata.study_dates(ds, site_tz)
    ref = study.ref()
    return StudySummary(
        study_instance_uid=study.study_instance_uid,
        patient_id=text(ds, "PatientID"),
        accession_number=text(ds, "AccessionNumber"),
        institution=text(ds, "InstitutionName"),
        modalities=tuple(sorted({(text(i.dataset, "Modality") or "?").upper() for i in study.instances})),
        study_date=dates.study_date,
        study_time=dates.study_time,
        study_description=text(ds, "StudyDescription"),
        n_series=len(ref.series),
        n_instances=len(study.instances),
    )


def judge(study: LoadedStudy, thresholds: Thresholds, *, now: dt.datetime, source_uri: str | None = None) -> Decision:
    """The decision on one loaded study. Never raises for bad data."""
    summary = StudySummary(study_instance_uid=study.study_instance_uid)
    findings: list[Finding] = []
    candidate = False
    try:
        summary = summarize(study, thresholds.site.tzinfo())
        findings.extend(integrity.check_integrity(study, thresholds))
        candidate, catalog_findings = candidates.check_candidate(study, thresholds)
        findings.extend(catalog_findings)
        if candidate:
            findings.extend(metadata.check_metadata([i.dataset for i in study.images], thresholds, now=now))
    except QCError:
        raise
    except Exception as exc:  # a check must not take the run down: the study goes to a person
        logger.exception("checks failed on study %s", study.study_instance_uid)
        finding = thresholds.finding(
            CHECK_ERROR_RULE,
            f"The checks stopped with an unexpected error ({type(exc).__name__}: {exc}); please report it",
            f"质控检查意外中断（{type(exc).__name__}），请人工复核并报告此问题",
            value=type(exc).__name__,
        )
        if finding is not None:
            findings.append(finding)
        candidate = True
    verdict = decide_verdict(findings, candidate=candidate)
    eligible, until = eligibility(
        verdict, study_date=summary.study_date, modalities=summary.modalities, config=thresholds.site.eligibility
    )
    return Decision(
        study=summary,
        verdict=verdict,
        findings=tuple(findings),
        provenance=provenance(thresholds),
        content_fingerprint=study.entry.fingerprint,
        decided_at=now,
        eligible=eligible,
        eligible_until=until,
        source_uri=source_uri,
    )


class OutcomeStatus(StrEnum):
    JUDGED = "judged"
    UNCHANGED = "unchanged"


@dataclass(frozen=True, slots=True)
class StudyOutcome:
    """What happened to one study in a run (small and picklable: goes back to the flow)."""

    study_instance_uid: str
    status: OutcomeStatus
    verdict: Verdict | None = None
    saved: str | None = None


class ResultStoreLike(Protocol):
    """What ``process_entry`` needs of the results store."""

    def needs_judging(self, study_instance_uid: str, content_fingerprint: str, provenance: Provenance) -> bool: ...
    def save_decision(self, decision: Decision, *, run_id: str | None) -> object: ...


def process_entry(
    source: StudySource,
    entry: StudyEntry,
    store: ResultStoreLike,
    thresholds: Thresholds,
    *,
    run_id: str | None,
    now: dt.datetime | None = None,
) -> StudyOutcome:
    """Judge one discovered study unless its current decision already covers this content."""
    now = now or dt.datetime.now(dt.UTC)
    prov = provenance(thresholds)
    if not store.needs_judging(entry.study_instance_uid, entry.fingerprint, prov):
        return StudyOutcome(entry.study_instance_uid, OutcomeStatus.UNCHANGED)
    study = source.load(entry)
    decision = judge(study, thresholds, now=now, source_uri=source.uri)
    saved = store.save_decision(decision, run_id=run_id)
    logger.info("study %s: %s (%s)", entry.study_instance_uid, decision.verdict, saved)
    return StudyOutcome(entry.study_instance_uid, OutcomeStatus.JUDGED, decision.verdict, str(saved))
