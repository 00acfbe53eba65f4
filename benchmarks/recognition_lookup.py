"""Lookup latency of the recognition API over a store of many studies.

Fills an empty database (SQLite file by default, or ``--db`` e.g. a PostgreSQL URL) with
``--studies`` current decisions (bulk insert, 1 in 5 failed, 1000 patients per issuer spread
over the studies), then times ``--calls`` lookups by patient through the ASGI app (TestClient: no
network), and prints p50/p99 in milliseconds. ``--small``: 5,000 studies, 50 calls.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import insert, select

from benchmarks._results import write_results
from qc_pipeline.eligibility import EligibilityPolicy
from qc_pipeline.recognition.api import PREFIX, create_recognition_app
from qc_pipeline.store import ResultStore
from qc_pipeline.store.models import DecisionRecord, StudyRecord
from qc_pipeline.store.recognition import create_token

ISSUER = "四川省人民医院"
BATCH = 5000


def fill(store: ResultStore, n: int, patients: int) -> None:
    today = EligibilityPolicy.current().as_of
    now = dt.datetime.now(dt.UTC)
    for start in range(0, n, BATCH):
        stop = min(n, start + BATCH)
        with store.writing("fill") as session:
            session.execute(
                insert(StudyRecord),
                [
                    {
                        "study_instance_uid": f"1.2.826.0.1.3680043.10.{i + 1}",
                        "patient_id": f"P{i % patients:07d}",
                        "accession_number": f"A{i:09d}",
                        "institution": ISSUER,
                        "modality": "CT",
                        "study_date": today - dt.timedelta(days=i % 60),
                        "first_seen_at": now,
                        "last_seen_at": now,
                    }
                    for i in range(start, stop)
                ],
            )
            uids = [f"1.2.826.0.1.3680043.10.{i + 1}" for i in range(start, stop)]
            ids = dict(
                session.execute(
                    select(StudyRecord.study_instance_uid, StudyRecord.id).where(
                        StudyRecord.study_instance_uid.in_(uids)
                    )
                )
                .tuples()
                .all()
            )
            session.execute(
                insert(DecisionRecord),
                [
                    {
                        "study_id": ids[f"1.2.826.0.1.3680043.10.{i + 1}"],
                        "run_id": None,
                        "is_current": True,
                        "content_fingerprint": "f" * 64,
                        "decision_key": f"{i:064d}",
                        "verdict": "fail" if i % 5 == 0 else "pass",
                        "eligible": i % 5 != 0,
                        "eligible_until": today + dt.timedelta(days=30 - i % 60),
                        "item_code": "YB-001",
                        "item_name_zh": "胸部CT平扫",
                        "item_name_en": "CT chest plain",
                        "pipeline_version": "bench",
                        "thresholds_version": "bench",
                        "models": {},
                        "n_series": 1,
                        "n_instances": 100,
                        "decided_at": now,
                        "superseded_at": None,
                        "series": [],
                    }
                    for i in range(start, stop)
                ],
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", help="database URL (default: a new SQLite file)")
    parser.add_argument("--studies", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--small", action="store_true")
    args = parser.parse_args()
    n, calls = (5000, 50) if args.small else (args.studies, args.calls)
    patients = max(1, n // 3)
    with tempfile.TemporaryDirectory() as tmp:
        store = ResultStore.open(args.db or f"sqlite:///{Path(tmp) / 'results.sqlite'}")
        t0 = time.perf_counter()
        fill(store, n, patients)
        fill_s = time.perf_counter() - t0
        with store.writing("token") as session:
            token = create_token(session, name="bench", institution=ISSUER, scopes=["lookup"])
        app = create_recognition_app(store, calls_per_minute=1_000_000)
        times: list[float] = []
        found = 0
        with TestClient(app) as client:
            for k in range(calls):
                params = {"patient_id": f"P{(k * 7919) % patients:07d}", "issuer": ISSUER}
                t = time.perf_counter()
                r = client.get(f"{PREFIX}/studies", params=params, headers={"Authorization": f"Bearer {token}"})
                times.append((time.perf_counter() - t) * 1000)
                r.raise_for_status()
                found += len(r.json()["studies"])
        store.close()
    q = statistics.quantiles(times, n=100)
    row = {
        "studies": n,
        "calls": calls,
        "p50_ms": round(q[49], 1),
        "p99_ms": round(q[98], 1),
        "studies_returned_per_call": round(found / calls, 2),
        "fill_s": round(fill_s, 1),
        "backend": (args.db or "sqlite").split(":")[0],
    }
    print(row)
    write_results("recognition_lookup", [row], small=args.small)


if __name__ == "__main__":
    main()
