"""Hospitals' exam logs (RIS/HIS exports): what was performed, to compare with what was uploaded.

File format (CSV in UTF-8, with or without BOM, or the first sheet of an XLSX workbook): one
header row, then one row per exam. Columns are found by name (case and surrounding spaces
ignored); the English or the Chinese name may be used:

==================  =============================  ========  ==========================================
column              also accepted                  required  content
==================  =============================  ========  ==========================================
accession           accession_number, 检查号,      one of    the RIS accession number (DICOM 0008,0050)
                    检查单号, 登记号               the two
patient_id          患者ID, 病人ID, 患者编号       one of    the hospital's patient id (0010,0020)
                                                   the two
institution         机构, 医院, 医疗机构           yes       the institution (as written in its uploads
                                                             or any alias of the institution register)
item                检查项目, 医嘱, order,         no        the item or order text (检查项目/医嘱内容)
                    item_text
exam_time           检查时间, 检查日期             yes       local site time (Asia/Shanghai):
                                                             ``YYYY-MM-DD[ HH:MM[:SS]]`` or an XLSX date
modality            检查类型, 设备类型             no        DR/CR/DX, CT or MR; when empty it is read
                                                             from the item text (``MODALITY_WORDS``)
==================  =============================  ========  ==========================================

Rows that lack the institution, the exam time, or both the accession and the patient id are
rejected and reported (with their row number); they are never counted silently.

Matching (``match_exams``): a logged exam is uploaded when a study of the same institution has the
same accession number; otherwise (no accession in the log or in the study) when a study of the
same institution has the same patient id, study date and modality. Institutions are compared
through ``institution_key`` (the institution register when wired, else the trimmed name).
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from sqlalchemy import select

from qc_pipeline.store import ResultStore
from qc_pipeline.store.exam_logs import ExamLogEntry

COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    "accession": ("accession", "accession_number", "检查号", "检查单号", "登记号"),
    "patient_id": ("patient_id", "患者id", "病人id", "患者编号"),
    "institution": ("institution", "机构", "医院", "医疗机构"),
    "item": ("item", "item_text", "order", "检查项目", "医嘱"),
    "exam_time": ("exam_time", "检查时间", "检查日期"),
    "modality": ("modality", "检查类型", "设备类型"),
}
MODALITY_WORDS: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    ("CT", ("CT", "计算机断层", "体层摄影")),
    ("MR", ("MRI", "MR", "磁共振", "核磁")),
    ("DR", ("DR", "CR", "DX", "X线", "X射线", "平片", "摄影", "透视")),
)
"""Words of the item text that name the modality group (first group found wins, CT before DR so
that "CT 平扫" is CT). Modality names as hospitals write them on orders."""
HEADER_MODALITY: Final = {"CR": "DR", "DX": "DR", "DR": "DR", "CT": "CT", "MR": "MR", "MRI": "MR"}


@dataclass(frozen=True, slots=True)
class LoggedExam:
    institution: str
    accession: str | None
    patient_id: str | None
    item_text: str | None
    modality: str | None
    exam_date: dt.date
    exam_time: dt.time | None = None

    @property
    def entry_key(self) -> str:
        if self.accession:
            return f"acc:{self.accession}"[:200]
        return f"pid:{self.patient_id}|{self.exam_date.isoformat()}|{self.modality or ''}"[:200]


@dataclass(frozen=True, slots=True)
class RejectedRow:
    row: int
    reason: str


@dataclass(frozen=True, slots=True)
class ParsedLog:
    exams: tuple[LoggedExam, ...]
    rejected: tuple[RejectedRow, ...] = ()


class ExamLogError(ValueError):
    """The file cannot be read as an exam log (unknown format, missing required column)."""


def institution_key(name: str | None) -> str:
    """The one place where an institution name becomes the key exams are grouped and matched by.

    The institution register's name for any of its spellings; a name not in the register with
    surrounding and repeated spaces removed."""
    from qc_pipeline.institutions import default_register

    return default_register().canonical(re.sub(r"\s+", " ", name or "").strip())


def modality_of(header: str | None, item_text: str | None) -> str | None:
    """DR, CT or MR from the modality column, else from the item text; None when neither says."""
    if header and header.strip():
        return HEADER_MODALITY.get(header.strip().upper())
    text = (item_text or "").upper()
    for group, words in MODALITY_WORDS:
        for w in words:
            if re.search(rf"(?<![A-Z]){w}(?![A-Z])", text) if w.isascii() else w in text:
                return group
    return None


def _parse_time(value: Any) -> tuple[dt.date, dt.time | None] | None:
    if isinstance(value, dt.datetime):
        return value.date(), value.time()
    if isinstance(value, dt.date):
        return value, None
    text = str(value or "").strip()
    if not text:
        return None
    text = text.replace("/", "-").replace("T", " ")
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d", "%Y%m%d%H%M%S", "%Y%m%d"):
        try:
            parsed = dt.datetime.strptime(text, fmt)
        except ValueError:
            continue
        return parsed.date(), (parsed.time() if "%H" in fmt else None)
    return None


def _rows(path: Path) -> list[list[Any]]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(encoding="utf-8-sig", newline="") as fh:
            return [row for row in csv.reader(fh)]
    if suffix in (".xlsx", ".xlsm"):
        from openpyxl import load_workbook

        wb = load_workbook(path, read_only=True, data_only=True)
        try:
            return [list(r) for r in wb.worksheets[0].iter_rows(values_only=True)]
        finally:
            wb.close()
    raise ExamLogError(f"{path}: exam logs are .csv or .xlsx files, not {suffix or 'files without an extension'}")


def _header_map(header: Sequence[Any], path: Path) -> dict[str, int]:
    names = [str(h or "").strip().lower() for h in header]
    found: dict[str, int] = {}
    for key, aliases in COLUMNS.items():
        for i, name in enumerate(names):
            if name in aliases:
                found.setdefault(key, i)
    missing = [k for k in ("institution", "exam_time") if k not in found]
    if "accession" not in found and "patient_id" not in found:
        missing.append("accession or patient_id")
    if missing:
        raise ExamLogError(
            f"{path}: missing column(s) {', '.join(missing)} (header: {', '.join(n for n in names if n)})"
        )
    return found


def _text(row: Sequence[Any], idx: int | None) -> str | None:
    if idx is None or idx >= len(row) or row[idx] is None:
        return None
    value = str(row[idx]).strip()
    return value or None


def read_exam_log(path: Path) -> ParsedLog:
    """Parse an exam log (format in the module docstring); rows that cannot be used are rejected."""
    rows = _rows(path)
    if not rows:
        raise ExamLogError(f"{path}: empty file")
    cols = _header_map(rows[0], path)
    exams, rejected = [], []
    for number, row in enumerate(rows[1:], start=2):
        if not any(c not in (None, "") for c in row):
            continue
        institution = institution_key(_text(row, cols.get("institution")))
        accession, patient = _text(row, cols.get("accession")), _text(row, cols.get("patient_id"))
        raw_time = row[cols["exam_time"]] if cols["exam_time"] < len(row) else None
        when = _parse_time(raw_time)
        reasons = []
        if not institution:
            reasons.append("no institution")
        if when is None:
            reasons.append(f"exam time {raw_time!r} not a date")
        if not accession and not patient:
            reasons.append("neither accession nor patient id")
        if reasons:
            rejected.append(RejectedRow(number, "; ".join(reasons)))
            continue
        assert when is not None
        item = _text(row, cols.get("item"))
        modality = modality_of(_text(row, cols.get("modality")), item)
        exams.append(LoggedExam(institution, accession, patient, item, modality, when[0], when[1]))
    return ParsedLog(tuple(exams), tuple(rejected))


@dataclass(frozen=True, slots=True)
class ImportResult:
    read: int
    inserted: int
    already_known: int
    rejected: tuple[RejectedRow, ...] = ()


def import_exam_log(store: ResultStore, path: Path, *, now: dt.datetime | None = None) -> ImportResult:
    """Store the exams of ``path``; exams already stored (same institution and entry key) are kept."""
    parsed = read_exam_log(path)
    stamp = now or dt.datetime.now(dt.UTC)
    inserted = 0
    with store.writing("import exam log") as session:
        known = set(session.execute(select(ExamLogEntry.institution, ExamLogEntry.entry_key)).tuples())
        for e in parsed.exams:
            key = (e.institution, e.entry_key)
            if key in known:
                continue
            known.add(key)
            session.add(
                ExamLogEntry(
                    institution=e.institution,
                    entry_key=e.entry_key,
                    accession_number=e.accession,
                    patient_id=e.patient_id,
                    item_text=e.item_text,
                    modality=e.modality,
                    exam_date=e.exam_date,
                    exam_time=e.exam_time,
                    source_file=path.name,
                    imported_at=stamp,
                )
            )
            inserted += 1
    return ImportResult(len(parsed.exams), inserted, len(parsed.exams) - inserted, parsed.rejected)


def stored_exams(rows: Iterable[Sequence[Any]]) -> list[LoggedExam]:
    """``LoggedExam`` from rows of (institution, accession, patient id, item, modality, date, time)."""
    return [
        LoggedExam(
            institution_key(r[0]),
            r[1],
            r[2],
            r[3],
            r[4],
            dt.date.fromisoformat(r[5]) if isinstance(r[5], str) else r[5],
            r[6],
        )
        for r in rows
    ]


@dataclass(frozen=True, slots=True)
class UploadedStudy:
    """What matching needs of a stored study."""

    study_id: int
    institution: str
    accession: str | None
    patient_id: str | None
    study_date: dt.date | None
    modality: str


@dataclass(slots=True)
class Matching:
    matched: dict[int, int] = field(default_factory=dict)
    """index of the logged exam -> study id."""
    how: dict[int, str] = field(default_factory=dict)
    """index of the logged exam -> ``accession``, ``fallback`` or ``missing``."""
    by_accession: int = 0
    by_fallback: int = 0
    missing: list[int] = field(default_factory=list)
    """indexes of the logged exams with no upload."""


def match_exams(
    exams: Sequence[LoggedExam], studies: Iterable[UploadedStudy], key: Callable[[str | None], str] = institution_key
) -> Matching:
    """Match each logged exam to at most one study: accession + institution, else patient id +
    exam date + modality + institution. A study is matched at most once."""
    by_acc: dict[tuple[str, str], list[int]] = {}
    by_pid: dict[tuple[str, str, dt.date, str], list[int]] = {}
    for s in studies:
        inst = key(s.institution)
        if s.accession:
            by_acc.setdefault((inst, s.accession.strip()), []).append(s.study_id)
        if s.patient_id and s.study_date is not None:
            by_pid.setdefault((inst, s.patient_id.strip(), s.study_date, s.modality), []).append(s.study_id)
    used: set[int] = set()
    out = Matching()

    def take(candidates: list[int] | None) -> int | None:
        for sid in candidates or ():
            if sid not in used:
                used.add(sid)
                return sid
        return None

    for i, e in enumerate(exams):
        inst = key(e.institution)
        sid = take(by_acc.get((inst, e.accession))) if e.accession else None
        if sid is not None:
            out.by_accession += 1
        elif e.patient_id and e.modality:
            sid = take(by_pid.get((inst, e.patient_id, e.exam_date, e.modality)))
            if sid is not None:
                out.by_fallback += 1
        if sid is None:
            out.missing.append(i)
            out.how[i] = "missing"
        else:
            out.matched[i] = sid
            out.how[i] = "accession" if e.accession and sid in by_acc.get((inst, e.accession), ()) else "fallback"
    return out


def institution_public(name: str | None) -> bool | None:
    """Whether the institution is a public one (the fee schemes concern public institutions), as
    the institution register says; None (not known) for an institution not in the register."""
    from qc_pipeline.institutions import default_register

    inst = default_register().resolve(name)
    return None if inst is None else inst.public
