"""Reviewers' side of a spot check: their blinded cases, and recording their grades.

Everything a reviewer is shown is a :class:`~qc_pipeline.spotcheck.blinding.BlindCase`, built here
from the case, the study's sex/age and the item; never the institution, region, verdict or findings.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import Select, select

from qc_pipeline.errors import SpotCheckError
from qc_pipeline.spotcheck.blinding import BlindCase, age_band
from qc_pipeline.spotcheck.config import SpotCheckConfig
from qc_pipeline.store import ResultStore
from qc_pipeline.store.models import DecisionRecord, StudyRecord
from qc_pipeline.store.spotcheck import (
    SpotCheckAssignment,
    SpotCheckCase,
    SpotCheckDraw,
    SpotCheckGrade,
    read_session,
    write_session,
)

logger = logging.getLogger(__name__)

VIA = ("app", "spreadsheet")


class GradeOutcome(StrEnum):
    INSERTED = "inserted"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True, slots=True)
class GradeInput:
    """A reviewer's answer on one case, as entered (app form or spreadsheet row)."""

    case_code: str
    reviewer: str
    grade: str
    recognisable: bool
    reasons: tuple[str, ...] = ()
    comment: str = ""


@dataclass(frozen=True, slots=True)
class CaseStatus:
    case: BlindCase
    grade: str | None
    recognisable: bool | None
    reasons: tuple[str, ...]
    comment: str


def _blind_query() -> Select[Any]:
    return (
        select(SpotCheckAssignment, SpotCheckCase, StudyRecord, DecisionRecord, SpotCheckDraw.period, SpotCheckGrade)
        .join(SpotCheckCase, SpotCheckCase.id == SpotCheckAssignment.case_id)
        .join(SpotCheckDraw, SpotCheckDraw.id == SpotCheckCase.draw_id)
        .join(StudyRecord, StudyRecord.id == SpotCheckCase.study_id)
        .join(DecisionRecord, DecisionRecord.id == SpotCheckCase.decision_id)
        .outerjoin(SpotCheckGrade, SpotCheckGrade.assignment_id == SpotCheckAssignment.id)
    )


def _status(row: Any) -> CaseStatus:
    assignment, case, study, decision, period, grade = row
    blind = BlindCase(
        case_code=case.case_code,
        patient_pseudonym=case.patient_pseudonym,
        modality=case.modality,
        item_code=decision.item_code,
        item_name_zh=decision.item_name_zh,
        item_name_en=decision.item_name_en,
        patient_sex=study.patient_sex if study.patient_sex in ("M", "F", "O") else None,
        age_band=age_band(study.patient_birth_date, study.study_date),
        n_series=decision.n_series,
        n_instances=decision.n_instances,
        period=period,
        reviewer=assignment.reviewer,
        reading=assignment.reading,
        assignment_id=assignment.id,
    )
    if grade is None:
        return CaseStatus(blind, None, None, (), "")
    return CaseStatus(blind, grade.grade, grade.recognisable, tuple(grade.reasons), grade.comment)


def cases_for(store: ResultStore, *, reviewer: str | None = None, period: str | None = None) -> list[CaseStatus]:
    """The blinded cases assigned to ``reviewer`` (all reviewers when None) in ``period`` (all
    periods when None), in case-code order, with their grades so far."""
    query = _blind_query()
    if reviewer is not None:
        query = query.where(SpotCheckAssignment.reviewer == reviewer)
    if period is not None:
        query = query.where(SpotCheckDraw.period == period)
    with read_session(store) as session:
        rows = session.execute(query.order_by(SpotCheckCase.case_code, SpotCheckAssignment.reading)).tuples().all()
    return [_status(r) for r in rows]


def case_for(store: ResultStore, case_code: str, *, reviewer: str) -> CaseStatus:
    """One blinded case, if it is assigned to ``reviewer``; SpotCheckError otherwise (the same
    message whether the case does not exist or is someone else's: no probing)."""
    query = _blind_query().where(SpotCheckCase.case_code == case_code, SpotCheckAssignment.reviewer == reviewer)
    with read_session(store) as session:
        row = session.execute(query).tuples().one_or_none()
    if row is None:
        raise SpotCheckError(f"case {case_code!r} is not assigned to {reviewer!r}")
    return _status(row)


