"""People read the report: no rule, metric or scheme ids in the Chinese report; labels from one place."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from qc_pipeline.labels import metric_label, rule_label, scheme_label
from qc_pipeline.report.evaluation import write_report
from qc_pipeline.report.period import Period
from qc_pipeline.rules import load_thresholds
from qc_pipeline.samples.population import generate_population
from qc_pipeline.store import ResultStore

ID = re.compile(
    r"\b(?:image_quality|completeness|catalog|metadata|continuity|integrity|timeliness|ai|dr|ct|mr)\.[a-z_.]+\b"
)


def visible_text(html: str) -> str:
    html = re.sub(r"<(style|script)\b.*?</\1>", " ", html, flags=re.S)
    return re.sub(r"<[^>]+>", " ", html)


@pytest.fixture(scope="module")
def zh_html(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('pop') / 'results.sqlite'}"
    with ResultStore.open(url) as store:
        generate_population(store, scale=0.3)
        files = write_report(store, Period.parse("2026H2"), tmp_path_factory.mktemp("zh"), lang="zh", pdf=False)
    return files.html.read_text(encoding="utf-8")


def test_chinese_report_shows_no_rule_metric_or_scheme_ids(zh_html: str) -> None:
    text = visible_text(zh_html)
    assert ID.findall(text) == []
    assert "chongqing" not in text and "national" not in text
    assert "最常见的问题为" in text and "图像质量：" in text


def test_every_rule_and_metric_has_a_label_in_both_languages() -> None:
    thresholds = load_thresholds()
    for rule_id in thresholds.rules:
        for lang in ("zh", "en"):
            label = rule_label(rule_id, lang)
            assert not ID.search(label) and "_" not in label, (rule_id, lang, label)
    assert rule_label("image_quality.dr.deviation_index_low.review", "zh") == "图像质量：DR偏差指数 DI 偏低（需复核）"
    assert metric_label("dr.deviation_index", "zh") == "偏差指数 DI"
    assert metric_label("dr.deviation_index", "en") == "deviation index DI"
    assert scheme_label("chongqing", "zh") == "重庆口径"


def test_empty_period_says_there_is_no_data_and_exits_non_zero(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from qc_pipeline.cli import main

    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    with ResultStore.open(url) as store:
        generate_population(store, scale=0.05)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["report", "--db", url, "--period", "2030-H1", "--out", str(out), "--no-pdf"])
    assert result.exit_code == 1, result.output
    assert "no study" in result.output and "无检查" in result.output and "2030H1" in result.output
    assert not out.exists() or not any(out.iterdir())
    ok = CliRunner().invoke(main, ["report", "--db", url, "--period", "2026-H2", "--out", str(out), "--no-pdf"])
    assert ok.exit_code == 0, ok.output


def test_report_on_a_missing_database_creates_nothing(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from qc_pipeline.cli import main

    typo = tmp_path / "typo.sqlite"
    result = CliRunner().invoke(main, ["report", "--db", f"sqlite:///{typo}", "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "不存在" in result.output and not typo.exists()


def test_times_are_shown_in_the_site_zone(zh_html: str) -> None:
    import datetime as dt

    from qc_pipeline.report.render import site_time

    assert site_time(dt.datetime(2026, 12, 31, 20, 0, tzinfo=dt.UTC)) == "2027-01-01 04:00 (Asia/Shanghai)"
    assert site_time(dt.datetime(2026, 12, 31, 20, 0)) == "2027-01-01 04:00 (Asia/Shanghai)"  # stored naive UTC
    assert "UTC" not in visible_text(zh_html) and "(Asia/Shanghai)" in zh_html


def test_ai_kappa_on_too_few_cases_is_not_computed() -> None:
    from qc_pipeline.report.tables import _kappa
    from qc_pipeline.spotcheck.stats import MIN_KAPPA_N

    assert _kappa(1, 1, 1, 0) is None  # n = 3
    assert _kappa(4, 1, 1, MIN_KAPPA_N) is not None


def test_ai_kappa_of_table_t11_is_cohens_kappa() -> None:
    # independent implementation: scikit-learn's cohen_kappa_score on the same pairs
    from sklearn.metrics import cohen_kappa_score

    from qc_pipeline.report.tables import _kappa

    for a, b, c, d in [(7, 2, 3, 18), (0, 5, 5, 0), (12, 0, 1, 9), (3, 4, 2, 11)]:
        ai = [1] * a + [1] * b + [0] * c + [0] * d
        human = [1] * a + [0] * b + [1] * c + [0] * d
        assert float(_kappa(a, b, c, d)) == pytest.approx(cohen_kappa_score(ai, human), abs=0.005)
    assert _kappa(0, 0, 0, 20) is None  # both raters said "no flag" every time: kappa undefined


def test_english_report_reads_as_english(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    with ResultStore.open(url) as store:
        generate_population(store, scale=0.1)
        files = write_report(store, Period.parse("2026H2"), tmp_path, lang="en", pdf=False)
    text = visible_text(files.html.read_text(encoding="utf-8"))
    assert not re.search(r"\b1 (studies|exams|institutions|have)\b", text), re.findall(
        r".{40}\b1 (?:studies|exams).{20}", text
    )
    assert "— yuan" not in text and "lose it" not in text
    assert ID.findall(text) == []
