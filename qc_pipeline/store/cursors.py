"""Source cursors (how far incremental runs over a source got) and the studies to re-score."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from qc_pipeline.domain import Provenance
from qc_pipeline.errors import StoreError
from qc_pipeline.store.engine import StoreSessions
from qc_pipeline.store.models import DecisionRecord, RunRecord, SourceCursorRecord, StudyRecord, utcnow
from qc_pipeline.store.read_models import SourceCursor, StaleStudy

logger = logging.getLogger(__name__)


class Cursors(StoreSessions):
    """``ResultStore``'s source cursors and re-scoring list."""

    def cursor(self, source_uri: str) -> SourceCursor | None:
        """Where the last complete run over ``source_uri`` got; None before the first one."""
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
                    now = utcnow()
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
            select(
                StudyRecord.study_instance_uid,
                StudyRecord.source_uri,
                DecisionRecord.thresholds_version,
                DecisionRecord.models,
            )
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
