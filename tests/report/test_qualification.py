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
from qc_pipeline.report.qualification import Outcome, fee_exposure, noncompliance, percent, qualify
from qc_pipeline.rules import default_thresholds_dir

RULE = QualificationRule(
    min_judged_studies=10,
    min_pass_rate_percent=Decimal(70),
    critical_categories=[{"category": "completeness", "max_fail_percent": Decimal(10)}],  # type: ignore[list-item]
    source="test",
)


def _study(i: int, verdict: str, *, fail_in: str | None = None, delay: float | None = 1.0, modality: str = "CT",
           human: str | None = None) -> StudyFacts:
    findings = () if fail_in is None else (FindingFact(f"{fail_in}.x", fail_in, "fail", "m", "m"),)
    return StudyFacts(i, f"2.25.{i}", "H", modality, None, None, None, dt.date(2026, 8, 1), verdict, findings, delay, human)


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


def test_fee_exposure_counts_incomplete_identity_and_late_ct_mr_uploads() -> None:
    config = load_evaluation_config()
    studies = [
        _study(1, "pass", delay=2.0),
        _study(2, "fail", fail_in="completeness"),
        _study(3, "fail", fail_in="metadata", modality="MR"),
        _study(4, "pass", delay=24.0),  # at the limit: on time
        _study(5, "review", delay=24.5),
        _study(6, "pass", delay=None),  # unknown: not counted unless configured
        _study(7, "fail", fail_in="completeness", modality="DR"),  # DR: not in the schemes
    ]
    assert [len(noncompliance(s, config.fees)) > 0 for s in studies] == [False, True, True, False, True, False, True]
    exposure = {e.scheme.id: (e.exams, e.noncompliant, e.yuan) for e in fee_exposure(studies, config.fees)}
    assert exposure == {"chongqing": (6, 3, Decimal(60)), "national": (6, 3, Decimal(15))}


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
    path.write_text(path.read_text(encoding="utf-8").replace("min_pass_rate_percent: 70", "min_pass_rate_percent: 170"),
                    encoding="utf-8")
    with pytest.raises(ConfigError, match=r"qualification.yaml: qualification.min_pass_rate_percent: .*found 170"):
        load_evaluation_config(copy)
    path.write_text(path.read_text(encoding="utf-8").replace("modalities: [CT, MR]", "modalities: [CT, PET]", 1),
                    encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown modality PET"):
        load_evaluation_config(copy)
    with pytest.raises(ConfigError, match="is missing"):
        load_evaluation_config(tmp_path / "nowhere")
