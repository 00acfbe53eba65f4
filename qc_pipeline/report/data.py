"""What the report reads from the results database: the current decision of each study of two
periods, its findings and measurements, and (when those tables exist and hold rows) radiologists'
decisions and spot-check grades.

Read-only, with plain SELECTs; rows are sorted here so that the same database gives the same
report on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, MetaData, Table, and_, func, inspect, select

from qc_pipeline.exam_logs import LoggedExam, stored_exams
from qc_pipeline.institutions import Register, default_register
from qc_pipeline.metrics import registry
from qc_pipeline.report.period import Period
from qc_pipeline.store import ResultStore
from qc_pipeline.store.exam_logs import EXAM_LOG_TABLE, ExamLogEntry
from qc_pipeline.store.models import DecisionRecord, FindingRecord, MetricRecord, StudyRecord

logger = logging.getLogger(__name__)

DR_MODALITIES: Final = frozenset({"CR", "DX", "DR", "RF", "MG"})
KEY_METRICS: Final = registry.key_metrics()
"""The metrics whose distributions the report plots against their limits (``key`` in the registry)."""
AI_PREFIX: Final = "ai."


@dataclass(frozen=True, slots=True)
class FindingFact:
    code: str
    category: str
    severity: str
    message: str
    message_zh: str


@dataclass(frozen=True, slots=True)
class StudyFacts:
    """One study's current decision, reduced to what the report counts."""

    study_id: int
    study_instance_uid: str
    institution: str
    """The register's name of the institution; InstitutionName as stored when it is not in the
    register; "" when the header had none."""
    modality: str
    """DR, CT, MR (the recognition item's modality, else the header's) or the header's own."""
    item_code: str | None
    item_name_zh: str | None
    item_name_en: str | None
    study_date: dt.date
    verdict: str
    """The machine verdict."""
    findings: tuple[FindingFact, ...]
    upload_delay_h: float | None
    human_verdict: str | None = None
    """The current radiologist decision (``pass``/``fail``) when one exists."""
    accession: str | None = None
    patient_id: str | None = None

    @property
    def judged(self) -> bool:
        return self.verdict != "not_applicable"

    def fails_in(self, categories: Iterable[str]) -> bool:
        wanted = set(categories)
        return any(f.severity == "fail" and f.category in wanted for f in self.findings)


@dataclass(frozen=True, slots=True)
class MeasurementFact:
    study_id: int
    metric: str
    value: float
    series_instance_uid: str | None


@dataclass(frozen=True, slots=True)
class HumanDecisionFact:
    study_id: int
    machine_verdict: str
    verdict: str
    action: str


@dataclass(frozen=True, slots=True)
class SpotCheckFact:
    """One graded reading of a drawn study."""

    study_id: int
    institution: str
    region: str
    machine_verdict: str
    reading: int
    reviewer_region: str
    grade: str
    recognisable: bool


@dataclass(frozen=True, slots=True)
class RecognitionFact:
    """What a receiving hospital did with a stored result at one visit.

    Two records say it, and each visit is counted once: a recognition event posted by a hospital
    system through the recognition API (recognised, or not recognised with a negative-list
    reason), and a non-recognition entered by QC staff. A posted "not recognised" event also
    writes a non-recognition row; that row is the event's own (``recognition_events.
    non_recognition_id``) and is not counted again. An event posted again under its ``event_id``
    is stored once, so it is one visit. ``day`` is the visit's date in the site's zone.

    The hospitals' exam logs (``exam_log_entries``) are not a source: a logged exam says what was
    performed, not whether an earlier result was offered, recognised or refused, so counting it as a
    repeat exam would be a guess. Two events with different ids about one visit cannot be told apart.
    """

    day: dt.date
    outcome: str
    """``recognised`` or ``not_recognised``."""
    reason_code: str | None
    receiving_institution: str
    source_institution: str
    """The institution of the study as stored (register's name); "" when the study is unknown here."""
    via: str
    """``api`` (a hospital system's event) or ``staff`` (entered by QC staff)."""


