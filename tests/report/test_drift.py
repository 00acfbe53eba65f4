"""Drift of the AI rules in the evaluation report: the weekly flagged share on a p-chart."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest

from qc_pipeline.checks.image_quality import rules_by_metric
from qc_pipeline.domain import Measurement, Verdict
from qc_pipeline.pipeline import load_pipeline_thresholds
from qc_pipeline.report import drift
from qc_pipeline.report.config import load_evaluation_config
from qc_pipeline.report.data import load_report_data
from qc_pipeline.report.period import Period
from qc_pipeline.report.tables import build_tables
from qc_pipeline.store import ResultStore
from tests.spotcheck.conftest import make_decision, save_all

from .test_readable import ID

METRIC = "ai.dr_artifacts.blur_motion"


def test_a_week_beyond_three_standard_errors_is_out_of_band() -> None:
    weeks = (
        drift.Week(dt.date(2026, 10, 5), 50, 7),
        drift.Week(dt.date(2026, 10, 12), 50, 15),
        drift.Week(dt.date(2026, 10, 19), 5, 5),
        drift.Week(dt.date(2026, 10, 26), 50, 0),
    )
    # baseline 0.1: band 0.1 ± 3 x sqrt(0.09 / 50) = 0.1 ± 0.127 -> [0, 0.227]
    out = drift.out_of_band(weeks, 0.1, sigmas=3, min_n=10)
    assert [w.monday for w in out] == [dt.date(2026, 10, 12)]  # 5/5 is too few series to judge
    # A rule that never flagged and now does is out of band however small the share.
    assert drift.out_of_band((drift.Week(dt.date(2026, 10, 5), 40, 1),), 0.0, sigmas=3, min_n=10)


def test_the_baseline_is_the_institutions_previous_period_when_it_has_enough_series() -> None:
    def s(day: int, flagged: bool, current: bool, where: str = "A") -> drift.Scored:
        month = 10 if current else 4
        return drift.Scored(dt.date(2026, month, day), where, 0.9 if flagged else 0.1, flagged, current)

    before = [s(d % 28 + 1, d % 10 == 0, False) for d in range(60)]  # 10 % flagged
    now = [s(d % 28 + 1, d % 2 == 0, True) for d in range(40)]  # 50 % flagged
    c = drift.chart(before + now, now, sigmas=3, min_series_per_week=5, min_baseline_series=50)
    assert c is not None and c.baseline_source == "previous" and c.baseline == pytest.approx(0.1)
    assert c.alarm and c.share == pytest.approx(0.5) and c.previous_median_score == pytest.approx(0.1)
    c = drift.chart(before[:10] + now, now, sigmas=3, min_series_per_week=5, min_baseline_series=50)
    assert c is not None and c.baseline_source == "region" and c.baseline == pytest.approx(0.5) and not c.alarm
    assert drift.chart(before, now, sigmas=3, min_series_per_week=5, min_baseline_series=50) is None


@pytest.fixture()
def store_url(tmp_path: Path) -> str:
    """Two hospitals scored by one DR rule: 甲医院 flags about 10 % of its series in both periods;
    乙医院 10 % in the first half-year, then 60 % from mid-October (a new detector, say)."""
    decisions = []
    n = 0
    for institution, jump in (("甲医院", False), ("乙医院", True)):
        for k in range(0, 350):  # two studies a day: 14 series a week
            day = k // 2
            for half, start in ((0, dt.date(2026, 1, 5)), (1, dt.date(2026, 7, 6))):
                n += 1
                date = start + dt.timedelta(days=day)
                late = half == 1 and date >= dt.date(2026, 10, 12)
                flagged = (k % 10 == 0) if not (jump and late) else (k % 10 < 6)
                decision = make_decision(n, institution, "DR", Verdict.PASS, date)
                decisions.append(
                    dataclasses.replace(
                        decision,
                        measurements=(
                            Measurement(METRIC, 0.9 if flagged else 0.1, "1", series_instance_uid=f"1.2.3.{n}"),
                        ),
                    )
                )
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    with ResultStore.open(url) as store:
        save_all(store, decisions)
    return url


def test_the_report_raises_an_alarm_for_the_institution_whose_flag_rate_jumped(store_url: str) -> None:
    thresholds = load_pipeline_thresholds()
    rules = rules_by_metric(thresholds)
    (rule,) = [r for r in thresholds.rules.values() if r.metric == METRIC]
    rules[METRIC] = [rule.model_copy(update={"enabled": True})]  # scored as if the rule were on
    with ResultStore.open(store_url) as store:
        data = load_report_data(store, Period.parse("2026H2"))
    _, tables = build_tables(data, load_evaluation_config(), rules, "zh")
    t17 = tables["T17"]
    assert t17.cell("status", institution="乙医院", metric_id=METRIC) == "报警"
    assert t17.cell("status", institution="甲医院", metric_id=METRIC) == "在控制限内"
    assert t17.cell("baseline", institution="乙医院", metric_id=METRIC) == "本机构上期"
    out_weeks = t17.cell("out_weeks", institution="乙医院", metric_id=METRIC)
    assert "10-12" in out_weeks and "09-" not in out_weeks
    assert t17.rows[0][t17.index("institution")] == "乙医院", "alarms come first"
    visible = [c.key for c in t17.columns if c.html]
    assert not any(ID.search(str(row[t17.index(k)])) for row in t17.rows for k in visible), "an id in a Chinese cell"
