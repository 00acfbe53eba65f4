"""The results store on SQLite and PostgreSQL: migrations, save outcomes, results, history, races."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import threading
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event, func, inspect, select, text, update
from sqlalchemy.orm import Session

from qc_pipeline.domain import (
    Category,
    CTRole,
    Decision,
    DRRole,
    Finding,
    ItemRef,
    Measurement,
    MRRole,
    Provenance,
    SeriesKind,
    SeriesSummary,
    Severity,
    StudySummary,
    Verdict,
)
from qc_pipeline.eligibility import EligibilityPolicy
from qc_pipeline.errors import StoreError
from qc_pipeline.store import (
    ResultStore,
    SaveOutcome,
    decision_key,
    default_db_url,
    head_revision,
    upgrade_to_head,
)
from qc_pipeline.store.models import Base, DecisionRecord, RunRecord

DATA_TABLES = ("runs", "studies", "decisions", "findings", "metrics")
"""Tables a saved decision writes to (row counts)."""
TABLES = (
    *DATA_TABLES,
    "source_cursors",
    "review_users",
    "review_claims",
    "human_decisions",
    "negative_flags",
    "review_events",
    "review_sessions",
    "exam_log_entries",
    "non_recognitions",
    "recognition_tokens",
    "recognition_events",
    "recognition_api_calls",
    "recognition_writebacks",
    "finding_reviews",
    "study_leases",
    "spot_check_draws",
    "spot_check_population",
    "spot_check_cases",
    "spot_check_assignments",
    "spot_check_grades",
    "spot_check_summaries",
)
RESULT_KEYS = {
    "study_instance_uid",
    "accession_number",
    "patient_id",
    "institution",
    "modality",
    "study_date",
    "study_time",
    "item",
    "verdict",
    "eligible",
    "eligible_until",
    "findings",
    "metrics",
    "measurements",
    "provenance",
    "decided_at",
    "source_uri",
    "content_fingerprint",
    "n_series",
    "n_instances",
    "history_count",
    "human_decision",
    "final_verdict",
    "negative_flags",
    "eligibility_basis",
    "machine_eligible",
    "machine_eligible_until",
    "series",
    "eligibility_as_of",
    "eligibility_reasons",
    "recognition_mark",
    "registered_institution",
}
UID_A = "1.2.826.0.1.3680043.10.9001"
UID_B = "1.2.826.0.1.3680043.10.9002"
UID_C = "1.2.826.0.1.3680043.10.9003"
DECIDED = dt.datetime(2026, 10, 20, 4, 0, tzinfo=dt.UTC)
PROV = Provenance(pipeline_version="0.1.0", thresholds_version="th-1", models={"lung": "1.0@ab12", "brain": "2.1@cd34"})
FINDINGS = (  # deliberately not in code, category or severity order: the stored order must be kept
    Finding(
        "metadata.patient.id.missing",
        Category.METADATA,
        Severity.FAIL,
        "Patient ID is missing",
        "缺少患者ID",
        value=None,
        limit="present",
        series_instance_uid=UID_A + ".1",
    ),
    Finding(
        "integrity.file.truncated",
        Category.INTEGRITY,
        Severity.REVIEW,
        "File is truncated",
        "文件被截断",
        value="1000 bytes",
        limit="5000 bytes",
        series_instance_uid=UID_A + ".1",
        sop_instance_uid=UID_A + ".1.7",
    ),
    Finding("ai.score", Category.AI, Severity.INFO, "AI score recorded"),
)


def make_decision(
    uid: str = UID_A,
    *,
    fingerprint: str = "f" * 64,
    verdict: Verdict = Verdict.FAIL,
    provenance: Provenance = PROV,
    study_date: dt.date | None = dt.date(2026, 10, 12),
    **changes: Any,
) -> Decision:
    summary = StudySummary(
        study_instance_uid=uid,
        patient_id="P-0001",
        accession_number="ACC0001",
        institution="四川省人民医院",
        modalities=("CT",),
        study_date=study_date,
        study_time=dt.time(9, 30),
        study_description="CT chest",
        n_series=2,
        n_instances=120,
    )
    fields: dict[str, Any] = {
        "study": summary,
        "verdict": verdict,
        "findings": FINDINGS,
        "provenance": provenance,
        "content_fingerprint": fingerprint,
        "decided_at": DECIDED,
        "metrics": {"snr": 41.5, "cnr": 3.25},
        "source_uri": "file:///incoming",
    }
    fields.update(changes)
    return Decision(**fields)


def count_rows(store: ResultStore) -> dict[str, int]:
    with store.engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one() for t in DATA_TABLES}


def current_rows(store: ResultStore, uid: str) -> int:
    with store.engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT COUNT(*) FROM decisions d JOIN studies s ON s.id = d.study_id "
                "WHERE s.study_instance_uid = :uid AND d.is_current"
            ),
            {"uid": uid},
        ).scalar_one()


# -- opening and migrating ---------------------------------------------------------------


def test_migrating_an_empty_database_twice_is_idempotent(db_url: str) -> None:
    first = ResultStore.open(db_url)
    try:
        upgrade_to_head(first.engine)  # at head already: a no-op
        upgrade_to_head(first.engine)
        with first.engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [head_revision()]
            if conn.dialect.name == "postgresql":
                schema = conn.execute(text("SELECT current_schema()")).scalar_one()
                assert schema.startswith("qc_test_")
                found = (
                    conn.execute(
                        text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s"), {"s": schema}
                    )
                    .scalars()
                    .all()
                )
                assert set(found) == {*TABLES, "alembic_version"}
    finally:
        first.close()
    with ResultStore.open(db_url) as second:
        assert count_rows(second) == dict.fromkeys(DATA_TABLES, 0)


def test_models_match_the_migrations(store: ResultStore) -> None:
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []


def test_migration_0015_keeps_the_measurements_stored_before_without_unit_or_detail(db_url: str) -> None:
    from alembic import command

    from qc_pipeline.store.schema import alembic_config

    measured = (Measurement("ct.noise_hu", 12.5, "HU", "30 slices", series_instance_uid=UID_A + ".1"),)
    with ResultStore.open(db_url) as store:
        store.save_decision(make_decision(UID_A, measurements=measured), run_id=None)
        with store.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0014")
        with store.engine.connect() as conn:
            columns = {c["name"] for c in inspect(conn).get_columns("metrics")}
            assert "unit" not in columns and "detail" not in columns
        upgrade_to_head(store.engine)
        (row,) = store.measurements()
        assert (row.metric, row.value, row.unit, row.detail) == ("ct.noise_hu", 12.5, None, None)
        (result,) = store.results()
        assert result["metrics"] == {"snr": 41.5, "cnr": 3.25}  # study-level numbers survive the round trip


def test_sqlite_connection_settings(tmp_path: Path) -> None:
    with ResultStore.open(f"sqlite:///{tmp_path / 'r.sqlite'}") as store, store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000


def test_a_database_from_a_newer_version_is_refused(db_url: str) -> None:
    with ResultStore.open(db_url) as store, store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    with pytest.raises(
        StoreError, match=r"schema revision '9999_future', unknown .* newer version; upgrade qc-pipeline"
    ):
        ResultStore.open(db_url)


def test_unreachable_server_raises_store_error_without_the_password() -> None:
    url = "postgresql+psycopg://qc:s3cret-pw@127.0.0.1:1/test"
    expected = r"^cannot open the results database postgresql\+psycopg://qc:\*\*\*@127\.0\.0\.1:1/test: "
    with pytest.raises(StoreError, match=expected) as info:
        ResultStore.open(url)
    assert "s3cret-pw" not in str(info.value)
    assert "\n" not in str(info.value)


def test_plain_postgresql_url_uses_psycopg() -> None:
    with pytest.raises(
        StoreError, match=r"^cannot open the results database postgresql\+psycopg://qc:\*\*\*@127\.0\.0\.1:1/"
    ):
        ResultStore.open("postgresql://qc:pw@127.0.0.1:1/test")


def test_unopenable_sqlite_file_raises_store_error(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(
        StoreError, match=r"^cannot open the results database sqlite:///.*/file/r\.sqlite: .*unable to open"
    ):
        ResultStore.open(f"sqlite:///{not_a_dir / 'r.sqlite'}")


def test_invalid_url_raises_store_error_without_the_password() -> None:
    with pytest.raises(StoreError, match=r"invalid results database URL 'postgresql://u:\*\*\*@host:port/db'") as info:
        ResultStore.open("postgresql://u:pw-123@host:port/db")
    assert "pw-123" not in str(info.value)
    with pytest.raises(StoreError, match=r"invalid results database URL 'not a url'"):
        ResultStore.open("not a url")


def test_unknown_driver_raises_store_error() -> None:
    with pytest.raises(StoreError, match=r"cannot open the results database nosuchdb://h/d: .*supported: sqlite"):
        ResultStore.open("nosuchdb://h/d")


def test_default_db_url_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QC_DATA_DIR", str(tmp_path / "qc"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_db_url() == f"sqlite:///{tmp_path / 'qc' / 'results.sqlite'}"
    assert (tmp_path / "qc").is_dir()
    monkeypatch.delenv("QC_DATA_DIR")
    assert default_db_url() == f"sqlite:///{tmp_path / 'xdg' / 'qc-pipeline' / 'results.sqlite'}"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_db_url() == f"sqlite:///{tmp_path / 'home' / '.local' / 'share' / 'qc-pipeline' / 'results.sqlite'}"


def test_open_without_url_creates_the_default_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QC_DATA_DIR", str(tmp_path / "data"))
    with ResultStore.open() as store:
        assert store.results() == []
    assert (tmp_path / "data" / "results.sqlite").is_file()


def test_uncreatable_data_dir_raises_store_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("QC_DATA_DIR", str(tmp_path / "file" / "data"))
    with pytest.raises(StoreError, match=r"cannot create the data directory .*; set \$QC_DATA_DIR"):
        ResultStore.open()


# -- decision keys and saving --------------------------------------------------------------


def test_decision_key_covers_fingerprint_versions_and_models() -> None:
    key = decision_key("abc", PROV)
    assert len(key) == 64 and int(key, 16) >= 0
    reordered = Provenance("0.1.0", "th-1", dict(reversed(list(PROV.models.items()))))
    assert decision_key("abc", reordered) == key
    variants = [
        decision_key("abd", PROV),
        decision_key("abc", dataclasses.replace(PROV, pipeline_version="0.1.1")),
        decision_key("abc", dataclasses.replace(PROV, thresholds_version="th-2")),
        decision_key("abc", dataclasses.replace(PROV, models={"lung": "1.0@ab12"})),
        decision_key("abc", dataclasses.replace(PROV, models={**PROV.models, "lung": "1.1@ef56"})),
    ]
    assert len({key, *variants}) == 6


def test_save_inserted_then_unchanged_writes_nothing(store: ResultStore) -> None:
    decision = make_decision()
    assert store.needs_judging(UID_A, decision.content_fingerprint, PROV)
    assert store.save_decision(decision, run_id=None) is SaveOutcome.INSERTED
    rows = count_rows(store)
    assert rows == {"runs": 0, "studies": 1, "decisions": 1, "findings": 3, "metrics": 2}
    assert not store.needs_judging(UID_A, decision.content_fingerprint, PROV)
    assert store.needs_judging(UID_A, "e" * 64, PROV)
    assert store.needs_judging(
        UID_A, decision.content_fingerprint, dataclasses.replace(PROV, thresholds_version="th-2")
    )
    assert store.needs_judging(UID_B, decision.content_fingerprint, PROV)

    later = make_decision(decided_at=DECIDED + dt.timedelta(days=1), verdict=Verdict.PASS)  # same key
    assert store.save_decision(later, run_id=None) is SaveOutcome.UNCHANGED
    assert count_rows(store) == rows
    assert store.results()[0]["verdict"] == "fail"


def test_changed_fingerprint_supersedes_and_keeps_history(store: ResultStore) -> None:
    run_id = store.start_run(source_uri="file:///incoming", pipeline_version="0.1.0", thresholds_version="th-1")
    first = make_decision()
    second = make_decision(
        fingerprint="e" * 64,
        verdict=Verdict.PASS,
        findings=(),
        metrics={},
        decided_at=DECIDED + dt.timedelta(hours=1),
        study=dataclasses.replace(first.study, accession_number="ACC0001-R", n_instances=121),
    )
    assert store.save_decision(first, run_id=run_id) is SaveOutcome.INSERTED
    assert store.save_decision(second, run_id=None) is SaveOutcome.SUPERSEDED
    assert store.save_decision(second, run_id=None) is SaveOutcome.UNCHANGED

    history = store.history(UID_A)
    assert [h.verdict for h in history] == [Verdict.FAIL, Verdict.PASS]
    assert [h.is_current for h in history] == [False, True]
    assert [h.run_id for h in history] == [run_id, None]
    assert [h.decision_key for h in history] == [decision_key("f" * 64, PROV), decision_key("e" * 64, PROV)]
    assert history[0].superseded_at is not None and history[1].superseded_at is None
    assert history[0].superseded_at.tzinfo is not None and history[0].as_dict()["verdict"] == "fail"
    assert current_rows(store, UID_A) == 1
    assert count_rows(store) == {"runs": 1, "studies": 1, "decisions": 2, "findings": 3, "metrics": 2}
    assert store.history(UID_B) == []

    (row,) = store.results()
    assert row["verdict"] == "pass" and row["findings"] == [] and row["metrics"] == {}
    assert row["accession_number"] == "ACC0001-R" and row["n_instances"] == 121
    assert row["content_fingerprint"] == "e" * 64
    assert row["history_count"] == 2


def test_save_validates_before_writing(store: ResultStore) -> None:
    with pytest.raises(ValueError, match=r"study_instance_uid must have 1 to 64 characters"):
        store.save_decision(make_decision("1." * 40), run_id=None)
    with pytest.raises(ValueError, match=r"decided_at of study .* is a naive datetime"):
        store.save_decision(make_decision(decided_at=dt.datetime(2026, 10, 20, 4, 0)), run_id=None)
    with pytest.raises(ValueError, match=r"metric 'snr' of study .* is nan: only finite values"):
        store.save_decision(make_decision(metrics={"snr": math.nan}), run_id=None)
    with pytest.raises(ValueError, match=r"content_fingerprint of study .* must have 1 to 128 characters"):
        store.save_decision(make_decision(fingerprint=""), run_id=None)
    with pytest.raises(StoreError, match=r"cannot save the decision on study .*: no run 'no-such-run'"):
        store.save_decision(make_decision(), run_id="no-such-run")
    assert count_rows(store) == dict.fromkeys(DATA_TABLES, 0)


# -- results ------------------------------------------------------------------------------


def test_results_shape_and_values(store: ResultStore) -> None:
    item = ItemRef(code="CT-01", name_zh="胸部CT平扫", name_en="Chest CT, plain")
    store.save_decision(
        make_decision(UID_B, item=item, eligible=True, eligible_until=dt.date(2027, 1, 12)), run_id=None
    )
    store.save_decision(make_decision(UID_A, verdict=Verdict.REVIEW), run_id=None)
    store.save_decision(make_decision(UID_C, study_date=None, verdict=Verdict.NOT_APPLICABLE), run_id=None)

    rows = store.results(policy=EligibilityPolicy.current(as_of=dt.date(2026, 10, 20)))
    assert [r["study_instance_uid"] for r in rows] == [UID_A, UID_B, UID_C]  # same date: by UID; no date last
    assert all(set(r) == RESULT_KEYS for r in rows)
    a, b, c = rows
    assert a == {
        "study_instance_uid": UID_A,
        "accession_number": "ACC0001",
        "patient_id": "P-0001",
        "institution": "四川省人民医院",
        "modality": "CT",
        "study_date": "2026-10-12",
        "study_time": "09:30:00",
        "item": None,
        "verdict": "review",
        "human_decision": None,
        "final_verdict": "review",
        "negative_flags": [],
        "eligible": False,
        "eligible_until": None,
        "eligibility_basis": "machine",
        "machine_eligible": False,
        "machine_eligible_until": None,
        "eligibility_as_of": "2026-10-20",
        "eligibility_reasons": [
            {
                "code": "verdict.not_pass",
                "message": "the QC verdict is review, not pass",
                "message_zh": "质控结论为待复核，非合格",
            }
        ],
        "recognition_mark": None,
        "registered_institution": "四川省人民医院",
        "findings": [f.as_dict() for f in FINDINGS],
        "metrics": {"snr": 41.5, "cnr": 3.25},
        "measurements": [],
        "provenance": {
            "pipeline_version": "0.1.0",
            "thresholds_version": "th-1",
            "models": {"brain": "2.1@cd34", "lung": "1.0@ab12"},
        },
        "decided_at": "2026-10-20T04:00:00+00:00",
        "source_uri": "file:///incoming",
        "content_fingerprint": "f" * 64,
        "n_series": 2,
        "n_instances": 120,
        "history_count": 1,
        "series": [],
    }
    assert [f["code"] for f in a["findings"]] == ["metadata.patient.id.missing", "integrity.file.truncated", "ai.score"]
    assert b["item"] == {"code": "CT-01", "name_zh": "胸部CT平扫", "name_en": "Chest CT, plain"}
    assert b["eligible"] is True and b["eligible_until"] == "2027-01-12"
    assert c["study_date"] is None and c["verdict"] == "not_applicable"


def test_study_results_are_typed_and_results_is_their_json_form(store: ResultStore) -> None:
    item = ItemRef(code="CT-01", name_zh="胸部CT平扫", name_en="Chest CT, plain")
    measured = (Measurement("ct.noise_hu", 12.5, "HU", "30 slices", series_instance_uid=UID_B + ".1"),)
    store.save_decision(
        make_decision(UID_B, item=item, eligible=True, eligible_until=dt.date(2027, 1, 12), measurements=measured),
        run_id=None,
    )
    policy = EligibilityPolicy.current(as_of=dt.date(2026, 10, 20))
    (typed,) = store.study_results(policy=policy)
    assert (typed.item, typed.verdict, typed.final_verdict) == (item, Verdict.FAIL, Verdict.FAIL)
    assert (typed.study_date, typed.study_time) == (dt.date(2026, 10, 12), dt.time(9, 30))
    assert typed.findings == FINDINGS and typed.provenance == PROV
    assert typed.decided_at == DECIDED and typed.decided_at.tzinfo is not None
    (m,) = typed.measurements
    assert (m.metric, m.value, m.unit, m.detail) == ("ct.noise_hu", 12.5, "HU", "30 slices")
    assert store.results(policy=policy) == [typed.as_dict()]
    with pytest.raises(dataclasses.FrozenInstanceError):
        typed.verdict = Verdict.PASS  # type: ignore[misc]


def test_measurements_are_stored_per_series_and_read_back(store: ResultStore) -> None:
    series_1, series_2 = UID_A + ".1", UID_A + ".2"
    measured = (
        Measurement("ct.noise_hu", 12.5, "HU", "global noise level over 30 slices", series_instance_uid=series_1),
        Measurement("ct.noise_hu", 14.0, "HU", series_instance_uid=series_2),
        Measurement("ct.air_hu", None, "HU", "no air in the field of view", series_instance_uid=series_2),
    )
    item = ItemRef(code="YB-036", name_zh="胸部CT平扫", name_en="Chest CT, plain")
    store.save_decision(make_decision(UID_A, measurements=measured, item=item), run_id=None)
    store.save_decision(make_decision(UID_B), run_id=None)
    (row,) = store.results(study_instance_uid=UID_A)
    assert row["metrics"] == {"snr": 41.5, "cnr": 3.25}  # study-level numbers stay apart
    assert row["measurements"] == [  # a metric that could not be measured has no row
        {"metric": "ct.noise_hu", "value": 12.5, "series_instance_uid": series_1},
        {"metric": "ct.noise_hu", "value": 14.0, "series_instance_uid": series_2},
    ]
    rows = store.measurements(metric="ct.noise_hu")
    assert [(r.value, r.item_code, r.institution, r.modality, r.verdict) for r in rows] == [
        (12.5, "YB-036", "四川省人民医院", "CT", Verdict.FAIL),
        (14.0, "YB-036", "四川省人民医院", "CT", Verdict.FAIL),
    ]
    # the unit and how it was measured are kept; a measurement that gave no detail has None
    assert [(r.series_instance_uid, r.unit, r.detail) for r in rows] == [
        (series_1, "HU", "global noise level over 30 slices"),
        (series_2, "HU", None),
    ]
    assert rows[0].study_instance_uid == UID_A and rows[0].as_dict()["unit"] == "HU"
    assert store.measurements(metric="ct.air_hu") == []
    # A new decision replaces the current measurements; history keeps the old ones out of view.
    store.save_decision(make_decision(UID_A, fingerprint="e" * 64, measurements=measured[:1]), run_id=None)
    assert [r.value for r in store.measurements()] == [12.5]


def test_results_filters(store: ResultStore) -> None:
    store.save_decision(make_decision(UID_A, verdict=Verdict.PASS), run_id=None)
    store.save_decision(make_decision(UID_B, verdict=Verdict.FAIL), run_id=None)
    store.save_decision(make_decision(UID_C, verdict=Verdict.FAIL), run_id=None)
    assert [r["study_instance_uid"] for r in store.results(verdict="fail")] == [UID_B, UID_C]
    assert [r["study_instance_uid"] for r in store.results(verdict=Verdict.PASS)] == [UID_A]
    assert store.results(verdict="review") == []
    assert [r["verdict"] for r in store.results(study_instance_uid=UID_B)] == ["fail"]
    assert store.results(study_instance_uid=UID_B, verdict="pass") == []
    assert store.results(study_instance_uid="-") == []
    with pytest.raises(ValueError, match=r"verdict must be one of pass, review, fail, not_applicable; got 'ok'"):
        store.results(verdict="ok")


def test_results_loads_findings_and_metrics_in_bulk(store: ResultStore) -> None:
    for n in range(6):
        store.save_decision(make_decision(f"1.2.3.{n}"), run_id=None)
    selects: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            selects.append(statement)

    event.listen(store.engine, "before_cursor_execute", record)
    try:
        rows = store.results()
    finally:
        event.remove(store.engine, "before_cursor_execute", record)
    assert len(rows) == 6 and all(len(r["findings"]) == 3 for r in rows)
    # decisions+studies, then one query each for findings and metrics, human decisions and flags
    assert len(selects) == 5


def test_datetimes_are_timezone_aware_utc(store: ResultStore) -> None:
    shanghai = dt.datetime(2026, 10, 20, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
    store.save_decision(make_decision(decided_at=shanghai), run_id=None)
    (row,) = store.results()
    assert row["decided_at"] == "2026-10-20T04:00:00+00:00"
    assert dt.datetime.fromisoformat(row["decided_at"]) == shanghai
    run_id = store.start_run(source_uri="s", pipeline_version="0.1.0", thresholds_version="th-1")
    with Session(store.engine) as session:
        decided = session.scalars(select(DecisionRecord.decided_at)).one()
        started = session.scalars(select(RunRecord.started_at).where(RunRecord.id == run_id)).one()
    for value in (decided, started):
        assert value.tzinfo is not None and value.utcoffset() == dt.timedelta(0)
    assert decided == shanghai
    assert abs(dt.datetime.now(dt.UTC) - started) < dt.timedelta(minutes=5)


# -- runs ---------------------------------------------------------------------------------


def test_runs_start_finish_and_list(store: ResultStore) -> None:
    first = store.start_run(source_uri="file:///a", pipeline_version="0.1.0", thresholds_version="th-1")
    second = store.start_run(source_uri="file:///b", pipeline_version="0.1.0", thresholds_version="th-1")
    store.finish_run(
        first,
        status="incomplete",
        n_studies=5,
        n_judged=3,
        n_unchanged=1,
        n_errors=1,
        error_message="1 of 4 studies could not be judged",
    )
    runs = store.runs()
    assert [r.run_id for r in runs] == [second, first]
    done = runs[1]
    assert (done.status, done.n_studies, done.n_judged, done.n_unchanged, done.n_errors) == ("incomplete", 5, 3, 1, 1)
    assert done.error_message == "1 of 4 studies could not be judged"
    assert done.finished_at is not None and done.finished_at >= done.started_at
    assert done.started_at.tzinfo is not None and done.as_dict()["started_at"] == done.started_at.isoformat()
    assert runs[0].status == "running" and runs[0].finished_at is None
    assert [r.run_id for r in store.runs(limit=1)] == [second]
    with pytest.raises(StoreError, match=r"cannot finish run 'nope': no such run"):
        store.finish_run("nope", status="completed", n_studies=0, n_judged=0, n_unchanged=0, n_errors=0)
    with pytest.raises(ValueError, match=r"limit must be at least 1, got 0"):
        store.runs(limit=0)


# -- concurrency --------------------------------------------------------------------------


def test_lost_race_is_retried_after_rereading(store: ResultStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer that read 'no current decision' just before another committed one retries once."""
    assert store.save_decision(make_decision(), run_id=None) is SaveOutcome.INSERTED
    real_current = ResultStore._current
    calls = {"n": 0}

    def stale_once(self: ResultStore, session: Session, study_id: int) -> DecisionRecord | None:
        calls["n"] += 1
        return None if calls["n"] == 1 else real_current(self, session, study_id)

    monkeypatch.setattr(ResultStore, "_current", stale_once)
    assert store.save_decision(make_decision(fingerprint="e" * 64), run_id=None) is SaveOutcome.SUPERSEDED
    assert calls["n"] == 2
    assert current_rows(store, UID_A) == 1
    assert [h.is_current for h in store.history(UID_A)] == [False, True]

    monkeypatch.setattr(ResultStore, "_current", lambda self, session, study_id: None)
    with pytest.raises(
        StoreError, match=r"cannot save the decision on study .*: it kept changing under concurrent writers"
    ):
        store.save_decision(make_decision(fingerprint="d" * 64), run_id=None)
    assert current_rows(store, UID_A) == 1
    assert count_rows(store)["decisions"] == 2


