"""The verdict rule and the eligibility window."""

from __future__ import annotations

import datetime as dt

import pytest

from qc_pipeline.domain import Category, Finding, Severity, Verdict
from qc_pipeline.rules.schema import EligibilityConfig
from qc_pipeline.rules.verdict import add_months, decide_verdict, eligibility


def finding(severity: Severity, category: Category = Category.METADATA) -> Finding:
    return Finding(code=f"{category}.x.y", category=category, severity=severity, message="m")


@pytest.mark.parametrize(
    ("severities", "candidate", "expected"),
    [
        ((), True, Verdict.PASS),
        ((Severity.INFO,), True, Verdict.PASS),
        ((Severity.INFO, Severity.REVIEW), True, Verdict.REVIEW),
        ((Severity.REVIEW, Severity.FAIL, Severity.INFO), True, Verdict.FAIL),
        ((), False, Verdict.NOT_APPLICABLE),
        ((Severity.REVIEW,), False, Verdict.NOT_APPLICABLE),
        ((Severity.FAIL,), False, Verdict.NOT_APPLICABLE),
    ],
)
def test_verdict_rule(severities, candidate, expected):
    assert decide_verdict([finding(s) for s in severities], candidate=candidate) is expected


def test_unreadable_upload_fails_even_when_not_a_candidate():
    unreadable = finding(Severity.FAIL, Category.INTEGRITY)
    assert decide_verdict([unreadable], candidate=False) is Verdict.FAIL
    assert decide_verdict([finding(Severity.REVIEW, Category.INTEGRITY)], candidate=False) is Verdict.NOT_APPLICABLE


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        (dt.date(2026, 10, 12), 3, dt.date(2027, 1, 12)),
        (dt.date(2026, 11, 30), 3, dt.date(2027, 2, 28)),
        (dt.date(2027, 11, 30), 3, dt.date(2028, 2, 29)),
        (dt.date(2026, 1, 31), 1, dt.date(2026, 2, 28)),
        (dt.date(2026, 12, 15), 12, dt.date(2027, 12, 15)),
    ],
)
def test_add_months(day, months, expected):
    assert add_months(day, months) == expected


def test_only_pass_is_eligible():
    config = EligibilityConfig()
    day = dt.date(2026, 10, 12)
    assert eligibility(Verdict.PASS, study_date=day, modalities=["CT"], config=config) == (True, dt.date(2027, 1, 12))
    for verdict in (Verdict.REVIEW, Verdict.FAIL, Verdict.NOT_APPLICABLE):
        assert eligibility(verdict, study_date=day, modalities=["CT"], config=config) == (False, None)


def test_shortest_modality_window_wins():
    config = EligibilityConfig(default_months=3, per_modality_months={"MR": 6, "CR": 1})
    day = dt.date(2026, 10, 12)
    assert eligibility(Verdict.PASS, study_date=day, modalities=["MR"], config=config)[1] == dt.date(2027, 4, 12)
    assert eligibility(Verdict.PASS, study_date=day, modalities=["CR", "MR"], config=config)[1] == dt.date(2026, 11, 12)
