"""Fixtures of the review tests: demo studies judged by the real pipeline, stored on SQLite and
PostgreSQL, accounts, and the app behind a TestClient.

The demo studies are written and judged once per session (``judge`` with the demo's own clock,
no Prefect); each test stores those decisions in a fresh database.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from argon2 import PasswordHasher, profiles
from fastapi.testclient import TestClient

from qc_pipeline.domain import Decision
from qc_pipeline.pipeline import judge, load_pipeline_thresholds
from qc_pipeline.review import accounts as accounts_module
from qc_pipeline.review.accounts import User, create_user
from qc_pipeline.review.app import create_app
from qc_pipeline.rules import Thresholds, load_thresholds
from qc_pipeline.samples.demo import DEMO_NOW, write_demo_studies
from qc_pipeline.sources import FolderSource
from qc_pipeline.store import ResultStore
from tests.demo_expectations import expected_verdict
from tests.store.conftest import db_url, pg_schema, postgres_schemas  # noqa: F401  (fixtures: each backend)

CASES = (
    "age_mismatch",  # review, CT
    "missing_accession_institution",  # review, DX
    "ghosted_mr",  # fail, MR ghosting
    "clipped_dr",  # fail, DR clipping
    "truncated_file",  # fail, one CT file truncated
    "phantom_ct_chest",  # pass
)
GAP_CASE = "ct_missing_slice"
"""phantom_ct_chest with its middle file left out (a study of its own, same UIDs)."""
PASSWORDS = {"dr.wang": "radiologist-pass-1", "dr.zhao": "radiologist-pass-2", "qc.li": "qc-admin-pass-1"}
SECRET = "test-secret-" + "x" * 40


@pytest.fixture(autouse=True)
def cheap_password_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2id with the cheapest parameters: the production ones cost ~0.3 s a hash on 2 cores
    (``test_accounts`` checks those separately)."""
    monkeypatch.setattr(accounts_module, "_hasher", PasswordHasher.from_parameters(profiles.CHEAPEST))


@dataclass(frozen=True)
class Judged:
    root: Path
    decisions: dict[str, Decision]
    """By case name."""


@pytest.fixture(scope="session")
def judged(tmp_path_factory: pytest.TempPathFactory) -> Judged:
    root = tmp_path_factory.mktemp("review-demo")
    studies = root / "studies"
    cases = {c.name: c for c in write_demo_studies(studies)}
    gap = studies / GAP_CASE
    shutil.copytree(studies / "phantom_ct_chest", gap)
    files = sorted(gap.iterdir())
    files[len(files) // 2].unlink()
    thresholds = load_pipeline_thresholds()
    decisions: dict[str, Decision] = {}
    for name in (*CASES, GAP_CASE):
        source = FolderSource(studies / name, file_times_are_upload_times=True)  # the demo sets upload times
        (entry,) = list(source.discover())
        decision = judge(source.load(entry), thresholds, now=DEMO_NOW, source_uri=source.uri, pixels=source)
        if name in cases:
            assert decision.verdict == expected_verdict(cases[name]), name
        decisions[name] = decision
    return Judged(root, decisions)


@pytest.fixture(scope="session")
def thresholds() -> Thresholds:
    return load_thresholds()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'results.sqlite'}"


@contextmanager
def _filled(url: str, judged: Judged) -> Iterator[ResultStore]:
    store = ResultStore.open(url)
    try:
        for name in CASES:
            store.save_decision(judged.decisions[name], run_id=None)
        yield store
    finally:
        store.close()


@pytest.fixture
def store(db_url: str, judged: Judged) -> Iterator[ResultStore]:
    """The judged demo studies on each backend, no accounts."""
    with _filled(db_url, judged) as opened:
        yield opened


@pytest.fixture
def sqlite_store(sqlite_url: str, judged: Judged) -> Iterator[ResultStore]:
    with _filled(sqlite_url, judged) as opened:
        yield opened


@dataclass(frozen=True)
class Accounts:
    reviewer: User
    other_reviewer: User
    admin: User


def make_accounts(store: ResultStore) -> Accounts:
    return Accounts(
        reviewer=create_user(store, "dr.wang", PASSWORDS["dr.wang"], role="reviewer", display_name="王医生"),
        other_reviewer=create_user(store, "dr.zhao", PASSWORDS["dr.zhao"], role="reviewer"),
        admin=create_user(store, "qc.li", PASSWORDS["qc.li"], role="qc_admin"),
    )


@pytest.fixture
def accounts(store: ResultStore) -> Accounts:
    return make_accounts(store)


@pytest.fixture
def app_store(sqlite_store: ResultStore) -> ResultStore:
    """The SQLite store with accounts (the web tests; the service tests cover PostgreSQL)."""
    make_accounts(sqlite_store)
    return sqlite_store


@pytest.fixture
def client(app_store: ResultStore, thresholds: Thresholds) -> Iterator[TestClient]:
    app = create_app(
        app_store,
        thresholds,
        secret_key=SECRET,
        viewer_url="https://cloud.example.cn/viewer?study={study_instance_uid}",
        lang="en",
    )
    with TestClient(app, base_url="http://testserver", follow_redirects=False) as c:
        yield c


def form_token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def sign_in(client: TestClient, username: str = "dr.wang") -> str:
    """Sign in through the form; returns the session's CSRF token."""
    token = form_token(client.get("/login").text)
    response = client.post("/login", data={"username": username, "password": PASSWORDS[username], "csrf_token": token})
    assert response.status_code == 303 and response.headers["location"] == "/queue"
    return form_token(client.get("/queue").text)


HIJACK_TARGET = "age_mismatch"
"""The demo study whose negative-list flag the crafted UIDs below try to clear."""


@pytest.fixture(scope="session")
def crafted(judged: Judged) -> dict[str, Decision]:
    """clipped_dr uploaded again under crafted StudyInstanceUIDs that would hijack a button whose
    URL is built by pasting the UID in: one clears the flag 'other' of ``HIJACK_TARGET`` (the
    admin's CSRF token goes with the form), one signs the user out. Judged by the real pipeline,
    so their integrity finding is the ingestion's."""
    import pydicom

    target = judged.decisions[HIJACK_TARGET].study_instance_uid
    out: dict[str, Decision] = {}
    thresholds = load_pipeline_thresholds()
    for name, uid in (("clear_flag", f"{target}/flags/other/clear#"), ("logout", "../logout#")):
        folder = judged.root / "crafted" / name
        shutil.copytree(judged.root / "studies" / "clipped_dr", folder)
        for path in folder.iterdir():
            ds = pydicom.dcmread(path)
            ds.StudyInstanceUID = uid
            ds.save_as(path)
        source = FolderSource(folder, file_times_are_upload_times=True)
        (entry,) = list(source.discover())
        out[name] = judge(source.load(entry), thresholds, now=DEMO_NOW, source_uri=source.uri, pixels=source)
    return out


def legacy_flag(
    store: ResultStore, study_uid: str, admin: User, reason_code: str = "other", note: str | None = "kept back"
) -> None:
    """A study-level negative-list flag as the app set them before migration 0011 (no longer set)."""
    import datetime as dt

    from sqlalchemy import select

    from qc_pipeline.store.models import StudyRecord
    from qc_pipeline.store.review import NegativeFlag

    with store.writing("legacy flag") as session:
        study_id = session.scalar(select(StudyRecord.id).where(StudyRecord.study_instance_uid == study_uid))
        session.add(
            NegativeFlag(
                study_id=study_id, reason_code=reason_code, note=note, set_by=admin.id, set_at=dt.datetime.now(dt.UTC)
            )
        )
