"""The command line as an operator reads it: words not ids, errors that say what is wrong."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from qc_pipeline.cli import main, normalise_db_url
from qc_pipeline.domain import Verdict
from qc_pipeline.report.period import Period
from qc_pipeline.samples.population import generate_population
from qc_pipeline.spotcheck.draw import Period as SpotPeriod
from qc_pipeline.store import ResultStore

from .report.test_readable import ID
from .spotcheck.conftest import make_decision, save_all


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def population_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('pop') / 'results.sqlite'}"
    with ResultStore.open(url) as store:
        generate_population(store, scale=0.1)
    return url


def test_results_table_in_chinese_shows_no_rule_or_metric_ids(population_url: str) -> None:
    code, out = invoke("results", "--db", population_url, "--lang", "zh")
    assert code == 0, out
    assert ID.findall(out) == []


def test_period_accepts_both_spellings_everywhere() -> None:
    assert Period.parse("2026H2") == Period.parse("2026-H2") == Period.parse("2026-h2") == Period(2026, 2)
    a, b = SpotPeriod.parse("2026H2"), SpotPeriod.parse("2026-H2")
    assert (a.start, a.end, a.label) == (b.start, b.end, b.label) == (dt.date(2026, 7, 1), dt.date(2026, 12, 31), "2026-H2")
    assert SpotPeriod.parse("2026q4").label == "2026-Q4"


def test_reading_a_missing_sqlite_database_is_an_error_and_creates_nothing(tmp_path: Path) -> None:
    typo = tmp_path / "typo.sqlite"
    code, out = invoke("results", "--db", f"sqlite:///{typo}")
    assert code == 1 and "does not exist" in out and "不存在" in out
    assert not typo.exists()


@pytest.mark.parametrize("command", [
    ("spot-check", "summary", "--period", "2026H2"),
    ("spot-check", "verify", "--period", "2026-H2"),
    ("spot-check", "draw", "--period", "2026H2"),
    ("exam-log", "import", "LOG"),
])
def test_spot_check_and_exam_log_on_a_missing_database_fail_and_create_nothing(
        tmp_path: Path, command: tuple[str, ...]) -> None:
    typo = tmp_path / "typo.sqlite"
    log = tmp_path / "log.csv"
    log.write_text("accession,patient_id,institution,item,exam_time,modality\n", encoding="utf-8")
    args = [str(log) if a == "LOG" else a for a in command]
    code, out = invoke(*args, "--db", f"sqlite:///{typo}")
    assert code == 1 and "does not exist" in out and "不存在" in out, out
    assert not typo.exists() and not (tmp_path / "pseudonym.key").exists()


def test_spot_check_accepts_a_postgres_scheme_url() -> None:
    # The URL is normalised before anything is opened: the error, if any, is a connection one,
    # never SQLAlchemy's "Can't load plugin: sqlalchemy.dialects:postgres".
    code, out = invoke("spot-check", "summary", "--period", "2026H2",
                       "--db", "postgres://nobody@127.0.0.1:1/none")
    assert "Can't load plugin" not in out and "postgres" not in out.split("error")[0], out
    assert code != 0


def test_results_for_a_study_that_matches_nothing_says_so(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    with ResultStore.open(url) as store:
        save_all(store, [make_decision(1, "A", "CT", Verdict.PASS, dt.date(2026, 10, 1))])
    code, out = invoke("results", "--db", url, "--study", "1.2.3.999")
    assert code == 1 and "1.2.3.999" in out and "no study" in out and "未找到" in out


def test_bad_db_url_is_bad_usage_and_postgres_scheme_is_accepted() -> None:
    code, out = invoke("results", "--db", "notaurl")
    assert code == 2 and "notaurl" in out
    assert normalise_db_url("postgres://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert normalise_db_url("postgresql://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert normalise_db_url("sqlite:///x.sqlite") == "sqlite:///x.sqlite"


def test_csv_for_excel_has_a_bom(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    with ResultStore.open(url) as store:
        save_all(store, [make_decision(1, "重庆医院", "CT", Verdict.FAIL, dt.date(2026, 10, 1))])
    result = CliRunner().invoke(main, ["results", "--db", url, "--format", "csv", "--excel"])
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes.startswith(b"\xef\xbb\xbf") and "重庆医院".encode() in result.stdout_bytes
    plain = CliRunner().invoke(main, ["results", "--db", url, "--format", "csv"])
    assert not plain.stdout_bytes.startswith(b"\xef\xbb\xbf")




def test_spot_check_kappa_on_too_few_cases_says_so() -> None:
    from qc_pipeline.spotcheck.cli import _kappa_text
    from qc_pipeline.spotcheck.stats import MIN_KAPPA_N

    few = {"value": 0.0, "ci": [0.0, 0.0], "n": 3}
    assert _kappa_text(few) == f"样本过少 too few (n = 3 < {MIN_KAPPA_N})"
    enough = {"value": 0.5, "ci": [0.2, 0.8], "n": MIN_KAPPA_N}
    assert _kappa_text(enough) == "0.50 (0.20–0.80)"


def test_the_run_summary_gives_the_pixel_data_fetched_only_when_some_was(capsys):
    from qc_pipeline.cli import _print_summary

    summary = {"studies": 2, "judged": 2, "unchanged": 0, "failed": 0, "verdicts": {"pass": 2}}
    _print_summary({**summary, "pixel_bytes_fetched": 30_000_000}, 4.0)
    assert "拉取像素数据 / pixel data fetched: 30000000 bytes (15.0 MB / study)" in capsys.readouterr().out
    _print_summary({**summary, "pixel_bytes_fetched": 0}, 4.0)
    assert "pixel data fetched" not in capsys.readouterr().out
