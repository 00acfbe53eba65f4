"""Review outcomes and spot checks in the report, written by the review service and the spot-check
draw/grading (the same APIs their apps use), compared with direct SQL on their tables."""

from __future__ import annotations

import pytest
from openpyxl import load_workbook
from sqlalchemy import text

from qc_pipeline.report.evaluation import write_report
from qc_pipeline.report.period import Period
from qc_pipeline.rules import load_thresholds
from qc_pipeline.samples.population import generate_population
from qc_pipeline.store import ResultStore

PERIOD = Period.parse("2026H2")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory):
    from qc_pipeline.review.accounts import create_user
    from qc_pipeline.review.service import decide
    from qc_pipeline.spotcheck.config import default_config_path, load_config
    from qc_pipeline.spotcheck.draw import draw
    from qc_pipeline.spotcheck.grading import GradeInput, cases_for, record_grades

    tmp = tmp_path_factory.mktemp("reviews")
    # The shipped spot-check configuration; the shipped register holds the population's institutions.
    config = load_config(default_config_path())
    url = f"sqlite:///{tmp / 'results.sqlite'}"
    with ResultStore.open(url) as store:
        generate_population(store, scale=0.3)
        thresholds = load_thresholds()
        user = create_user(store, "reader1", "a-long-enough-passphrase-1", role="reviewer")
        in_period = [r for r in store.results() if r["study_date"] >= "2026-07-01"]
        reviewed = [r for r in in_period if r["verdict"] == "review"][:6] + [
            r for r in in_period if r["verdict"] == "fail"
        ][:2]
        for i, r in enumerate(reviewed):  # alternate pass and fail: some confirm, some overturn
            decide(
                store,
                thresholds,
                r["study_instance_uid"],
                user,
                verdict="pass" if i % 2 else "fail",
                reason_code="other",
                reason_text="test review",
            )
        draw(store, config, "2026-H2", key=b"k" * 32, seed="42")
        answers = [
            GradeInput(c.case.case_code, c.case.reviewer, "甲" if n % 3 else "丙", recognisable=bool(n % 3))
            for n, c in enumerate(cases_for(store, period="2026-H2"))
        ]
        record_grades(store, config, answers, via="app", replace=False)
        files = write_report(store, PERIOD, tmp / "out", lang="en", pdf=False)
    return url, files


def _rows(files, key: str) -> dict[str, dict[str, object]]:
    ws = load_workbook(files.xlsx, read_only=True)[key]
    rows = list(ws.iter_rows(values_only=True))
    return {
        r[0]: dict(zip(rows[0], r, strict=False)) for r in rows[1:] if r and r[0] and len(r) > 1 and r[1] is not None
    }


def test_review_outcomes_match_the_human_decisions_table(report) -> None:
    url, files = report
    with ResultStore.open(url) as store, store.engine.connect() as conn:
        expected = dict(
            conn.execute(
                text(
                    "SELECT h.action, COUNT(*) FROM human_decisions h JOIN studies s ON s.id = h.study_id "
                    "WHERE h.is_current AND s.study_date BETWEEN :a AND :b GROUP BY h.action"
                ),
                {"a": PERIOD.start, "b": PERIOD.end},
            ).all()
        )
    row = _rows(files, "T10")["All institutions"]
    assert (row["reviewed"], row["confirmed"], row["overturned"]) == (
        sum(expected.values()),
        expected.get("confirm", 0),
        expected.get("override", 0),
    )
    assert row["reviewed"] == 8
    html = files.html.read_text(encoding="utf-8")
    assert "no radiologist reviews in this period" not in html


def test_spot_checks_match_the_grades_tables(report) -> None:
    url, files = report
    with ResultStore.open(url) as store, store.engine.connect() as conn:
        cases, readings, recognisable = conn.execute(
            text(
                "SELECT COUNT(DISTINCT c.id), COUNT(*), SUM(CASE WHEN a.reading = 1 AND g.recognisable THEN 1 ELSE 0 END) "
                "FROM spot_check_cases c JOIN spot_check_assignments a ON a.case_id = c.id "
                "JOIN spot_check_grades g ON g.assignment_id = a.id"
            )
        ).one()
    row = _rows(files, "T12")["All institutions"]
    assert cases > 0
    assert (row["cases"], row["readings"]) == (cases, readings)
    assert row["recognisable %"] == pytest.approx(round(100 * recognisable / cases, 1))
    assert "no spot checks in this period" not in files.html.read_text(encoding="utf-8")
