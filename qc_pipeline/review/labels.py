"""Radiologists' decisions as a labelled dataset for training the AI models.

``qc-pipeline review export-labels --out labels.csv`` writes one row per study whose human
decision stands (it reviewed the content the study has now), oldest decision first. UTF-8 CSV
with a header row, ``\\n`` line ends; lists inside a cell are joined with ``;``. Columns:

=====================  ===========================================================================
study_instance_uid     StudyInstanceUID
series_instance_uids   the image series the machine measured or found something on (``;``-joined)
modality               the study's modalities, comma-joined as stored (``CT``, ``DX,SR``)
item_code              recognition item code matched by the machine (empty when none)
machine_verdict        ``review`` or ``fail`` (the verdict that was reviewed)
human_decision         ``pass`` or ``fail`` — **the label**
action                 ``confirm`` or ``override``
reason_code            one of ``qc_pipeline.review.i18n.DECISION_REASONS``
finding_codes          codes of the machine's review/fail findings (``;``-joined; info left out)
source_uri             where the study's files are (folder ``file://`` URI or DICOMweb root)
content_fingerprint    the content the decision is about (re-export after re-ingestion to check)
decided_at             ISO 8601 UTC time of the human decision
negative_list          active negative-list flags (``;``-joined): such studies are labelled all the
                       same, the training command decides whether to use them
=====================  ===========================================================================

No patient names or IDs, no reviewer names, no free text (it may name a patient).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from qc_pipeline.io.tabular import csv_row
from qc_pipeline.store import ResultStore
from qc_pipeline.store.models import DecisionRecord, StudyRecord
from qc_pipeline.store.review import HumanDecision, NegativeFlag

LABEL_COLUMNS: Final = (
    "study_instance_uid",
    "series_instance_uids",
    "modality",
    "item_code",
    "machine_verdict",
    "human_decision",
    "action",
    "reason_code",
    "finding_codes",
    "source_uri",
    "content_fingerprint",
    "decided_at",
    "negative_list",
)


def label_rows(store: ResultStore) -> list[dict[str, Any]]:
    """The rows of the label file (see the module docstring), oldest decision first."""
    query = (
        select(HumanDecision, DecisionRecord, StudyRecord)
        .join(DecisionRecord, DecisionRecord.id == HumanDecision.decision_id)
        .join(StudyRecord, StudyRecord.id == HumanDecision.study_id)
        .where(HumanDecision.is_current.is_(True))
        .options(selectinload(DecisionRecord.findings), selectinload(DecisionRecord.metrics))
        .order_by(HumanDecision.decided_at, HumanDecision.id)
    )
    with store.reading("export the review labels") as session:
        current = dict(
            session.execute(
                select(DecisionRecord.study_id, DecisionRecord.content_fingerprint).where(
                    DecisionRecord.is_current.is_(True)
                )
            )
            .tuples()
            .all()
        )
        flags: dict[int, list[str]] = {}
        for study_id, code in session.execute(
            select(NegativeFlag.study_id, NegativeFlag.reason_code).where(NegativeFlag.cleared_at.is_(None))
        ).tuples():
            flags.setdefault(study_id, []).append(code)
        rows = []
        for human, machine, study in session.execute(query).tuples():
            if current.get(study.id) != human.content_fingerprint:
                continue  # the content changed since: the study is back in the queue
            series: list[str] = []
            for uid in [f.series_instance_uid for f in machine.findings] + [
                m.series_instance_uid for m in machine.metrics
            ]:
                if uid and uid not in series:
                    series.append(uid)
            rows.append(
                {
                    "study_instance_uid": study.study_instance_uid,
                    "series_instance_uids": ";".join(series),
                    "modality": study.modality or "",
                    "item_code": machine.item_code or "",
                    "machine_verdict": human.machine_verdict,
                    "human_decision": human.verdict,
                    "action": human.action,
                    "reason_code": human.reason_code,
                    "finding_codes": ";".join(f.code for f in machine.findings if f.severity != "info"),
                    "source_uri": study.source_uri or "",
                    "content_fingerprint": human.content_fingerprint,
                    "decided_at": human.decided_at.isoformat(),
                    "negative_list": ";".join(sorted(flags.get(study.id, []))),
                }
            )
    return rows


def labels_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=LABEL_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_row(r) for r in rows)  # UIDs, modality and URI come from outside: never a formula
    return buffer.getvalue()


def export_labels(store: ResultStore, out: Path) -> int:
    """Write the label file to ``out`` (replacing it whole); returns the number of rows."""
    rows = label_rows(store)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(labels_csv(rows), encoding="utf-8")
    tmp.replace(out)
    return len(rows)