@dataclass(frozen=True, slots=True)
class ReportData:
    period: Period
    studies: tuple[StudyFacts, ...]
    """Studies of the period and of the previous one (``Period.of(study_date)`` tells which)."""
    measurements: tuple[MeasurementFact, ...]
    human_decisions: tuple[HumanDecisionFact, ...]
    spot_checks: tuple[SpotCheckFact, ...]
    undated: int
    """Studies without a study date (in no period)."""
    thresholds_versions: tuple[str, ...]
    latest_decision: dt.datetime | None
    """The newest ``decided_at`` among the studies read (the report's "as of", from the data)."""
    tables_present: frozenset[str]
    exam_log: tuple[LoggedExam, ...] = ()
    """Exams of the hospitals' logs with an exam date in either period (empty: no log imported)."""
    recognitions: tuple[RecognitionFact, ...] = ()
    """Visits of either period at which a receiving hospital recognised a result or did not."""


def modality_group(header_modality: str | None) -> str:
    """DR for projection radiography (CR, DX...), CT, MR, else the header's first modality."""
    parts = [p for p in (header_modality or "").split(",") if p]
    for p in parts:
        if p in DR_MODALITIES:
            return "DR"
        if p in ("CT", "MR"):
            return p
    return parts[0] if parts else "?"


def default_period(store: ResultStore) -> Period | None:
    """The period of the latest study date that is not after the day it was judged (a study dated
    in the future is a metadata error, not a period to report); None for an empty database."""
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(StudyRecord.study_date, func.max(DecisionRecord.decided_at))
            .join(DecisionRecord, DecisionRecord.study_id == StudyRecord.id)
            .where(DecisionRecord.is_current.is_(True), StudyRecord.study_date.is_not(None))
            .group_by(StudyRecord.study_date)
        ).all()
    for day, decided in sorted(((_date(d), _aware(t)) for d, t in rows), reverse=True):
        # the study date is local (UTC+8 in China), decided_at is UTC: allow for the offset
        if day <= (decided + dt.timedelta(hours=14)).date():
            return Period.of(day)
    return None


def _aware(value: Any) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def load_report_data(
    store: ResultStore, period: Period, *, register: Register | None = None, zone: dt.tzinfo | None = None
) -> ReportData:
    """Everything the report needs for ``period`` and the one before, in one read transaction.

    Institutions are the register's (``register``, default: the site's): the spellings of one
    hospital in the headers count as one institution; a name not in the register stays as written.
    ``zone``: the site's, in which a recognition event's time gives its day (default Asia/Shanghai).
    """
    canonical = (register if register is not None else default_register()).canonical
    first, last = period.previous.start, period.end
    current = and_(DecisionRecord.is_current.is_(True), StudyRecord.study_date >= first, StudyRecord.study_date <= last)
    with store.engine.connect() as conn:
        present = frozenset(inspect(conn).get_table_names())
        rows = conn.execute(
            select(
                StudyRecord.id,
                StudyRecord.study_instance_uid,
                StudyRecord.institution,
                StudyRecord.modality,
                StudyRecord.study_date,
                StudyRecord.upload_delay_h,
                DecisionRecord.id,
                DecisionRecord.verdict,
                DecisionRecord.item_code,
                DecisionRecord.item_name_zh,
                DecisionRecord.item_name_en,
                DecisionRecord.thresholds_version,
                DecisionRecord.decided_at,
                StudyRecord.accession_number,
                StudyRecord.patient_id,
            )
            .join(DecisionRecord, DecisionRecord.study_id == StudyRecord.id)
            .where(current)
        ).all()
        decision_ids = (
            select(DecisionRecord.id).join(StudyRecord, StudyRecord.id == DecisionRecord.study_id).where(current)
        )
        findings: dict[int, list[FindingFact]] = {}
        for decision_id, _ordinal, code, category, severity, message, message_zh in conn.execute(
            select(
                FindingRecord.decision_id,
                FindingRecord.ordinal,
                FindingRecord.code,
                FindingRecord.category,
                FindingRecord.severity,
                FindingRecord.message,
                FindingRecord.message_zh,
            )
            .where(FindingRecord.decision_id.in_(decision_ids))
            .order_by(FindingRecord.decision_id, FindingRecord.ordinal)
        ):
            findings.setdefault(decision_id, []).append(FindingFact(code, category, severity, message, message_zh))
        study_of = {r[6]: r[0] for r in rows}
        measurements = [
            MeasurementFact(study_of[decision_id], name, float(value), series)
            for decision_id, name, value, series in conn.execute(
                select(
                    MetricRecord.decision_id, MetricRecord.name, MetricRecord.value, MetricRecord.series_instance_uid
                ).where(MetricRecord.decision_id.in_(decision_ids), MetricRecord.series_instance_uid.is_not(None))
            )
            if name in KEY_METRICS or name.startswith(AI_PREFIX)
        ]
        undated = conn.scalar(
            select(func.count())
            .select_from(StudyRecord)
            .join(DecisionRecord, DecisionRecord.study_id == StudyRecord.id)
            .where(DecisionRecord.is_current.is_(True), StudyRecord.study_date.is_(None))
        )
        study_ids = {r[0] for r in rows}
        humans = _human_decisions(conn, present, study_ids)
        spot = [
            dataclasses.replace(f, institution=canonical(f.institution)) for f in _spot_checks(conn, present, period)
        ]
        exam_log = _exam_log(conn, present, first, last)
        recognitions = _recognitions(conn, present, first, last, zone or ZoneInfo(SITE_ZONE))
    recognitions = [
        dataclasses.replace(
            r,
            receiving_institution=canonical(r.receiving_institution),
            source_institution=canonical(r.source_institution) if r.source_institution else "",
        )
        for r in recognitions
    ]
    human_of = {h.study_id: h.verdict for h in humans}
    studies = sorted(
        (
            StudyFacts(
                study_id=r[0],
                study_instance_uid=r[1],
                institution=canonical(r[2]),
                modality=modality_group(r[3]),
                item_code=r[8],
                item_name_zh=r[9],
                item_name_en=r[10],
                study_date=_date(r[4]),
                verdict=r[7],
                findings=tuple(findings.get(r[6], ())),
                upload_delay_h=r[5],
                human_verdict=human_of.get(r[0]),
                accession=r[13],
                patient_id=r[14],
            )
            for r in rows
        ),
        key=lambda s: (s.institution, s.study_date, s.study_instance_uid),
    )
    measurements.sort(key=lambda m: (m.study_id, m.metric, m.series_instance_uid or "", m.value))
    decided = [r[12] for r in rows if r[12] is not None]
    return ReportData(
        period=period,
        studies=tuple(studies),
        measurements=tuple(measurements),
        human_decisions=tuple(sorted(humans, key=lambda h: h.study_id)),
        spot_checks=tuple(spot),
        undated=int(undated or 0),
        thresholds_versions=tuple(sorted({r[11] for r in rows})),
        latest_decision=max(decided) if decided else None,
        tables_present=present,
        exam_log=tuple(exam_log),
        recognitions=tuple(recognitions),
    )


