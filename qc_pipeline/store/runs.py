"""The runs of the results store: started, finished (or found interrupted) and listed."""

from __future__ import annotations

import logging
import uuid
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from qc_pipeline.errors import StoreError
from qc_pipeline.store.engine import StoreSessions
from qc_pipeline.store.models import RunRecord, utcnow
from qc_pipeline.store.read_models import RunSummary

logger = logging.getLogger(__name__)


class RunLog(StoreSessions):
    """``ResultStore``'s runs."""

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
                    started_at=utcnow(),
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
            run.finished_at = utcnow()
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
                    finished_at=utcnow(),
                    status=status,
                    n_studies=n_studies,
                    n_judged=n_judged,
                    n_unchanged=n_unchanged,
                    n_errors=n_errors,
                    error_message=error_message,
                )
            )
            if cast("CursorResult[Any]", result).rowcount != 1:
                raise StoreError(f"cannot finish run {run_id!r}: no such run in {self._masked_url}")
        logger.info("run %s finished: %s", run_id, status)

    def runs(self, limit: int = 20) -> list[RunSummary]:
        """The latest ``limit`` runs, newest first."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        with self._errors("read the runs"), self._read.begin() as session:
            rows = session.scalars(
                select(RunRecord).order_by(RunRecord.started_at.desc(), RunRecord.id).limit(limit)
            ).all()
        return [
            RunSummary(
                run_id=r.id,
                started_at=r.started_at,
                finished_at=r.finished_at,
                source_uri=r.source_uri,
                status=r.status,
                pipeline_version=r.pipeline_version,
                thresholds_version=r.thresholds_version,
                n_studies=r.n_studies,
                n_judged=r.n_judged,
                n_unchanged=r.n_unchanged,
                n_errors=r.n_errors,
                error_message=r.error_message,
            )
            for r in rows
        ]
