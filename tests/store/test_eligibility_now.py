"""Eligibility is computed when results are read: the window ends, the institution must be qualified."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from click.testing import CliRunner

from qc_pipeline.cli import main
from qc_pipeline.domain import ItemRef, Verdict
from qc_pipeline.eligibility import EligibilityPolicy
from qc_pipeline.institutions import Register, default_register
from qc_pipeline.rules.verdict import add_months
from qc_pipeline.store import ResultStore

from .test_store import UID_A, UID_B, make_decision

HEAD_CT = ItemRef(code="YB-040", name_zh="颅脑CT平扫", name_en="Head CT, plain")
STUDY_DAY = dt.date(2026, 8, 4)
UNTIL = add_months(STUDY_DAY, 3)  # 2026-11-04


def _passed(
    store: ResultStore, uid: str = UID_A, *, institution: str = "四川省人民医院", day: dt.date = STUDY_DAY
) -> None:
    decision = make_decision(
        uid, verdict=Verdict.PASS, item=HEAD_CT, eligible=True, eligible_until=add_months(day, 3), study_date=day
    )
    study = decision.study.__class__(
        **{**{f: getattr(decision.study, f) for f in decision.study.__dataclass_fields__}, "institution": institution}
    )
    store.save_decision(
        decision.__class__(**{**{f: getattr(decision, f) for f in decision.__dataclass_fields__}, "study": study}),
        run_id=None,
    )


def _suspended_register() -> Register:
    data = default_register().model_dump(exclude={"path", "register_hash"})
    for inst in data["institutions"]:
        if inst["name"] == "四川省人民医院":
            inst["qualification"].append(
                {"status": "suspended", "since": dt.date(2026, 7, 1), "basis": "2026 H1 evaluation: not passed"}
            )
    return Register.model_validate(data)


def test_a_passed_study_past_its_window_is_not_eligible(store: ResultStore) -> None:
    _passed(store)
    (inside,) = store.results(policy=EligibilityPolicy.current(as_of=UNTIL))
    assert (
        inside["eligible"] is True
        and inside["eligibility_reasons"] == []
        and inside["eligibility_as_of"] == "2026-11-04"
    )
    (row,) = store.results(policy=EligibilityPolicy.current(as_of=UNTIL + dt.timedelta(days=1)))
    assert row["eligible"] is False and row["eligible_until"] == "2026-11-04"
    assert row["machine_eligible"] is True and row["machine_eligible_until"] == "2026-11-04"  # the stored facts
    (reason,) = row["eligibility_reasons"]
    assert reason["code"] == "window.ended" and "ended on 2026-11-04" in reason["message"]
    assert "互认期限已于 2026-11-04 结束" in reason["message_zh"]
    assert row["recognition_mark"] is None


def test_the_default_policy_uses_the_site_clock(store: ResultStore) -> None:
    four_months_ago = add_months(dt.datetime.now(dt.UTC).date(), -4)
    _passed(store, day=four_months_ago)
    (row,) = store.results()
    assert row["verdict"] == "pass" and row["eligible"] is False
    assert [r["code"] for r in row["eligibility_reasons"]] == ["window.ended"]
    # 2026-11-04 16:30 UTC is already the 5th in Shanghai: the window (until the 4th) has ended.
    late = EligibilityPolicy.current(now=dt.datetime(2026, 11, 4, 16, 30, tzinfo=dt.UTC))
    assert late.as_of == dt.date(2026, 11, 5)


def test_a_passed_study_of_an_unqualified_institution_is_not_eligible_and_says_why(store: ResultStore) -> None:
    _passed(store)
    policy = EligibilityPolicy.current(as_of=STUDY_DAY, register=_suspended_register())
    (row,) = store.results(policy=policy)
    assert row["verdict"] == "pass" and row["eligible"] is False
    (reason,) = row["eligibility_reasons"]
    assert reason["code"] == "institution.not_qualified"
    assert "机构不具备互认资格（自 2026-07-01 起）" in reason["message_zh"]
    assert "not qualified for recognition since 2026-07-01" in reason["message"]


def test_a_passed_study_of_an_unknown_institution_is_not_eligible(store: ResultStore) -> None:
    _passed(store, institution="Some Private Clinic")
    _passed(store, UID_B, institution="")
    rows = store.results(policy=EligibilityPolicy.current(as_of=STUDY_DAY))
    assert [r["eligible"] for r in rows] == [False, False]
    assert [r["eligibility_reasons"][0]["code"] for r in rows] == ["institution.unregistered"] * 2
    assert "institution not in the register: Some Private Clinic" in rows[0]["eligibility_reasons"][0]["message"]
    assert rows[0]["registered_institution"] is None


def test_an_eligible_study_says_which_mark_it_may_carry(store: ResultStore) -> None:
    _passed(store, institution="Sichuan Provincial People's Hospital")
    (row,) = store.results(policy=EligibilityPolicy.current(as_of=STUDY_DAY))
    assert row["eligible"] is True and row["recognition_mark"] == "渝北HR"
    assert row["registered_institution"] == "四川省人民医院"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_cli_results_json_and_csv_show_an_expired_pass_as_not_eligible(store: ResultStore, db_url: str) -> None:
    _passed(store, day=add_months(dt.datetime.now(dt.UTC).date(), -4))
    runner = CliRunner()
    out = runner.invoke(main, ["results", "--db", db_url, "--format", "json"])
    assert out.exit_code == 0, out.output
    (row,) = json.loads(out.output)
    assert row["eligible"] is False and row["eligibility_reasons"][0]["code"] == "window.ended"
    out = runner.invoke(main, ["results", "--db", db_url, "--format", "csv"])
    header, line = out.output.splitlines()
    values = dict(zip(header.split(","), line.split(","), strict=False))
    assert values["eligible"] == "False" and values["eligibility_reasons"] == "window.ended"
