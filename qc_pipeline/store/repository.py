"""The results store: runs, the current decision per study and the history of earlier ones.

SQLite by default (one file, WAL, several threads writing), PostgreSQL in production. The schema
is migrated to the latest Alembic revision whenever a store is opened.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import logging
import math
import os
import re
import sys
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from sqlalchemy import Connection, Engine, create_engine, event, func, inspect, select, text, update
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, SQLAlchemyError, StatementError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from qc_pipeline.domain import Decision, Finding, PriorStudy, Provenance, SeriesSummary, Verdict
from qc_pipeline.eligibility import EligibilityPolicy
from qc_pipeline.errors import StoreError
from qc_pipeline.resources import MIGRATIONS, shipped_path
from qc_pipeline.store.review import Overlay, effective_eligibility, human_history, human_overlay
from qc_pipeline.store.models import (
    FINGERPRINT_LENGTH,
    UID_LENGTH,
    DecisionRecord,
    FindingRecord,
    MetricRecord,
    RunRecord,
    StudyRecord,
)

logger = logging.getLogger(__name__)

DATA_DIR_ENV: Final = "QC_DATA_DIR"
DB_FILE_NAME: Final = "results.sqlite"
MIGRATIONS_DIR: Final = shipped_path(MIGRATIONS)

SQLITE_BUSY_TIMEOUT_S: Final = 30.0
"""How long a SQLite writer waits for another one to commit before giving up."""
POSTGRES_CONNECT_TIMEOUT_S: Final = 10
_MIGRATION_LOCK_KEY: Final = 0x71C0_5707E  # pg_advisory_xact_lock key: one migrator at a time
_BEGIN_OPTION: Final = "qc_sqlite_begin"
_MAX_REASON_CHARS: Final = 300
_migration_lock = threading.Lock()


class SaveOutcome(StrEnum):
    """What ``ResultStore.save_decision`` did."""

    INSERTED = "inserted"
    """The study's first decision."""
    SUPERSEDED = "superseded"
    """A new current decision; the previous one is kept as history."""
    UNCHANGED = "unchanged"
    """The current decision has the same decision key: nothing was written."""


def default_data_dir() -> Path:
    """``$QC_DATA_DIR``, else ``$XDG_DATA_HOME/qc-pipeline``, else ``~/.local/share/qc-pipeline``."""
    if explicit := os.environ.get(DATA_DIR_ENV):
        return Path(explicit).expanduser()
    if xdg := os.environ.get("XDG_DATA_HOME"):
        return Path(xdg).expanduser() / "qc-pipeline"
    return Path.home() / ".local" / "share" / "qc-pipeline"


def default_db_url() -> str:
    """``sqlite:///<data dir>/results.sqlite``; the data directory is created if missing."""
    directory = default_data_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"cannot create the data directory {directory} for the results database: {exc.strerror}; "
            f"set ${DATA_DIR_ENV} to a writable folder"
        ) from exc
    return f"sqlite:///{directory.resolve() / DB_FILE_NAME}"


