"""Writes ``results-rev0001.sqlite``: a results database as the first release (schema revision
0001) left it, with a few rows, for the upgrade test (tests/hardening/test_upgrade.py).

    .venv/bin/python -m tests.data.make_results_rev0001            # rewrites the SQLite file
    make_database("postgresql+psycopg://...")                      # the same rows on PostgreSQL

The schema is made by the packaged migrations run up to "0001" only; the rows are plain SQL
INSERTs in that revision's columns (the ORM describes the latest schema, not this one).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from alembic import command
from sqlalchemy import create_engine, text

from qc_pipeline.store.schema import alembic_config

FILE = Path(__file__).resolve().parent / "results-rev0001.sqlite"
RUN_ID = "0b6f3c1e-6d1a-4c55-9a7e-000000000001"
STUDIES = {
    "pass": "1.2.826.0.1.3680043.10.8001",
    "fail": "1.2.826.0.1.3680043.10.8002",
    "rejudged": "1.2.826.0.1.3680043.10.8003",
}
DECIDED = dt.datetime(2026, 6, 1, 2, 0, tzinfo=dt.UTC)


def _ts(value: dt.datetime, sqlite: bool) -> object:
    return value.replace(tzinfo=None).isoformat(sep=" ") if sqlite else value


def make_database(url: str) -> None:
    """Create the 0001 schema at ``url`` (an empty database) and insert the rows."""
    engine = create_engine(url)
    sqlite = engine.dialect.name == "sqlite"
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0001")
            conn.execute(
                text(
                    "INSERT INTO runs (id, started_at, finished_at, source_uri, status, pipeline_version, "
                    "thresholds_version, n_studies, n_judged, n_unchanged, n_errors, error_message) VALUES "
                    "(:id, :s, :f, 'file:///data/incoming', 'completed', '0.1.0', '2026.06+abc', 3, 4, 0, 0, NULL)"
                ),
                {"id": RUN_ID, "s": _ts(DECIDED, sqlite), "f": _ts(DECIDED + dt.timedelta(minutes=3), sqlite)},
            )
            for k, uid in enumerate(STUDIES.values(), start=1):
                conn.execute(
                    text(
                        "INSERT INTO studies (id, study_instance_uid, patient_id, accession_number, institution, "
                        "modality, study_date, study_time, study_description, source_uri, first_seen_at, "
                        "last_seen_at) VALUES (:id, :uid, :pid, :acc, '重庆医科大学附属第一医院', 'CT', :d, "
                        "'09:30:00', '胸部CT平扫', 'file:///data/incoming', :t, :t)"
                    ),
                    {
                        "id": k,
                        "uid": uid,
                        "pid": f"P-{k:04d}",
                        "acc": f"ACC{k:04d}",
                        "d": dt.date(2026, 5, 20 + k),
                        "t": _ts(DECIDED, sqlite),
                    },
                )
            decisions = [
                # id, study, current, verdict, eligible, until, superseded
                (1, 1, True, "pass", True, dt.date(2026, 8, 21), None),
                (2, 2, True, "fail", False, None, None),
                (3, 3, False, "review", False, None, DECIDED + dt.timedelta(minutes=2)),
                (4, 3, True, "pass", True, dt.date(2026, 8, 23), None),
            ]
            for did, sid, current, verdict, eligible, until, superseded in decisions:
                conn.execute(
                    text(
                        "INSERT INTO decisions (id, study_id, run_id, is_current, content_fingerprint, decision_key, "
                        "verdict, eligible, eligible_until, item_code, item_name_zh, item_name_en, pipeline_version, "
                        "thresholds_version, models, n_series, n_instances, decided_at, superseded_at) VALUES "
                        "(:id, :sid, :run, :cur, :fp, :key, :v, :el, :until, 'YB-036', '胸部CT平扫', 'CT chest, plain', "
                        "'0.1.0', '2026.06+abc', :models, 1, 2, :at, :sup)"
                    ),
                    {
                        "id": did,
                        "sid": sid,
                        "run": RUN_ID,
                        "cur": current,
                        "fp": f"{did:064x}",
                        "key": f"{did:064d}",
                        "v": verdict,
                        "el": eligible,
                        "until": until,
                        "models": json.dumps({}),
                        "at": _ts(DECIDED + dt.timedelta(minutes=did), sqlite),
                        "sup": None if superseded is None else _ts(superseded, sqlite),
                    },
                )
            conn.execute(
                text(
                    "INSERT INTO findings (id, decision_id, ordinal, code, category, severity, message, message_zh, "
                    "value, limit_value, series_instance_uid, sop_instance_uid) VALUES "
                    "(1, 2, 0, 'integrity.pixel_data.truncated', 'integrity', 'fail', "
                    "'Image 2.dcm: pixel data needs 8192 bytes', '图像 2.dcm 像素数据不完整', '4096', '8192', "
                    ":series, :sop), "
                    "(2, 3, 0, 'metadata.accession_number.missing', 'metadata', 'review', 'AccessionNumber is missing', "
                    "'缺少检查号', NULL, 'present', NULL, NULL)"
                ),
                {"series": STUDIES["fail"] + ".1", "sop": STUDIES["fail"] + ".1.2"},
            )
            conn.execute(
                text(
                    "INSERT INTO metrics (id, decision_id, name, value, series_instance_uid) VALUES "
                    "(1, 1, 'upload_delay_h', 2.5, NULL), (2, 4, 'upload_delay_h', 30.0, NULL)"
                )
            )
            if not sqlite:  # explicit ids: move the serial sequences past them, as the release's inserts did
                for table in ("studies", "decisions", "findings", "metrics"):
                    conn.execute(
                        text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
                    )
    finally:
        engine.dispose()


if __name__ == "__main__":
    FILE.unlink(missing_ok=True)
    make_database(f"sqlite:///{FILE}")
    print(f"wrote {FILE} ({FILE.stat().st_size} bytes)")
