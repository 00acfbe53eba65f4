"""Recognition applied in the evaluation report, end to end on fixed dates: events posted through
the real recognition API by two receiving hospitals (and a non-recognition entered by QC staff)
counted by receiving and by examining institution, n/N with the rate, the repeat exams avoided and
the negative-list reasons in words, in the tables, the workbook, the HTML text and the PDF; the
period's edges in site time on both sides, a re-posted event counted once, and the empty period.

The expected figures are counted by hand from ``EVENTS`` (each test says how)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from html import unescape
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook

from qc_pipeline.domain import Verdict
from qc_pipeline.recognition.api import PREFIX, create_recognition_app
from qc_pipeline.report.data import load_report_data
from qc_pipeline.report.evaluation import ReportFiles, write_report
from qc_pipeline.report.period import Period
from qc_pipeline.store import ResultStore
from qc_pipeline.store.recognition import create_token
from qc_pipeline.store.review import record_non_recognition
from tests.recognition.conftest import auth
from tests.report.test_readable import visible_text as _tags_removed
from tests.store.conftest import db_url, pg_schema, postgres_schemas  # noqa: F401  (fixtures: each backend)
from tests.store.test_store import make_decision

PERIOD = Period.parse("2026H2")
SCPH = "四川省人民医院"
WCH = "四川大学华西医院"
CQ1 = "重庆医科大学附属第一医院"
UID_P1, UID_P2, UID_Q1 = "1.2.826.0.1.3680043.10.9101", "1.2.826.0.1.3680043.10.9102", "1.2.826.0.1.3680043.10.9103"
SOURCE = {UID_P1: SCPH, UID_P2: SCPH, UID_Q1: CQ1}
"""The institution that made each study."""

EVENTS: tuple[tuple[str, str, str, str, str | None, str], ...] = (
    # (event id, receiving, study, outcome, reason, at)
    ("wch-1", WCH, UID_P1, "recognised", None, "2026-10-10T10:00:00+08:00"),
    ("wch-2", WCH, UID_P2, "not_recognised", "condition_changed", "2026-10-11T09:00:00+08:00"),
    ("wch-3", WCH, UID_Q1, "recognised", None, "2026-11-01T15:00:00+08:00"),
    ("cq1-1", CQ1, UID_P1, "recognised", None, "2026-11-02T08:00:00+08:00"),
    ("cq1-2", CQ1, UID_P2, "not_recognised", "patient_request", "2026-11-03T08:00:00+08:00"),
    # 1 July 07:59 in Shanghai is 30 June in UTC: in the period (its site day counts)
    ("wch-4", WCH, UID_P1, "recognised", None, "2026-07-01T07:59:00+08:00"),
    # 30 June 23:30 in Shanghai: the previous period
    ("wch-5", WCH, UID_Q1, "not_recognised", "result_doubted", "2026-06-30T23:30:00+08:00"),
    # 1 January 2027 00:30 in Shanghai (still 31 December in UTC): the next period
    ("cq1-3", CQ1, UID_Q1, "recognised", None, "2027-01-01T00:30:00+08:00"),
)


@dataclass(frozen=True)
class Posted:
    store: ResultStore
    client: TestClient
    tokens: dict[str, str]


def _save_studies(store: ResultStore) -> None:
    for i, (uid, institution) in enumerate(SOURCE.items()):
        decision = make_decision(uid, verdict=Verdict.PASS, fingerprint=f"{i}" * 64, study_date=dt.date(2026, 9, 1))
        store.save_decision(
            dataclasses.replace(decision, study=dataclasses.replace(decision.study, institution=institution)),
            run_id=None,
        )


def _body(event_id: str, receiving: str, uid: str, outcome: str, reason: str | None, at: str) -> dict[str, object]:
    body: dict[str, object] = {
        "event_id": event_id,
        "study_instance_uid": uid,
        "outcome": outcome,
        "receiving_institution": receiving,
        "department": "呼吸内科",
        "at": at,
    }
    if reason is not None:
        body["reason_code"] = reason
    return body


def _api(url: str) -> Iterator[Posted]:
    store = ResultStore.open(url)
    _save_studies(store)
    with store.writing("tokens") as session:
        tokens = {
            inst: create_token(session, name=f"his-{i}", institution=inst, scopes=["events"])
            for i, inst in enumerate((WCH, CQ1))
        }
    app = create_recognition_app(store, viewer_url_template=None, calls_per_minute=1000)
    try:
        with TestClient(app) as client:
            yield Posted(store, client, tokens)
    finally:
        store.close()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Posted]:
    yield from _api(f"sqlite:///{tmp_path / 'results.sqlite'}")


@pytest.fixture
def api_any_backend(db_url: str) -> Iterator[Posted]:
    yield from _api(db_url)


def _post(api: Posted, event: tuple[str, str, str, str, str | None, str]) -> int:
    response = api.client.post(f"{PREFIX}/events", json=_body(*event), headers=auth(api.tokens[event[1]]))
    assert response.status_code in (200, 201), response.text
    return response.status_code


def _post_all(api: Posted) -> Posted:
    """Every event of ``EVENTS`` posted, the first one twice (the same body: stored once), and a
    non-recognition the Sichuan Provincial People's Hospital recorded without the API."""
    assert [_post(api, e) for e in EVENTS] == [201] * len(EVENTS)
    assert _post(api, EVENTS[0]) == 200  # the hospital's system retried: nothing new is stored
    with api.store.writing("record") as session:
        record_non_recognition(
            session,
            study_instance_uid=UID_Q1,
            receiving_institution=SCPH,
            reason_code="image_quality_insufficient",
            recorded_by="qc-centre",
            now=dt.datetime(2026, 12, 1, 2, 0, tzinfo=dt.UTC),
        )
    return api


