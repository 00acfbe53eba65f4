"""The results database: runs, the current decision per study, and the history of earlier ones.

SQLite by default (``default_db_url()``), PostgreSQL in production; the schema is migrated with
Alembic whenever a store is opened.
"""

from __future__ import annotations

from qc_pipeline.store import exam_logs, leases, recognition, review, spotcheck, writeback  # noqa: F401  (their tables join Base.metadata)
from qc_pipeline.store.decisions import SaveOutcome, decision_key
from qc_pipeline.store.engine import default_data_dir, default_db_url
from qc_pipeline.store.read_models import (
    DecisionHistoryEntry,
    RunSummary,
    SeriesMeasurement,
    SourceCursor,
    StaleStudy,
    StoredMeasurement,
    StudyResult,
)
from qc_pipeline.store.repository import ResultStore
from qc_pipeline.store.schema import head_revision, upgrade_to_head

__all__ = [
    "DecisionHistoryEntry",
    "ResultStore",
    "RunSummary",
    "SaveOutcome",
    "SeriesMeasurement",
    "SourceCursor",
    "StaleStudy",
    "StoredMeasurement",
    "StudyResult",
    "decision_key",
    "default_data_dir",
    "default_db_url",
    "head_revision",
    "upgrade_to_head",
]
