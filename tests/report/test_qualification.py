"""The qualification rule, the fee exposure, periods and the evaluation configuration."""

from __future__ import annotations

import datetime as dt
import shutil
from decimal import Decimal
from pathlib import Path

import pytest

from qc_pipeline.errors import ConfigError
from qc_pipeline.report.config import EvaluationConfig, QualificationRule, load_evaluation_config
from qc_pipeline.report.data import FindingFact, StudyFacts
from qc_pipeline.report.period import Period
from qc_pipeline.report.qualification import Exposure, Outcome, fee_exposure, percent, qualify, storage_failures
from qc_pipeline.rules import default_thresholds_dir

RULE = QualificationRule(
    min_judged_studies=10,
    min_pass_rate_percent=Decimal(70),
    critical_categories=[{"category": "completeness", "max_fail_percent": Decimal(10)}],  # type: ignore[list-item]
    source="test",
)


def _study(
    i: int,
    verdict: str,
    *,
    fail_in: str | None = None,
    delay: float | None = 1.0,
    modality: str = "CT",
    human: str | None = None,
) -> StudyFacts:
    findings = () if fail_in is None else (FindingFact(f"{fail_in}.x", fail_in, "fail", "m", "m"),)
    return StudyFacts(
        i, f"2.25.{i}", "H", modality, None, None, None, dt.date(2026, 8, 1), verdict, findings, delay, human
    )


def _population(passed: int, failed: int, *, na: int = 0) -> list[StudyFacts]:
    studies = [_study(i, "pass") for i in range(passed)]
    studies += [_study(1000 + i, "fail", fail_in="image_quality") for i in range(failed)]
    return studies + [_study(2000 + i, "not_applicable") for i in range(na)]


def test_exactly_at_the_minimum_pass_rate_qualifies_just_below_does_not() -> None:
    at = qualify(_population(7, 3), RULE)  # 70.0 %
    assert (at.outcome, at.pass_rate) == (Outcome.QUALIFIED, Decimal("70.0"))
    below = qualify(_population(69, 31), RULE)  # 69.0 %
    assert below.outcome is Outcome.NOT_QUALIFIED and below.failed_criteria() == ["pass_rate"]
    # 233/333 = 69.97 %: shown as 70.0 after rounding, still below the limit (compared exactly)
    close = qualify(_population(233, 100), RULE)
    assert close.pass_rate == Decimal("70.0") and close.outcome is Outcome.NOT_QUALIFIED


def test_a_critical_category_exactly_at_its_limit_qualifies_above_does_not() -> None:
    studies = _population(9, 0) + [_study(99, "fail", fail_in="completeness")]  # 1/10 = 10 %
    rule = RULE.model_copy(update={"min_pass_rate_percent": Decimal(50)})
    assert qualify(studies, rule).outcome is Outcome.QUALIFIED
    over = qualify(studies + [_study(98, "fail", fail_in="completeness")], rule)  # 2/11 = 18 %
    assert over.outcome is Outcome.NOT_QUALIFIED and over.failed_criteria() == ["completeness"]


def test_no_studies_or_only_not_applicable_is_insufficient_data() -> None:
    for studies in ([], _population(0, 0, na=50)):
        q = qualify(studies, RULE)
        assert (q.outcome, q.judged, q.pass_rate, q.failed_criteria()) == (Outcome.INSUFFICIENT, 0, None, [])
    assert qualify(_population(9, 0), RULE).outcome is Outcome.INSUFFICIENT  # 9 < min_judged_studies
    assert qualify(_population(10, 0), RULE).outcome is Outcome.QUALIFIED


def test_radiologist_decisions_replace_machine_verdicts_when_the_rule_says_so() -> None:
    studies = _population(6, 0) + [_study(50 + i, "review", human="pass") for i in range(4)]
    assert qualify(studies, RULE).outcome is Outcome.QUALIFIED  # 10/10 after review
    machine_only = RULE.model_copy(update={"use_radiologist_decisions": False})
    assert qualify(studies, machine_only).outcome is Outcome.NOT_QUALIFIED  # 6/10


def _coded(i: int, code: str, modality: str = "CT", severity: str = "fail") -> StudyFacts:
    f = FindingFact(code, code.split(".")[0], severity, "m", "m")
    return StudyFacts(i, f"2.25.{i}", "H", modality, None, None, None, dt.date(2026, 8, 1), "fail", (f,), 1.0)