@pytest.fixture
def posted(api: Posted) -> Posted:
    return _post_all(api)


@pytest.fixture
def posted_any_backend(api_any_backend: Posted) -> Posted:
    return _post_all(api_any_backend)


def visible_text(html: str) -> str:
    return unescape(_tags_removed(html))


def _rows(files: ReportFiles, key: str) -> list[dict[str, object]]:
    table = files.tables[key]
    return [{c.key: v for c, v in zip(table.columns, row, strict=True)} for row in table.rows]


def test_rates_by_receiving_and_examining_institution_from_posted_events(
    posted_any_backend: Posted, tmp_path: Path
) -> None:
    files = write_report(posted_any_backend.store, PERIOD, tmp_path / "zh", lang="zh", pdf=False)
    # in the period: wch-1, wch-2, wch-3, cq1-1, cq1-2, wch-4 and the staff entry (7 visits); wch-5 is
    # the previous period's, cq1-3 the next one's; the re-post of wch-1 and the non_recognitions rows
    # the API wrote for wch-2 and cq1-2 are the same visits
    receiving = {
        r["institution"]: (r["visits"], r["recognised"], r["not_recognised"], r["rate"], r["fraction"], r["prev_rate"])
        for r in _rows(files, "T18")
    }
    assert receiving == {
        "全部机构": (7, 4, 3, Decimal("57.1"), "4/7", Decimal("0.0")),  # previous period: wch-5, refused
        WCH: (4, 3, 1, Decimal("75.0"), "3/4", Decimal("0.0")),  # wch-1, wch-3, wch-4 recognised; wch-2 not
        CQ1: (2, 1, 1, Decimal("50.0"), "1/2", None),  # cq1-1, cq1-2; no visit before: no rate
        SCPH: (1, 0, 1, Decimal("0.0"), "0/1", None),  # the staff entry: a true 0 of 1
    }
    examining = {
        r["institution"]: (r["visits"], r["recognised"], r["rate"], r["fraction"]) for r in _rows(files, "T19")
    }
    assert examining == {
        "全部机构": (7, 4, Decimal("57.1"), "4/7"),
        SCPH: (5, 3, Decimal("60.0"), "3/5"),  # P1 recognised thrice, P2 refused twice
        CQ1: (2, 1, Decimal("50.0"), "1/2"),  # Q1: wch-3 recognised, the staff entry refused
    }
    sheet = list(load_workbook(files.xlsx, read_only=True)["T18"].iter_rows(values_only=True))
    assert sheet[0][:6] == ("接收机构", "就诊次数", "已互认（避免重复检查）", "未互认", "互认率 %", "已互认/就诊")
    assert (WCH, 4, 3, 1, 75.0, "3/4", 0.0) in sheet and (CQ1, 2, 1, 1, 50.0, "1/2", None) in sheet


def test_recognitions_without_a_refusal_say_none_went_unrecognised(api: Posted, tmp_path: Path) -> None:
    _post(api, EVENTS[0])
    files = write_report(api.store, PERIOD, tmp_path, lang="zh", pdf=False)
    assert files.tables["T18"].cell("fraction", institution=WCH) == "1/1"
    assert files.tables["T20"].rows == () and files.tables["T20"].empty("zh") == "本期无未互认记录"
    assert "已互认 1 次（互认率 100.0%，1/1），即避免重复检查 1 次；未互认 0 次（表 T18、T20）。" in visible_text(
        files.html.read_text(encoding="utf-8")
    )


def test_a_report_for_one_institution_shows_its_own_rows(posted: Posted, tmp_path: Path) -> None:
    files = write_report(posted.store, PERIOD, tmp_path, lang="zh", institution=SCPH, pdf=False)
    assert [(r["institution"], r["fraction"]) for r in _rows(files, "T18")] == [("全部机构", "4/7"), (SCPH, "0/1")]
    assert [(r["institution"], r["fraction"]) for r in _rows(files, "T19")] == [("全部机构", "4/7"), (SCPH, "3/5")]
    text = visible_text(files.html.read_text(encoding="utf-8"))
    assert "互认实施：作为接收机构互认 0/1（0.0%）；本机构的检查被互认 3/5（60.0%）（表 T18、T19）。" in text


