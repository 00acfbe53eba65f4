"""Write the quality-control result of each judged study back to its DICOMweb source, as a
DICOM Comprehensive SR (``recognition.sr``) stored by STOW-RS (``qc-pipeline run --write-back``).

For every study of the source with a current decision, the fingerprint of what its report says
(:func:`decision_fingerprint`: verdicts, a standing human decision, item, eligible-until, mark,
findings, versions) is compared with the latest version written:

- the same, and sent: nothing is sent (a re-run stores no duplicate);
- the same, but pending or failed: that version is sent again (same SOPInstanceUID);
- another one (re-judgement, a person's decision): the next version, in the same SR series.

Which studies are looked at: those of the source that have no version yet, whose latest version
is not ``sent``, or whose current decision or human decision was made after their latest version
was planned (:func:`changed_since_written`, one query). So a run after the first reads what
changed, not every stored study (a full pass took about 4 min per million stored studies). A
change that comes from the calendar or the register alone (an institution's qualification, hence
the mark) is written with the study's next decision; the lookup API always answers as of today.

Each version is recorded (``recognition_writebacks``) as ``pending`` before it is sent, then
``sent`` or ``failed`` with its attempts and last error. A send is tried ``attempts`` times with
doubling waits (``QC_WRITEBACK_ATTEMPTS``, ``QC_WRITEBACK_BACKOFF_S``). A write-back never changes
or loses a verdict: it only reads decisions, and its failures are counted, logged and retried by a
later run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from pydicom.dataset import Dataset
from sqlalchemy import select

from qc_pipeline.eligibility import EligibilityPolicy
from qc_pipeline.errors import ConfigError, QCError
from qc_pipeline.recognition.sr import build_sr, evidence_datasets
from qc_pipeline.recognition.uids import sr_instance_uid, sr_series_uid
from qc_pipeline.sources.base import LoadedStudy, StudyEntry
from qc_pipeline.store import ResultStore
from qc_pipeline.store.writeback import FAILED, PENDING, SENT, RecognitionWriteback

logger = logging.getLogger(__name__)

ATTEMPTS_ENV: Final = "QC_WRITEBACK_ATTEMPTS"
BACKOFF_ENV: Final = "QC_WRITEBACK_BACKOFF_S"
DEFAULT_ATTEMPTS: Final = 3
DEFAULT_BACKOFF_S: Final = 2.0
"""Wait before the second attempt; doubled before each further one."""
ONE_BY_ONE_MAX: Final = 500
"""At most this many studies to look at are read one by one; more are read in one pass."""
GIVE_UP_AFTER: Final = 3
"""Studies whose write-back failed in a row after which the others are left pending for the next run."""
COMPREHENSIVE_SR: Final = "1.2.840.10008.5.1.4.1.1.88.33"
_MAX_ERROR_CHARS: Final = 500


class WritableSource(Protocol):
    """What a write-back needs of a source (``DicomWebSource``)."""

    @property
    def uri(self) -> str: ...

    def entry_for(self, study_instance_uid: str) -> StudyEntry | None: ...

    def load(self, entry: StudyEntry) -> LoadedStudy: ...

    def store_instances(self, datasets: list[Dataset]) -> None: ...


@dataclass
class WritebackSummary:
    """What a write-back did: versions sent, versions that failed, studies with nothing new."""

    sent: int = 0
    failed: int = 0
    unchanged: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"sent": self.sent, "failed": self.failed, "unchanged": self.unchanged}


def settings_from_env() -> tuple[int, float]:
    """``(attempts, backoff seconds)`` from the environment, else the defaults; ConfigError on
    a value that is not a positive number."""
    try:
        attempts = int(os.environ.get(ATTEMPTS_ENV) or DEFAULT_ATTEMPTS)
        backoff = float(os.environ.get(BACKOFF_ENV) or DEFAULT_BACKOFF_S)
    except ValueError:
        raise ConfigError(f"{ATTEMPTS_ENV} must be a whole number and {BACKOFF_ENV} a number of seconds") from None
    if attempts < 1 or backoff < 0:
        raise ConfigError(f"{ATTEMPTS_ENV} must be at least 1 and {BACKOFF_ENV} not negative")
    return attempts, backoff


def decision_fingerprint(result: Mapping[str, Any]) -> str:
    """SHA-256 of what the study's report says (not of when it was read: today's eligibility,
    which changes with the calendar, is left out; the stored eligible-until is in)."""
    human = result.get("human_decision")
    payload = {
        "study": result["study_instance_uid"],
        "item": result.get("item"),
        "verdict": result["verdict"],
        "final_verdict": result["final_verdict"],
        "human": None
        if not human
        else {
            k: human.get(k) for k in ("verdict", "action", "reason_code", "reviewer", "decided_at", "eligible_until")
        },
        "eligible_until": result.get("eligible_until"),
        "recognition_mark": result.get("recognition_mark"),
        "findings": [
            {
                k: f.get(k)
                for k in (
                    "code",
                    "category",
                    "severity",
                    "message",
                    "message_zh",
                    "value",
                    "limit",
                    "series_instance_uid",
                    "sop_instance_uid",
                )
            }
            for f in result.get("findings") or ()
        ],
        "provenance": result.get("provenance"),
        "decided_at": result.get("decided_at"),
        "content_fingerprint": result.get("content_fingerprint"),
    }
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def changed_since_written(store: ResultStore, source_uri: str) -> list[str]:
    """StudyInstanceUIDs of ``source_uri`` whose report may differ from what was last written: no
    version yet, the latest not ``sent``, or a current (human) decision made after the latest
    version was planned. (Decision times are the judging run's clock, which is the clock that
    plans the write-back after it.)"""
    from sqlalchemy import and_, case, func, or_

    from qc_pipeline.store.models import DecisionRecord, StudyRecord
    from qc_pipeline.store.review import HumanDecision

    w = RecognitionWriteback
    written = (
        select(
            w.study_instance_uid,
            func.max(w.created_at).label("last"),
            func.sum(case((w.status != SENT, 1), else_=0)).label("unsent"),
        )
        .group_by(w.study_instance_uid)
        .subquery()
    )
    human = (
        select(HumanDecision.study_id, HumanDecision.decided_at).where(HumanDecision.is_current.is_(True)).subquery()
    )
    query = (
        select(StudyRecord.study_instance_uid)
        .join(DecisionRecord, and_(DecisionRecord.study_id == StudyRecord.id, DecisionRecord.is_current.is_(True)))
        .outerjoin(written, written.c.study_instance_uid == StudyRecord.study_instance_uid)
        .outerjoin(human, human.c.study_id == StudyRecord.id)
        .where(StudyRecord.source_uri == source_uri)
        .where(
            or_(
                written.c.last.is_(None),
                written.c.unsent > 0,
                DecisionRecord.decided_at > written.c.last,
                and_(human.c.decided_at.is_not(None), human.c.decided_at > written.c.last),
            )
        )
    )
    with store.engine.connect() as conn:
        return [uid for (uid,) in conn.execute(query)]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _short(exc: BaseException) -> str:
    message = " ".join(str(exc).split()) or type(exc).__name__
    return message if len(message) <= _MAX_ERROR_CHARS else message[: _MAX_ERROR_CHARS - 1] + "…"


def _predecessor(row: RecognitionWriteback) -> Dataset:
    ds = Dataset()
    ds.StudyInstanceUID = row.study_instance_uid
    ds.SeriesInstanceUID = row.series_instance_uid
    ds.SOPInstanceUID = row.sop_instance_uid
    ds.SOPClassUID = COMPREHENSIVE_SR
    return ds


@dataclass(frozen=True, slots=True)
class _Job:
    result: Mapping[str, Any]
    fingerprint: str
    version: int
    row_id: int
    predecessors: tuple[Dataset, ...]


def write_back(
    store: ResultStore,
    source: WritableSource,
    *,
    policy: EligibilityPolicy | None = None,
    study_uids: Iterable[str] | None = None,
    attempts: int | None = None,
    backoff_s: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> WritebackSummary:
    """Send the SR of every study of ``source`` whose report is new or changed, and again those
    that failed before (``study_uids``: only these studies). See the module docstring."""
    env_attempts, env_backoff = settings_from_env()
    attempts = env_attempts if attempts is None else attempts
    backoff_s = env_backoff if backoff_s is None else backoff_s
    if attempts < 1:
        raise ConfigError(f"write-back attempts must be at least 1; got {attempts}")
    wanted = set(changed_since_written(store, source.uri)) if study_uids is None else set(study_uids)
    # The SR and its fingerprint are built from the JSON form (as_dict) of the studies chosen here.
    if len(wanted) <= ONE_BY_ONE_MAX:  # the usual run: a few new decisions, read study by study
        results = [
            r.as_dict()
            for uid in sorted(wanted)
            for r in store.study_results(study_instance_uid=uid, policy=policy)
            if r.source_uri == source.uri
        ]
    else:  # the first run over a store, or a re-judged backlog: one pass over every decision
        results = [
            r.as_dict()
            for r in store.study_results(policy=policy)
            if r.source_uri == source.uri and r.study_instance_uid in wanted
        ]
    summary = WritebackSummary()
    jobs = _plan(store, source.uri, results, summary)
    failed_in_a_row = 0
    for n, job in enumerate(jobs):
        if failed_in_a_row >= GIVE_UP_AFTER:  # the server is down or refuses: the next run tries again
            left = len(jobs) - n
            summary.failed += left
            summary.errors.append(
                f"{left} more not tried: the {GIVE_UP_AFTER} before failed; the next run retries them"
            )
            logger.error("SR write-back stopped after %d failed studies in a row; %d left pending", GIVE_UP_AFTER, left)
            break
        error = _send(store, source, job, attempts=attempts, backoff_s=backoff_s, sleep=sleep)
        if error is None:
            summary.sent += 1
            failed_in_a_row = 0
        else:
            summary.failed += 1
            failed_in_a_row += 1
            summary.errors.append(f"{job.result['study_instance_uid']}: {error}")
    return summary


def _plan(store: ResultStore, source_uri: str, results: list[dict[str, Any]], summary: WritebackSummary) -> list[_Job]:
    """The versions to send, their rows made ``pending`` first (in one transaction)."""
    if not results:
        return []
    jobs: list[_Job] = []
    now = _now()
    by_uid = {r["study_instance_uid"]: r for r in results}
    with store.writing("plan the SR write-back") as session:
        rows: dict[str, list[RecognitionWriteback]] = {}
        uids = list(by_uid)
        for start in range(0, len(uids), 500):  # bounded IN lists
            chunk = uids[start : start + 500]
            for row in session.scalars(
                select(RecognitionWriteback)
                .where(RecognitionWriteback.study_instance_uid.in_(chunk))
                .order_by(RecognitionWriteback.version)
            ):
                rows.setdefault(row.study_instance_uid, []).append(row)
        for uid, result in by_uid.items():
            fingerprint = decision_fingerprint(result)
            versions = rows.get(uid, [])
            latest = versions[-1] if versions else None
            if latest is not None and latest.decision_fingerprint == fingerprint:
                if latest.status == SENT:
                    summary.unchanged += 1
                    continue
                row = latest  # pending or failed: the same version again
            else:
                version = 1 if latest is None else latest.version + 1
                row = RecognitionWriteback(
                    study_instance_uid=uid,
                    version=version,
                    sop_instance_uid=sr_instance_uid(uid, version),
                    series_instance_uid=sr_series_uid(uid),
                    source_uri=source_uri,
                    decision_fingerprint=fingerprint,
                    status=PENDING,
                    attempts=0,
                    last_error=None,
                    created_at=now,
                    updated_at=now,
                    sent_at=None,
                )
                session.add(row)
                session.flush()
            earlier = tuple(_predecessor(v) for v in versions if v.status == SENT and v.version < row.version)
            jobs.append(_Job(result, fingerprint, row.version, row.id, earlier))
    return jobs


def _evidence(source: WritableSource, uid: str) -> list[Dataset]:
    entry = source.entry_for(uid)
    if entry is None:
        raise LookupError(f"study {uid} is no longer on the source")
    study = source.load(entry)
    return evidence_datasets([inst.dataset for inst in study.instances])


def _send(
    store: ResultStore,
    source: WritableSource,
    job: _Job,
    *,
    attempts: int,
    backoff_s: float,
    sleep: Callable[[float], None],
) -> str | None:
    """Build and store one version, ``attempts`` times at most; None when sent, else the error."""
    uid = job.result["study_instance_uid"]
    error: str | None = None
    for attempt in range(1, attempts + 1):
        try:
            report = build_sr(job.result, _evidence(source, uid), version=job.version, predecessors=job.predecessors)
            source.store_instances([report])
        except (QCError, OSError, LookupError, ValueError) as exc:
            error = _short(exc)
            _record(store, job.row_id, status=FAILED if attempt == attempts else PENDING, error=error)
            logger.warning(
                "SR write-back of study %s (version %d), attempt %d of %d failed: %s",
                uid,
                job.version,
                attempt,
                attempts,
                error,
            )
            if attempt < attempts:
                sleep(backoff_s * 2 ** (attempt - 1))
            continue
        _record(store, job.row_id, status=SENT, error=None)
        logger.info("SR version %d of study %s written back", job.version, uid)
        return None
    return error


def _record(store: ResultStore, row_id: int, *, status: str, error: str | None) -> None:
    now = _now()
    with store.writing("record an SR write-back") as session:
        row = session.get(RecognitionWriteback, row_id)
        if row is None:  # pragma: no cover - rows are never deleted
            return
        row.attempts += 1
        row.status = status
        row.updated_at = now
        if error is not None:
            row.last_error = error
        if status == SENT:
            row.sent_at = now
            row.last_error = None


def writebacks(store: ResultStore, study_instance_uid: str) -> list[dict[str, Any]]:
    """The versions recorded for a study, oldest first."""
    with store.reading(f"read the SR write-backs of study {study_instance_uid}") as session:
        rows = session.scalars(
            select(RecognitionWriteback)
            .where(RecognitionWriteback.study_instance_uid == study_instance_uid)
            .order_by(RecognitionWriteback.version)
        ).all()
        return [
            {
                "version": r.version,
                "sop_instance_uid": r.sop_instance_uid,
                "series_instance_uid": r.series_instance_uid,
                "status": r.status,
                "attempts": r.attempts,
                "last_error": r.last_error,
                "decision_fingerprint": r.decision_fingerprint,
                "sent_at": None if r.sent_at is None else r.sent_at.isoformat(),
            }
            for r in rows
        ]
