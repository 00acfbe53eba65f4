"""One rule evaluator: the checks, the command-line table, the review app and the report show a value
with the limit and the mark it was judged by (per-item limits included)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from qc_pipeline.checks import image_quality
from qc_pipeline.checks.image_quality import Target, judge_measurement, rules_by_metric
from qc_pipeline.cli import _metric_cell
from qc_pipeline.domain import ItemRef, Measurement, Severity
from qc_pipeline.pipeline import load_pipeline_thresholds
from qc_pipeline.report import tables
from qc_pipeline.report.data import MeasurementFact, StudyFacts
from qc_pipeline.report.period import Period
from qc_pipeline.review.service import MetricValue, metric_rows
from qc_pipeline.rules.evaluate import applicable_rules, evaluate

HEAD_CT = "YB-034"  # 头部 CT平扫: noise limits 15 HU (review) / 30 HU (fail)


@pytest.fixture(scope="module")
def thresholds():
    """The shipped rules, with the head-CT noise limits pinned as the case describes them."""
    loaded = load_pipeline_thresholds()
    review = loaded.rules["image_quality.ct.noise.review"].model_copy(
        update={"limit": 35.0, "per_item": {HEAD_CT: 15.0}}
    )
    fail = loaded.rules["image_quality.ct.noise.fail"].model_copy(update={"limit": 55.0, "per_item": {HEAD_CT: 30.0}})
    return dataclasses.replace(loaded, rules={**loaded.rules, review.id: review, fail.id: fail})


def test_the_head_ct_limit_is_the_per_item_one(thresholds):
    ev = evaluate(thresholds.rules.values(), "ct.noise_hu", 20.0, modality="CT", item_code=HEAD_CT)
    assert ev.fired_rule is not None and ev.fired_rule.id == "image_quality.ct.noise.review"
    assert ev.severity is Severity.REVIEW and ev.mark == "!"
    assert ev.limit_text == "≤ 15"
    assert ev.limits_text() == "≤ 15 (review), ≤ 30 (fail)"
    other = evaluate(thresholds.rules.values(), "ct.noise_hu", 20.0, modality="CT", item_code="YB-036")
    assert other.fired is None and other.mark == "" and other.limit_text == "≤ 35"
    # a rule for another modality does not apply; DR studies match the CR/DX rules
    assert not applicable_rules(thresholds.rules.values(), "ct.noise_hu", modality="MR", item_code=None)
    assert applicable_rules(thresholds.rules.values(), "dr.deviation_index", modality="DR", item_code=None)
    # a cap on the severity leaves only the rules up to it
    capped = evaluate(
        thresholds.rules.values(), "ct.noise_hu", 40.0, modality="CT", item_code=HEAD_CT, max_severity=Severity.REVIEW
    )
    assert capped.severity is Severity.REVIEW and capped.limits_text() == "≤ 15 (review)"


def test_the_check_finding_uses_the_same_limit(thresholds):
    target = Target("ct", "1.2.3", (), "series 2 'head'", "序列 2 “head”")
    m = Measurement("ct.noise_hu", 20.0, "HU", series_instance_uid="1.2.3")
    finding = judge_measurement(m, target, "CT", HEAD_CT, rules_by_metric(thresholds)["ct.noise_hu"], thresholds)
    assert finding is not None and finding.code == "image_quality.ct.noise.review"
    assert finding.limit == "≤ 15 HU" and "above the limit 15 HU" in finding.message


def test_cli_table_shows_the_per_item_limit_and_the_mark(thresholds):
    row = {"modality": "CT", "item": {"code": HEAD_CT}, "measurements": [{"metric": "ct.noise_hu", "value": 20.0}]}
    cell = _metric_cell(row, rules_by_metric(thresholds), "en")
    assert cell == "!image noise (global noise level) 20 HU (≤ 15)"
    no_item = _metric_cell({**row, "item": None}, rules_by_metric(thresholds), "en")
    assert no_item == "image noise (global noise level) 20 HU (≤ 35)"


def test_review_app_shows_the_per_item_limit_and_the_mark(thresholds):
    item = ItemRef(HEAD_CT, "头部 CT平扫", "head CT plain")
    (row,) = metric_rows(thresholds, "CT", item, [MetricValue("ct.noise_hu", 20.0, "1.2.3")])
    assert (row.value, row.unit, row.limits, row.beyond, row.mark) == (
        "20",
        "HU",
        "≤ 15 (review), ≤ 30 (fail)",
        "review",
        "!",
    )


def test_report_counts_the_head_ct_beyond_its_own_limit(thresholds):
    period = Period.parse("2026H2")
    study = StudyFacts(
        study_id=1,
        study_instance_uid="1.2",
        institution="A",
        modality="CT",
        item_code=HEAD_CT,
        item_name_zh="头部CT平扫",
        item_name_en="head CT",
        study_date=dt.date(2026, 11, 3),
        verdict="review",
        findings=(),
        upload_delay_h=None,
    )
    data = dataclasses.replace(
        _empty_data(period), studies=(study,), measurements=(MeasurementFact(1, "ct.noise_hu", 20.0, "1.2.3"),)
    )
    scope = tables.make_scope(data, "en", None)
    table = tables.metrics(scope, data, rules_by_metric(thresholds), "en")
    columns = [c.key for c in table.columns]
    row = dict(
        zip(columns, next(r for r in table.rows if r[1] == "ct.noise_hu" and r[2] == scope.label_all), strict=True)
    )
    limits, beyond = row["limits"], row["beyond"]
    assert beyond == 1
    assert "≤ 35 (review)" in limits and f"{HEAD_CT}: ≤ 15 (review)" in limits


def _empty_data(period):
    from qc_pipeline.report.data import ReportData

    return ReportData(
        period=period,
        studies=(),
        measurements=(),
        human_decisions=(),
        spot_checks=(),
        undated=0,
        thresholds_versions=(),
        latest_decision=None,
        tables_present=frozenset(),
    )


def test_image_quality_keeps_no_rule_logic_of_its_own():
    assert not hasattr(image_quality, "_fires")


def test_a_value_just_beyond_its_limit_is_never_written_as_the_limit(thresholds):
    # 15.02 HU is above the head-CT review limit of 15 HU; three significant digits would write it
    # "15", the limit itself. The finding, the command-line table and the review app write "15.02".
    target = Target("ct", "1.2.3", (), "series 2 'head'", "序列 2 “head”")
    m = Measurement("ct.noise_hu", 15.02, "HU", series_instance_uid="1.2.3")
    finding = judge_measurement(m, target, "CT", HEAD_CT, rules_by_metric(thresholds)["ct.noise_hu"], thresholds)
    assert finding is not None and finding.value == "15.02 HU"
    assert "15.02 HU is above the limit 15 HU" in finding.message and "15.02 HU，高于限值 15 HU" in finding.message_zh
    row = {"modality": "CT", "item": {"code": HEAD_CT}, "measurements": [{"metric": "ct.noise_hu", "value": 15.02}]}
    assert _metric_cell(row, rules_by_metric(thresholds), "en") == "!image noise (global noise level) 15.02 HU (≤ 15)"
    item = ItemRef(HEAD_CT, "头部 CT平扫", "head CT plain")
    (shown,) = metric_rows(thresholds, "CT", item, [MetricValue("ct.noise_hu", 15.02, "1.2.3")])
    assert (shown.value, shown.mark) == ("15.02", "!")
    # a value within the limit keeps the metric's own format
    (within,) = metric_rows(thresholds, "CT", item, [MetricValue("ct.noise_hu", 14.98, "1.2.3")])
    assert (within.value, within.mark) == ("15", "")