def test_concurrent_writers_never_leave_two_current_decisions(db_url: str) -> None:
    rounds = 6
    stores = [ResultStore.open(db_url), ResultStore.open(db_url)]  # two engines, as two processes would have
    outcomes: list[SaveOutcome] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def writer(index: int) -> None:
        for r in range(rounds):
            barrier.wait(timeout=30)
            try:
                decision = make_decision(fingerprint=f"{index}-{r}", decided_at=DECIDED + dt.timedelta(minutes=r))
                outcomes.append(stores[index].save_decision(decision, run_id=None))
            except BaseException as exc:  # reported below, not lost in the thread
                errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(2)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert errors == []
        assert sorted(outcomes) == sorted([SaveOutcome.INSERTED] + [SaveOutcome.SUPERSEDED] * (2 * rounds - 1))
        assert current_rows(stores[0], UID_A) == 1
        history = stores[0].history(UID_A)
        assert len(history) == 2 * rounds and [h.is_current for h in history].count(True) == 1
        assert history[-1].is_current
        with stores[0].engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(DecisionRecord)).scalar_one() == 2 * rounds
    finally:
        for s in stores:
            s.close()


# -- series with their roles --------------------------------------------------------------


def described_series() -> tuple[SeriesSummary, ...]:
    return (
        SeriesSummary(
            UID_A + ".1",
            1,
            "t2_tirm_tra_dark-fluid",
            "MR",
            24,
            SeriesKind.MR,
            MRRole("T2_FLAIR", "AXIAL", False, False, ("TR 9000 ms, TE 81 ms, TI 2500 ms → T2-FLAIR",)),
        ),
        SeriesSummary(
            UID_A + ".2",
            2,
            "胸部 5mm",
            "CT",
            60,
            SeriesKind.CT,
            CTRole("POST_CONTRAST", None, 1.25, ("post-contrast: ContrastBolusAgent (0018,0010) '碘海醇'",)),
        ),
        SeriesSummary(UID_A + ".3", None, None, "DX", 1, SeriesKind.DR, DRRole("PA", "L")),
        SeriesSummary(UID_A + ".99", 99, "Dose Report", "SR", 1, SeriesKind.NON_IMAGE),
    )


