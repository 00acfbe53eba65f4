"""The command line as an operator reads it: words not ids, errors that say what is wrong."""

from __future__ import annotations

import datetime as dt
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
    assert (
        (a.start, a.end, a.label)
        == (b.start, b.end, b.label)
        == (dt.date(2026, 7, 1), dt.date(2026, 12, 31), "2026-H2")
    )
    assert SpotPeriod.parse("2026q4").label == "2026-Q4"


def test_reading_a_missing_sqlite_database_is_an_error_and_creates_nothing(tmp_path: Path) -> None:
    typo = tmp_path / "typo.sqlite"
    code, out = invoke("results", "--db", f"sqlite:///{typo}")
    assert code == 1 and "does not exist" in out and "不存在" in out
    assert not typo.exists()


@pytest.mark.parametrize(
    "command",
    [
        ("spot-check", "summary", "--period", "2026H2"),
        ("spot-check", "verify", "--period", "2026-H2"),
        ("spot-check", "draw", "--period", "2026H2"),
        ("exam-log", "import", "LOG"),
    ],
)
def test_spot_check_and_exam_log_on_a_missing_database_fail_and_create_nothing(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    typo = tmp_path / "typo.sqlite"
    log = tmp_path / "log.csv"
    log.write_text("accession,patient_id,institution,item,exam_time,modality\n", encoding="utf-8")
    args = [str(log) if a == "LOG" else a for a in command]
    code, out = invoke(*args, "--db", f"sqlite:///{typo}")
    assert code == 1 and "does not exist" in out and "不存在" in out, out
    assert not typo.exists() and not (tmp_path / "pseudonym.key").exists()


def test_rescore_on_a_missing_database_fails_and_creates_nothing(tmp_path: Path) -> None:
    # Nothing stored means nothing to re-score: "0 to re-score" over a new empty file hid the typo.
    typo = tmp_path / "typo.sqlite"
    code, out = invoke("rescore", "--db", f"sqlite:///{typo}")
    assert code == 1 and "does not exist" in out and "不存在" in out, out
    assert not typo.exists()


def test_spot_check_accepts_a_postgres_scheme_url() -> None:
    # The URL is normalised before anything is opened: the error, if any, is a connection one,
    # never SQLAlchemy's "Can't load plugin: sqlalchemy.dialects:postgres".
    code, out = invoke("spot-check", "summary", "--period", "2026H2", "--db", "postgres://nobody@127.0.0.1:1/none")
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


LONG_REASON_ZH = "序列 4 “ep2d_diff_tra b1000”：未进行AI评分（DWI 序列不在MR模型的训练范围内，模型卡 mr-iq 第 3 节）"


@pytest.fixture(scope="module")
def verdicts_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Studies as the table must show them: no accession number (so the 60-character UID is the
    id), a long reason, a pass and a fail."""
    from dataclasses import replace

    from qc_pipeline.domain import Category, Finding, Severity

    url = f"sqlite:///{tmp_path_factory.mktemp('verdicts') / 'r.sqlite'}"
    decisions = []
    for n, verdict in enumerate((Verdict.FAIL, Verdict.PASS, Verdict.REVIEW), start=1):
        d = make_decision(n, "渝州测试医院", "CT", verdict, dt.date(2026, 10, n))
        uid = "1.2.826.0.1.3680043.8.498." + f"{n}" * 34
        study = replace(d.study, study_instance_uid=uid, accession_number=None)
        long = Finding("ai.series.not_scored", Category.AI, Severity.REVIEW, "series 4 not scored", LONG_REASON_ZH)
        decisions.append(replace(d, study=study, findings=(*d.findings, long)))
    with ResultStore.open(url) as store:
        save_all(store, decisions)
    return url


def _reason_column(out: str) -> list[str]:
    """The last column's text of each body row of a boxed table, lines joined without spaces."""
    rows, current = [], []
    for line in out.splitlines():
        if line.startswith(("├", "└")) and current:
            rows.append("".join(current))
            current = []
        elif line.startswith("│"):
            current.append("".join(line.split("│")[-2].split()))
    return rows[1:]  # the first is the header


@pytest.mark.parametrize("width", [80, 120])
def test_results_table_fits_the_terminal(verdicts_url: str, width: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.cells import cell_len

    from qc_pipeline import cli_table

    monkeypatch.setattr(cli_table, "stdout_is_terminal", lambda: True)
    monkeypatch.setenv("COLUMNS", str(width))
    code, out = invoke("results", "--db", verdicts_url, "--lang", "zh")
    assert code == 0, out
    too_wide = [line for line in out.splitlines() if cell_len(line) > width]
    assert too_wide == [], too_wide
    for n in (1, 2, 3):  # each study's id is shown whole on one line (its tail when abbreviated), never split
        tail = f"{n}" * 12
        assert any(tail in line for line in out.splitlines()), out
    reasons = _reason_column(out)
    assert len(reasons) == 3 and all("".join(LONG_REASON_ZH.split()) in r for r in reasons), reasons
    assert "不合格 fail" in out and "合格 pass" in out
    if width == 120:  # there is room for the study's date and its full id
        assert "2026-10-01" in out and "1.2.826.0.1.3680043.8.498." + "1" * 34 not in out  # 60 chars: the tail
    assert "图像质量" not in out  # the image-quality detail is given up first


def test_results_table_to_a_file_has_full_rows(verdicts_url: str) -> None:
    code, out = invoke("results", "--db", verdicts_url, "--lang", "zh")  # the runner's stdout is not a terminal
    assert code == 0, out
    lines = out.splitlines()
    for n in (1, 2, 3):
        uid = "1.2.826.0.1.3680043.8.498." + f"{n}" * 34
        assert sum(uid in line for line in lines) == 1, out
    assert sum(LONG_REASON_ZH in line for line in lines) == 3
    assert "图像质量 image quality" in out and "YB-036 胸部CT平扫" in out
    assert "…" not in out


@pytest.mark.parametrize("width", [80, 120])
def test_demo_table_with_long_case_names_fits_the_terminal(
    verdicts_url: str, width: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from rich.cells import cell_len

    from qc_pipeline import cli_table
    from qc_pipeline.cli import _print_table, _store_results

    monkeypatch.setattr(cli_table, "stdout_is_terminal", lambda: True)
    monkeypatch.setenv("COLUMNS", str(width))
    rows = _store_results(verdicts_url)
    names = {r["study_instance_uid"]: f"missing_accession_institution_{n}" for n, r in enumerate(rows)}
    _print_table(rows, lang="zh", names=names)
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if cell_len(line) > width] == []
    words = {w for line in out.splitlines() for cell in line.split("│") for w in cell.split()}
    assert {"missing", "accession", "institution", "不合格"} <= words or all(n in out for n in names.values()), out
    reasons = _reason_column(out)
    assert len(reasons) == 3 and all("".join(LONG_REASON_ZH.split()) in r for r in reasons)


def test_every_option_of_every_command_says_what_it_does() -> None:
    import click

    missing = []
    seen = []
    ctx = click.Context(main)

    def walk(command: click.Command, path: tuple[str, ...]) -> None:
        seen.append(" ".join(path))
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):  # the lazily imported groups included
                sub = command.get_command(ctx, name)
                assert sub is not None, f"{' '.join((*path, name))} is listed but cannot be loaded"
                walk(sub, (*path, name))
            return
        missing.extend(
            f"{' '.join(path)} {'/'.join(p.opts)}"
            for p in command.params
            if isinstance(p, click.Option) and not p.help and p.name != "help"
        )

    walk(main, ())
    assert {"run", "review create-user", "recognition token create", "models train", "exam-log import"} <= set(seen)
    assert missing == []


def test_a_one_study_command_does_not_import_the_other_command_groups() -> None:
    """`run` is interactive: the review app, recognition API, report and model tools load only when named."""
    from tests.support.imports import imported_by

    groups = [
        "qc_pipeline.review.cli",
        "qc_pipeline.recognition.cli",
        "qc_pipeline.report.cli",
        "qc_pipeline.spotcheck.cli",
        "qc_pipeline.ai.cli",
    ]
    assert imported_by("from qc_pipeline.cli import main", [*groups, "qc_pipeline.cli"]) == ["qc_pipeline.cli"]


def test_run_summary_fits_80_columns_and_names_verdicts_in_words(capsys: pytest.CaptureFixture[str]) -> None:
    from rich.cells import cell_len

    from qc_pipeline.cli import _print_summary

    _print_summary(
        {
            "studies": 1234,
            "judged": 1200,
            "unchanged": 30,
            "failed": 4,
            "verdicts": {"pass": 900, "review": 200, "fail": 80, "not_applicable": 20},
        },
        1234.5,
    )
    out = capsys.readouterr().out
    assert all(cell_len(line) <= 80 for line in out.splitlines()), out
    assert "1234 项检查 studies, 1200 已质控 judged" in out and "不适用 n/a 20" in out and "不合格 fail 80" in out
    assert "not_applicable" not in out


def test_the_run_summary_gives_the_pixel_data_fetched_only_when_some_was(capsys):
    from qc_pipeline.cli import _print_summary

    summary = {"studies": 2, "judged": 2, "unchanged": 0, "failed": 0, "verdicts": {"pass": 2}}
    _print_summary({**summary, "pixel_bytes_fetched": 30_000_000}, 4.0)
    assert "拉取像素数据 / pixel data fetched: 30000000 bytes (15.0 MB / study)" in capsys.readouterr().out
    _print_summary({**summary, "pixel_bytes_fetched": 0}, 4.0)
    assert "pixel data fetched" not in capsys.readouterr().out
