"""The spot-check mode of the review app, and blinding: pages, images and spreadsheets carry no
institution, region, machine verdict, findings, AI scores, dates, UIDs or patient identifiers."""

from __future__ import annotations

import datetime as dt
import os
import re
import stat
import zipfile

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from qc_pipeline.errors import ConfigError
from qc_pipeline.review.accounts import create_user
from qc_pipeline.review.app import create_app
from qc_pipeline.rules import load_thresholds
from qc_pipeline.spotcheck import blinding
from qc_pipeline.spotcheck.app import app_options
from qc_pipeline.spotcheck.draw import draw
from qc_pipeline.spotcheck.grading import cases_for
from qc_pipeline.spotcheck.spreadsheet import export_workbook
from qc_pipeline.store.models import StudyRecord
from qc_pipeline.store.spotcheck import SpotCheckGrade, read_session

from .conftest import FINDING_TEXT, FINDING_TEXT_ZH, INSTITUTIONS, KEY

PASSWORD = "correct horse battery staple"
NOW = dt.datetime(2026, 11, 5, tzinfo=dt.UTC)


def forbidden(store) -> list[str]:
    """Every identifying or machine-judgement string of the stored studies."""
    with read_session(store) as session:
        studies = session.scalars(select(StudyRecord)).all()
    words = [
        *INSTITUTIONS,
        "Yuzhou",
        "chongqing",
        "sichuan",
        "重庆",
        "四川",
        FINDING_TEXT,
        FINDING_TEXT_ZH,
        "continuity.slice.gap",
        "ai.score",
        "0.93",
        "Tell-tale",
        "合格",
        "不合格",
        "待复核",
    ]
    for s in studies:
        words += [s.study_instance_uid, s.patient_id, s.accession_number, s.study_date.isoformat()]
    return words


def assert_blind(text: str, words: list[str]) -> None:
    leaks = [w for w in words if w and w in text]
    assert leaks == []
    if "<main>" in text:  # a page: the app's own chrome (title "review app", roles) is not about the case
        text = text[text.index("<main>") : text.index("</main>")]
    for verdict in ("pass", "fail", "review", "not_applicable"):  # as a verdict word, not inside others
        assert not re.search(rf"(?<![\w-]){verdict}(?![\w-])", text, re.IGNORECASE), verdict


@pytest.fixture
def drawn(populated, config):
    draw(populated, config, "2026-10", key=KEY, seed="app", now=NOW)
    return populated


@pytest.fixture
def client(drawn, config):
    create_user(drawn, "sc-1", PASSWORD, role="grader")
    create_user(drawn, "outsider", PASSWORD, role="grader")
    app = create_app(drawn, load_thresholds(), secret_key="s" * 40, lang="en", **app_options(config))
    return TestClient(app)