def validate_grade(config: SpotCheckConfig, answer: GradeInput) -> GradeInput:
    """The answer with grade and reasons normalised; SpotCheckError naming what is wrong."""
    grade = config.grade(answer.grade)
    if grade is None:
        raise SpotCheckError(
            f"case {answer.case_code}: grade {answer.grade!r} is not one of {', '.join(config.grade_order)}"
        )
    known = {r.code for r in config.reasons}
    reasons = tuple(dict.fromkeys(r.strip() for r in answer.reasons if r.strip()))
    unknown = [r for r in reasons if r not in known]
    if unknown:
        raise SpotCheckError(
            f"case {answer.case_code}: unknown reason {', '.join(map(repr, unknown))}; known: {', '.join(sorted(known))}"
        )
    if len(answer.comment) > 2000:
        raise SpotCheckError(
            f"case {answer.case_code}: the comment has {len(answer.comment)} characters (at most 2000)"
        )
    return GradeInput(
        answer.case_code, answer.reviewer, grade.code, answer.recognisable, reasons, answer.comment.strip()
    )


def record_grades(
    store: ResultStore,
    config: SpotCheckConfig,
    answers: Iterable[GradeInput],
    *,
    via: str,
    replace: bool,
    now: dt.datetime | None = None,
) -> dict[tuple[str, str], GradeOutcome]:
    """Store the answers in one transaction (all or none); returns the outcome per (case code,
    reviewer).

    Each answer must come from the reviewer its case is assigned to. An answer equal to the stored
    one writes nothing; a different one replaces it only with ``replace`` (the app: a reviewer
    revising their own grade), else SpotCheckError (a spreadsheet that disagrees with the app).
    """
    if via not in VIA:
        raise ValueError(f"via must be one of {VIA}, got {via!r}")
    now = now or dt.datetime.now(dt.UTC)
    checked = [validate_grade(config, a) for a in answers]
    outcomes: dict[tuple[str, str], GradeOutcome] = {}
    with write_session(store) as session:
        for a in checked:
            row = (
                session.execute(
                    select(SpotCheckAssignment, SpotCheckGrade)
                    .join(SpotCheckCase, SpotCheckCase.id == SpotCheckAssignment.case_id)
                    .outerjoin(SpotCheckGrade, SpotCheckGrade.assignment_id == SpotCheckAssignment.id)
                    .where(SpotCheckCase.case_code == a.case_code, SpotCheckAssignment.reviewer == a.reviewer)
                )
                .tuples()
                .one_or_none()
            )
            if row is None:
                raise SpotCheckError(f"case {a.case_code!r} is not assigned to {a.reviewer!r}")
            assignment, grade = row
            values = {
                "grade": a.grade,
                "recognisable": a.recognisable,
                "reasons": list(a.reasons),
                "comment": a.comment,
            }
            if grade is None:
                session.add(
                    SpotCheckGrade(assignment_id=assignment.id, via=via, graded_by=a.reviewer, graded_at=now, **values)
                )
                outcomes[(a.case_code, a.reviewer)] = GradeOutcome.INSERTED
            elif {k: getattr(grade, k) for k in values} == values:
                outcomes[(a.case_code, a.reviewer)] = GradeOutcome.UNCHANGED
            elif not replace:
                raise SpotCheckError(
                    f"case {a.case_code} was already graded {grade.grade} by {grade.graded_by} ({grade.via}, "
                    f"{grade.graded_at:%Y-%m-%d}); this one says {a.grade}: correct it in the app, or import with --replace"
                )
            else:
                for k, v in values.items():
                    setattr(grade, k, v)
                grade.via, grade.graded_at = via, now
                outcomes[(a.case_code, a.reviewer)] = GradeOutcome.UPDATED
    logger.info("spot-check grades via %s: %s", via, dict(sorted(_count(outcomes.values()).items())))
    return outcomes


def _count(values: Iterable[GradeOutcome]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for v in values:
        counts[str(v)] = counts.get(str(v), 0) + 1
    return counts
