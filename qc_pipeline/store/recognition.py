"""Tables of the recognition API: hospital systems' tokens, the recognition events they post,
and the audit of every call.

The schema is created by the hand-written migration ``0012_recognition_api.py``; keep the two in
step. A token is shown once when made (``create_token``); only its SHA-256 is stored, so a copy of
the database gives no usable token. Events are idempotent on the caller's ``event_id``: the same
body again returns the stored event, a different body under the same id is a conflict.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import ForeignKey, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from qc_pipeline.store.models import Base, StudyRecord
from qc_pipeline.store.review import record_non_recognition

logger = logging.getLogger(__name__)

SCOPES: Final = ("lookup", "events", "findings")
"""``lookup``: read the recognisable studies of a patient or accession; ``events``: post what the
receiving hospital did; ``findings``: read a study's QC findings (for the QC centre's own systems:
a hospital's clinic needs the verdict, not the reasons)."""
OUTCOMES: Final = ("recognised", "not_recognised")
TOKEN_PREFIX: Final = "qcr_"


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


class RecognitionToken(Base):
    """A hospital system's bearer token (SHA-256 only), its institution and scopes."""

    __tablename__ = "recognition_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    institution: Mapped[str] = mapped_column(Text)
    scopes: Mapped[str] = mapped_column(String(64))
    """Space-separated, from ``SCOPES``."""
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime]
    revoked_at: Mapped[dt.datetime | None]


class RecognitionEvent(Base):
    """What a receiving hospital did with a study's result at a visit."""

    __tablename__ = "recognition_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(128), unique=True)
    body_hash: Mapped[str] = mapped_column(String(64))
    """SHA-256 of the canonical event body: the same id with another body is a conflict."""
    token_name: Mapped[str] = mapped_column(String(64))
    study_id: Mapped[int | None] = mapped_column(ForeignKey("studies.id"))
    study_instance_uid: Mapped[str] = mapped_column(String(64), index=True)
    outcome: Mapped[str] = mapped_column(String(16))
    reason_code: Mapped[str | None] = mapped_column(String(48))
    receiving_institution: Mapped[str] = mapped_column(Text)
    department: Mapped[str | None] = mapped_column(Text)
    at: Mapped[dt.datetime]
    non_recognition_id: Mapped[int | None] = mapped_column(ForeignKey("non_recognitions.id"))
    recorded_at: Mapped[dt.datetime]


class RecognitionApiCall(Base):
    """One call of the recognition API. ``query_hash`` is the SHA-256 of the query values, never
    the values: patient identifiers are not kept in clear."""

    __tablename__ = "recognition_api_calls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(index=True)
    token_name: Mapped[str | None] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(8))
    route: Mapped[str] = mapped_column(String(128))
    status: Mapped[int] = mapped_column(Integer)
    query_hash: Mapped[str | None] = mapped_column(String(64))
    client: Mapped[str | None] = mapped_column(String(64))


@dataclass(frozen=True, slots=True)
class TokenInfo:
    name: str
    institution: str
    scopes: frozenset[str]


class EventConflict(Exception):
    """An event id already stored with a different body."""


def create_token(
    session: Session, *, name: str, institution: str, scopes: Iterable[str], now: dt.datetime | None = None
) -> str:
    """Store a new token for the system ``name`` and return it (the only time it is seen).
    ValueError for an empty or taken name, or an unknown scope."""
    name = name.strip()
    wanted = sorted(set(scopes))
    if not name or len(name) > 64:
        raise ValueError("the system name must have 1 to 64 characters")
    unknown = [s for s in wanted if s not in SCOPES]
    if unknown or not wanted:
        raise ValueError(f"scopes must be among {', '.join(SCOPES)}; got {', '.join(unknown) or 'none'}")
    if not institution.strip():
        raise ValueError("the institution is required")
    if session.scalar(select(RecognitionToken.id).where(RecognitionToken.name == name)) is not None:
        raise ValueError(f"a token named {name!r} exists; revoke it and choose another name")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(
        RecognitionToken(
            name=name,
            institution=institution.strip(),
            scopes=" ".join(wanted),
            token_hash=sha256_hex(token),
            created_at=now or dt.datetime.now(dt.UTC),
            revoked_at=None,
        )
    )
    session.flush()
    return token