def test_series_roles_are_stored_and_read_back_typed(store: ResultStore) -> None:
    series = described_series()
    store.save_decision(make_decision(series=series), run_id=None)
    (row,) = store.results()
    assert row["series"] == [s.as_dict() for s in series]
    assert row["series"][0]["role"] == {
        "weighting": "T2_FLAIR",
        "plane": "AXIAL",
        "fat_suppressed": False,
        "post_contrast": False,
        "evidence": ["TR 9000 ms, TE 81 ms, TI 2500 ms → T2-FLAIR"],
    }
    assert row["series"][3]["role"] is None and row["series"][3]["kind"] == "non_image"
    assert store.series(UID_A) == series
    assert store.series(UID_B) == ()


def test_a_decision_without_series_reads_back_empty(store: ResultStore) -> None:
    store.save_decision(make_decision(), run_id=None)
    assert store.results()[0]["series"] == [] and store.series(UID_A) == ()


def test_an_unreadable_stored_series_is_a_store_error(store: ResultStore) -> None:
    store.save_decision(make_decision(series=described_series()), run_id=None)
    with store.writing("spoil the series") as session:
        session.execute(update(DecisionRecord).values(series=[{"series_instance_uid": "1.2", "n_instances": 1}]))
    with pytest.raises(StoreError, match=r"stored series of study .*9001 cannot be read: not a stored series"):
        store.series(UID_A)


