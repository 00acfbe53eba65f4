"""Source cursors and the re-scoring query, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from qc_pipeline.domain import Provenance
from qc_pipeline.errors import StoreError
from qc_pipeline.store import ResultStore, head_revision, upgrade_to_head
from tests.store.test_store import UID_A, UID_B, UID_C, make_decision

SOURCE = "http://127.0.0.1:8042/dicom-web"


def test_cursor_moves_only_from_where_the_run_found_it(store: ResultStore) -> None:
    assert store.cursor(SOURCE) is None
    run_id = store.start_run(source_uri=SOURCE, pipeline_version="0.2.0", thresholds_version="th-1")
    before = dt.datetime.now(dt.UTC)
    assert store.advance_cursor(SOURCE, kind="orthanc-changes", position="17", expected=None, run_id=run_id)
    saved = store.cursor(SOURCE)
    assert saved is not None
    assert (saved.source_uri, saved.kind, saved.position, saved.run_id) == (SOURCE, "orthanc-changes", "17", run_id)
    assert saved.updated_at.tzinfo is not None and saved.updated_at >= before - dt.timedelta(seconds=1)

    # Another run moved it from 17 to 30 meanwhile: a run that started at 17 must not overwrite it.
    assert store.advance_cursor(SOURCE, kind="orthanc-changes", position="30", expected="17")
    assert not store.advance_cursor(SOURCE, kind="orthanc-changes", position="25", expected="17")
    assert not store.advance_cursor(SOURCE, kind="orthanc-changes", position="25", expected=None)
    assert store.cursor(SOURCE).position == "30"
    assert store.cursor(SOURCE).run_id is None
    # Cursors are per source.
    assert store.cursor("file:///incoming") is None


def test_cursor_rejects_bad_values(store: ResultStore) -> None:
    with pytest.raises(ValueError, match=r"cursor kind must have 1 to 32 characters, got ''"):
        store.advance_cursor(SOURCE, kind="", position="1", expected=None)
    with pytest.raises(
        ValueError, match=r"cursor position of http://127\.0\.0\.1:8042/dicom-web must be a non-empty string"
    ):
        store.advance_cursor(SOURCE, kind="orthanc-changes", position="", expected=None)
    with pytest.raises(ValueError, match=r"source_uri must be a non-empty string"):
        store.advance_cursor("", kind="orthanc-changes", position="1", expected=None)
    with pytest.raises(StoreError, match=r"cannot move the cursor of source .*: no run 'nope'"):
        store.advance_cursor(SOURCE, kind="orthanc-changes", position="1", expected=None, run_id="nope")
    assert store.cursor(SOURCE) is None


def test_concurrent_first_cursors_one_wins(db_url: str) -> None:
    stores = [ResultStore.open(db_url) for _ in range(4)]
    barrier = threading.Barrier(len(stores))
    outcomes: list[bool] = []

    def advance(store: ResultStore, position: str) -> None:
        barrier.wait()
        outcomes.append(store.advance_cursor(SOURCE, kind="orthanc-changes", position=position, expected=None))

    threads = [threading.Thread(target=advance, args=(s, str(i + 1))) for i, s in enumerate(stores)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert sorted(outcomes) == [False, False, False, True]
        with stores[0].engine.connect() as conn:
            assert conn.execute(text("SELECT COUNT(*) FROM source_cursors")).scalar_one() == 1
    finally:
        for s in stores:
            s.close()


def test_migration_0003_adds_the_cursor_table_to_a_0002_database(db_url: str) -> None:
    from alembic import command

    from qc_pipeline.store.engine import make_engine
    from qc_pipeline.store.schema import alembic_config

    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0002")
        upgrade_to_head(engine)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == head_revision()
            assert conn.execute(text("SELECT COUNT(*) FROM source_cursors")).scalar_one() == 0
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0002")
        with engine.connect() as conn, pytest.raises(DBAPIError, match=r"source_cursors"):
            conn.execute(text("SELECT COUNT(*) FROM source_cursors"))
    finally:
        engine.dispose()


def test_stale_studies_differ_in_thresholds_or_models(store: ResultStore) -> None:
    current = Provenance(pipeline_version="0.2.0", thresholds_version="th-2", models={"lung": "1.0@ab12"})
    store.save_decision(make_decision(UID_A, provenance=current), run_id=None)
    store.save_decision(
        make_decision(UID_B, provenance=Provenance("0.2.0", "th-1", {"lung": "1.0@ab12"}), source_uri="file:///b"),
        run_id=None,
    )
    store.save_decision(make_decision(UID_C, provenance=Provenance("0.2.0", "th-2", {"lung": "0.9@ee01"})), run_id=None)
    stale = {s.study_instance_uid: s for s in store.stale_studies(current)}
    assert set(stale) == {UID_B, UID_C}
    assert (stale[UID_B].source_uri, stale[UID_B].thresholds_version) == ("file:///b", "th-1")
    assert stale[UID_C].models == {"lung": "0.9@ee01"}
    # Another pipeline version alone does not make a study stale. The most recently stored first.
    assert [s.study_instance_uid for s in store.stale_studies(Provenance("9.9.9", "th-2", {"lung": "0.9@ee01"}))] == [
        UID_B,
        UID_A,
    ]
    assert [s.study_instance_uid for s in store.stale_studies(current, limit=1)] == [UID_C]
    with pytest.raises(ValueError, match=r"limit must be at least 1, got 0"):
        store.stale_studies(current, limit=0)
    # A study judged again with the current thresholds and models is no longer stale.
    store.save_decision(make_decision(UID_B, provenance=current), run_id=None)
    assert {s.study_instance_uid for s in store.stale_studies(current)} == {UID_C}
