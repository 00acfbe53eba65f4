"""The results store: runs, the current decision per study and the history of earlier ones.

SQLite by default (one file, WAL, several threads writing), PostgreSQL in production. The schema
is migrated to the latest Alembic revision whenever a store is opened. ``ResultStore`` is made of
its parts: ``runs``, ``decisions`` (writes), ``queries`` (reads), ``cursors`` (incremental runs
and re-scoring); the engine and its errors are in ``engine``, the schema revision in ``schema``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

from sqlalchemy import Engine

from qc_pipeline.errors import StoreError
from qc_pipeline.store.cursors import Cursors
from qc_pipeline.store.decisions import DecisionWrites
from qc_pipeline.store.engine import db_errors, default_db_url, make_engine, masked_url
from qc_pipeline.store.queries import StudyQueries
from qc_pipeline.store.runs import RunLog
from qc_pipeline.store.schema import at_head, upgrade_to_head

logger = logging.getLogger(__name__)


class ResultStore(RunLog, DecisionWrites, StudyQueries, Cursors):
    """The results database. Thread-safe: share one per database and process.

    Open with ``ResultStore.open(url)``; ``close()`` (or ``with``) releases its connections.
    """

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self._leases: Any = None  # store.leases.StudyLeases, made on first use

    @classmethod
    def open(cls, url: str | None = None) -> ResultStore:
        """Open (and migrate to the latest schema) the database at ``url``.

        ``None`` means the default SQLite file (``default_db_url()``). ``postgresql://`` URLs use
        psycopg 3. Raises ``StoreError`` when the database cannot be reached, opened or migrated.
        """
        engine = make_engine(url or default_db_url())
        masked = masked_url(engine.url)
        try:
            with db_errors(f"cannot open the results database {masked}", engine.url):
                if not at_head(engine):
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
