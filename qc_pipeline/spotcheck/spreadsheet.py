"""The offline route: a drawn sample as a spreadsheet (pseudonymised, blinded), and the graded
spreadsheet read back.

The workbook holds one row per assignment, built from :class:`BlindCase` only (no institution,
region, verdict, findings, dates, UIDs or patient IDs), with drop-down lists for the grade and
"recognisable". A hidden sheet carries the period and a keyed token over its rows, so a workbook
is only read back into the database (and with the pseudonym key) it came from. Import is all or
nothing: every bad row is named (row number and case code) and nothing is stored until the whole
workbook is valid. Importing the same workbook again changes nothing.

Every text cell is written as text, never as a formula (see :mod:`qc_pipeline.io.tabular`), and
read back as typed: the escape added on export is removed, and a formula a grader typed is stored
as its text, not evaluated.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

from openpyxl import Workbook, load_workbook
from openpyxl.utils import get_column_letter
from openpyxl.utils.exceptions import InvalidFileException
from openpyxl.worksheet.datavalidation import DataValidation
from openpyxl.worksheet.formula import ArrayFormula
from openpyxl.worksheet.worksheet import Worksheet

from qc_pipeline.errors import SpotCheckError
from qc_pipeline.io.tabular import append_row, unescape_text
from qc_pipeline.spotcheck.blinding import BLINDED_ATTRIBUTES
from qc_pipeline.spotcheck.config import SpotCheckConfig
from qc_pipeline.spotcheck.grading import CaseStatus, GradeInput, GradeOutcome, cases_for, record_grades
from qc_pipeline.store import ResultStore

logger = logging.getLogger(__name__)

FORMAT: Final = "qc-pipeline spot-check 1"
SHEET: Final = "抽查 Spot check"
HELP_SHEET: Final = "说明 Instructions"
META_SHEET: Final = "_meta"
COLUMNS: Final = (
    ("case_code", "病例编号 Case code"),
    ("patient", "患者假名 Patient pseudonym"),
    ("modality", "检查类型 Modality"),
    ("item_code", "项目编码 Item code"),
    ("item", "项目名称 Item"),
    ("sex", "性别 Sex"),
    ("age", "年龄段 Age band"),
    ("series", "序列数 Series"),
    ("images", "图像数 Images"),
    ("reviewer", "审核人 Reviewer"),
    ("reading", "阅片 Reading"),
    ("grade", "等级 Grade"),
    ("recognisable", "可互认 Recognisable (是/否)"),
    ("reasons", "原因 Reasons (codes, comma-separated)"),
    ("comment", "备注 Comment"),
)
YES: Final = frozenset({"是", "yes", "y", "1", "true", "可", "可互认"})
NO: Final = frozenset({"否", "no", "n", "0", "false", "不可", "不可互认"})


def _token(key: bytes, period: str, rows: Sequence[tuple[str, str]]) -> str:
    payload = period + "\n" + "\n".join(f"{c}\t{r}" for c, r in sorted(rows))
    return hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()


def export_workbook(
    store: ResultStore, config: SpotCheckConfig, period: str, out: Path, *, key: bytes, reviewer: str | None = None
) -> int:
    """Write the period's assignments (of ``reviewer``, or all) to ``out`` (.xlsx); returns the
    number of rows. Grades already given are filled in."""
    statuses = cases_for(store, reviewer=reviewer, period=period)
    if not statuses:
        who = f" for {reviewer}" if reviewer else ""
        raise SpotCheckError(
            f"period {period!r} has no assignments{who}: draw it first (spot-check draw --period {period})"
        )
    wb = Workbook()
    wb.properties.creator = "qc-pipeline"
    ws = cast(Worksheet, wb.active)  # a new workbook's one sheet, a worksheet
    ws.title = SHEET
    append_row(ws, [label for _key, label in COLUMNS])
    for s in statuses:
        append_row(ws, _row(s))
    n = len(statuses)
    col = {k: i + 1 for i, (k, _label) in enumerate(COLUMNS)}
    grades = DataValidation(type="list", formula1='"' + ",".join(config.grade_order) + '"', allow_blank=True)
    yes_no = DataValidation(type="list", formula1='"是,否"', allow_blank=True)
    for dv, key_ in ((grades, "grade"), (yes_no, "recognisable")):
        letter = get_column_letter(col[key_])
        dv.add(f"{letter}2:{letter}{n + 1}")
        ws.add_data_validation(dv)
    ws.freeze_panes = "B2"
    for i, (_k, label) in enumerate(COLUMNS, start=1):
        ws.column_dimensions[get_column_letter(i)].width = max(10, min(36, len(label) + 2))

    help_ws = wb.create_sheet(HELP_SHEET)
    append_row(help_ws, ["抽查期间 Period", period])
    append_row(
        help_ws,
        [
            "填写 How to fill",
            "每行填写等级、是否可互认、原因代码（逗号分隔）/ For each row: grade, recognisable 是/否, reason codes",
        ],
    )
    append_row(help_ws, [])
    append_row(help_ws, ["等级 Grade", "说明 Meaning", "通常可互认 Usually recognisable"])
    for g in config.grades:
        append_row(help_ws, [g.code, g.label_en, "是 yes" if g.recognisable else "否 no"])
    append_row(help_ws, [])
    append_row(help_ws, ["原因代码 Reason code", "中文", "English"])
    for r in config.reasons:
        append_row(help_ws, [r.code, r.label_zh, r.label_en])
    append_row(help_ws, [])
    append_row(help_ws, ["盲法 Blinding (DICOM PS3.15 basic profile)", "", ""])
    for attribute, action, what in BLINDED_ATTRIBUTES:
        append_row(help_ws, [attribute, action, what])

    meta = wb.create_sheet(META_SHEET)
    meta.sheet_state = "hidden"
    append_row(meta, ["format", FORMAT])
    append_row(meta, ["period", period])
    append_row(meta, ["token", _token(key, period, [(s.case.case_code, s.case.reviewer) for s in statuses])])
    out.parent.mkdir(parents=True, exist_ok=True)
    wb.save(out)
    logger.info("spot-check workbook of %s written: %d rows", period, n)
    return n


def _row(s: CaseStatus) -> list[Any]:
    c = s.case
    recognisable = None if s.recognisable is None else ("是" if s.recognisable else "否")
    item = " / ".join(x for x in (c.item_name_zh, c.item_name_en) if x) or None
    return [
        c.case_code,
        c.patient_pseudonym,
        c.modality,
        c.item_code,
        item,
        c.patient_sex,
        c.age_band,
        c.n_series,
        c.n_instances,
        c.reviewer,
        c.reading,
        s.grade,
        recognisable,
        ",".join(s.reasons) or None,
        s.comment or None,
    ]


@dataclass(frozen=True, slots=True)
class ImportResult:
    period: str
    outcomes: dict[tuple[str, str], GradeOutcome]
    """(case code, reviewer) -> what was stored."""
    blank: int
    """Rows without a grade (not graded yet): skipped."""


def _text(value: object) -> str:
    """A cell as the text typed: a formula as its text (never its result), our escape undone."""
    if value is None:
        return ""
    if isinstance(value, ArrayFormula):
        value = value.text
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return unescape_text(str(value)).strip()


def import_workbook(
    store: ResultStore,
    config: SpotCheckConfig,
    path: Path,
    *,
    key: bytes,
    replace: bool = False,
    now: dt.datetime | None = None,
) -> ImportResult:
    """Read a graded workbook back (see the module docstring); SpotCheckError listing every
    problem, with nothing stored, when anything is wrong."""
    try:
        wb = load_workbook(path, read_only=True, data_only=False)  # formulas as typed, not evaluated
    except (InvalidFileException, zipfile.BadZipFile, OSError, KeyError, ValueError) as exc:
        raise SpotCheckError(f"{path}: not a spot-check workbook (.xlsx) that can be read: {exc}") from exc
    try:
        if META_SHEET not in wb.sheetnames or SHEET not in wb.sheetnames:
            raise SpotCheckError(
                f"{path}: the sheets {SHEET!r} and {META_SHEET!r} are missing: export the workbook with "
                "qc-pipeline spot-check export"
            )
        meta = {_text(r[0]): _text(r[1]) for r in wb[META_SHEET].iter_rows(values_only=True) if r and r[0]}
        if meta.get("format") != FORMAT:
            raise SpotCheckError(f"{path}: unknown workbook format {meta.get('format')!r} (expected {FORMAT!r})")
        period = meta.get("period", "")
        rows = list(wb[SHEET].iter_rows(values_only=True))
    finally:
        wb.close()
    header = [_text(v) for v in rows[0]] if rows else []
    expected = [label for _k, label in COLUMNS]
    if header[: len(expected)] != expected:
        raise SpotCheckError(f"{path}: the columns of sheet {SHEET!r} were changed; expected: {' | '.join(expected)}")
    idx = {k: i for i, (k, _label) in enumerate(COLUMNS)}
    listed = [
        (_text(r[idx["case_code"]]), _text(r[idx["reviewer"]])) for r in rows[1:] if any(v is not None for v in r)
    ]
    if not hmac.compare_digest(meta.get("token", ""), _token(key, period, listed)):
        raise SpotCheckError(
            f"{path}: rows were added, removed or re-assigned, or the workbook comes from another database "
            "(its token does not match): grade only the rows exported, in the workbook exported"
        )
    answers: list[GradeInput] = []
    problems: list[str] = []
    blank = 0
    for number, r in enumerate(rows[1:], start=2):
        if not any(v is not None for v in r):
            continue
        code, reviewer, grade_text = _text(r[idx["case_code"]]), _text(r[idx["reviewer"]]), _text(r[idx["grade"]])
        if not grade_text:
            blank += 1
            continue
        grade = config.grade(grade_text)
        if grade is None:
            problems.append(
                f"row {number} ({code}): grade {grade_text!r} is not one of {', '.join(config.grade_order)}"
            )
            continue
        answer = _text(r[idx["recognisable"]]).casefold()
        if not answer:
            recognisable = grade.recognisable
        elif answer in YES:
            recognisable = True
        elif answer in NO:
            recognisable = False
        else:
            problems.append(f"row {number} ({code}): recognisable {answer!r} is not 是/否 (yes/no)")
            continue
        reasons = tuple(x.strip() for x in _text(r[idx["reasons"]]).replace("，", ",").split(",") if x.strip())
        answers.append(GradeInput(code, reviewer, grade.code, recognisable, reasons, _text(r[idx["comment"]])))
    if problems:
        raise SpotCheckError(f"{path}: nothing imported, {len(problems)} rows need correcting:\n" + "\n".join(problems))
    outcomes = record_grades(store, config, answers, via="spreadsheet", replace=replace, now=now)
    return ImportResult(period, outcomes, blank)