SITE_ZONE: Final = "Asia/Shanghai"
"""The site's zone when no site configuration says otherwise (thresholds/site.yaml): the zone of
times shown, and of the day that places a recognition event in a period."""


def _recognitions(
    conn: Connection, present: frozenset[str], first: dt.date, last: dt.date, zone: dt.tzinfo
) -> list[RecognitionFact]:
    """Recognition events and staff-entered non-recognitions whose local day lies in first..last
    (see :class:`RecognitionFact` for how the two are counted once)."""
    # a UTC window a day wider on each side (no zone is a day off UTC), then the exact local day
    low = dt.datetime.combine(first - dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC)
    high = dt.datetime.combine(last + dt.timedelta(days=2), dt.time.min, tzinfo=dt.UTC)
    out: list[RecognitionFact] = []

    def local_day(value: Any) -> dt.date:
        return _aware(value).astimezone(zone).date()

    events = (
        _reflect(
            conn,
            "recognition_events",
            ("study_instance_uid", "outcome", "reason_code", "receiving_institution", "at", "non_recognition_id"),
        )
        if "recognition_events" in present
        else None
    )
    if events is not None:
        for outcome, reason, receiving, at, institution in conn.execute(
            select(
                events.c.outcome,
                events.c.reason_code,
                events.c.receiving_institution,
                events.c.at,
                StudyRecord.institution,
            )
            .outerjoin(StudyRecord, StudyRecord.study_instance_uid == events.c.study_instance_uid)
            .where(events.c.at >= low, events.c.at < high)
        ):
            day = local_day(at)
            if first <= day <= last:
                out.append(
                    RecognitionFact(day, str(outcome), reason or None, receiving or "", institution or "", "api")
                )
    staff = (
        _reflect(
            conn,
            "non_recognitions",
            ("id", "study_instance_uid", "receiving_institution", "reason_code", "recorded_at"),
        )
        if "non_recognitions" in present
        else None
    )
    if staff is not None:
        query = (
            select(staff.c.receiving_institution, staff.c.reason_code, staff.c.recorded_at, StudyRecord.institution)
            .outerjoin(StudyRecord, StudyRecord.study_instance_uid == staff.c.study_instance_uid)
            .where(staff.c.recorded_at >= low, staff.c.recorded_at < high)
        )
        if events is not None:  # a row written by a posted event is counted with the event
            query = query.where(
                ~select(events.c.non_recognition_id).where(events.c.non_recognition_id == staff.c.id).exists()
            )
        for receiving, reason, at, institution in conn.execute(query):
            day = local_day(at)
            if first <= day <= last:
                out.append(RecognitionFact(day, "not_recognised", reason, receiving or "", institution or "", "staff"))
    return sorted(
        out, key=lambda r: (r.day, r.receiving_institution, r.source_institution, r.outcome, r.reason_code or "")
    )


