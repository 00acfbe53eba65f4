"""Upload timeliness, laterality conflict, and one patient across studies."""

from __future__ import annotations

import datetime as dt

import pytest

from qc_pipeline.checks.consistency import check_across_studies, check_laterality
from qc_pipeline.checks.timeliness import check_timeliness, upload_delay_hours
from qc_pipeline.domain import PriorStudy, Severity
from qc_pipeline.rules import load_thresholds


@pytest.fixture(scope="module")
def thresholds():
    return load_thresholds()


def test_upload_delay_in_hours_across_zones():
    acquired = dt.datetime(2026, 10, 14, 10, 15, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    received = dt.datetime(2026, 10, 14, 4, 15, tzinfo=dt.UTC)  # 12:15 in Shanghai
    assert upload_delay_hours(received, acquired) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="timezone-aware"):
        upload_delay_hours(dt.datetime(2026, 10, 14), acquired)


@pytest.mark.parametrize(
    ("delay", "code", "severity"),
    [
        (2.0, None, None),
        (24.0, None, None),  # at the limit is on time
        (30.0, "timeliness.upload_delay.late", Severity.INFO),
        # late upload is an institution-level measure for the evaluation, not a case for a radiologist
        (100.0, "timeliness.upload_delay.very_late", Severity.INFO),
        (-0.5, None, None),  # within the clock tolerance
        (-3.0, "timeliness.upload_delay.negative", Severity.REVIEW),
    ],
)
def test_timeliness(thresholds, delay, code, severity):
    findings = check_timeliness(delay, thresholds)
    if code is None:
        assert findings == []
    else:
        (finding,) = findings
        assert (finding.code, finding.severity) == (code, severity)
        assert finding.value == f"{delay:.1f} h"


def test_an_upper_bound_delay_says_so(thresholds):
    (finding,) = check_timeliness(30.0, thresholds, upper_bound=True)
    assert finding.code == "timeliness.upload_delay.late" and finding.value == "≤ 30.0 h"
    assert "at most 30.0 h" in finding.message and "first saw the study" in finding.message
    assert "最多" in finding.message_zh and "首次发现" in finding.message_zh
    assert check_timeliness(-3.0, thresholds, upper_bound=True) == []  # an upper bound cannot show an early clock


def test_laterality_conflict(thresholds):
    (finding,) = check_laterality("L", "R", thresholds)
    assert finding.code == "metadata.laterality.conflict" and finding.severity is Severity.REVIEW
    assert (finding.value, finding.limit) == ("R", "L")
    assert "左" in finding.message_zh and "右" in finding.message_zh
    assert check_laterality("L", "L", thresholds) == []
    assert check_laterality(None, "R", thresholds) == []
    assert check_laterality("B", "R", thresholds) == []


def prior(uid: str, day: dt.date, sex: str = "F", birth: dt.date = dt.date(1975, 6, 15)) -> PriorStudy:
    return PriorStudy(study_instance_uid=uid, study_date=day, patient_sex=sex, patient_birth_date=birth)


def test_conflict_across_studies_goes_on_the_later_study(thresholds):
    earlier = prior("1.1", dt.date(2026, 9, 1))
    later = prior("1.3", dt.date(2026, 12, 1), sex="M")
    findings = check_across_studies(
        study_date=dt.date(2026, 10, 14),
        sex="M",
        birth_date=dt.date(1975, 6, 16),
        others=[earlier, later],
        thresholds=thresholds,
    )
    assert [f.code for f in findings] == ["metadata.patient.conflict_across_studies"] * 2
    assert {f.value for f in findings} == {"M", "19750616"}
    assert all("1.1" in f.message for f in findings)  # the later study 1.3 is not blamed here


def test_consistent_studies_have_no_finding(thresholds):
    same = prior("1.1", dt.date(2026, 9, 1))
    assert (
        check_across_studies(
            study_date=dt.date(2026, 10, 14),
            sex="f",
            birth_date=dt.date(1975, 6, 15),
            others=[same],
            thresholds=thresholds,
        )
        == []
    )
