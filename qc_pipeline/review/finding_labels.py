"""Reviewers' per-finding judgements as per-series labels with provenance, for the AI models.

``qc-pipeline models export-labels --db URL --out FILE`` writes one row per current judgement of a
finding (``finding_review``) on content the study still has, oldest first; and, for each audit
sample of machine passes whose human decision stands, one row per image series with no finding
code: ``clean`` when the person passed the study, ``not_clean`` when they failed it (then the
series' confirmed findings, if any, are the rows that say what). UTF-8 CSV with a header row,
``\\n`` line ends, cells escaped against formulas. Columns:

=====================  ===========================================================================
study_instance_uid     StudyInstanceUID
series_instance_uid    the series the finding is about (empty for a study-level finding)
modality               the series' modality (the study's when the series is not known)
item_code              recognition item matched by the machine decision that was judged
finding_code           the finding's code (empty on an audit sample's series row)
finding_severity       ``review`` or ``fail`` (empty on an audit sample's series row)
model                  ``name@version`` of the model behind an AI finding; empty for objective ones
judgement              ``confirm``, ``reject`` (a finding) or ``clean``, ``not_clean`` (audit sample)
reason_code            the artifact seen (``thresholds/evaluation/finding_review.yaml``); empty on
                       an audit sample's series row
reviewer_role          ``reviewer`` or ``qc_admin`` — never the person's name
decided_at             ISO 8601 UTC time of the judgement
content_fingerprint    the content the judgement is about
audit_sample           ``true`` when the study came to the queue as an audit sample of passes
=====================  ===========================================================================

No patient names or IDs, no reviewer names, no free text.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Final

from sqlalchemy import select

from qc_pipeline.io.tabular import csv_row
from qc_pipeline.review.finding_review import FindingReviewConfig
from qc_pipeline.store import ResultStore
from qc_pipeline.store.models import DecisionRecord, StudyRecord
from qc_pipeline.store.review import FindingReview, HumanDecision, ReviewUser

LABEL_COLUMNS: Final = (
    "study_instance_uid",
    "series_instance_uid",
    "modality",
    "item_code",
    "finding_code",
    "finding_severity",
    "model",
    "judgement",
    "reason_code",
    "reviewer_role",
    "decided_at",
    "content_fingerprint",
    "audit_sample",
)
NON_IMAGE_KIND: Final = "non_image"


def _series_modalities(decision: DecisionRecord) -> dict[str, str]:
    return {
        s["series_instance_uid"]: s.get("modality") or ""
        for s in decision.series or ()
        if isinstance(s, dict) and s.get("series_instance_uid")
    }


def finding_label_rows(store: ResultStore, config: FindingReviewConfig) -> list[dict[str, Any]]:
    """The rows of the label file (see the module docstring), oldest judgement first."""
    rows: list[dict[str, Any]] = []
    with store.reading("export the finding labels") as session:
        current = dict(
            session.execute(
                select(DecisionRecord.study_id, DecisionRecord.content_fingerprint).where(
                    DecisionRecord.is_current.is_(True)
                )
            )
            .tuples()
            .all()
        )
        judged = session.execute(
            select(FindingReview, DecisionRecord, StudyRecord)
            .join(DecisionRecord, DecisionRecord.id == FindingReview.decision_id)
            .join(StudyRecord, StudyRecord.id == FindingReview.study_id)
            .where(FindingReview.is_current.is_(True))
            .order_by(FindingReview.decided_at, FindingReview.id)
        ).tuples()
        for r, decision, study in judged:
            if current.get(study.id) != r.content_fingerprint:
                continue  # the content changed since: the label is about images the study no longer has
            modality = _series_modalities(decision).get(r.series_instance_uid or "") or study.modality or ""
            rows.append(
                {
                    "study_instance_uid": study.study_instance_uid,
                    "series_instance_uid": r.series_instance_uid or "",
                    "modality": modality,
                    "item_code": decision.item_code or "",
                    "finding_code": r.finding_code,
                    "finding_severity": r.finding_severity,
                    "model": r.model or "",
                    "judgement": r.judgement,
                    "reason_code": r.reason_code,
                    "reviewer_role": r.reviewer_role,
                    "decided_at": r.decided_at.isoformat(),
                    "content_fingerprint": r.content_fingerprint,
                    "audit_sample": "true" if r.audit_sample else "false",
                }
            )
        audited = session.execute(
            select(HumanDecision, DecisionRecord, StudyRecord, ReviewUser.role)
            .join(DecisionRecord, DecisionRecord.id == HumanDecision.decision_id)
            .join(StudyRecord, StudyRecord.id == HumanDecision.study_id)
            .join(ReviewUser, ReviewUser.id == HumanDecision.user_id)
            .where(HumanDecision.is_current.is_(True), HumanDecision.machine_verdict == "pass")
            .order_by(HumanDecision.decided_at, HumanDecision.id)
        ).tuples()
        for human, decision, study, role in audited:
            # A person can decide a machine pass only when it was drawn for the audit: the decision
            # itself says so, whatever the share or salt are now (a changed salt must not drop labels).
            if current.get(study.id) != human.content_fingerprint:
                continue
            for s in decision.series or ():
                if not isinstance(s, dict) or s.get("kind") == NON_IMAGE_KIND or not s.get("series_instance_uid"):
                    continue
                rows.append(
                    {
                        "study_instance_uid": study.study_instance_uid,
                        "series_instance_uid": s["series_instance_uid"],
                        "modality": s.get("modality") or study.modality or "",
                        "item_code": decision.item_code or "",
                        "finding_code": "",
                        "finding_severity": "",
                        "model": "",
                        "judgement": "clean" if human.verdict == "pass" else "not_clean",
                        "reason_code": "",
                        "reviewer_role": role,
                        "decided_at": human.decided_at.isoformat(),
                        "content_fingerprint": human.content_fingerprint,
                        "audit_sample": "true",
                    }
                )
    return rows


def finding_labels_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=LABEL_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_row(r) for r in rows)  # UIDs and codes come from outside: never a formula
    return buffer.getvalue()


def export_finding_labels(store: ResultStore, config: FindingReviewConfig, out: Path) -> int:
    """Write the label file to ``out`` (replacing it whole); returns the number of rows."""
    rows = finding_label_rows(store, config)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(finding_labels_csv(rows), encoding="utf-8")
    tmp.replace(out)
    return len(rows)