def test_reasons_are_named_in_words_and_counted_once(posted: Posted, tmp_path: Path) -> None:
    files = write_report(posted.store, PERIOD, tmp_path / "zh", lang="zh", pdf=False)
    # wch-2 (condition_changed), cq1-2 (patient_request), the staff entry (image_quality_insufficient):
    # a third each; wch-5 (result_doubted) is the previous period's
    third = Decimal("33.3")
    assert [(r["number"], r["code"], r["count"], r["share"]) for r in _rows(files, "T20")] == [
        (1, "condition_changed", 1, third),
        (6, "patient_request", 1, third),
        (9, "image_quality_insufficient", 1, third),
    ]
    assert str(files.tables["T20"].cell("reason", code="condition_changed")).startswith("因病情变化")
    text = visible_text(files.html.read_text(encoding="utf-8"))
    assert (
        "因病情变化" in text and "患者或其亲属要求做进一步检查的" in text and "图像质量和方法不能满足诊断要求" in text
    )
    assert not re.search(r"condition_changed|patient_request|image_quality_insufficient", text)  # words, not ids
    en = write_report(posted.store, PERIOD, tmp_path / "en", lang="en", pdf=False)
    assert "the patient's condition has changed" in visible_text(en.html.read_text(encoding="utf-8"))


def test_the_report_text_quotes_the_counted_figures(posted: Posted, tmp_path: Path) -> None:
    zh = write_report(posted.store, PERIOD, tmp_path / "zh", lang="zh", pdf=False)
    text = visible_text(zh.html.read_text(encoding="utf-8"))
    # the summary: 4 of 7 recognised; the first of the tied reasons in list order
    assert (
        "互认实施：本期就诊 7 次调阅既往结果，已互认 4 次（互认率 57.1%，4/7），即避免重复检查 4 次；"
        "未互认 3 次，最常见原因为“因病情变化"
    ) in text
    # the institutions' own sections: as receiving hospital (T18) and as examining institution (T19)
    assert "互认实施：作为接收机构互认 0/1（0.0%）；本机构的检查被互认 3/5（60.0%）（表 T18、T19）。" in text
    assert "互认实施：作为接收机构互认 1/2（50.0%）；本机构的检查被互认 1/2（50.0%）（表 T18、T19）。" in text
    en = write_report(posted.store, PERIOD, tmp_path / "en", lang="en", pdf=False)
    text_en = visible_text(en.html.read_text(encoding="utf-8"))
    assert (
        "Recognition applied: 7 visits, 4 recognised (rate 57.1%, 4/7), i.e. 4 repeat exams avoided; "
        "3 not recognised, most often “the patient's condition has changed"
    ) in text_en


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler's pdftotext is not installed")
def test_the_pdf_prints_the_recognition_tables(posted: Posted, tmp_path: Path) -> None:
    files = write_report(posted.store, PERIOD, tmp_path, lang="zh", pdf=True)
    assert files.pdf is not None
    printed = subprocess.run(["pdftotext", str(files.pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert "互认实施情况（按接收机构）" in printed and "3/4" in printed and "因病情变化" in printed


def test_a_period_without_recognition_says_so_and_shows_no_rate(api: Posted, tmp_path: Path) -> None:
    for e in EVENTS[7:]:  # only an event of the next period: the same as none
        _post(api, e)
    files = write_report(api.store, PERIOD, tmp_path, lang="zh", pdf=False)
    for key in ("T18", "T19", "T20"):
        assert files.tables[key].rows == ()
        assert files.tables[key].empty("en") == "no recognition recorded in this period (no hospital system posted any)"
    text = visible_text(files.html.read_text(encoding="utf-8"))
    assert "本期无互认记录（医院系统未上报互认结果）" in text  # the tables
    assert "互认实施：本期无互认记录（表 T18）。" in text  # the summary
    assert "互认实施：本期无本机构的互认记录（表 T18、T19）。" in text  # the institutions' sections
    assert "互认率 0" not in text and "0/0" not in text
    sheet = list(load_workbook(files.xlsx, read_only=True)["T18"].iter_rows(values_only=True))
    assert ("本期无互认记录（医院系统未上报互认结果）",) == tuple(v for v in sheet[-1] if v is not None)


def test_the_neighbouring_periods_count_only_their_own_events(posted: Posted) -> None:
    earlier = load_report_data(posted.store, Period.parse("2026H1"))
    assert [(f.day, f.outcome, f.reason_code) for f in earlier.recognitions if earlier.period.contains(f.day)] == [
        (dt.date(2026, 6, 30), "not_recognised", "result_doubted")
    ]
    later = load_report_data(posted.store, Period.parse("2027H1"))
    assert [(f.day, f.receiving_institution) for f in later.recognitions if later.period.contains(f.day)] == [
        (dt.date(2027, 1, 1), CQ1)
    ]
