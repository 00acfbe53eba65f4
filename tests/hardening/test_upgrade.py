"""Upgrades: a results database written by the first release (schema revision 0001) migrates
forward to the latest revision with its data intact, on SQLite (the committed file) and on
PostgreSQL (the same rows made by the same script)."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from qc_pipeline.domain import CTRole, Decision, Provenance, SeriesKind, SeriesSummary, StudySummary, Verdict
from qc_pipeline.eligibility import EligibilityPolicy
from qc_pipeline.store import ResultStore, SaveOutcome, head_revision
from tests.data.make_results_rev0001 import FILE, RUN_ID, STUDIES, make_database


def revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def old_database(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        copy = tmp_path / "results.sqlite"
        shutil.copy(FILE, copy)
        url = f"sqlite:///{copy}"
    else:
        url = request.getfixturevalue("private_db")
        make_database(url)
    assert revision(url) == "0001"
    return url


def test_the_committed_file_is_at_the_first_revision():
    assert revision(f"sqlite:///{FILE}") == "0001"
    assert FILE.stat().st_size < 200_000


def test_a_first_release_database_migrates_with_its_data_intact(old_database):
    with ResultStore.open(old_database) as store:  # migrates to head on open
        assert revision(old_database) == head_revision()
        tables = set(inspect(store.engine).get_table_names())
        assert {"source_cursors", "study_leases"} <= tables
        # eligibility is computed when read: asked on a day inside the stored window
        rows = {
            r["study_instance_uid"]: r
            for r in store.results(policy=EligibilityPolicy.current(as_of=dt.date(2026, 8, 21)))
        }
        assert set(rows) == set(STUDIES.values())

        passed = rows[STUDIES["pass"]]
        assert (passed["verdict"], passed["eligible"], passed["eligible_until"]) == ("pass", True, "2026-08-21")
        assert passed["recognition_mark"] == "渝北HR"
        assert passed["institution"] == "重庆医科大学附属第一医院" and passed["patient_id"] == "P-0001"
        assert passed["item"] == {"code": "YB-036", "name_zh": "胸部CT平扫", "name_en": "CT chest, plain"}
        assert passed["metrics"] == {"upload_delay_h": 2.5}
        assert passed["study_date"] == "2026-05-21" and passed["study_time"] == "09:30:00"
        assert passed["decided_at"] == "2026-06-01T02:01:00+00:00"
        # decided before series roles were kept: none, not an error
        assert all(r["series"] == [] for r in rows.values()) and store.series(STUDIES["pass"]) == ()

        failed = rows[STUDIES["fail"]]
        (finding,) = failed["findings"]
        assert (
            finding["code"] == "integrity.pixel_data.truncated" and finding["message_zh"] == "图像 2.dcm 像素数据不完整"
        )
        assert (finding["value"], finding["limit"], finding["sop_instance_uid"]) == (
            "4096",
            "8192",
            STUDIES["fail"] + ".1.2",
        )

        history = store.history(STUDIES["rejudged"])
        assert [(h.verdict, h.is_current) for h in history] == [("review", False), ("pass", True)]
        assert history[0].superseded_at == dt.datetime(2026, 6, 1, 2, 2, tzinfo=dt.UTC)
        assert history[0].as_dict()["superseded_at"] == "2026-06-01T02:02:00+00:00"
        assert rows[STUDIES["rejudged"]]["history_count"] == 2
        (run,) = store.runs()
        assert (run.run_id, run.status, run.n_judged) == (RUN_ID, "completed", 4)

        # the migrated database takes new decisions as a new one would
        summary = StudySummary(study_instance_uid=STUDIES["fail"], patient_id="P-0002", modalities=("CT",))
        decision = Decision(
            study=summary,
            verdict=Verdict.PASS,
            findings=(),
            provenance=Provenance(pipeline_version="0.2.0", thresholds_version="2026.11+def", models={}),
            content_fingerprint="e" * 64,
            decided_at=dt.datetime(2026, 11, 1, tzinfo=dt.UTC),
            eligible=False,
            series=(
                SeriesSummary(
                    STUDIES["fail"] + ".1", 1, "胸部平扫", "CT", 2, SeriesKind.CT, CTRole("PLAIN", None, 5.0)
                ),
            ),
        )
        assert store.save_decision(decision, run_id=None) is SaveOutcome.SUPERSEDED
        assert store.series(STUDIES["fail"]) == decision.series
        assert [h.is_current for h in store.history(STUDIES["fail"])] == [False, True]
    # opening again changes nothing
    with ResultStore.open(old_database) as store:
        assert len(store.results()) == 3