def decision_key(content_fingerprint: str, provenance: Provenance) -> str:
    """SHA-256 (hex) of the content fingerprint, pipeline and thresholds versions and sorted models.

    Two decisions with the same key judged the same content with the same code, rules and models.
    """
    payload = json.dumps(
        [
            content_fingerprint,
            provenance.pipeline_version,
            provenance.thresholds_version,
            sorted(provenance.models.items()),
        ],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def alembic_config(connection: Connection | None = None) -> Any:
    """An Alembic config for the packaged migrations (no alembic.ini); ``connection`` is used by env.py.

    Alembic (with Mako and Pygments, about 0.15 s to import) is imported only when a database is
    migrated or checked in depth: opening a database already at the head needs none of it.
    """
    from alembic.config import Config
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    return config


@functools.cache
def head_revision() -> str:
    """The latest migration revision shipped with this version of qc-pipeline."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package ships its migrations
        raise StoreError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def upgrade_to_head(engine: Engine) -> None:
    """Migrate the database of ``engine`` to the head revision, in one transaction.

    Idempotent. Concurrent migrators wait for each other: an advisory lock on PostgreSQL, a
    ``BEGIN IMMEDIATE`` write lock on SQLite (both backends have transactional DDL).
    """
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    masked = _masked(engine.url)
    with _migration_lock, _db_errors(f"cannot migrate the results database {masked}", engine.url):
        with engine.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"}).begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(select(func.pg_advisory_xact_lock(_MIGRATION_LOCK_KEY)))
            current = MigrationContext.configure(conn).get_current_revision()
            _check_known_revision(current, masked)
            if current == head_revision():
                return
            logger.info("migrating the results database %s from %s to %s", masked, current, head_revision())
            command.upgrade(alembic_config(conn), "head")


def _check_known_revision(current: str | None, masked: str) -> None:
    if current is None:
        return
    from alembic.script import ScriptDirectory
    from alembic.util.exc import CommandError

    try:
        ScriptDirectory.from_config(alembic_config()).get_revision(current)
    except CommandError as exc:
        raise StoreError(
            f"the results database {masked} is at schema revision {current!r}, unknown to this qc-pipeline "
            f"(head {head_revision()!r}): it was written by a newer version; upgrade qc-pipeline"
        ) from exc


def _masked(url: URL | str) -> str:
    """The URL with its password replaced by ``***``."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def _reason(exc: BaseException, url: URL | None = None) -> str:
    """The driver's message on one line, without the URL's password or the statement's parameters."""
    cause = exc.orig if isinstance(exc, StatementError) and exc.orig is not None else exc
    message = " ".join(str(cause).split()) or type(cause).__name__
    if url is not None and url.password:
        message = message.replace(str(url.password), "***")
    if len(message) > _MAX_REASON_CHARS:
        message = message[: _MAX_REASON_CHARS - 1] + "…"
    return message


@contextmanager
def _db_errors(what: str, url: URL | None = None) -> Iterator[None]:
    """Turn database errors (other than ``IntegrityError``) into ``StoreError("<what>: <reason>")``."""
    try:
        yield
    except IntegrityError:
        raise
    except SQLAlchemyError as exc:
        raise StoreError(f"{what}: {_reason(exc, url)}") from exc
    except Exception as exc:
        if not _is_alembic_error(exc):
            raise
        raise StoreError(f"{what}: {_reason(exc, url)}") from exc


def _is_alembic_error(exc: BaseException) -> bool:
    """An Alembic ``CommandError`` (only possible once Alembic was imported, to migrate)."""
    errors = sys.modules.get("alembic.util.exc")
    return errors is not None and isinstance(exc, errors.CommandError)


def _create_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise StoreError(
            f"invalid results database URL {_masked(url)!r}: expected e.g. sqlite:////path/results.sqlite "
            "or postgresql+psycopg://user@host:5432/db"
        ) from exc
    if parsed.drivername == "postgresql":  # psycopg 3 is the driver qc-pipeline depends on
        parsed = parsed.set(drivername="postgresql+psycopg")
    backend = parsed.get_backend_name()
    # Statement parameters hold patient IDs and names: never in logs or errors, even at DEBUG.
    kwargs: dict[str, Any] = {"hide_parameters": True}
    if backend == "sqlite":
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}
    elif backend == "postgresql":
        kwargs["pool_pre_ping"] = True
        if "connect_timeout" not in parsed.query:
            kwargs["connect_args"] = {"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S}
    try:
        engine = create_engine(parsed, **kwargs)
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        raise StoreError(
            f"cannot open the results database {_masked(parsed)}: {_reason(exc, parsed)} "
            "(supported: sqlite:///..., postgresql+psycopg://...)"
        ) from exc
    if backend == "sqlite":
        _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: Engine) -> None:
    """WAL, foreign keys, busy timeout; transactions begun by SQLAlchemy, not by pysqlite.

    pysqlite's own transaction handling starts transactions late and cannot do ``BEGIN
    IMMEDIATE``; writers here take the write lock up front so that a read-then-write transaction
    waits for the lock (up to the busy timeout) instead of failing on a stale snapshot.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


_REVISION_LINE = re.compile(r"^(down_revision|revision)\s*(?::[^=]*)?=\s*(None|[\"']([^\"']+)[\"'])", re.MULTILINE)


@functools.cache
def shipped_head() -> str | None:
    """The head revision read from the migration files themselves (their ``revision`` and
    ``down_revision`` lines), without Alembic; None when they do not form one plain chain (then
    :func:`head_revision` decides)."""
    revisions, parents = set(), set()
    for path in Path(MIGRATIONS_DIR, "versions").glob("*.py"):
        found = {m.group(1): m.group(3) for m in _REVISION_LINE.finditer(path.read_text(encoding="utf-8"))}
        if found.get("revision") is None:
            return None
        revisions.add(found["revision"])
        if found.get("down_revision"):
            parents.add(found["down_revision"])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _at_head(engine: Engine) -> bool:
    """Whether the database is at this version's head, read with one query (no Alembic import)."""
    head = shipped_head() or head_revision()
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return False
        versions = [row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version"))]
    return versions == [head]


def _iso(value: dt.date | dt.time | dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class ResultStore:
    """The results database. Thread-safe: share one per database and process.

    Open with ``ResultStore.open(url)``; ``close()`` (or ``with``) releases its connections.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._masked_url = _masked(engine.url)
        self._read = sessionmaker(engine, expire_on_commit=False)
        self._write = sessionmaker(engine.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"}), expire_on_commit=False)
        self._leases: Any = None  # store.leases.StudyLeases, made on first use

    @classmethod
    def open(cls, url: str | None = None) -> ResultStore:
        """Open (and migrate to the latest schema) the database at ``url``.

        ``None`` means the default SQLite file (``default_db_url()``). ``postgresql://`` URLs use
        psycopg 3. Raises ``StoreError`` when the database cannot be reached, opened or migrated.
        """
        engine = _create_engine(url or default_db_url())
        masked = _masked(engine.url)
        try:
            with _db_errors(f"cannot open the results database {masked}", engine.url):
                if not _at_head(engine):
                    upgrade_to_head(engine)
        except BaseException:
            engine.dispose()
            raise
        logger.debug("results database %s open", masked)
        return cls(engine)

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def url(self) -> str:
        """The database URL, password masked."""
        return self._masked_url

    def close(self) -> None:
        """Close the pooled connections (the store can still be used: it reconnects)."""
        self._engine.dispose()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResultStore({self._masked_url!r})"

    # -- runs -----------------------------------------------------------------------------

    def start_run(self, *, source_uri: str, pipeline_version: str, thresholds_version: str) -> str:
        """Record the start of a run; returns its id (a UUID string).

        Runs left ``running`` by a process of this machine that no longer runs (killed mid-run)
        are marked ``interrupted`` first, so that the run list tells the truth.
        """
        from qc_pipeline.store.leases import LeaseHolder

        run_id = str(uuid.uuid4())
        with self._errors("start a run"), self._write.begin() as session:
            self._close_interrupted_runs(session)
            session.add(
                RunRecord(
                    id=run_id,
                    holder=str(LeaseHolder.this_process(run_id)),
                    started_at=_utcnow(),
                    source_uri=source_uri,
                    status="running",
                    pipeline_version=pipeline_version,
                    thresholds_version=thresholds_version,
                    n_studies=0,
                    n_judged=0,
                    n_unchanged=0,
                    n_errors=0,
                )
            )
        logger.info("run %s started", run_id)
        return run_id

    @staticmethod
    def _close_interrupted_runs(session: Session) -> None:
        from qc_pipeline.store.leases import LeaseHolder

        running = session.scalars(
            select(RunRecord).where(RunRecord.status == "running", RunRecord.holder.is_not(None))
        ).all()
        for run in running:
            holder = LeaseHolder.parse(run.holder or "")
            if holder is None or not holder.is_dead_here():
                continue
            run.status = "interrupted"
            run.finished_at = _utcnow()
            run.error_message = (
                f"the process running it ({holder.host}, pid {holder.pid}) stopped before the run finished; "
                "the studies it had not stored are judged by a later run"
            )
            logger.warning("run %s was interrupted (process %s no longer runs); marked interrupted", run.id, holder.pid)

    def finish_run(
        self,
        run_id: str,
        *,
        status: str,
        n_studies: int,
        n_judged: int,
        n_unchanged: int,
        n_errors: int,
        error_message: str | None = None,
    ) -> None:
        """Record the end of a run, its status (e.g. ``completed``) and its counts."""
        if not status:
            raise ValueError("status must be a non-empty string, e.g. 'completed'")
        with self._errors(f"finish run {run_id}"), self._write.begin() as session:
            result = session.execute(
                update(RunRecord)
                .where(RunRecord.id == run_id)
                .values(
                    finished_at=_utcnow(),
                    status=status,
                    n_studies=n_studies,
                    n_judged=n_judged,
                    n_unchanged=n_unchanged,
                    n_errors=n_errors,
                    error_message=error_message,
                )
            )
            if result.rowcount != 1:
                raise StoreError(f"cannot finish run {run_id!r}: no such run in {self._masked_url}")
        logger.info("run %s finished: %s", run_id, status)

    def runs(self, limit: int = 20) -> list[dict[str, Any]]:
        """The latest ``limit`` runs, newest first."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        with self._errors("read the runs"), self._read.begin() as session:
            rows = session.scalars(
                select(RunRecord).order_by(RunRecord.started_at.desc(), RunRecord.id).limit(limit)
            ).all()
        return [
            {
                "run_id": r.id,
                "started_at": _iso(r.started_at),
                "finished_at": _iso(r.finished_at),
                "source_uri": r.source_uri,
                "status": r.status,
                "pipeline_version": r.pipeline_version,
                "thresholds_version": r.thresholds_version,
                "n_studies": r.n_studies,
                "n_judged": r.n_judged,
                "n_unchanged": r.n_unchanged,
                "n_errors": r.n_errors,
                "error_message": r.error_message,
            }
            for r in rows
        ]

    # -- decisions ------------------------------------------------------------------------

    def needs_judging(self, study_instance_uid: str, content_fingerprint: str, provenance: Provenance) -> bool:
        """False iff the study's current decision has the same decision key."""
        key = decision_key(content_fingerprint, provenance)
        with self._errors(f"read study {study_instance_uid}"), self._read.begin() as session:
            current_key = session.scalar(
                select(DecisionRecord.decision_key)
                .join(StudyRecord, StudyRecord.id == DecisionRecord.study_id)
                .where(StudyRecord.study_instance_uid == study_instance_uid, DecisionRecord.is_current.is_(True))
            )
        return current_key != key

    def save_decision(self, decision: Decision, *, run_id: str | None) -> SaveOutcome:
        """Store ``decision`` as the study's current one, in one transaction.

        The previous current decision, if any, is kept with ``is_current`` false. A decision with
        the current one's decision key writes nothing (``UNCHANGED``). Safe against concurrent
        writers on the same study: the loser of a race re-reads and tries once more.
        """
        _validate(decision)
        uid = decision.study_instance_uid
        key = decision_key(decision.content_fingerprint, decision.provenance)
        for attempt in (1, 2):
            try:
                with self._errors(f"save the decision on study {uid}"), self._write.begin() as session:
                    outcome = self._save(session, decision, key, run_id)
            except IntegrityError as exc:
                if attempt == 2:
                    raise StoreError(
                        f"cannot save the decision on study {uid} in {self._masked_url}: "
                        f"it kept changing under concurrent writers ({_reason(exc, self._engine.url)}); try again"
                    ) from exc
                logger.info("study %s was written concurrently; reading it again", uid)
                continue
            logger.debug("study %s: decision %s (%s)", uid, key[:12], outcome)
            return outcome
        raise AssertionError("unreachable")  # pragma: no cover

    def _current(self, session: Session, study_id: int) -> DecisionRecord | None:
        return session.scalars(
            select(DecisionRecord).where(DecisionRecord.study_id == study_id, DecisionRecord.is_current.is_(True))
        ).one_or_none()

    def _save(self, session: Session, decision: Decision, key: str, run_id: str | None) -> SaveOutcome:
        summary = decision.study
        now = _utcnow()
        study = session.scalars(
            select(StudyRecord).where(StudyRecord.study_instance_uid == summary.study_instance_uid)
        ).one_or_none()
        current = None if study is None else self._current(session, study.id)
        if current is not None and current.decision_key == key:
            return SaveOutcome.UNCHANGED
        if run_id is not None and session.get(RunRecord, run_id) is None:
            raise StoreError(f"cannot save the decision on study {summary.study_instance_uid}: no run {run_id!r}")
        if study is None:
            study = StudyRecord(study_instance_uid=summary.study_instance_uid, first_seen_at=now)
            session.add(study)
        study.patient_id = summary.patient_id
        study.patient_sex = summary.patient_sex
        study.patient_birth_date = summary.patient_birth_date
        study.upload_delay_h = summary.upload_delay_h
        study.accession_number = summary.accession_number
        study.institution = summary.institution
        study.modality = summary.modality
        study.study_date = summary.study_date
        study.study_time = summary.study_time
        study.study_description = summary.study_description
        study.source_uri = decision.source_uri
        study.last_seen_at = now
        session.flush()

        outcome = SaveOutcome.INSERTED
        if current is not None:
            # If a concurrent writer superseded it first, this updates nothing and the insert
            # below violates the one-current-decision index: the caller retries.
            session.execute(
                update(DecisionRecord)
                .where(DecisionRecord.id == current.id, DecisionRecord.is_current.is_(True))
                .values(is_current=False, superseded_at=now)
                .execution_options(synchronize_session=False)
            )
            outcome = SaveOutcome.SUPERSEDED

        item = decision.item
        session.add(
            DecisionRecord(
                study_id=study.id,
                run_id=run_id,
                is_current=True,
                content_fingerprint=decision.content_fingerprint,
                decision_key=key,
                verdict=str(decision.verdict),
                eligible=decision.eligible,
                eligible_until=decision.eligible_until,
                item_code=None if item is None else item.code,
                item_name_zh=None if item is None else item.name_zh,
                item_name_en=None if item is None else item.name_en,
                pipeline_version=decision.provenance.pipeline_version,
                thresholds_version=decision.provenance.thresholds_version,
                models=dict(sorted(decision.provenance.models.items())),
                n_series=summary.n_series,
                n_instances=summary.n_instances,
                decided_at=decision.decided_at,
                series=[s.as_dict() for s in decision.series],
                findings=[_finding_record(i, f) for i, f in enumerate(decision.findings)],
                metrics=[MetricRecord(name=name, value=float(value)) for name, value in decision.metrics.items()]
                + [
                    MetricRecord(name=m.metric, value=float(m.value), series_instance_uid=m.series_instance_uid)
                    for m in decision.measurements
                    if m.value is not None and math.isfinite(m.value)
                ],
            )
        )
        session.flush()
        return outcome

    # -- reading --------------------------------------------------------------------------

    def results(
        self,
        *,
        study_instance_uid: str | None = None,
        verdict: str | None = None,
        policy: EligibilityPolicy | None = None,
    ) -> list[dict[str, Any]]:
        """The current decision of each study, ordered by study date (unknown last), then UID.

        ``eligible`` is computed now, by ``policy`` (default: the site's, today on the site clock):
        a pass whose window has ended, or whose institution was not qualified on the study date,
        is not eligible; ``eligibility_reasons`` says why, ``recognition_mark`` which mark an
        eligible study may carry. The stored facts stay in ``machine_eligible(_until)``.

        Every dict has the keys ``study_instance_uid, accession_number, patient_id, institution,
        modality, study_date, study_time, item, verdict, eligible, eligible_until, findings,
        metrics, measurements, provenance, decided_at, source_uri, content_fingerprint, n_series,
        n_instances, history_count, series``; dates and times are ISO strings; ``series`` is one
        ``SeriesSummary.as_dict()`` per series (empty for decisions stored before roles were kept). ``metrics`` are study-level
        numbers by name; ``measurements`` the image-quality metrics, one dict (metric, value,
        series_instance_uid) per series or radiograph.
        """
        if verdict is not None:
            try:
                verdict = str(Verdict(verdict))
            except ValueError:
                allowed = ", ".join(v.value for v in Verdict)
                raise ValueError(f"verdict must be one of {allowed}; got {verdict!r}") from None
        counts = select(DecisionRecord.study_id, func.count(DecisionRecord.id).label("n"))
        if study_instance_uid is not None:  # count one study's decisions, not every study's (lookups)
            counts = counts.where(DecisionRecord.study_id.in_(
                select(StudyRecord.id).where(StudyRecord.study_instance_uid == study_instance_uid)
            ))
        history = counts.group_by(DecisionRecord.study_id).subquery()
        stmt = (
            select(DecisionRecord, StudyRecord, history.c.n)
            .join(StudyRecord, StudyRecord.id == DecisionRecord.study_id)
            .join(history, history.c.study_id == DecisionRecord.study_id)
            .where(DecisionRecord.is_current.is_(True))
            .options(selectinload(DecisionRecord.findings), selectinload(DecisionRecord.metrics))
        )
        if study_instance_uid is not None:
            stmt = stmt.where(StudyRecord.study_instance_uid == study_instance_uid)
        if verdict is not None:
            stmt = stmt.where(DecisionRecord.verdict == verdict)
        with self._errors("read the results"), self._read.begin() as session:
            rows = list(session.execute(stmt).tuples().all())
            overlays = human_overlay(session, (s.id for _d, s, _n in rows))
        # Sorted here, not in SQL: NULL placement and text collation differ between backends.
        rows.sort(key=lambda r: (r[1].study_date is None, r[1].study_date or dt.date.min, r[1].study_instance_uid))
        policy = policy if policy is not None else EligibilityPolicy.current()
        return [_result_dict(d, s, n, policy, overlays.get(s.id)) for d, s, n in rows]

    def history(self, study_instance_uid: str) -> list[dict[str, Any]]:
        """Every decision stored for the study, oldest first (empty if the study is unknown).

        ``human_decisions`` lists the radiologists' decisions on each machine decision (who,
        when, why; ``stands`` marks the one that counts now).
        """
        with self._errors(f"read the history of study {study_instance_uid}"), self._read.begin() as session:
            rows = session.scalars(
                select(DecisionRecord)
                .join(StudyRecord, StudyRecord.id == DecisionRecord.study_id)
                .where(StudyRecord.study_instance_uid == study_instance_uid)
                .order_by(DecisionRecord.id)
            ).all()
            humans = human_history(session, rows[0].study_id) if rows else {}
        return [
            {
                "verdict": d.verdict,
                "eligible": d.eligible,
                "decided_at": _iso(d.decided_at),
                "superseded_at": _iso(d.superseded_at),
                "is_current": d.is_current,
                "decision_key": d.decision_key,
                "content_fingerprint": d.content_fingerprint,
                "pipeline_version": d.pipeline_version,
                "thresholds_version": d.thresholds_version,
                "models": dict(d.models),
                "run_id": d.run_id,
                "human_decisions": humans.get(d.id, []),
            }
            for d in rows
        ]

    def series(self, study_instance_uid: str) -> tuple[SeriesSummary, ...]:
        """The series of the study's current decision, with their roles (empty for an unknown
        study or a decision stored before roles were kept)."""
        with self._errors(f"read the series of study {study_instance_uid}"), self._read.begin() as session:
            raw = session.scalar(
                select(DecisionRecord.series)
                .join(StudyRecord, StudyRecord.id == DecisionRecord.study_id)
                .where(StudyRecord.study_instance_uid == study_instance_uid, DecisionRecord.is_current.is_(True))
            )
        return stored_series(raw, study_instance_uid)

    def measurements(self, *, metric: str | None = None) -> list[dict[str, Any]]:
        """Every image-quality measurement of the current decisions, one dict per series and metric.

        Keys: ``metric, value, series_instance_uid, study_instance_uid, modality, institution,
        study_date, item_code, verdict`` (for calibration: distributions per modality, item and
        institution). Study-level numbers (``metrics`` of ``results``) are not included.
        """
        query = (
            select(MetricRecord, DecisionRecord, StudyRecord)
            .join(DecisionRecord, DecisionRecord.id == MetricRecord.decision_id)
            .join(StudyRecord, StudyRecord.id == DecisionRecord.study_id)
            .where(DecisionRecord.is_current.is_(True), MetricRecord.series_instance_uid.is_not(None))
            .order_by(StudyRecord.study_instance_uid, MetricRecord.id)
        )
        if metric is not None:
            query = query.where(MetricRecord.name == metric)
        with self._errors("read the measurements"), self._read.begin() as session:
            return [
                {
                    "metric": m.name,
                    "value": m.value,
                    "series_instance_uid": m.series_instance_uid,
                    "study_instance_uid": s.study_instance_uid,
                    "modality": s.modality,
                    "institution": s.institution,
                    "study_date": _iso(s.study_date),
                    "item_code": d.item_code,
                    "verdict": d.verdict,
                }
                for m, d, s in session.execute(query).all()
            ]

    def first_seen_at(self, study_instance_uid: str) -> dt.datetime | None:
        """When a run first saw the study (UTC), or None for a study not stored yet."""
        with self._errors(f"read when study {study_instance_uid} was first seen"), self._read.begin() as session:
            seen = session.scalar(
                select(StudyRecord.first_seen_at).where(StudyRecord.study_instance_uid == study_instance_uid)
            )
        return None if seen is None else (seen if seen.tzinfo is not None else seen.replace(tzinfo=dt.UTC))

    def patient_studies(self, patient_id: str, *, exclude_study_uid: str | None = None) -> list[PriorStudy]:
        """The other studies stored for ``patient_id``, with the identity values they recorded."""
        with self._errors("read a patient's studies"), self._read.begin() as session:
            query = select(StudyRecord).where(StudyRecord.patient_id == patient_id)
            if exclude_study_uid is not None:
                query = query.where(StudyRecord.study_instance_uid != exclude_study_uid)
            rows = session.scalars(query.order_by(StudyRecord.study_date, StudyRecord.id)).all()
            return [
                PriorStudy(
                    study_instance_uid=r.study_instance_uid,
                    study_date=r.study_date,
                    patient_sex=r.patient_sex,
                    patient_birth_date=r.patient_birth_date,
                )
                for r in rows
            ]

    @contextmanager
    def reading(self, action: str) -> Iterator[Session]:
        """A read-only transaction for other parts of the package (review, reports); database
        errors become ``StoreError("cannot <action> ...")``."""
        with self._errors(action), self._read.begin() as session:
            yield session

    @contextmanager
    def writing(self, action: str) -> Iterator[Session]:
        """A write transaction (SQLite: the write lock taken up front); committed on success.
        ``IntegrityError`` passes through (a lost race the caller may handle)."""
        with self._errors(action), self._write.begin() as session:
            yield session

    @contextmanager
    def study_lease(self, study_instance_uid: str, *, run_id: str | None) -> Iterator[bool]:
        """Hold the study's lease for this process and run inside the context (``store.leases``);
        yields False, holding nothing, when another live worker holds it."""
        from qc_pipeline.store.leases import LeaseHolder, StudyLeases

        if self._leases is None:
            self._leases = StudyLeases(self._engine)
        leases, holder = self._leases, LeaseHolder.this_process(run_id)
        with self._errors(f"take the lease of study {study_instance_uid}"):
            mine = leases.acquire(study_instance_uid, holder)
        try:
            yield mine
        finally:
            if mine:
                try:
                    with self._errors(f"give back the lease of study {study_instance_uid}"):
                        leases.release(study_instance_uid, holder)
                except StoreError as exc:
                    logger.warning("%s; the lease ends when it expires", exc)

    def _errors(self, action: str) -> AbstractContextManager[None]:
        return _db_errors(f"cannot {action} in the results database {self._masked_url}", self._engine.url)

    # -- source cursors (incremental runs) and re-scoring ------------------------------------

    def cursor(self, source_uri: str) -> SourceCursor | None:
        """Where the last complete run over ``source_uri`` got; None before the first one."""
        from qc_pipeline.store.models import SourceCursorRecord

        with self._errors(f"read the cursor of source {source_uri}"), self._read.begin() as session:
            row = session.scalars(
                select(SourceCursorRecord).where(SourceCursorRecord.source_uri == source_uri)
            ).one_or_none()
        if row is None:
            return None
        return SourceCursor(row.source_uri, row.kind, row.position, row.updated_at, row.run_id)

    def advance_cursor(
        self, source_uri: str, *, kind: str, position: str, expected: str | None, run_id: str | None = None
    ) -> bool:
        """Move the cursor of ``source_uri`` to ``position``, if it is still at ``expected``.

        Call it only once every study up to ``position`` is stored: then a run that dies before
        loses nothing, the next one lists the same studies again and skips those already judged.
        ``expected`` is the position read when the run started (None: there was no cursor).
        Returns False and writes nothing when another run moved the cursor meanwhile; its
        position stands (what this run covered beyond it is stored and will only be re-listed).
        """
        from qc_pipeline.store.models import SourceCursorRecord

        if not source_uri:
            raise ValueError("source_uri must be a non-empty string")
        if not kind or len(kind) > 32:
            raise ValueError(f"cursor kind must have 1 to 32 characters, got {kind!r}")
        if not position:
            raise ValueError(f"cursor position of {source_uri} must be a non-empty string, got {position!r}")
        with self._errors(f"move the cursor of source {source_uri}"):
            try:
                with self._write.begin() as session:
                    if run_id is not None and session.get(RunRecord, run_id) is None:
                        raise StoreError(f"cannot move the cursor of source {source_uri}: no run {run_id!r}")
                    query = select(SourceCursorRecord).where(SourceCursorRecord.source_uri == source_uri)
                    if session.get_bind().dialect.name == "postgresql":
                        query = query.with_for_update()
                    row = session.scalars(query).one_or_none()
                    if (None if row is None else row.position) != expected:
                        logger.info("cursor of %s moved by another run meanwhile; keeping its position", source_uri)
                        return False
                    now = _utcnow()
                    if row is None:
                        session.add(
                            SourceCursorRecord(
                                source_uri=source_uri, kind=kind, position=position, updated_at=now, run_id=run_id
                            )
                        )
                    else:
                        row.kind, row.position, row.updated_at, row.run_id = kind, position, now, run_id
            except IntegrityError:  # another run created the first cursor of this source meanwhile
                logger.info("cursor of %s created by another run meanwhile; keeping its position", source_uri)
                return False
        logger.info("cursor of %s moved to %s (%s)", source_uri, position, kind)
        return True

    def stale_studies(self, provenance: Provenance, *, limit: int | None = None) -> list[StaleStudy]:
        """Studies whose current decision used other thresholds or other model versions than
        ``provenance`` (the nightly re-scoring judges them again), the most recently stored
        first; at most ``limit`` of them.

        The pipeline version is not compared: a new release re-judges studies as they are listed.
        """
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        models = dict(provenance.models)
        query = (
            select(StudyRecord.study_instance_uid, StudyRecord.source_uri, DecisionRecord.thresholds_version, DecisionRecord.models)
            .join(DecisionRecord, DecisionRecord.study_id == StudyRecord.id)
            .where(DecisionRecord.is_current.is_(True))
            .order_by(StudyRecord.id.desc())
            .execution_options(yield_per=2000)
        )
        stale = []
        with self._errors("list the studies to re-score"), self._read.begin() as session:
            for uid, source_uri, thresholds_version, used_models in session.execute(query):
                used = dict(used_models or {})
                if thresholds_version != provenance.thresholds_version or used != models:
                    stale.append(StaleStudy(uid, source_uri, thresholds_version, used))
                    if limit is not None and len(stale) >= limit:
                        break
        return stale


def _validate(decision: Decision) -> None:
    """Refuse what the database would refuse, or would store wrongly, before writing anything."""
    uid = decision.study_instance_uid
    if not uid or len(uid) > UID_LENGTH:
        raise ValueError(f"study_instance_uid must have 1 to {UID_LENGTH} characters, got {uid!r}")
    if not decision.content_fingerprint or len(decision.content_fingerprint) > FINGERPRINT_LENGTH:
        raise ValueError(
            f"content_fingerprint of study {uid} must have 1 to {FINGERPRINT_LENGTH} characters, "
            f"got {len(decision.content_fingerprint)}"
        )
    if decision.decided_at.tzinfo is None or decision.decided_at.utcoffset() is None:
        raise ValueError(
            f"decided_at of study {uid} is a naive datetime ({decision.decided_at.isoformat()}); "
            "give it a time zone, e.g. datetime.now(datetime.UTC)"
        )
    for name, value in decision.metrics.items():
        if not math.isfinite(value):
            raise ValueError(f"metric {name!r} of study {uid} is {value}: only finite values can be stored")


def stored_series(raw: list[dict[str, Any]] | None, study_instance_uid: str) -> tuple[SeriesSummary, ...]:
    """The typed series of a stored decision; StoreError naming the study when a row does not read."""
    try:
        return tuple(SeriesSummary.from_dict(item) for item in raw or ())
    except ValueError as exc:
        raise StoreError(f"the stored series of study {study_instance_uid} cannot be read: {exc}") from exc


def _finding_record(ordinal: int, finding: Finding) -> FindingRecord:
    return FindingRecord(
        ordinal=ordinal,
        code=finding.code,
        category=str(finding.category),
        severity=str(finding.severity),
        message=finding.message,
        message_zh=finding.message_zh,
        value=finding.value,
        limit_=finding.limit,
        series_instance_uid=finding.series_instance_uid,
        sop_instance_uid=finding.sop_instance_uid,
    )


def _result_dict(
    d: DecisionRecord, s: StudyRecord, history_count: int, policy: EligibilityPolicy, overlay: Overlay | None = None
) -> dict[str, Any]:
    """``verdict`` is the machine's; ``eligible``/``eligible_until`` follow a standing human
    decision and negative-list flags (``eligibility_basis`` says which), then the window and the
    institution's qualification on ``policy.as_of``; the machine's own stored facts are
    ``machine_eligible``/``machine_eligible_until``."""
    models: Mapping[str, str] = d.models or {}
    stated, eligible_until, basis = effective_eligibility(d.eligible, d.eligible_until, overlay)
    human = None if overlay is None else overlay.human
    now = policy.judge(
        eligible=stated, until=eligible_until, final_verdict=d.verdict if human is None else human["verdict"],
        institution=s.institution, study_date=s.study_date, item_code=d.item_code,
    )
    registered = policy.register.resolve(s.institution)
    return {
        "study_instance_uid": s.study_instance_uid,
        "accession_number": s.accession_number,
        "patient_id": s.patient_id,
        "institution": s.institution,
        "modality": s.modality,
        "study_date": _iso(s.study_date),
        "study_time": _iso(s.study_time),
        "item": None
        if d.item_code is None
        else {"code": d.item_code, "name_zh": d.item_name_zh, "name_en": d.item_name_en},
        "verdict": d.verdict,
        "human_decision": human,
        "final_verdict": d.verdict if human is None else human["verdict"],
        "negative_flags": [] if overlay is None else overlay.flags,
        "eligible": now.eligible,
        "eligible_until": _iso(eligible_until),
        "eligibility_basis": basis,
        "eligibility_as_of": now.as_of.isoformat(),
        "eligibility_reasons": [r.as_dict() for r in now.reasons],
        "recognition_mark": now.mark,
        "registered_institution": None if registered is None else registered.name,
        "machine_eligible": d.eligible,
        "machine_eligible_until": _iso(d.eligible_until),
        "findings": [
            {
                "code": f.code,
                "category": f.category,
                "severity": f.severity,
                "message": f.message,
                "message_zh": f.message_zh,
                "value": f.value,
                "limit": f.limit_,
                "series_instance_uid": f.series_instance_uid,
                "sop_instance_uid": f.sop_instance_uid,
            }
            for f in d.findings
        ],
        "metrics": {m.name: m.value for m in d.metrics if m.series_instance_uid is None},
        "measurements": [
            {"metric": m.name, "value": m.value, "series_instance_uid": m.series_instance_uid}
            for m in d.metrics
            if m.series_instance_uid is not None
        ],
        "provenance": {
            "pipeline_version": d.pipeline_version,
            "thresholds_version": d.thresholds_version,
            "models": dict(sorted(models.items())),
        },
        "decided_at": _iso(d.decided_at),
        "source_uri": s.source_uri,
        "content_fingerprint": d.content_fingerprint,
        "n_series": d.n_series,
        "n_instances": d.n_instances,
        "history_count": int(history_count),
        "series": [x.as_dict() for x in stored_series(d.series, s.study_instance_uid)],
    }


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
