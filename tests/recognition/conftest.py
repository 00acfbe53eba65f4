"""Fixtures of the recognition API tests: a store with an eligible and a failed study of one
patient, tokens, and the API behind a TestClient. Dates are relative to today on the site clock,
because eligibility is judged when the API is called."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from qc_pipeline.domain import Category, Decision, Finding, ItemRef, Provenance, Severity, StudySummary, Verdict
from qc_pipeline.eligibility import EligibilityPolicy
from qc_pipeline.recognition.api import create_recognition_app
from qc_pipeline.store import ResultStore
from qc_pipeline.store.recognition import create_token
from tests.store.conftest import db_url, pg_schema, postgres_schemas  # noqa: F401  (fixtures: each backend)

PATIENT_ID = "P-REC-0001"
PATIENT_NAME = "张三丰"
"""Written into the stored study's description (free text can carry a name): it must never come out."""
ISSUER = "四川省人民医院"
UID_PASS = "1.2.826.0.1.3680043.10.7001"
UID_FAIL = "1.2.826.0.1.3680043.10.7002"
ITEM = ItemRef("YB-001", "胸部CT平扫", "CT chest plain")
VIEWER = "https://cloud.example/viewer?study={study_instance_uid}&acc={accession_number}"
LIMIT = 5


def make_decision(uid: str, verdict: Verdict, today: dt.date, accession: str) -> Decision:
    fail = verdict is Verdict.FAIL
    return Decision(
        study=StudySummary(
            study_instance_uid=uid,
            patient_id=PATIENT_ID,
            accession_number=accession,
            institution=ISSUER,
            modalities=("CT",),
            study_date=today - dt.timedelta(days=3),
            study_time=dt.time(9, 30),
            study_description=f"{PATIENT_NAME} 门诊胸部扫描",
            n_series=1,
            n_instances=100,
        ),
        verdict=verdict,
        findings=(
            Finding(
                "ct.noise.high",
                Category.IMAGE_QUALITY,
                Severity.FAIL,
                "Noise too high",
                "噪声过高",
                value="42 HU",
                limit="30 HU",
            ),
        )
        if fail
        else (),
        provenance=Provenance(pipeline_version="0.1.0", thresholds_version="th-1", models={}),
        content_fingerprint=("e" if fail else "d") * 64,
        decided_at=dt.datetime.now(dt.UTC),
        eligible=not fail,
        eligible_until=None if fail else today + dt.timedelta(days=27),
        item=ITEM,
        source_uri="file:///incoming",
    )


@dataclass(frozen=True)
class Api:
    client: TestClient
    store: ResultStore
    lookup: str
    both: str
    today: dt.date
    clock: list[float]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'results.sqlite'}"


def _api(url: str) -> Iterator[Api]:
    store = ResultStore.open(url)
    today = EligibilityPolicy.current().as_of
    store.save_decision(make_decision(UID_PASS, Verdict.PASS, today, "ACC-P"), run_id=None)
    store.save_decision(make_decision(UID_FAIL, Verdict.FAIL, today, "ACC-F"), run_id=None)
    with store.writing("make tokens") as session:
        lookup = create_token(session, name="his-lookup", institution=ISSUER, scopes=["lookup"])
        both = create_token(session, name="his-b", institution=ISSUER, scopes=["lookup", "events"])
    clock = [1000.0]
    app = create_recognition_app(store, viewer_url_template=VIEWER, calls_per_minute=LIMIT, rate_clock=lambda: clock[0])
    try:
        with TestClient(app) as client:
            yield Api(client, store, lookup, both, today, clock)
    finally:
        store.close()


@pytest.fixture
def api(sqlite_url: str) -> Iterator[Api]:
    yield from _api(sqlite_url)


@pytest.fixture
def api_any_backend(db_url: str) -> Iterator[Api]:
    yield from _api(db_url)