def _exam_log(conn: Connection, present: frozenset[str], first: dt.date, last: dt.date) -> list[LoggedExam]:
    if EXAM_LOG_TABLE not in present:
        return []
    t = ExamLogEntry
    rows = conn.execute(
        select(t.institution, t.accession_number, t.patient_id, t.item_text, t.modality, t.exam_date, t.exam_time)
        .where(t.exam_date >= first, t.exam_date <= last)
        .order_by(t.institution, t.exam_date, t.entry_key)
    ).all()
    return stored_exams(rows)


def _date(value: Any) -> dt.date:
    return dt.date.fromisoformat(value) if isinstance(value, str) else value


def _reflect(conn: Connection, name: str, columns: Iterable[str]) -> Table | None:
    """The table when it exists with every column named (tables of features that may not be there)."""
    table = Table(name, MetaData(), autoload_with=conn)
    missing = set(columns) - set(table.c.keys())
    if missing:
        logger.warning("table %s lacks columns %s: its section is left out", name, ", ".join(sorted(missing)))
        return None
    return table


def _human_decisions(conn: Connection, present: frozenset[str], study_ids: set[int]) -> list[HumanDecisionFact]:
    if "human_decisions" not in present:
        return []
    t = _reflect(conn, "human_decisions", ("study_id", "machine_verdict", "verdict", "action", "is_current"))
    if t is None:
        return []
    rows = conn.execute(
        select(t.c.study_id, t.c.machine_verdict, t.c.verdict, t.c.action).where(t.c.is_current.is_(True))
    )
    return [HumanDecisionFact(*r) for r in rows if r[0] in study_ids]


def _spot_checks(conn: Connection, present: frozenset[str], period: Period) -> list[SpotCheckFact]:
    """Graded readings of drawn studies whose study date lies in ``period`` (whatever the draws'
    own periods: spot checks are drawn monthly or per half-year)."""
    needed = {"spot_check_cases", "spot_check_assignments", "spot_check_grades"}
    if not needed <= present:
        return []
    cases = _reflect(conn, "spot_check_cases", ("id", "study_id", "institution", "region", "machine_verdict"))
    assignments = _reflect(conn, "spot_check_assignments", ("id", "case_id", "reading", "reviewer_region"))
    grades = _reflect(conn, "spot_check_grades", ("assignment_id", "grade", "recognisable"))
    if cases is None or assignments is None or grades is None:
        return []
    rows = conn.execute(
        select(
            cases.c.study_id,
            cases.c.institution,
            cases.c.region,
            cases.c.machine_verdict,
            assignments.c.reading,
            assignments.c.reviewer_region,
            grades.c.grade,
            grades.c.recognisable,
        )
        .join(StudyRecord, StudyRecord.id == cases.c.study_id)
        .join(assignments, assignments.c.case_id == cases.c.id)
        .join(grades, grades.c.assignment_id == assignments.c.id)
        .where(StudyRecord.study_date >= period.start, StudyRecord.study_date <= period.end)
    ).all()
    facts = [SpotCheckFact(r[0], r[1] or "", r[2] or "", r[3], int(r[4]), r[5] or "", r[6], bool(r[7])) for r in rows]
    return sorted(facts, key=lambda f: (f.institution, f.study_id, f.reading))
