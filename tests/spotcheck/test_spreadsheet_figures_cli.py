"""The offline route (export, import), the figures and their storage, the CLI and the flow."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from openpyxl import load_workbook

from qc_pipeline.cli import main
from qc_pipeline.errors import SpotCheckError
from qc_pipeline.spotcheck.draw import draw
from qc_pipeline.spotcheck.figures import GradedCase, compute_figures, stored_figures, summarise
from qc_pipeline.spotcheck.grading import GradeInput, GradeOutcome, cases_for, record_grades
from qc_pipeline.spotcheck.spreadsheet import SHEET, export_workbook, import_workbook
from qc_pipeline.spotcheck.stats import cohen_kappa

from .conftest import CONFIG_YAML, KEY, population, save_all

NOW = dt.datetime(2026, 11, 5, tzinfo=dt.UTC)
GRADE_COL, RECOG_COL, REASONS_COL = 12, 13, 14


def fill(path: Path, out: Path, answers: dict[int, tuple[str | None, str | None, str | None]]) -> None:
    wb = load_workbook(path)
    ws = wb[SHEET]
    for row, (grade, recognisable, reasons) in answers.items():
        ws.cell(row=row, column=GRADE_COL, value=grade)
        ws.cell(row=row, column=RECOG_COL, value=recognisable)
        ws.cell(row=row, column=REASONS_COL, value=reasons)
    wb.save(out)


@pytest.fixture
def drawn(populated, config):
    draw(populated, config, "2026-10", key=KEY, seed="sheet", now=NOW)
    return populated


def test_export_fill_import_is_all_or_nothing_and_idempotent(drawn, config, tmp_path) -> None:
    blank = tmp_path / "blank.xlsx"
    n = export_workbook(drawn, config, "2026-10", blank, key=KEY)
    assert n == len(cases_for(drawn, period="2026-10"))
    graded = tmp_path / "graded.xlsx"
    fill(blank, graded, {2: ("甲", "是", None), 3: ("废", "否", "exposure，artefact"), 4: ("丙", None, None)})
    result = import_workbook(drawn, config, graded, key=KEY, now=NOW)
    assert sorted(result.outcomes.values()) == [GradeOutcome.INSERTED] * 3 and result.blank == n - 3
    statuses = {s.case.case_code: s for s in cases_for(drawn) if s.grade}
    assert sorted((s.grade, s.recognisable, s.reasons) for s in statuses.values()) == sorted(
        [("甲", True, ()), ("废", False, ("exposure", "artefact")), ("丙", False, ())]
    )  # blank "recognisable": the grade's
    again = import_workbook(drawn, config, graded, key=KEY)
    assert set(again.outcomes.values()) == {GradeOutcome.UNCHANGED}

    # a later export carries the grades; changing one conflicts unless --replace
    second = tmp_path / "second.xlsx"
    export_workbook(drawn, config, "2026-10", second, key=KEY)
    fill(second, second, {2: ("乙", "是", None)})
    with pytest.raises(SpotCheckError, match=r"was already graded 甲 by .* \(spreadsheet, .*\); this one says 乙"):
        import_workbook(drawn, config, second, key=KEY)
    assert set(import_workbook(drawn, config, second, key=KEY, replace=True).outcomes.values()) >= {
        GradeOutcome.UPDATED
    }

    # bad rows: every one named, nothing stored
    bad = tmp_path / "bad.xlsx"
    fill(blank, bad, {5: ("A+", "是", None), 6: ("乙", "maybe", None), 7: ("乙", "是", None)})
    with pytest.raises(
        SpotCheckError,
        match=r"nothing imported, 2 rows need correcting:\n.*row 5 .*grade 'A\+' is not one of "
        r"甲, 乙, 丙, 废\n.*row 6 .*recognisable 'maybe' is not 是/否",
    ):
        import_workbook(drawn, config, bad, key=KEY)
    unknown_reason = tmp_path / "reason.xlsx"
    fill(blank, unknown_reason, {7: ("丙", "否", "blurry")})
    with pytest.raises(SpotCheckError, match=r"unknown reason 'blurry'; known: artefact, exposure"):
        import_workbook(drawn, config, unknown_reason, key=KEY)
    assert len([s for s in cases_for(drawn) if s.grade]) == 3


def test_a_tampered_or_foreign_workbook_is_refused(drawn, config, tmp_path) -> None:
    blank = tmp_path / "blank.xlsx"
    export_workbook(drawn, config, "2026-10", blank, key=KEY)
    wb = load_workbook(blank)
    wb[SHEET].cell(row=2, column=10, value="somebody-else")  # re-assigned
    wb.save(tmp_path / "moved.xlsx")
    with pytest.raises(SpotCheckError, match="rows were added, removed or re-assigned"):
        import_workbook(drawn, config, tmp_path / "moved.xlsx", key=KEY)
    with pytest.raises(SpotCheckError, match="its token does not match"):
        import_workbook(drawn, config, blank, key=b"x" * 32)
    (tmp_path / "notes.xlsx").write_text("not a workbook", encoding="utf-8")
    with pytest.raises(SpotCheckError, match=r"not a spot-check workbook \(.xlsx\) that can be read"):
        import_workbook(drawn, config, tmp_path / "notes.xlsx", key=KEY)
    with pytest.raises(SpotCheckError, match=r"period '2026-11' has no assignments: draw it first"):
        export_workbook(drawn, config, "2026-11", tmp_path / "x.xlsx", key=KEY)


def case(
    verdict: str,
    recognisable: bool,
    institution: str = "渝州测试医院",
    region: str = "chongqing",
    second: tuple[str, bool, str] | None = None,
    grade: str | None = None,
) -> GradedCase:
    return GradedCase(
        institution,
        region,
        f"p|region={region}|verdict={verdict}",
        verdict,
        recognisable,
        grade or ("乙" if recognisable else "丙"),
        second,
    )


def test_figures_on_a_known_sample(config) -> None:
    # machine pass/not x reviewer yes/no = [[8, 2], [3, 7]]; fails: 5 of the 7 reviewer-"no" studies
    cases = (
        [case("pass", True)] * 8
        + [case("pass", False)] * 2
        + [case("review", True)] * 3
        + [case("fail", False, "蜀都测试医院", "sichuan")] * 5
        + [case("review", False, "蜀都测试医院", "sichuan", second=("废", False, "sichuan"))] * 2
    )
    f = compute_figures(
        cases,
        config=config,
        strata_population={
            "p|region=chongqing|verdict=pass": 100,
            "p|region=chongqing|verdict=review": 6,
            "p|region=sichuan|verdict=fail": 5,
            "p|region=sichuan|verdict=review": 4,
        },
        n_drawn=20,
        n_assignments=22,
        n_graded=22,
    )
    m = f["machine_vs_reviewer"]
    assert m["kappa"]["table"] == [[8, 2], [3, 7]]
    expected = cohen_kappa([[8, 2], [3, 7]])
    assert m["kappa"]["value"] == pytest.approx(expected.kappa) and m["kappa"]["ci"] == pytest.approx(
        [expected.ci_low, expected.ci_high]
    )
    assert (m["fail_sensitivity"]["k"], m["fail_sensitivity"]["n"]) == (5, 9)
    assert (m["fail_specificity"]["k"], m["fail_specificity"]["n"]) == (11, 11)
    inst = {i["institution"]: i for i in f["institutions"]}
    assert (inst["渝州测试医院"]["n"], inst["渝州测试医院"]["discordance"]["k"], inst["渝州测试医院"]["missed"]) == (
        13,
        5,
        2,
    )
    assert inst["蜀都测试医院"]["discordance"]["k"] == 0
    assert f["inter_region"]["n"] == 2 and f["inter_region"]["recognisable_kappa"]["value"] is None  # all "no"
    assert f["yield"]["not_recognisable"]["k"] == 9 and f["yield"]["missed_by_machine"]["k"] == 2
    # weighted back: 100 pass studies stand behind the 10 graded ones, 2 of them not recognisable
    w = f["population_weighted"]
    assert w["population"] == 115
    assert w["not_recognisable"] == pytest.approx((100 * 2 / 10 + 5 + 4) / 115)


def test_summary_is_stored_for_the_report_and_covers_the_draws_of_the_period(tmp_path, config) -> None:
    from qc_pipeline.store import ResultStore

    with ResultStore.open(f"sqlite:///{tmp_path / 's.sqlite'}") as store:
        save_all(store, population(10, per_cell=2) + population(11, per_cell=2)[:-1])
        for month in ("2026-10", "2026-11"):
            draw(store, config, month, key=KEY, seed=month, now=NOW)
        answers = [GradeInput(s.case.case_code, s.case.reviewer, "乙", True) for s in cases_for(store)]
        record_grades(store, config, answers, via="app", replace=False, now=NOW)
        figures = summarise(store, config, "2026-Q4", now=NOW)
        assert [d["period"] for d in figures["draws"]] == ["2026-10", "2026-11"]
        assert figures["progress"]["graded"] == len(answers)
        assert stored_figures(store) == {"2026-Q4": json.loads(json.dumps(figures))}
        assert summarise(store, config, "2026-10", now=NOW)["progress"]["drawn"] == figures["draws"][0]["n_drawn"]
        with pytest.raises(SpotCheckError, match=r"no draw lies within period '2026-09'"):
            summarise(store, config, "2026-09")


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["spot-check", *args])
    return result.exit_code, result.output


def test_cli_end_to_end(tmp_path, monkeypatch) -> None:
    from qc_pipeline.store import ResultStore

    monkeypatch.delenv("QC_PSEUDONYM_KEY", raising=False)
    cfg = tmp_path / "spot_check.yaml"
    cfg.write_text(CONFIG_YAML, encoding="utf-8")
    db = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    with ResultStore.open(db) as store:
        save_all(store, population(per_cell=2))
    common = ["--db", db, "--config", str(cfg)]
    code, out = invoke("draw", "--period", "2026-10", "--seed", "123", *common)
    assert code == 0 and "已抽取 / drawn: 2026-10" in out and "种子 seed 123" in out
    assert "未配置机构 unconfigured: Unlisted Hospital (1)" in out and "不足 under-filled:" in out
    code, again = invoke("draw", "--period", "2026-10", *common)
    assert code == 0 and "not drawn again" in again and "种子 seed 123" in again
    code, out = invoke("verify", "--period", "2026-10", *common)
    assert code == 0 and "identical" in out
    sheet = tmp_path / "s.xlsx"
    code, out = invoke("export", "--period", "2026-10", "--out", str(sheet), *common)
    assert code == 0 and "已导出 / exported" in out
    rows = load_workbook(sheet)[SHEET].max_row
    fill(sheet, sheet, {r: ("乙" if r % 3 else "丙", None, None) for r in range(2, rows + 1)})
    code, out = invoke("import", str(sheet), *common)
    assert code == 0 and f"新增 inserted {rows - 1}" in out
    code, out = invoke("summary", "--period", "2026-10", *common)
    assert code == 0 and "Kappa" in out and "按机构 / per institution" in out and "渝州测试医院" in out
    code, out = invoke("summary", "--period", "2026-10", "--format", "json", *common)
    assert code == 0 and json.loads(out)["progress"]["graded"] == rows - 1
    _summary_fits_80_columns(common)

    code, out = invoke("draw", "--period", "2026-13", *common)
    assert code == 2 and "错误 / error: 抽查操作未完成 / period '2026-13' is not one of YYYY-MM" in out
    code, out = invoke("summary", "--period", "2025-01", *common)
    assert code == 2 and "no draw lies within period '2025-01'" in out
    cfg.write_text(CONFIG_YAML.replace("region: sichuan}", "region: tibet}", 1), encoding="utf-8")
    code, out = invoke("draw", "--period", "2026-11", *common)
    assert code == 2 and "抽查配置文件无效" in out and "unknown region 'tibet'" in out


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("minimum_keys: [region, institution, modality, verdict]", "minimum_keys: [region, shift]"),
            r"sampling.minimum_keys\[1\]: Input should be",
        ),
        (("  - {code: sc-2, region: sichuan}\n", ""), None),  # still valid: one Sichuan reviewer is enough
        (
            ("  - {account: sc-1, region: sichuan}\n  - {account: sc-2, region: sichuan}\n", ""),
            "no reviewer outside region 'chongqing'",
        ),
        (
            ("reviewers:", "institutions:\n  - {name: 渝州测试医院, region: chongqing}\nreviewers:"),
            "institutions: they are kept in the institution register",
        ),
        (("second_reading_rate: 0.3", "second_reading_rate: 0.3\n  extra: 1"), r"sampling.extra: Extra inputs"),
        (("pass: 0.1", "pass: 1.5"), r"sampling.rates.pass: Input should be less than or equal to 1"),
    ],
)
def test_configuration_errors_name_the_key(tmp_path, change, message) -> None:
    from qc_pipeline.errors import ConfigError
    from qc_pipeline.spotcheck.config import load_config

    path = tmp_path / "c.yaml"
    assert change[0] in CONFIG_YAML or change[0].startswith("  - {code")
    path.write_text(CONFIG_YAML.replace(*change), encoding="utf-8")
    if message is None:
        load_config(path)
        return
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_the_shipped_configuration_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    from qc_pipeline.samples.population import institution_regions
    from qc_pipeline.spotcheck.config import load_config

    monkeypatch.delenv("QC_INSTITUTIONS")  # the shipped register, not the test institutions
    config = load_config()
    assert {i.region for i in config.institutions} == {"chongqing", "sichuan"}
    for name, region in institution_regions().items():  # the generated population's institutions
        assert config.institution(name).region == region
    assert config.institution(" sichuan provincial PEOPLE'S hospital ").name == "四川省人民医院"


@pytest.mark.prefect
def test_the_monthly_flow_draws_the_previous_month_once(prefect_harness, tmp_path, monkeypatch) -> None:
    from flows.deployments import DEFAULT_SPOT_CHECK_CRON, spot_check_deployment
    from flows.spot_check_flow import qc_spot_check_draw
    from qc_pipeline.store import ResultStore

    monkeypatch.setenv("QC_PSEUDONYM_KEY", "f" * 40)
    cfg = tmp_path / "spot_check.yaml"
    cfg.write_text(CONFIG_YAML, encoding="utf-8")
    db = f"sqlite:///{tmp_path / 'flow.sqlite'}"
    with ResultStore.open(db) as store:
        save_all(store, population(per_cell=1))
    now = dt.datetime(2026, 11, 4, 20, 30, tzinfo=dt.UTC)  # 04:30 on 5 November in Shanghai
    first = qc_spot_check_draw(db_url=db, config_path=str(cfg), now=now)
    assert first["period"] == "2026-10" and first["created"] is True and first["drawn"] > 0
    second = qc_spot_check_draw(db_url=db, config_path=str(cfg), now=now)
    assert second["created"] is False and second["seed"] == first["seed"]
    deployment = spot_check_deployment(timezone="Asia/Chongqing")
    (schedule,) = deployment.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == (DEFAULT_SPOT_CHECK_CRON, "Asia/Chongqing")
    assert deployment.flow_name == "qc-spot-check-draw" and DEFAULT_SPOT_CHECK_CRON == "0 4 5 * *"


COMMENT_COL = 15


def test_comments_that_look_like_formulas_stay_text_out_and_back(drawn, config, tmp_path) -> None:
    first, second, third, fourth = (s.case for s in cases_for(drawn, period="2026-10")[:4])
    record_grades(
        drawn,
        config,
        [
            GradeInput(first.case_code, first.reviewer, "乙", True, (), "=1+1"),
            GradeInput(second.case_code, second.reviewer, "丙", False, (), "@SUM(A1)"),
        ],
        via="app",
        replace=False,
        now=NOW,
    )
    sheet = tmp_path / "out.xlsx"
    export_workbook(drawn, config, "2026-10", sheet, key=KEY)
    wb = load_workbook(sheet)  # not read-only: data_type is the stored cell type
    assert [c.coordinate for ws in wb.worksheets for row in ws.iter_rows() for c in row if c.data_type == "f"] == []
    ws = wb[SHEET]
    assert [
        (ws.cell(row=r, column=COMMENT_COL).value, ws.cell(row=r, column=COMMENT_COL).data_type) for r in (2, 3)
    ] == [("'=1+1", "s"), ("'@SUM(A1)", "s")]
    assert set(import_workbook(drawn, config, sheet, key=KEY).outcomes.values()) == {GradeOutcome.UNCHANGED}

    # a grader types formula-like comments: stored as typed, never evaluated
    ws.cell(row=4, column=GRADE_COL, value="甲")
    ws.cell(row=4, column=COMMENT_COL, value="=1+1")  # openpyxl (like Excel) keeps this as a formula
    ws.cell(row=5, column=GRADE_COL, value="丙")
    ws.cell(row=5, column=COMMENT_COL, value="@SUM(A1)")
    wb.save(sheet)
    result = import_workbook(drawn, config, sheet, key=KEY, now=NOW)
    assert result.outcomes[(third.case_code, third.reviewer)] is GradeOutcome.INSERTED
    comments = {(s.case.case_code, s.case.reviewer): s.comment for s in cases_for(drawn, period="2026-10")}
    assert [comments[c.case_code, c.reviewer] for c in (first, second, third, fourth)] == [
        "=1+1",
        "@SUM(A1)",
        "=1+1",
        "@SUM(A1)",
    ]


def _summary_fits_80_columns(common: list[str]) -> None:
    """At an 80-column terminal the summary's tables fit, and a share is wrapped at its spaces only."""
    import pytest
    from rich.cells import cell_len

    from qc_pipeline import cli_table

    code, out = invoke("summary", "--period", "2026-10", "--format", "json", *common)
    shares = [i["discordance"] for i in json.loads(out)["institutions"] if i["discordance"].get("p") is not None]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cli_table, "stdout_is_terminal", lambda: True)
        mp.setenv("COLUMNS", "80")
        code, out = invoke("summary", "--period", "2026-10", *common)
    assert code == 0, out
    table_lines = [line for line in out.splitlines() if line.startswith(("│", "┌", "└", "├"))]
    assert table_lines and all(cell_len(line) <= 80 for line in table_lines), out
    cells = {c.strip() for line in table_lines for c in line.split("│")}
    assert shares
    for s in shares:  # each part of "33% (10–70) 1/3" is whole in one cell line
        assert {f"{100 * s['p']:.0f}%", f"{s['k']}/{s['n']}"} <= {w for c in cells for w in c.split()}, (s, out)
