"""Tables of radiologist review: accounts, claims, human decisions, negative-list flags, audit.

ORM classes here derive from qc_pipeline.store.models.Base; qc_pipeline.store imports this
module so that Base.metadata is complete for the migration test. The schema itself is created
by the hand-written migration ``0004_review.py``; keep the two in step.

A human decision reviews one machine decision (``decision_id``) of a study and records the
content fingerprint that decision judged. It stands while the study's current machine decision
has the same fingerprint (a re-scoring of unchanged content keeps it); when the content changed,
it no longer stands and the study returns to the queue. ``human_overlay`` gives, per study, the
standing human decision and the active negative-list flags: what ``ResultStore.results`` shows
beside the machine verdict.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Boolean, Date, ForeignKey, Index, Integer, String, Text, select, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from qc_pipeline.store.models import FINGERPRINT_LENGTH, Base, DecisionRecord, StudyRecord

ROLES: Final = ("reviewer", "qc_admin", "grader")
"""``reviewer`` decides on studies; ``qc_admin`` also sets negative-list flags and sees the audit;
``grader`` grades the blinded spot-check cases assigned to it and sees nothing else (no queue, no
study, no study API): a grader who could open studies could unblind its cases."""

CURRENT_HUMAN_DECISION_INDEX: Final = "uq_human_decisions_current_study"
ACTIVE_FLAG_INDEX: Final = "uq_negative_flags_active_study_reason"


class ReviewUser(Base):
    """An account of the review app. Passwords are stored as argon2id hashes only."""

    __tablename__ = "review_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str | None] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[dt.datetime]
    password_changed_at: Mapped[dt.datetime]


class ReviewClaim(Base):
    """Who is working on a study now: at most one claim per study, until ``expires_at``."""

    __tablename__ = "review_claims"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("review_users.id"), index=True)
    claimed_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]


class HumanDecision(Base):
    """A radiologist's decision on a study; the latest one per study has ``is_current`` set."""

    __tablename__ = "human_decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    decision_id: Mapped[int] = mapped_column(ForeignKey("decisions.id"), index=True)
    """The machine decision that was reviewed."""
    content_fingerprint: Mapped[str] = mapped_column(String(FINGERPRINT_LENGTH))
    """The content that machine decision judged: the human decision stands while it is current."""
    machine_verdict: Mapped[str] = mapped_column(String(32))
    verdict: Mapped[str] = mapped_column(String(32))
    """``pass`` or ``fail``."""
    action: Mapped[str] = mapped_column(String(16))
    """``confirm`` (agrees with the machine) or ``override``."""
    reason_code: Mapped[str] = mapped_column(String(64))
    reason_text: Mapped[str] = mapped_column(Text)
    user_id: Mapped[int] = mapped_column(ForeignKey("review_users.id"), index=True)
    decided_at: Mapped[dt.datetime]
    eligible: Mapped[bool] = mapped_column(Boolean)
    eligible_until: Mapped[dt.date | None] = mapped_column(Date)
    is_current: Mapped[bool] = mapped_column(Boolean)
    superseded_at: Mapped[dt.datetime | None]

    __table_args__ = (
        Index(
            CURRENT_HUMAN_DECISION_INDEX,
            "study_id",
            unique=True,
            sqlite_where=text("is_current = 1"),
            postgresql_where=text("is_current"),
        ),
    )


class NegativeFlag(Base):
    """A study-level negative-list flag set by a QC administrator before migration 0011. No longer
    set and no longer withdrawing the study (the negative list concerns a receiving visit,
    ``NonRecognition``); old rows stay readable and can be cleared."""

    __tablename__ = "negative_flags"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    reason_code: Mapped[str] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(Text)
    set_by: Mapped[int] = mapped_column(ForeignKey("review_users.id"))
    set_at: Mapped[dt.datetime]
    cleared_by: Mapped[int | None] = mapped_column(ForeignKey("review_users.id"))
    cleared_at: Mapped[dt.datetime | None]

    __table_args__ = (
        Index(
            ACTIVE_FLAG_INDEX,
            "study_id",
            "reason_code",
            unique=True,
            sqlite_where=text("cleared_at IS NULL"),
            postgresql_where=text("cleared_at IS NULL"),
        ),
    )


class ReviewEvent(Base):
    """Audit trail of the review app: sign-ins (failed ones too), claims, decisions, flags.

    ``detail`` never holds patient names or IDs.
    """

    __tablename__ = "review_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("review_users.id"))
    username: Mapped[str | None] = mapped_column(String(64))
    event: Mapped[str] = mapped_column(String(32))
    study_id: Mapped[int | None] = mapped_column(ForeignKey("studies.id"), index=True)
    detail: Mapped[str | None] = mapped_column(Text)
    client: Mapped[str | None] = mapped_column(String(64))
    """The client address the request came from (None for the command line)."""