def test_first_seen_at_is_kept_across_decisions(store: ResultStore) -> None:
    assert store.first_seen_at(UID_A) is None
    store.save_decision(make_decision(UID_A), run_id=None)
    seen = store.first_seen_at(UID_A)
    assert seen is not None and seen.tzinfo is not None
    store.save_decision(make_decision(UID_A, fingerprint="e" * 64), run_id=None)
    assert store.first_seen_at(UID_A) == seen


def test_results_for_one_study_count_only_that_studys_decisions(store: ResultStore) -> None:
    store.save_decision(make_decision(UID_A), run_id=None)
    store.save_decision(make_decision(UID_A, fingerprint="e" * 64), run_id=None)
    store.save_decision(make_decision(UID_B), run_id=None)
    (a,) = store.results(study_instance_uid=UID_A)
    (b,) = store.results(study_instance_uid=UID_B)
    assert (a["history_count"], b["history_count"]) == (2, 1)
    assert {r["study_instance_uid"]: r["history_count"] for r in store.results()} == {UID_A: 2, UID_B: 1}
    assert store.results(study_instance_uid=UID_C) == []


def test_the_head_read_from_the_migration_files_is_alembics_and_opening_needs_no_alembic():
    import subprocess
    import sys

    from qc_pipeline.store.schema import head_revision, shipped_head

    assert shipped_head() == head_revision()
    code = (
        "import sys, tempfile; from qc_pipeline.store import ResultStore; "
        "url = 'sqlite:///' + tempfile.mkdtemp() + '/r.sqlite'; ResultStore.open(url).close(); "
        "assert 'alembic' in sys.modules;"  # a new database is migrated with Alembic
        "[sys.modules.pop(m) for m in [m for m in sys.modules if m.startswith(('alembic', 'mako', 'pygments'))]];"
        "from qc_pipeline.store import schema; schema.shipped_head.cache_clear();"
        "ResultStore.open(url).close(); print('alembic' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"  # a database at the head is opened without importing Alembic
