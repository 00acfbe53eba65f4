"""Hospitals' exam logs: the documented format, import, matching, and the report's upload tables."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from click.testing import CliRunner
from openpyxl import Workbook

from qc_pipeline.cli import main
from qc_pipeline.exam_logs import ExamLogError, LoggedExam, UploadedStudy, match_exams, read_exam_log
from qc_pipeline.report.evaluation import write_report
from qc_pipeline.report.period import Period
from qc_pipeline.samples.population import INSTITUTIONS, generate_population
from qc_pipeline.store import ResultStore

CSV = """检查号,患者ID,医院,检查项目,检查时间
A1,P1,H1,头颅CT平扫,2026-08-01 09:30
,P2,H1,胸部正位 DR 摄影,2026/08/02
A3,P3, H1 ,头颅 MRI 平扫,20260803
,,H1,头颅CT平扫,2026-08-04
A5,P5,,CT,2026-08-05
A6,P6,H1,CT,yesterday
"""


def test_csv_with_chinese_headers_rows_rejected_with_their_number(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("\ufeff" + CSV, encoding="utf-8")
    log = read_exam_log(path)
    assert [(e.accession, e.patient_id, e.institution, e.modality, e.exam_date) for e in log.exams] == [
        ("A1", "P1", "H1", "CT", dt.date(2026, 8, 1)),
        (None, "P2", "H1", "DR", dt.date(2026, 8, 2)),
        ("A3", "P3", "H1", "MR", dt.date(2026, 8, 3)),
    ]
    assert log.exams[0].exam_time == dt.time(9, 30)
    assert [(r.row, r.reason) for r in log.rejected] == [
        (5, "neither accession nor patient id"),
        (6, "no institution"),
        (7, "exam time 'yesterday' not a date"),
    ]


def test_xlsx_and_a_missing_column_is_named(tmp_path: Path) -> None:
    wb = Workbook()
    ws = wb.active
    ws.append(["accession", "patient_id", "institution", "item", "exam_time", "modality"])
    ws.append(["X1", "P1", "H2", "left hand", dt.datetime(2026, 9, 1, 8, 0), "DX"])
    wb.save(tmp_path / "log.xlsx")
    (e,) = read_exam_log(tmp_path / "log.xlsx").exams
    assert (e.accession, e.modality, e.exam_date, e.exam_time) == ("X1", "DR", dt.date(2026, 9, 1), dt.time(8, 0))
    (tmp_path / "bad.csv").write_text("accession,institution\nA,H\n", encoding="utf-8")
    with pytest.raises(ExamLogError, match="missing column.*exam_time"):
        read_exam_log(tmp_path / "bad.csv")


def test_matching_by_accession_then_patient_date_modality() -> None:
    day = dt.date(2026, 8, 1)
    exams = [
        LoggedExam("H", "A1", "P1", None, "CT", day),
        LoggedExam("H", "ZZ", "P2", None, "MR", day),
        LoggedExam("H", "A3", "P3", None, "CT", day),
        LoggedExam("Other", "A1", "P1", None, "CT", day),
    ]
    studies = [
        UploadedStudy(1, "H", "A1", "P1", day, "CT"),
        UploadedStudy(2, " H ", None, "P2", day, "MR"),
        UploadedStudy(3, "H", None, "P3", day + dt.timedelta(days=1), "CT"),
    ]
    m = match_exams(exams, studies)
    assert m.matched == {0: 1, 1: 2} and m.missing == [2, 3]
    assert m.how == {0: "accession", 1: "fallback", 2: "missing", 3: "missing"}


@pytest.fixture(scope="module")
def logged_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The generated population plus an exam log of one institution: two of its uploaded studies
    and three exams that never reached the cloud (CT, MR, DR)."""
    tmp = tmp_path_factory.mktemp("logs")
    url = f"sqlite:///{tmp / 'results.sqlite'}"
    inst = INSTITUTIONS[0].name
    with ResultStore.open(url) as store:
        generate_population(store, scale=0.2)
        rows = [r for r in store.results() if r["institution"] == inst and (r["study_date"] or "") >= "2026-07-01"][:2]
    lines = ["accession,patient_id,institution,item,exam_time,modality"]
    lines += [
        f"{r['accession_number'] or ''},{r['patient_id']},{inst},,{r['study_date']},{r['modality'][:2]}" for r in rows
    ]
    lines += [
        f"MISS-CT,PX1,{inst},头颅CT平扫,2026-08-10 10:00,",
        f"MISS-MR,PX2,{inst},腰椎MR,2026-08-11,",
        f"MISS-DR,PX3,{inst},胸部DR,2026-08-12,",
    ]
    (tmp / "log.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["exam-log", "import", str(tmp / "log.csv"), "--db", url])
    assert result.exit_code == 0, result.output
    assert "新增 / added 5" in result.output
    again = CliRunner().invoke(main, ["exam-log", "import", str(tmp / "log.csv"), "--db", url])
    assert "新增 / added 0" in again.output and "已有 / already stored 5" in again.output
    return url


def test_report_counts_the_missing_exams_and_charges_them(logged_db: str, tmp_path: Path) -> None:
    inst = INSTITUTIONS[0].name
    with ResultStore.open(logged_db) as store:
        report = write_report(store, Period.parse("2026H2"), tmp_path, lang="en", pdf=False)
    t15, t14, t16 = report.tables["T15"], report.tables["T14"], report.tables["T16"]
    assert (t15.cell("logged", institution=inst), t15.cell("missing", institution=inst)) == (5, 3)
    assert [r[2] for r in t16.rows] == ["MISS-CT", "MISS-MR", "MISS-DR"]
    assert t14.cell("not_uploaded", institution=inst, scheme="chongqing") == 2  # CT + MR
    assert t14.cell("not_uploaded", institution=inst, scheme="national") == 3  # DR too
    assert t14.cell("yuan", institution=inst, scheme="chongqing") >= 40
    other = INSTITUTIONS[1].name
    assert t15.cell("upload_rate", institution=other) is None  # no log: unknown, not 100 %
    html = report.html.read_text(encoding="utf-8")
    assert "never added" in html and "upload rate unknown" in html


def test_completeness_table_says_report_not_checked_rather_than_implying_one() -> None:
    from qc_pipeline.report.data import FindingFact, ReportData, StudyFacts
    from qc_pipeline.report.tables import completeness, make_scope

    def study(i: int, code: str | None) -> StudyFacts:
        findings = (
            ()
            if code is None
            else (FindingFact(code, "completeness", "info" if "not_checked" in code else "review", "m", "m"),)
        )
        return StudyFacts(i, f"2.25.{i}", "H", "CT", None, None, None, dt.date(2026, 8, 1), "pass", findings, 1.0)

    data = ReportData(
        Period.parse("2026H2"),
        (study(1, "completeness.report.not_checked"), study(2, "completeness.report.missing"), study(3, None)),
        (),
        (),
        (),
        0,
        (),
        None,
        frozenset(),
    )
    t09 = completeness(make_scope(data, "en", None))
    assert (t09.cell("report_not_checked", institution="H"), t09.cell("report_missing", institution="H")) == (1, 1)
    assert "does not mean there is one" in t09.note("en")
