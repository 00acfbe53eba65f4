"""Recognition figures in the evaluation report (tables T18-T20): events posted by hospital
systems through the real recognition API, and a non-recognition entered by QC staff, counted
once per visit, by local day, in the report regenerated from the store."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from qc_pipeline.recognition.api import PREFIX
from qc_pipeline.report.config import load_evaluation_config
from qc_pipeline.report.data import load_report_data
from qc_pipeline.report.evaluation import write_report
from qc_pipeline.report.period import Period
from qc_pipeline.report.tables import build_tables
from qc_pipeline.store.recognition import create_token
from qc_pipeline.store.review import record_non_recognition
from tests.recognition.conftest import ISSUER, UID_FAIL, UID_PASS, Api, api, auth, sqlite_url  # noqa: F401 (fixtures)

SHANGHAI = ZoneInfo("Asia/Shanghai")
HOSPITAL_B = "重庆医科大学附属第一医院"
HOSPITAL_C = "四川大学华西医院"
ALL = "全部机构"


def _post(api: Api, token: str, event_id: str, at: dt.datetime, receiving: str, **extra: object) -> None:
    body = {
        "event_id": event_id,
        "study_instance_uid": UID_PASS,
        "outcome": "recognised",
        "receiving_institution": receiving,
        "department": "呼吸内科",
        "at": at.isoformat(),
        **extra,
    }
    response = api.client.post(f"{PREFIX}/events", json=body, headers=auth(token))
    assert response.status_code in (200, 201), response.text


def _tables(api: Api, period: Period, lang: str = "zh") -> dict:
    data = load_report_data(api.store, period, zone=SHANGHAI)
    _, tables = build_tables(data, load_evaluation_config(), {}, lang)
    return tables


@pytest.fixture
def period(api: Api) -> Period:
    period = Period.of(api.today)
    first_visit = dt.datetime.combine(period.start, dt.time(7, 30), tzinfo=SHANGHAI)
    if dt.datetime.now(dt.UTC) < first_visit + dt.timedelta(minutes=10):
        pytest.skip("the visits of this test would lie in the future (first hours of a half-year)")
    return period


def test_no_event_gives_a_said_empty_table_not_a_zero_rate(api: Api, period: Period) -> None:
    tables = _tables(api, period)
    for key in ("T18", "T19", "T20"):
        assert tables[key].rows == ()
    assert tables["T18"].empty("zh") == "本期无互认记录（医院系统未上报互认结果）"


def test_posted_events_and_a_staff_entry_are_counted_once_per_visit_by_local_day(
    api: Api, period: Period, tmp_path
) -> None:
    with api.store.writing("tokens of two receiving hospitals") as session:
        b = create_token(session, name="his-chongqing", institution=HOSPITAL_B, scopes=["events"])
        c = create_token(session, name="his-huaxi", institution=HOSPITAL_C, scopes=["events"])
    start = dt.datetime.combine(period.start, dt.time(7, 30), tzinfo=SHANGHAI)  # 23:30 UTC the day before
    _post(api, b, "b-1", start, HOSPITAL_B)
    _post(api, b, "b-1", start, HOSPITAL_B)  # the same event again: stored once
    _post(
        api,
        b,
        "b-2",
        start + dt.timedelta(minutes=1),
        HOSPITAL_B,
        outcome="not_recognised",
        reason_code="condition_changed",
    )
    _post(api, c, "c-1", start + dt.timedelta(minutes=2), HOSPITAL_C)
    _post(api, c, "c-2", start + dt.timedelta(minutes=3), HOSPITAL_C)
    # the last evening of the previous half-year, local time (15:30 UTC): counted there, not here
    _post(
        api,
        c,
        "c-0",
        dt.datetime.combine(period.start - dt.timedelta(days=1), dt.time(23, 30), tzinfo=SHANGHAI),
        HOSPITAL_C,
        outcome="not_recognised",
        reason_code="patient_request",
    )
    with api.store.writing("a non-recognition entered by QC staff") as session:
        record_non_recognition(
            session,
            study_instance_uid=UID_FAIL,
            receiving_institution=HOSPITAL_C,
            reason_code="condition_changed",
            recorded_by="qc-staff",
            now=start.astimezone(dt.UTC) + dt.timedelta(minutes=5),
        )

    t = _tables(api, period)
    t18, t19, t20 = t["T18"], t["T19"], t["T20"]
    # 5 visits this half-year: B recognised 1 / not 1 (its own non-recognition row not counted again),
    # C recognised 2 (+1 staff-entered non-recognition); the previous half-year: C not recognised 1
    assert t18.cell("visits", institution=ALL) == 5
    assert t18.cell("recognised", institution=ALL) == 3  # repeat exams avoided
    assert str(t18.cell("rate", institution=ALL)) == "60.0"
    assert str(t18.cell("prev_rate", institution=ALL)) == "0.0"
    assert (t18.cell("recognised", institution=HOSPITAL_B), t18.cell("not_recognised", institution=HOSPITAL_B)) == (
        1,
        1,
    )
    assert (t18.cell("recognised", institution=HOSPITAL_C), t18.cell("not_recognised", institution=HOSPITAL_C)) == (
        2,
        1,
    )
    assert t18.cell("prev_rate", institution=HOSPITAL_B) is None  # no visit there before: no rate, not 0 %
    # by the institution that did the exams: every study is ISSUER's
    assert t19.cell("visits", institution=ISSUER) == 5 and t19.cell("recognised", institution=ISSUER) == 3
    # reasons: condition_changed twice (one posted, one by staff); the previous half-year's reason not here
    assert t20.cell("count", code="condition_changed") == 2
    assert str(t20.cell("share", code="condition_changed")) == "100.0"
    assert t20.cell("number", code="condition_changed") == 1
    assert "因病情变化" in t20.cell("reason", code="condition_changed")
    with pytest.raises(KeyError, match="no row"):
        t20.cell("count", code="patient_request")

    files = write_report(api.store, period, tmp_path, lang="zh", pdf=False)
    html = files.html.read_text(encoding="utf-8")
    assert "互认实施情况（按接收机构）" in html and "未互认的原因（互认负面清单）" in html
    assert HOSPITAL_B in html and "因病情变化" in html
    assert "condition_changed" not in html  # the reason's words, not its code