class ReviewSession(Base):
    """A signed-in session of the review app, server side: the signed cookie carries only the id
    (a random token, stored as its SHA-256). Signing out or the end of the absolute lifetime ends
    it for good, so a copied or replayed cookie is worth nothing afterwards."""

    __tablename__ = "review_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("review_users.id"), index=True)
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]
    """Absolute end: no activity extends it."""
    ended_at: Mapped[dt.datetime | None]
    client: Mapped[str | None] = mapped_column(String(64))


@dataclass(frozen=True, slots=True)
class Overlay:
    """What people decided on a study, as it weighs on its current machine decision."""

    human: dict[str, Any] | None
    """The standing human decision (None when there is none, or it reviewed other content)."""
    flags: list[dict[str, Any]]
    """Active negative-list flags."""


def human_decision_dict(h: HumanDecision, username: str | None, *, stands: bool) -> dict[str, Any]:
    return {
        "verdict": h.verdict,
        "action": h.action,
        "reason_code": h.reason_code,
        "reason_text": h.reason_text,
        "reviewer": username,
        "decided_at": h.decided_at.isoformat(),
        "machine_verdict": h.machine_verdict,
        "machine_decision_id": h.decision_id,
        "content_fingerprint": h.content_fingerprint,
        "eligible": h.eligible,
        "eligible_until": None if h.eligible_until is None else h.eligible_until.isoformat(),
        "is_current": h.is_current,
        "stands": stands,
    }


def flag_dict(f: NegativeFlag, username: str | None) -> dict[str, Any]:
    return {
        "reason_code": f.reason_code,
        "note": f.note,
        "set_by": username,
        "set_at": f.set_at.isoformat(),
    }


def human_overlay(session: Session, study_ids: Iterable[int]) -> dict[int, Overlay]:
    """Standing human decision and active flags of each study (studies with neither are left out)."""
    ids = sorted(set(study_ids))
    if not ids:
        return {}
    humans: dict[int, dict[str, Any]] = {}
    flags: dict[int, list[dict[str, Any]]] = {}
    for chunk in (ids[i : i + 500] for i in range(0, len(ids), 500)):
        rows = session.execute(
            select(HumanDecision, ReviewUser.username, DecisionRecord.content_fingerprint)
            .join(ReviewUser, ReviewUser.id == HumanDecision.user_id)
            .join(
                DecisionRecord,
                (DecisionRecord.study_id == HumanDecision.study_id) & DecisionRecord.is_current.is_(True),
            )
            .where(HumanDecision.study_id.in_(chunk), HumanDecision.is_current.is_(True))
        ).all()
        for h, username, current_fingerprint in rows:
            if h.content_fingerprint == current_fingerprint:
                humans[h.study_id] = human_decision_dict(h, username, stands=True)
        for f, username in session.execute(
            select(NegativeFlag, ReviewUser.username)
            .join(ReviewUser, ReviewUser.id == NegativeFlag.set_by)
            .where(NegativeFlag.study_id.in_(chunk), NegativeFlag.cleared_at.is_(None))
            .order_by(NegativeFlag.set_at, NegativeFlag.id)
        ).all():
            flags.setdefault(f.study_id, []).append(flag_dict(f, username))
    return {
        sid: Overlay(human=humans.get(sid), flags=flags.get(sid, [])) for sid in ids if sid in humans or sid in flags
    }


def effective_eligibility(
    machine_eligible: bool, machine_until: dt.date | None, overlay: Overlay | None
) -> tuple[bool, dt.date | None, str]:
    """``(eligible, eligible_until, basis)`` after people have had their say.

    A standing human decision (``human``); else the machine verdict (``machine``). Study-level
    negative-list flags set before migration 0011 are shown but no longer withdraw the study: the
    negative list concerns a receiving visit (``record_non_recognition``), not the study.
    """
    if overlay is not None and overlay.human is not None:
        until = overlay.human["eligible_until"]
        return bool(overlay.human["eligible"]), None if until is None else dt.date.fromisoformat(until), "human"
    return machine_eligible, machine_until, "machine"


def human_history(session: Session, study_id: int) -> dict[int, list[dict[str, Any]]]:
    """Every human decision on a study, by the machine decision it reviewed, oldest first."""
    current = session.scalar(
        select(DecisionRecord.content_fingerprint).where(
            DecisionRecord.study_id == study_id, DecisionRecord.is_current.is_(True)
        )
    )
    out: dict[int, list[dict[str, Any]]] = {}
    for h, username in session.execute(
        select(HumanDecision, ReviewUser.username)
        .join(ReviewUser, ReviewUser.id == HumanDecision.user_id)
        .where(HumanDecision.study_id == study_id)
        .order_by(HumanDecision.id)
    ).all():
        stands = h.is_current and h.content_fingerprint == current
        out.setdefault(h.decision_id, []).append(human_decision_dict(h, username, stands=stands))
    return out


