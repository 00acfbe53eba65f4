"""What the review app does with the results database: the queue, claims, human decisions, flags.

No web code here: the FastAPI app (``qc_pipeline.review.app``) and the CLI call these functions,
which take a ``ResultStore`` and plain values and raise ``ReviewError`` (bilingual, with the HTTP
status to answer) when an action cannot be done.

Rules:

- The queue holds the studies whose current machine verdict is ``review`` or ``fail``, and the
  machine passes drawn for a human audit (``finding_review``), that have no standing human
  decision, oldest study date first (unknown dates last). An audit sample keeps its ``pass``
  until a person decides.
- A claim marks who is working on a study, for ``CLAIM_MINUTES``; while it runs, nobody else can
  claim the study or decide on it. Deciding releases it.
- A human decision (``pass`` or ``fail``) reviews the study's current machine decision (its id and
  content fingerprint): it ``confirm``s the machine when the machine said ``fail`` (or ``review``)
  and the human says ``fail``, and ``override``s it otherwise. It stands while the current machine
  decision has the same content fingerprint. A human ``pass`` makes the study eligible until its
  study date plus the site's recognition window (``thresholds/site.yaml``).
- Negative-list flags on studies are withdrawn (the negative list concerns a receiving visit): flags set
  earlier stay readable and can be cleared; they no longer keep a study from recognition.
- Replacing another reviewer's standing decision needs a live claim of one's own on the study;
  releasing another's claim is refused (QC administrators may release any).
- A study is addressed by its ``study_key``: the StudyInstanceUID when it is a valid UID (digits
  and dots), else ``id-<row id>``, so a crafted UID never lands in a URL. A study with an
  invalid UID is shown (its integrity finding says why) but cannot be claimed or decided: the
  UID must be corrected at the source and the study judged again.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, cast

from sqlalchemy import CursorResult, and_, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from qc_pipeline import labels
from qc_pipeline.checks.image_quality import METRIC_UNITS, rules_by_metric
from qc_pipeline.domain import ItemRef, SeriesSummary, Verdict
from qc_pipeline.io.dicom import valid_uid
from qc_pipeline.metrics.registry import format_value
from qc_pipeline.review.accounts import User
from qc_pipeline.review.errors import ReviewError
from qc_pipeline.review.finding_review import (
    FindingReviewConfig,
    audit_sample_ids,
    current_judgements,
    reviewable,
)
from qc_pipeline.review.i18n import DECISION_REASONS
from qc_pipeline.rules import Thresholds, eligibility
from qc_pipeline.rules.evaluate import evaluate
from qc_pipeline.store import ResultStore
from qc_pipeline.store.decisions import stored_series
from qc_pipeline.store.models import DecisionRecord, FindingRecord, StudyRecord
from qc_pipeline.store.read_models import DecisionHistoryEntry, StudyResult
from qc_pipeline.store.review import HumanDecision, NegativeFlag, ReviewClaim, ReviewEvent, ReviewUser

logger = logging.getLogger(__name__)

CLAIM_MINUTES: Final = 30
FLAGGED_VERDICTS: Final = ("review", "fail")
QUEUE_LIMIT: Final = 200
MAX_TEXT: Final = 2000
AI_PREFIX: Final = "ai."
SAFE_KEY: Final = re.compile(r"id-([1-9][0-9]{0,17})")
AUDIT_PAGE_SIZE: Final = 100
HIDDEN_FROM_REVIEWERS: Final = ("source_uri",)
"""Result fields only QC administrators see (a server path is no reviewer's business)."""


def study_key(uid: str, study_id: int) -> str:
    """How URLs name a study: its UID when valid, else ``id-<row id>`` (see the module docstring)."""
    return uid if valid_uid(uid) else f"id-{study_id}"


def for_user(result: dict[str, Any], user: User) -> dict[str, Any]:
    """``result`` without the fields ``user`` does not need (``HIDDEN_FROM_REVIEWERS``)."""
    if user.is_admin:
        return result
    return {k: v for k, v in result.items() if k not in HIDDEN_FROM_REVIEWERS}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class QueueFilters:
    """Queue filters; None means any. ``status``: pending, decided or all; ``verdict``: review,
    fail or None for both."""

    institution: str | None = None
    modality: str | None = None
    item: str | None = None
    category: str | None = None
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    verdict: str | None = None
    status: str = "pending"

    def __post_init__(self) -> None:
        if self.status not in ("pending", "decided", "all"):
            raise ReviewError(f"status must be pending, decided or all; got {self.status!r}", "状态筛选无效")
        if self.verdict is not None and self.verdict not in FLAGGED_VERDICTS:
            raise ReviewError(f"verdict must be review or fail; got {self.verdict!r}", "结论筛选无效")


@dataclass(frozen=True, slots=True)
class QueueRow:
    study_instance_uid: str
    study_key: str
    """What URLs use (``study_key``)."""
    accession_number: str | None
    institution: str | None
    modality: str | None
    study_date: str | None
    item_code: str | None
    item_name_zh: str | None
    item_name_en: str | None
    verdict: str
    decided_at: str
    reasons: list[dict[str, str]]
    claimed_by: str | None
    claim_expires_at: str | None
    human_verdict: str | None
    audit_sample: bool = False
    """A machine pass drawn for a human audit (``finding_review``)."""


@dataclass(frozen=True, slots=True)
class Queue:
    rows: list[QueueRow]
    total: int
    options: dict[str, list[str]] = field(default_factory=dict)


def _claim_live(claim: ReviewClaim | None, now: dt.datetime) -> bool:
    return claim is not None and claim.expires_at > now


def _modality_matches(column: Any, modality: str) -> Any:
    """``modality`` is one of the study's comma-joined modalities (``DX,SR`` matches ``DX``)."""
    return or_(
        column == modality,
        column.like(f"{modality},%"),
        column.like(f"%,{modality}"),
        column.like(f"%,{modality},%"),
    )


def queue(
    store: ResultStore, filters: QueueFilters, *, limit: int = QUEUE_LIMIT, audit: FindingReviewConfig | None = None
) -> Queue:
    """The studies to review (see the module docstring), at most ``limit``, with the filter options;
    ``audit`` draws the audit samples of machine passes (None: none)."""
    now = _now()
    standing = and_(
        HumanDecision.study_id == DecisionRecord.study_id,
        HumanDecision.is_current.is_(True),
        HumanDecision.content_fingerprint == DecisionRecord.content_fingerprint,
    )
    verdicts = FLAGGED_VERDICTS if filters.verdict is None else (filters.verdict,)
    conditions: list[Any] = [DecisionRecord.is_current.is_(True)]
    if filters.status == "pending":
        conditions.append(HumanDecision.id.is_(None))
    elif filters.status == "decided":
        conditions.append(HumanDecision.id.is_not(None))
    if filters.institution:
        conditions.append(StudyRecord.institution == filters.institution)
    if filters.modality:
        conditions.append(_modality_matches(StudyRecord.modality, filters.modality))
    if filters.item:
        conditions.append(DecisionRecord.item_code == filters.item)
    if filters.category:
        conditions.append(
            select(FindingRecord.id)
            .where(
                FindingRecord.decision_id == DecisionRecord.id,
                FindingRecord.category == filters.category,
                FindingRecord.severity != "info",
            )
            .exists()
        )
    if filters.date_from:
        conditions.append(StudyRecord.study_date >= filters.date_from)
    if filters.date_to:
        conditions.append(StudyRecord.study_date <= filters.date_to)
    base = (
        select(DecisionRecord, StudyRecord, HumanDecision.verdict)
        .join(StudyRecord, StudyRecord.id == DecisionRecord.study_id)
        .outerjoin(HumanDecision, standing)
        .where(*conditions)
    )
    with store.reading("read the review queue") as session:
        audited = set(audit_sample_ids(session, audit)) if filters.verdict is None else set()
        flagged = DecisionRecord.verdict.in_(verdicts)
        base = base.where(or_(flagged, DecisionRecord.study_id.in_(sorted(audited))) if audited else flagged)
        total = session.scalar(select(func.count()).select_from(base.subquery())) or 0
        rows = session.execute(
            base.options(selectinload(DecisionRecord.findings))
            .order_by(
                StudyRecord.study_date.is_(None),
                StudyRecord.study_date,
                DecisionRecord.decided_at,
                StudyRecord.study_instance_uid,
            )
            .limit(limit)
        ).all()
        claims = {
            c.study_id: (c, name)
            for c, name in session.execute(
                select(ReviewClaim, ReviewUser.username)
                .join(ReviewUser, ReviewUser.id == ReviewClaim.user_id)
                .where(ReviewClaim.study_id.in_([s.id for _d, s, _h in rows]))
            ).all()
        }
        options = _queue_options(session)
    out = []
    for d, s, human_verdict in rows:
        claim, claimer = claims.get(s.id, (None, None))
        live = _claim_live(claim, now)
        out.append(
            QueueRow(
                study_instance_uid=s.study_instance_uid,
                study_key=study_key(s.study_instance_uid, s.id),
                accession_number=s.accession_number,
                institution=s.institution,
                modality=s.modality,
                study_date=None if s.study_date is None else s.study_date.isoformat(),
                item_code=d.item_code,
                item_name_zh=d.item_name_zh,
                item_name_en=d.item_name_en,
                verdict=d.verdict,
                decided_at=d.decided_at.isoformat(),
                reasons=[
                    {"severity": f.severity, "category": f.category, "message": f.message, "message_zh": f.message_zh}
                    for f in sorted(
                        (f for f in d.findings if f.severity != "info"), key=lambda f: (f.severity != "fail", f.ordinal)
                    )[:3]
                ],
                claimed_by=claimer if live else None,
                claim_expires_at=claim.expires_at.isoformat() if live and claim is not None else None,
                human_verdict=human_verdict,
                audit_sample=s.id in audited and d.verdict == "pass",
            )
        )
    return Queue(rows=out, total=int(total), options=options)


def _queue_options(session: Session) -> dict[str, list[str]]:
    """Values the queue filters offer: those of the flagged studies."""
    flagged = (
        select(StudyRecord.institution, StudyRecord.modality, DecisionRecord.item_code)
        .join(DecisionRecord, DecisionRecord.study_id == StudyRecord.id)
        .where(DecisionRecord.is_current.is_(True), DecisionRecord.verdict.in_(FLAGGED_VERDICTS))
        .distinct()
    )
    institutions: set[str] = set()
    modalities: set[str] = set()
    items: set[str] = set()
    for institution, modality, item in session.execute(flagged).all():
        if institution:
            institutions.add(institution)
        modalities.update(m for m in (modality or "").split(",") if m)
        if item:
            items.add(item)
    return {"institutions": sorted(institutions), "modalities": sorted(modalities), "items": sorted(items)}


# -- one study ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MetricRow:
    metric: str
    label_en: str
    label_zh: str
    value: str
    unit: str
    series_instance_uid: str | None
    limits: str
    """E.g. ``≤ 35 (review), ≤ 55 (fail)``; empty when no rule applies."""
    limits_zh: str
    beyond: str | None
    """The worst severity of a limit the value is beyond, else None."""
    mark: str = ""
    """``!`` beyond a review limit, ``!!`` beyond a fail limit (as the command-line table marks it)."""

    @property
    def judged(self) -> bool:
        """Whether a limit applied to the value (it decided something, pass or not)."""
        return bool(self.limits)


@dataclass(frozen=True, slots=True)
class MetricGroup:
    """The metrics of one series (``series`` None: the study's own, e.g. the upload delay)."""

    series: SeriesSummary | None
    series_instance_uid: str | None
    judged: tuple[MetricRow, ...]
    """Values a limit applied to, worst first (fail, review, within)."""
    other: tuple[MetricRow, ...]
    """Measured but not judged here: shown folded."""


_BEYOND_ORDER: Final = {"fail": 0, "review": 1, None: 2}


def metric_groups(rows: Sequence[MetricRow], series: Sequence[SeriesSummary]) -> list[MetricGroup]:
    """``rows`` per series in series-number order (the study's own values first), judged ones
    apart from the rest."""
    by_uid = {s.series_instance_uid: s for s in series}
    order: list[str | None] = []
    for row in rows:
        if row.series_instance_uid not in order:
            order.append(row.series_instance_uid)

    def place(uid: str | None) -> tuple[int, float, str]:
        if uid is None:
            return (0, 0.0, "")
        found = by_uid.get(uid)
        number = found.series_number if found is not None and found.series_number is not None else float("inf")
        return (1, float(number), uid)

    groups = []
    for uid in sorted(order, key=place):
        mine = [r for r in rows if r.series_instance_uid == uid]
        judged = sorted((r for r in mine if r.judged), key=lambda r: _BEYOND_ORDER.get(r.beyond, 2))
        groups.append(
            MetricGroup(by_uid.get(uid) if uid else None, uid, tuple(judged), tuple(r for r in mine if not r.judged))
        )
    return groups


@dataclass(frozen=True, slots=True)
class StudyView:
    """Everything the study page shows."""

    result: dict[str, Any]
    """The JSON form (``StudyResult.as_dict()``, as ``ResultStore.results`` gives it): machine verdict,
    findings, human decision, flags, eligibility; the page, the JSON API and the viewer link read it."""
    study_id: int
    decision_id: int
    history: list[DecisionHistoryEntry]
    metric_rows: list[MetricRow]
    ai_scores: list[dict[str, Any]]
    item_findings: list[dict[str, Any]]
    claimed_by: str | None
    claim_expires_at: str | None
    patient: dict[str, str | None]
    series: tuple[SeriesSummary, ...] = ()
    """Each series with the role the checks read in it (MR sequence, CT phase, DR view)."""
    audit_sample: bool = False
    """A machine pass drawn for a human audit: it may be claimed and decided like a flagged study."""
    finding_items: tuple[dict[str, Any], ...] = ()
    """The review/fail findings a reviewer judges one by one: ``id``, ``code``, ``severity``,
    ``category``, ``message``, ``message_zh``, ``series_instance_uid``, ``implied`` (the artifact the
    code implies) and ``judgement`` (the current one, or None)."""

    @property
    def study_key(self) -> str:
        return study_key(self.result["study_instance_uid"], self.study_id)

    @property
    def metric_groups(self) -> list[MetricGroup]:
        return metric_groups(self.metric_rows, self.series)

    def series_of(self, uid: str | None) -> SeriesSummary | None:
        return next((s for s in self.series if s.series_instance_uid == uid), None)

    @property
    def decided(self) -> bool:
        """Whether a radiologist's decision stands on the study's current content."""
        return self.result.get("human_decision") is not None

    @property
    def actionable(self) -> bool:
        """Whether the study may be claimed, decided or flagged (its UID is valid)."""
        return valid_uid(self.result["study_instance_uid"])

    @property
    def decidable(self) -> bool:
        return self.actionable and (self.result["verdict"] in FLAGGED_VERDICTS or self.audit_sample)


def _ids(session: Session, key: str) -> tuple[StudyRecord, DecisionRecord]:
    """The study named by ``key`` (a ``study_key``, or the raw StudyInstanceUID) and its current
    machine decision; ReviewError 404 when there is none."""
    safe = SAFE_KEY.fullmatch(key)
    where = StudyRecord.id == int(safe[1]) if safe else StudyRecord.study_instance_uid == key
    row = session.execute(
        select(StudyRecord, DecisionRecord)
        .join(DecisionRecord, DecisionRecord.study_id == StudyRecord.id)
        .where(where, DecisionRecord.is_current.is_(True))
    ).one_or_none()
    if row is None:
        raise ReviewError(f"no study {key!r} in the results database", "结果库中没有该检查", status=404)
    return row[0], row[1]


def _actionable(study: StudyRecord) -> None:
    if not valid_uid(study.study_instance_uid):
        raise ReviewError(
            "the StudyInstanceUID of this study is not a valid DICOM UID: correct it at the source and judge the "
            "study again; it cannot be claimed or decided here",
            "该检查的 StudyInstanceUID 不是合法的 DICOM UID：请在源头更正后重新质控；此处不能认领或复核",
            status=409,
        )


def study_view(
    store: ResultStore, thresholds: Thresholds, key: str, *, review_config: FindingReviewConfig | None = None
) -> StudyView:
    """The study page's content (``key``: see ``_ids``); ReviewError (404) for an unknown study.
    ``review_config`` gives the audit draw and the artifacts findings imply (None: no audit)."""
    with store.reading("read a study") as session:
        study, decision = _ids(session, key)
        judged = current_judgements(session, decision.id)
        findings = reviewable(
            session.scalars(
                select(FindingRecord).where(FindingRecord.decision_id == decision.id).order_by(FindingRecord.ordinal)
            ).all()
        )
        items = tuple(
            {
                "id": f.id,
                "code": f.code,
                "severity": f.severity,
                "category": f.category,
                "message": f.message,
                "message_zh": f.message_zh,
                "series_instance_uid": f.series_instance_uid,
                "implied": review_config.implied_artifact(f.code) if review_config is not None else "other",
                "judgement": judged.get(f.id),
            }
            for f in sorted(findings, key=lambda f: (f.severity != "fail", f.ordinal))
        )
        audit = (
            decision.verdict == "pass"
            and review_config is not None
            and review_config.is_audit_sample(study.study_instance_uid)
        )
        uid = study.study_instance_uid
        series = stored_series(decision.series, uid)
        claim_row = session.execute(
            select(ReviewClaim, ReviewUser.username)
            .join(ReviewUser, ReviewUser.id == ReviewClaim.user_id)
            .where(ReviewClaim.study_id == study.id)
        ).one_or_none()
    (stored,) = store.study_results(study_instance_uid=uid)
    result = stored.as_dict()
    live = claim_row is not None and _claim_live(claim_row[0], _now())
    values = _metric_values(stored)
    return StudyView(
        result=result,
        study_id=study.id,
        decision_id=decision.id,
        history=store.history(uid),
        metric_rows=metric_rows(
            thresholds, stored.modality, stored.item, [v for v in values if not v.metric.startswith(AI_PREFIX)]
        ),
        ai_scores=[
            {"metric": v.metric, "value": v.value, "series_instance_uid": v.series_instance_uid}
            for v in values
            if v.metric.startswith(AI_PREFIX)
        ],
        item_findings=[f for f in result["findings"] if f["category"] == "catalog"],
        claimed_by=claim_row[1] if live and claim_row is not None else None,
        claim_expires_at=claim_row[0].expires_at.isoformat() if live and claim_row is not None else None,
        patient={
            "id": stored.patient_id,
            "sex": study.patient_sex,
            "birth_date": None if study.patient_birth_date is None else study.patient_birth_date.isoformat(),
        },
        series=series,
        audit_sample=audit,
        finding_items=items,
    )


@dataclass(frozen=True, slots=True)
class MetricValue:
    """One stored number of a study: a series' measurement, or a study-level metric (no series)."""

    metric: str
    value: float
    series_instance_uid: str | None


def _metric_values(stored: StudyResult) -> list[MetricValue]:
    """The study's measurements (per series), then its study-level metrics, in the stored order."""
    return [MetricValue(m.metric, m.value, m.series_instance_uid) for m in stored.measurements] + [
        MetricValue(name, value, None) for name, value in stored.metrics.items()
    ]


def metric_rows(
    thresholds: Thresholds, modality: str | None, item: ItemRef | None, values: Sequence[MetricValue]
) -> list[MetricRow]:
    """Each measured value beside the limits that apply to the study's modality and item."""
    rules = rules_by_metric(thresholds)
    item_code = None if item is None else item.code
    rows = []
    for m in values:
        judged = evaluate(rules.get(m.metric, []), m.metric, m.value, modality=modality or "", item_code=item_code)
        en, zh = labels.metric_label(m.metric, "en"), labels.metric_label(m.metric, "zh")
        rows.append(
            MetricRow(
                metric=m.metric,
                label_en=en,
                label_zh=zh,
                value=format_value(m.metric, m.value, limit=None if judged.fired is None else judged.fired.value),
                unit=METRIC_UNITS.get(m.metric, ""),
                series_instance_uid=m.series_instance_uid,
                limits=judged.limits_text(),
                limits_zh=judged.limits_text({k: zh for k, (zh, _en) in labels.SEVERITIES.items()}, sep="，"),
                beyond=None if judged.severity is None else str(judged.severity),
                mark=judged.mark,
            )
        )
    return rows


# -- claims ------------------------------------------------------------------------------------


def _audit(session: Session, user: User | None, event: str, study_id: int | None, detail: str | None = None) -> None:
    session.add(
        ReviewEvent(
            at=_now(),
            user_id=None if user is None else user.id,
            username=None if user is None else user.username,
            event=event,
            study_id=study_id,
            detail=detail,
            client=None if user is None or user.client is None else user.client[:64],
        )
    )


def holds_claim(session: Session, study_id: int, user: User, now: dt.datetime) -> bool:
    """Whether ``user`` holds a live claim on the study."""
    claim_row = session.scalars(select(ReviewClaim).where(ReviewClaim.study_id == study_id)).one_or_none()
    return claim_row is not None and claim_row.user_id == user.id and _claim_live(claim_row, now)


def _claimed_by_other(session: Session, study_id: int, user: User, now: dt.datetime) -> str | None:
    row = session.execute(
        select(ReviewClaim, ReviewUser.username)
        .join(ReviewUser, ReviewUser.id == ReviewClaim.user_id)
        .where(ReviewClaim.study_id == study_id)
    ).one_or_none()
    if row is None or row[0].user_id == user.id or not _claim_live(row[0], now):
        return None
    return str(row[1])


def _busy(name: str) -> ReviewError:
    return ReviewError(
        f"{name} is reviewing this study; wait until they finish or their claim expires",
        f"{name} 正在复核此检查，请等待其完成或认领过期",
        status=409,
    )


def claim(store: ResultStore, uid: str, user: User) -> dt.datetime:
    """Claim a study for ``CLAIM_MINUTES`` (renewing one's own claim); returns when it expires.

    ReviewError 409 when another reviewer holds a live claim (two racing claims: one wins).
    """
    now = _now()
    expires = now + dt.timedelta(minutes=CLAIM_MINUTES)
    try:
        with store.writing("claim a study") as session:
            study, _decision = _ids(session, uid)
            _actionable(study)
            other = _claimed_by_other(session, study.id, user, now)
            if other is not None:
                raise _busy(other)
            existing = session.scalars(select(ReviewClaim).where(ReviewClaim.study_id == study.id)).one_or_none()
            if existing is None:
                session.add(ReviewClaim(study_id=study.id, user_id=user.id, claimed_at=now, expires_at=expires))
            else:
                existing.user_id, existing.claimed_at, existing.expires_at = user.id, now, expires
            _audit(session, user, "claim", study.id)
    except IntegrityError as exc:  # another reviewer inserted the first claim meanwhile
        raise ReviewError(
            "another reviewer claimed this study a moment ago", "其他医师刚刚认领了此检查", status=409
        ) from exc
    logger.info("study %s claimed by %s", study_key(study.study_instance_uid, study.id), user.username)
    return expires


def release(store: ResultStore, uid: str, user: User) -> None:
    """Release one's own claim (a QC administrator may release anyone's).

    ReviewError 403 when another reviewer holds the claim (it stays), 409 when there is none.
    """
    with store.writing("release a claim") as session:
        study, _decision = _ids(session, uid)
        row = session.execute(
            select(ReviewClaim, ReviewUser.username)
            .join(ReviewUser, ReviewUser.id == ReviewClaim.user_id)
            .where(ReviewClaim.study_id == study.id)
        ).one_or_none()
        if row is None or not _claim_live(row[0], _now()):
            raise ReviewError("nobody holds a claim on this study", "此检查当前无人认领", status=409)
        if row[0].user_id != user.id and not user.is_admin:
            raise ReviewError(
                f"the claim is {row[1]}'s: only they or a QC administrator can release it",
                f"该认领属于 {row[1]}，仅本人或质控管理员可释放",
                status=403,
            )
        session.execute(delete(ReviewClaim).where(ReviewClaim.id == row[0].id))
        _audit(session, user, "release", study.id, None if row[0].user_id == user.id else f"claim of {row[1]}")


# -- decisions ---------------------------------------------------------------------------------


def action_for(machine_verdict: str, human_verdict: str) -> str:
    """``confirm`` when the human agrees with the machine (a machine ``review`` is confirmed by a
    human ``fail``: the flagged problem is real), else ``override``."""
    agrees = human_verdict == ("fail" if machine_verdict in FLAGGED_VERDICTS else machine_verdict)
    return "confirm" if agrees else "override"


def _clean_text(text: str | None, limit: int = MAX_TEXT) -> str:
    cleaned = " ".join((text or "").split())
    if len(cleaned) > limit:
        raise ReviewError(f"the text has {len(cleaned)} characters; at most {limit}", f"说明最多 {limit} 个字符")
    return cleaned


def decide(
    store: ResultStore,
    thresholds: Thresholds,
    uid: str,
    user: User,
    *,
    verdict: str,
    reason_code: str,
    reason_text: str | None,
    decision_id: int | None = None,
    review_config: FindingReviewConfig | None = None,
) -> dict[str, Any]:
    """Record a human decision on the study's current machine decision; returns it as a dict.

    ``decision_id``, when given, is the machine decision the reviewer saw: if the study was judged
    again since, ReviewError 409 asks them to look again. An override, and the reason ``other``,
    need an explanation. A machine ``pass`` is decided only when ``review_config`` draws it as an
    audit sample.
    """
    if verdict not in ("pass", "fail"):
        raise ReviewError(f"the decision must be pass or fail; got {verdict!r}", "复核结论须为合格或不合格")
    if reason_code not in DECISION_REASONS:
        raise ReviewError(f"unknown reason code {reason_code!r}; one of {', '.join(DECISION_REASONS)}", "理由代码无效")
    text = _clean_text(reason_text)
    now = _now()
    with store.writing("save a human decision") as session:
        study, machine = _ids(session, uid)
        _actionable(study)
        if decision_id is not None and decision_id != machine.id:
            raise ReviewError(
                "the study was judged again since you opened it; look at the new verdict and decide again",
                "打开页面后该检查已被重新质控，请查看新结论后再复核",
                status=409,
            )
        audit = (
            machine.verdict == "pass"
            and review_config is not None
            and review_config.is_audit_sample(study.study_instance_uid)
        )
        if machine.verdict not in FLAGGED_VERDICTS and not audit:
            raise ReviewError(
                f"the machine verdict is {machine.verdict}: only review and fail studies are reviewed (and audit samples of passes)",
                "仅待复核和不合格的检查需要人工复核",
                status=409,
            )
        action = action_for(machine.verdict, verdict)
        if not text and (action == "override" or reason_code == "other"):
            raise ReviewError(
                "an override (or the reason 'other') needs an explanation", "改判或选择“其他”理由时须填写说明"
            )
        other = _claimed_by_other(session, study.id, user, now)
        if other is not None:
            raise _busy(other)
        _may_replace(session, study.id, machine, user, now)
        modalities = tuple(m for m in (study.modality or "").split(",") if m)
        eligible, until = (
            eligibility(
                Verdict.PASS, study_date=study.study_date, modalities=modalities, config=thresholds.site.eligibility
            )
            if verdict == "pass"
            else (False, None)
        )
        session.execute(
            update(HumanDecision)
            .where(HumanDecision.study_id == study.id, HumanDecision.is_current.is_(True))
            .values(is_current=False, superseded_at=now)
            .execution_options(synchronize_session=False)
        )
        row = HumanDecision(
            study_id=study.id,
            decision_id=machine.id,
            content_fingerprint=machine.content_fingerprint,
            machine_verdict=machine.verdict,
            verdict=verdict,
            action=action,
            reason_code=reason_code,
            reason_text=text,
            user_id=user.id,
            decided_at=now,
            eligible=eligible,
            eligible_until=until,
            is_current=True,
        )
        session.add(row)
        session.execute(delete(ReviewClaim).where(ReviewClaim.study_id == study.id))
        _audit(session, user, "decision", study.id, f"{action} {machine.verdict}->{verdict} ({reason_code})")
    logger.info(
        "study %s: human decision %s (%s) by %s",
        study_key(study.study_instance_uid, study.id),
        verdict,
        action,
        user.username,
    )
    (result,) = store.results(study_instance_uid=study.study_instance_uid)
    return for_user(result, user)


def _may_replace(session: Session, study_id: int, machine: DecisionRecord, user: User, now: dt.datetime) -> None:
    """Refuse to replace another reviewer's standing decision unless ``user`` holds a live claim."""
    standing = session.execute(
        select(HumanDecision.user_id, ReviewUser.username)
        .join(ReviewUser, ReviewUser.id == HumanDecision.user_id)
        .where(
            HumanDecision.study_id == study_id,
            HumanDecision.is_current.is_(True),
            HumanDecision.content_fingerprint == machine.content_fingerprint,
        )
    ).one_or_none()
    if standing is None or standing[0] == user.id:
        return
    if not holds_claim(session, study_id, user, now):
        raise ReviewError(
            f"{standing[1]} decided this study already: claim it first to replace their decision",
            f"{standing[1]} 已对此检查作出复核结论：如需改判，请先认领",
            status=409,
        )


# -- negative-list flags -------------------------------------------------------------------------


def _require_admin(user: User) -> None:
    if not user.is_admin:
        raise ReviewError(
            "only QC administrators set or clear negative-list flags", "仅质控管理员可设置或取消负面清单", status=403
        )


FLAGS_WITHDRAWN_EN: Final = (
    "study-level negative-list flags are withdrawn: the ten situations of the Yubei plan §4(三) concern a "
    "receiving visit, not the study; the receiving hospital records a non-recognition for that visit"
)
FLAGS_WITHDRAWN_ZH: Final = (
    "负面清单（渝北方案第四条第（三）项）针对接诊时的复查，不再标记检查本身；由接诊医院就该次就诊记录不予互认"
)


def set_flag(store: ResultStore, uid: str, user: User, *, reason_code: str, note: str | None) -> None:
    """Withdrawn (410): a negative-list reason belongs to a receiving visit and is recorded with
    ``qc_pipeline.store.review.record_non_recognition``; flags set earlier stay readable and can
    be cleared."""
    del store, uid, note, reason_code
    _require_admin(user)
    raise ReviewError(FLAGS_WITHDRAWN_EN, FLAGS_WITHDRAWN_ZH, status=410)


def clear_flag(store: ResultStore, uid: str, user: User, *, reason_code: str) -> None:
    """Take a study off the negative list for ``reason_code`` (the flag is kept, as cleared)."""
    _require_admin(user)
    with store.writing("clear a flag") as session:
        study, _decision = _ids(session, uid)
        done = cast(
            "CursorResult[Any]",
            session.execute(
                update(NegativeFlag)
                .where(
                    NegativeFlag.study_id == study.id,
                    NegativeFlag.reason_code == reason_code,
                    NegativeFlag.cleared_at.is_(None),
                )
                .values(cleared_at=_now(), cleared_by=user.id)
            ),
        ).rowcount
        if not done:
            raise ReviewError(f"the study has no active flag {reason_code!r}", "该检查没有此负面清单标记", status=404)
        _audit(session, user, "unflag", study.id, reason_code)


@dataclass(frozen=True, slots=True)
class AuditFilters:
    """Audit filters; None means any. ``username`` matches exactly; ``day_from``/``day_to`` are
    UTC dates, both included; ``page`` counts from 1."""

    event: str | None = None
    username: str | None = None
    day_from: dt.date | None = None
    day_to: dt.date | None = None
    page: int = 1

    def __post_init__(self) -> None:
        if self.page < 1:
            raise ReviewError(f"page must be 1 or more; got {self.page}", "页码须大于等于 1")


@dataclass(frozen=True, slots=True)
class AuditPage:
    events: list[dict[str, Any]]
    total: int
    page: int
    pages: int
    event_names: list[str]


def audit_events(
    store: ResultStore, filters: AuditFilters = AuditFilters(), *, per_page: int = AUDIT_PAGE_SIZE
) -> AuditPage:
    """One page of audit events matching ``filters``, newest first, with the total count."""
    conditions: list[Any] = []
    if filters.event:
        conditions.append(ReviewEvent.event == filters.event)
    if filters.username:
        conditions.append(ReviewEvent.username == filters.username)
    if filters.day_from:
        conditions.append(ReviewEvent.at >= dt.datetime.combine(filters.day_from, dt.time(), dt.UTC))
    if filters.day_to:
        conditions.append(
            ReviewEvent.at < dt.datetime.combine(filters.day_to + dt.timedelta(days=1), dt.time(), dt.UTC)
        )
    with store.reading("read the review audit") as session:
        total = session.scalar(select(func.count(ReviewEvent.id)).where(*conditions)) or 0
        rows = session.execute(
            select(ReviewEvent, StudyRecord.study_instance_uid)
            .outerjoin(StudyRecord, StudyRecord.id == ReviewEvent.study_id)
            .where(*conditions)
            .order_by(ReviewEvent.at.desc(), ReviewEvent.id.desc())
            .offset((filters.page - 1) * per_page)
            .limit(per_page)
        ).all()
        names = sorted(session.scalars(select(ReviewEvent.event).distinct()).all())
    events = [
        {
            "at": e.at.isoformat(timespec="seconds"),
            "username": e.username,
            "event": e.event,
            "client": e.client,
            "study_instance_uid": uid,
            "study_key": None if uid is None else study_key(uid, e.study_id),
            "detail": e.detail,
        }
        for e, uid in rows
    ]
    return AuditPage(events, int(total), filters.page, max(1, -(-int(total) // per_page)), names)