def sign_in(client: TestClient, username: str) -> str:
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    response = client.post(
        "/login",
        data={"username": username, "password": PASSWORD, "csrf_token": token, "next": "/spot-checks"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    return token


def csrf(client: TestClient, path: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text).group(1)


def test_a_reviewer_grades_their_blinded_cases_in_the_app(client, drawn) -> None:
    assert client.get("/spot-checks", follow_redirects=False).status_code == 303  # signed out: to /login
    sign_in(client, "sc-1")
    mine = [s for s in cases_for(drawn, reviewer="sc-1")]
    assert mine and all(s.case.reading in (1, 2) for s in mine)
    listing = client.get("/spot-checks")
    assert listing.status_code == 200
    words = forbidden(drawn)
    assert_blind(listing.text, words)
    codes = re.findall(r'data-case="(CJ-[A-Z2-7]{4}-[A-Z2-7]{4})"', listing.text)
    assert sorted(codes) == sorted(s.case.case_code for s in mine)

    code = codes[0]
    page = client.get(f"/spot-checks/{code}")
    assert page.status_code == 200 and code in page.text
    assert_blind(page.text, words)
    token = csrf(client, f"/spot-checks/{code}")
    bad = client.post(f"/spot-checks/{code}", data={"grade": "丙", "recognisable": "no"}, follow_redirects=False)
    assert bad.status_code == 403  # no CSRF token
    saved = client.post(
        f"/spot-checks/{code}",
        data={
            "csrf_token": token,
            "grade": "丙",
            "recognisable": "no",
            "reasons": ["exposure", "artefact"],
            "comment": "noisy",
        },
        follow_redirects=False,
    )
    assert saved.status_code == 303
    with read_session(drawn) as session:
        (grade,) = session.scalars(select(SpotCheckGrade)).all()
    assert (grade.grade, grade.recognisable, grade.reasons, grade.via, grade.graded_by) == (
        "丙",
        False,
        ["exposure", "artefact"],
        "app",
        "sc-1",
    )
    # revising one's own grade replaces it
    client.post(f"/spot-checks/{code}", data={"csrf_token": token, "grade": "乙", "recognisable": "yes"})
    with read_session(drawn) as session:
        assert [(g.grade, g.recognisable) for g in session.scalars(select(SpotCheckGrade))] == [("乙", True)]
    invalid = client.post(f"/spot-checks/{code}", data={"csrf_token": token, "grade": "X", "recognisable": "yes"})
    assert invalid.status_code == 400 and "grade 'X' is not one of 甲, 乙, 丙, 废" in invalid.text


def test_cases_of_others_and_non_reviewers_are_refused(client, drawn) -> None:
    theirs = next(s.case.case_code for s in cases_for(drawn) if s.case.reviewer != "sc-1")
    sign_in(client, "sc-1")
    for path in (f"/spot-checks/{theirs}", "/spot-checks/CJ-AAAA-AAAA", f"/spot-checks/{theirs}/images/0.png"):
        response = client.get(path)
        assert response.status_code == 404 and "is not assigned to you" in response.text
    token = csrf(client, "/spot-checks")
    stolen = client.post(f"/spot-checks/{theirs}", data={"csrf_token": token, "grade": "甲", "recognisable": "yes"})
    assert stolen.status_code == 404
    client.post("/logout", data={"csrf_token": token})
    sign_in(client, "outsider")
    response = client.get("/spot-checks")
    assert response.status_code == 403 and "is not a spot-check reviewer" in response.text


def test_the_spreadsheet_export_is_blind(drawn, config, tmp_path) -> None:
    out = tmp_path / "sample.xlsx"
    export_workbook(drawn, config, "2026-10", out, key=KEY)
    with zipfile.ZipFile(out) as xlsx:
        text = "\n".join(
            xlsx.read(name).decode("utf-8") for name in xlsx.namelist() if name.endswith((".xml", ".rels"))
        )
    assert "CJ-" in text and "P-" in text
    assert_blind(text, forbidden(drawn))


def test_pseudonyms_are_keyed_stable_and_distinct() -> None:
    a, b = b"a" * 32, b"b" * 32
    assert blinding.case_code(a, "1.2.3") == blinding.case_code(a, "1.2.3") != blinding.case_code(b, "1.2.3")
    assert blinding.case_code(a, "1.2.3") != blinding.case_code(a, "1.2.4")
    assert blinding.patient_pseudonym(a, "PID1", "1.2.3") == blinding.patient_pseudonym(a, "PID1", "9.9")
    assert blinding.patient_pseudonym(a, None, "1.2.3") != blinding.patient_pseudonym(a, None, "1.2.4")
    assert re.fullmatch(r"P-[A-Z2-7]{10}", blinding.patient_pseudonym(a, "PID1", "x"))
    assert [blinding.age_band(dt.date(1980, 6, 2), d) for d in (dt.date(2026, 6, 1), dt.date(2026, 6, 2))] == [
        "40-49",
        "40-49",
    ]
    assert blinding.age_band(dt.date(2026, 1, 1), dt.date(2026, 5, 1)) == "<1"
    assert blinding.age_band(dt.date(1930, 1, 1), dt.date(2026, 5, 1)) == "90+"
    assert blinding.age_band(dt.date(2020, 1, 1), dt.date(2026, 5, 1)) == "1-9"
    assert blinding.age_band(None, dt.date(2026, 5, 1)) is None


def test_the_pseudonym_key(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(blinding.KEY_ENV, raising=False)
    url = f"sqlite:///{tmp_path / 'db' / 'results.sqlite'}"
    key = blinding.pseudonym_key(url)
    path = tmp_path / "db" / blinding.KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(key) == 64
    assert blinding.pseudonym_key(url) == key  # read back, not made again
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match=r"is readable by others \(mode 644\): chmod 600"):
        blinding.pseudonym_key(url)
    monkeypatch.setenv(blinding.KEY_ENV, "short")
    with pytest.raises(ConfigError, match=r"QC_PSEUDONYM_KEY has 5 characters; use at least 32"):
        blinding.pseudonym_key(url)
    monkeypatch.setenv(blinding.KEY_ENV, "e" * 40)
    assert blinding.pseudonym_key(url) == b"e" * 40
    assert blinding.key_path("postgresql+psycopg://u@h/db").name == blinding.KEY_FILE