class NonRecognition(Base):
    """A receiving hospital did not recognise a result and re-examined, for one of the ten
    situations of the Yubei plan §4(三) (``reason_code``, ``thresholds/negative_list.yaml``).
    It concerns that receiving visit: the study itself stays recognisable for other visits."""

    __tablename__ = "non_recognitions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int | None] = mapped_column(ForeignKey("studies.id"))
    study_instance_uid: Mapped[str] = mapped_column(String(64), index=True)
    receiving_institution: Mapped[str] = mapped_column(Text)
    reason_code: Mapped[str] = mapped_column(String(48))
    note: Mapped[str | None] = mapped_column(Text)
    recorded_by: Mapped[str] = mapped_column(Text)
    recorded_at: Mapped[dt.datetime]


def record_non_recognition(
    session: Session,
    *,
    study_instance_uid: str,
    receiving_institution: str,
    reason_code: str,
    recorded_by: str,
    note: str | None = None,
    now: dt.datetime | None = None,
) -> NonRecognition:
    """Record that ``receiving_institution`` did not recognise the study's result at a visit, for
    ``reason_code`` (one of the ten of ``thresholds/evaluation/negative_list.yaml``). The study's
    verdict and eligibility are unchanged: the reason belongs to that visit. ValueError for an
    unknown reason, an empty institution, or a reason that needs a note without one."""
    from qc_pipeline.review.negative_list import load_negative_list

    reason = load_negative_list().get(reason_code)
    if reason is None:
        codes = ", ".join(r.code for r in load_negative_list().reasons)
        raise ValueError(f"unknown negative-list reason {reason_code!r}; one of {codes}")
    if not receiving_institution.strip():
        raise ValueError("the receiving institution is required")
    text_note = (note or "").strip() or None
    if reason.note_required and text_note is None:
        raise ValueError(f"the reason {reason_code!r} needs a note")
    study_id = session.scalar(select(StudyRecord.id).where(StudyRecord.study_instance_uid == study_instance_uid))
    record = NonRecognition(
        study_id=study_id,
        study_instance_uid=study_instance_uid,
        receiving_institution=receiving_institution.strip(),
        reason_code=reason_code,
        note=text_note,
        recorded_by=recorded_by,
        recorded_at=now or dt.datetime.now(dt.UTC),
    )
    session.add(record)
    session.flush()
    return record


def non_recognitions(session: Session, study_instance_uid: str) -> list[dict[str, Any]]:
    """The non-recognitions recorded for a study, oldest first."""
    rows = session.scalars(
        select(NonRecognition)
        .where(NonRecognition.study_instance_uid == study_instance_uid)
        .order_by(NonRecognition.id)
    ).all()
    return [
        {
            "receiving_institution": r.receiving_institution,
            "reason_code": r.reason_code,
            "note": r.note,
            "recorded_by": r.recorded_by,
            "recorded_at": r.recorded_at.isoformat(),
        }
        for r in rows
    ]


CURRENT_FINDING_REVIEW_INDEX: Final = "uq_finding_reviews_current_finding"


class FindingReview(Base):
    """A radiologist's judgement of one finding of a machine decision (migration 0014): ``confirm``
    (the problem is there) or ``reject`` (false alarm), with the artifact actually seen
    (``reason_code``, ``thresholds/evaluation/finding_review.yaml``). The latest one per finding has
    ``is_current`` set; the finding's code, severity, series and the model that raised it are
    copied, so the label keeps its meaning when the finding row is gone."""

    __tablename__ = "finding_reviews"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    decision_id: Mapped[int] = mapped_column(ForeignKey("decisions.id"), index=True)
    finding_id: Mapped[int | None] = mapped_column(ForeignKey("findings.id", ondelete="SET NULL"))
    finding_code: Mapped[str] = mapped_column(String(128))
    finding_severity: Mapped[str] = mapped_column(String(16))
    series_instance_uid: Mapped[str | None] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(Text)
    """``name@version`` of the model that raised an AI finding; None for an objective one."""
    content_fingerprint: Mapped[str] = mapped_column(String(FINGERPRINT_LENGTH))
    judgement: Mapped[str] = mapped_column(String(16))
    reason_code: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[int] = mapped_column(ForeignKey("review_users.id"), index=True)
    reviewer_role: Mapped[str] = mapped_column(String(16))
    decided_at: Mapped[dt.datetime]
    audit_sample: Mapped[bool] = mapped_column(Boolean)
    """Whether the study was in the queue as an audit sample of machine passes."""
    is_current: Mapped[bool] = mapped_column(Boolean)
    superseded_at: Mapped[dt.datetime | None]

    __table_args__ = (
        Index(
            CURRENT_FINDING_REVIEW_INDEX,
            "finding_id",
            unique=True,
            sqlite_where=text("is_current = 1"),
            postgresql_where=text("is_current"),
        ),
    )