def revoke_token(session: Session, name: str, *, now: dt.datetime | None = None) -> bool:
    """Revoke the token of ``name``; False when there is no live token of that name."""
    row = session.scalar(select(RecognitionToken).where(RecognitionToken.name == name))
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = now or dt.datetime.now(dt.UTC)
    return True


def token_for(session: Session, token: str) -> TokenInfo | None:
    """The live token presented as ``token``, or None (unknown or revoked)."""
    row = session.scalar(select(RecognitionToken).where(RecognitionToken.token_hash == sha256_hex(token)))
    if row is None or row.revoked_at is not None:
        return None
    return TokenInfo(row.name, row.institution, frozenset(row.scopes.split()))


def audit_call(
    session: Session,
    *,
    token_name: str | None,
    method: str,
    route: str,
    status: int,
    query_values: Mapping[str, str] | None,
    client: str | None,
    now: dt.datetime | None = None,
) -> None:
    """Record one call; the query values only as the SHA-256 of their canonical JSON."""
    digest = None if not query_values else sha256_hex(json.dumps(dict(query_values), sort_keys=True))
    session.add(
        RecognitionApiCall(
            at=now or dt.datetime.now(dt.UTC),
            token_name=token_name,
            method=method[:8],
            route=route[:128],
            status=status,
            query_hash=digest,
            client=None if client is None else client[:64],
        )
    )


def event_dict(e: RecognitionEvent) -> dict[str, Any]:
    return {
        "event_id": e.event_id,
        "study_instance_uid": e.study_instance_uid,
        "outcome": e.outcome,
        "reason_code": e.reason_code,
        "receiving_institution": e.receiving_institution,
        "department": e.department,
        "at": e.at.isoformat(),
        "recorded_at": e.recorded_at.isoformat(),
    }


def record_event(
    session: Session, *, token_name: str, body: Mapping[str, Any], now: dt.datetime | None = None
) -> tuple[dict[str, Any], bool]:
    """Store the event ``body`` (validated by the caller: ``event_id, study_instance_uid, outcome,
    reason_code, receiving_institution, department, note, at``) and return ``(event, created)``.

    The same ``event_id`` with the same body returns the stored event (``created`` False); with
    another body, EventConflict. A ``not_recognised`` event is also a non-recognition
    (``record_non_recognition``, which checks the reason code; ValueError when it is refused).
    LookupError when the study is unknown: an event about a study we never judged is a mistake
    the caller must see.
    """
    digest = sha256_hex(json.dumps({k: _plain(v) for k, v in body.items()}, sort_keys=True))
    existing = session.scalar(select(RecognitionEvent).where(RecognitionEvent.event_id == body["event_id"]))
    if existing is not None:
        if existing.body_hash != digest or existing.token_name != token_name:
            raise EventConflict(f"event_id {body['event_id']!r} was already used with another body")
        return event_dict(existing), False
    study_id = session.scalar(
        select(StudyRecord.id).where(StudyRecord.study_instance_uid == body["study_instance_uid"])
    )
    if study_id is None:
        raise LookupError("no study with this StudyInstanceUID has been judged")
    now = now or dt.datetime.now(dt.UTC)
    non_recognition_id = None
    if body["outcome"] == "not_recognised":
        record = record_non_recognition(
            session,
            study_instance_uid=body["study_instance_uid"],
            receiving_institution=body["receiving_institution"],
            reason_code=body["reason_code"] or "",
            recorded_by=f"api:{token_name}",
            note=body.get("note"),
            now=body["at"],
        )
        non_recognition_id = record.id
    event = RecognitionEvent(
        event_id=body["event_id"],
        body_hash=digest,
        token_name=token_name,
        study_id=study_id,
        study_instance_uid=body["study_instance_uid"],
        outcome=body["outcome"],
        reason_code=body.get("reason_code"),
        receiving_institution=body["receiving_institution"],
        department=body.get("department"),
        at=body["at"].astimezone(dt.UTC),  # as it reads back, so a replay answers the same
        non_recognition_id=non_recognition_id,
        recorded_at=now,
    )
    session.add(event)
    session.flush()
    return event_dict(event), True


def _plain(value: Any) -> Any:
    return value.astimezone(dt.UTC).isoformat() if isinstance(value, dt.datetime) else value