def test_a_protocol_defect_costs_no_fee_a_storage_failure_does() -> None:
    config = load_evaluation_config()
    studies = [
        _coded(1, "completeness.mr.sequence_missing", "MR"),  # missing FLAIR: a quality defect
        _coded(2, "completeness.ct.slice_thickness"),  # 6 mm reconstruction: a quality defect
        _study(3, "review", delay=300.0),  # late: a timeliness measure, not a storage failure
        _coded(4, "integrity.file.unreadable"),  # not retrievable
        _coded(5, "integrity.pixel_data.missing", "DR"),  # no images (DR: national scheme only)
    ]
    assert [storage_failures(s, config.fees) for s in studies] == [
        [],
        [],
        [],
        [Exposure.NOT_RETRIEVABLE],
        [Exposure.NO_IMAGES],
    ]
    exposure = {e.scheme.id: (e.exams, e.exposed, e.yuan) for e in fee_exposure(studies, [], config.fees, public=True)}
    assert exposure == {"chongqing": (4, 1, Decimal(20)), "national": (5, 2, Decimal(10))}


def test_an_exam_in_the_log_with_no_upload_is_missing_and_costs_the_fee() -> None:
    config = load_evaluation_config()
    out = {e.scheme.id: e for e in fee_exposure([_study(1, "pass")], ["MR", "DR", None], config.fees, public=True)}
    assert (out["chongqing"].exams, out["chongqing"].reasons[Exposure.NOT_UPLOADED], out["chongqing"].yuan) == (
        2,
        1,
        Decimal(20),
    )
    assert (out["national"].exams, out["national"].reasons[Exposure.NOT_UPLOADED], out["national"].yuan) == (
        3,
        2,
        Decimal(10),
    )


def test_fees_concern_public_institutions_only() -> None:
    config = load_evaluation_config()
    private = fee_exposure([_coded(1, "integrity.file.unreadable")], ["CT"], config.fees, public=False)
    assert [(e.exposed, e.yuan) for e in private] == [(2, None), (2, None)]
    unknown = fee_exposure([], ["CT"], config.fees, public=None)  # not registered: shown, flagged in the table
    assert [e.yuan for e in unknown] == [Decimal(20), Decimal(5)]


def test_percent_rounds_half_up() -> None:
    assert percent(1, 8) == Decimal("12.5")
    assert percent(1, 16) == Decimal("6.3")  # 6.25 -> 6.3 (half up, not to even)
    assert percent(0, 0) is None


def test_periods() -> None:
    p = Period.parse(" 2026h2 ")
    assert (str(p), p.start, p.end, str(p.previous)) == ("2026H2", dt.date(2026, 7, 1), dt.date(2026, 12, 31), "2026H1")
    assert str(Period.parse("2026H1").previous) == "2025H2"
    assert Period.of(dt.date(2026, 6, 30)) == Period(2026, 1) and Period.of(dt.date(2026, 7, 1)) == Period(2026, 2)
    assert p.months()[0] == "2026-07" and len(p.months()) == 6
    with pytest.raises(ValueError, match="expected e.g. 2026H1"):
        Period.parse("2026Q3")


def test_shipped_configuration_is_valid_and_errors_name_file_and_key(tmp_path: Path) -> None:
    config = load_evaluation_config()
    assert isinstance(config, EvaluationConfig) and config.qualification.min_pass_rate_percent == 70
    assert [(s.id, s.yuan_per_exam) for s in config.fees.schemes] == [("chongqing", 20), ("national", 5)]
    copy = tmp_path / "thresholds"
    shutil.copytree(default_thresholds_dir() / "evaluation", copy / "evaluation")
    path = copy / "evaluation" / "qualification.yaml"
    path.write_text(
        path.read_text(encoding="utf-8").replace("min_pass_rate_percent: 70", "min_pass_rate_percent: 170"),
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=r"qualification.yaml: qualification.min_pass_rate_percent: .*found 170"):
        load_evaluation_config(copy)
    path.write_text(
        path.read_text(encoding="utf-8").replace("modalities: [CT, MR]", "modalities: [CT, PET]", 1), encoding="utf-8"
    )
    with pytest.raises(ConfigError, match="unknown modality PET"):
        load_evaluation_config(copy)
    with pytest.raises(ConfigError, match="is missing"):
        load_evaluation_config(tmp_path / "nowhere")
