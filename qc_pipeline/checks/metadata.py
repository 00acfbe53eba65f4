"""Patient identity and exam dates: present, valid, plausible and consistent.

"患者基本信息和检查日期准确" — seed 002 §3.2. Headers in, findings out; no I/O.
DICOM dates and times are local: TimezoneOffsetFromUTC (0008,0201) when present, else the site
time zone from ``thresholds/site.yaml``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from pydicom.charset import python_encoding
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from qc_pipeline.domain import Finding
from qc_pipeline.io.dicom import text
from qc_pipeline.rules.loader import Thresholds

RULE_IDS: Final = frozenset(
    {
        "metadata.patient_name.missing",
        "metadata.patient_name.invalid",
        "metadata.charset.unknown",
        "metadata.charset.nonstandard",
        "metadata.patient_id.missing",
        "metadata.patient_sex.missing",
        "metadata.patient_sex.invalid",
        "metadata.patient_birth_date.missing",
        "metadata.patient_birth_date.missing_age_recorded",
        "metadata.patient_birth_date.invalid",
        "metadata.patient_birth_date.after_study",
        "metadata.patient_birth_date.implausible",
        "metadata.patient_age.invalid",
        "metadata.patient_age.inconsistent",
        "metadata.study_date.missing",
        "metadata.study_date.invalid",
        "metadata.study_date.future",
        "metadata.study_time.missing",
        "metadata.study_time.invalid",
        "metadata.timezone_offset.invalid",
        "metadata.accession_number.missing",
        "metadata.institution.missing",
        "metadata.patient.inconsistent",
    }
)

_DA = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_TM = re.compile(r"^(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?$")
_TZ = re.compile(r"^([+-])(\d{2})(\d{2})$")
_AS = re.compile(r"^(\d{3})([DWMY])$")
PN_GROUP_MAX_CHARS: Final = 64
SEXES: Final = ("M", "F", "O")
_AGE_UNIT_ZH = {"D": "天", "W": "周", "M": "月", "Y": "岁"}
_AGE_UNIT_EN = {"D": "days", "W": "weeks", "M": "months", "Y": "years"}

# Patient attributes that must agree across every object of a study: (keyword, tag, Chinese).
_PATIENT_ATTRIBUTES: Final = (
    ("PatientID", "(0010,0020)", "患者ID", True),
    ("PatientName", "(0010,0010)", "患者姓名", True),
    ("PatientSex", "(0010,0040)", "性别", False),
    ("PatientBirthDate", "(0010,0030)", "出生日期", False),
)


def parse_da(value: str | None) -> dt.date | None:
    """A DICOM DA value (YYYYMMDD) as a date; None when absent; ValueError when invalid."""
    if value is None:
        return None
    match = _DA.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not of the form YYYYMMDD")
    return dt.date(int(match[1]), int(match[2]), int(match[3]))


def parse_tm(value: str | None) -> dt.time | None:
    """A DICOM TM value (HH[MM[SS[.FFFFFF]]]) as a time; ValueError when invalid."""
    if value is None:
        return None
    match = _TM.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not of the form HHMMSS.FFFFFF")
    hour, minute, second = int(match[1]), int(match[2] or 0), int(match[3] or 0)
    second = min(second, 59)  # DICOM allows a leap second (60)
    micro = int((match[4] or "0").ljust(6, "0"))
    return dt.time(hour, minute, second, micro)


def parse_tz_offset(value: str | None) -> dt.tzinfo | None:
    """TimezoneOffsetFromUTC (&ZZXX, e.g. +0800) as a tzinfo; ValueError when invalid."""
    if value is None:
        return None
    match = _TZ.match(value)
    if match is None or int(match[2]) > 14 or int(match[3]) >= 60:
        raise ValueError(f"{value!r} is not of the form +HHMM or -HHMM")
    delta = dt.timedelta(hours=int(match[2]), minutes=int(match[3]))
    return dt.timezone(-delta if match[1] == "-" else delta)


def age_in_unit(birth: dt.date, on: dt.date, unit: str) -> int:
    """Completed age on ``on`` in D, W, M or Y, as PatientAge counts it."""
    if unit == "D":
        return (on - birth).days
    if unit == "W":
        return (on - birth).days // 7
    months = (on.year - birth.year) * 12 + on.month - birth.month - (on.day < birth.day)
    return months if unit == "M" else months // 12


@dataclass(frozen=True, slots=True)
class StudyDates:
    """The study's date, time and zone as the headers give them (None where unusable)."""

    study_date: dt.date | None
    study_time: dt.time | None
    tzinfo: dt.tzinfo

    def local_datetime(self) -> dt.datetime | None:
        if self.study_date is None:
            return None
        return dt.datetime.combine(self.study_date, self.study_time or dt.time(0), tzinfo=self.tzinfo)


def study_dates(ds: Dataset, site_tz: dt.tzinfo) -> StudyDates:
    """Date, time and zone of a study, ignoring values that do not parse."""

    def safe(parse, value):
        try:
            return parse(value)
        except ValueError:
            return None

    tz = safe(parse_tz_offset, text(ds, "TimezoneOffsetFromUTC")) or site_tz
    return StudyDates(safe(parse_da, text(ds, "StudyDate")), safe(parse_tm, text(ds, "StudyTime")), tz)


class _Collector:
    """Builds findings from rules, skipping rules a QC centre disabled."""

    def __init__(self, thresholds: Thresholds) -> None:
        self.thresholds = thresholds
        self.findings: list[Finding] = []

    def add(self, rule_id: str, message: str, message_zh: str, **kwargs: object) -> None:
        finding = self.thresholds.finding(rule_id, message, message_zh, **kwargs)  # type: ignore[arg-type]
        if finding is not None:
            self.findings.append(finding)


def check_metadata(
    datasets: Sequence[Dataset],
    thresholds: Thresholds,
    *,
    now: dt.datetime,
    non_images: Sequence[Dataset] = (),
) -> list[Finding]:
    """Check the patient and date attributes of a study's image objects.

    ``datasets`` are the headers of the study's images (at least one); the first one stands for
    the study, and patient attributes are compared across all of them. ``non_images`` are the
    study's other objects (dose reports, SR, KOS, PR): scanners fill few patient attributes in
    them, so they never stand for the study; they join only the consistency check, where an
    empty value of theirs is no conflict but a different one is. ``now`` is an aware datetime
    (the time of the check), so results do not depend on the machine's clock.
    """
    if not datasets:
        return []
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (e.g. datetime.now(datetime.UTC))")
    out = _Collector(thresholds)
    ds = datasets[0]
    _check_charset(ds, out)
    _check_patient_name(ds, out)
    if text(ds, "PatientID") is None:
        out.add(
            "metadata.patient_id.missing",
            "PatientID (0010,0020) is missing or empty",
            "患者ID (0010,0020) 缺失或为空",
        )
    _check_sex(ds, out)
    dates = _check_study_date_time(ds, out, site_tz=thresholds.site.tzinfo(), now=now)
    birth = _check_birth_date(ds, out, study_date=dates.study_date)
    _check_age(ds, out, birth=birth, study_date=dates.study_date)
    if text(ds, "AccessionNumber") is None:
        out.add(
            "metadata.accession_number.missing",
            "AccessionNumber (0008,0050) is missing or empty",
            "检查号 (0008,0050) 缺失或为空",
        )
    if text(ds, "InstitutionName") is None:
        out.add(
            "metadata.institution.missing",
            "InstitutionName (0008,0080) is missing or empty",
            "机构名称 (0008,0080) 缺失或为空",
        )
    _check_consistency(datasets, non_images, out)
    return out.findings


def _charset_key(term: str) -> str:
    return re.sub(r"[\s_-]+", " ", term.strip().upper())


_CHARSETS_BY_KEY: Final = {_charset_key(term): term for term in python_encoding if term}


def _check_charset(ds: Dataset, out: _Collector) -> None:
    """SpecificCharacterSet (0008,0005): every value a DICOM defined term. A misspelt one that
    still names a set (``ISO-IR 192``) is recorded; one that names none means names and
    descriptions were decoded with a guessed character set."""
    raw = ds.get("SpecificCharacterSet")
    values = [str(v).strip() for v in (raw if isinstance(raw, MultiValue) else [raw])] if raw else []
    for value in values:
        if not value or value in python_encoding:
            continue
        meant = _CHARSETS_BY_KEY.get(_charset_key(value))
        if meant is None:
            out.add(
                "metadata.charset.unknown",
                f"SpecificCharacterSet (0008,0005) {value!r} is not a DICOM character set; "
                "Chinese names and descriptions may be decoded wrongly",
                f"字符集 (0008,0005) {value!r} 不是 DICOM 定义的字符集，中文姓名和描述可能被错误解码",
                value=value,
            )
        else:
            out.add(
                "metadata.charset.nonstandard",
                f"SpecificCharacterSet (0008,0005) {value!r} is misspelt; read as {meant!r}",
                f"字符集 (0008,0005) {value!r} 书写不规范，按 {meant!r} 读取",
                value=value,
            )


def _check_patient_name(ds: Dataset, out: _Collector) -> None:
    name = text(ds, "PatientName")
    if name is None:
        out.add(
            "metadata.patient_name.missing",
            "PatientName (0010,0010) is missing or empty",
            "患者姓名 (0010,0010) 缺失或为空",
        )
        return
    groups = name.split("=")
    too_long = [g for g in groups if len(g) > PN_GROUP_MAX_CHARS]
    if not any(ch.isalpha() for ch in name) or too_long:
        why = (
            f"a component group has {len(too_long[0])} characters (at most {PN_GROUP_MAX_CHARS})"
            if too_long
            else "it contains no letters or ideographs"
        )
        why_zh = f"某一组成部分超过 {PN_GROUP_MAX_CHARS} 个字符" if too_long else "不含任何字母或汉字"
        out.add(
            "metadata.patient_name.invalid",
            f"PatientName (0010,0010) is not a valid person name: {why}",
            f"患者姓名 (0010,0010) 不是有效姓名：{why_zh}",
            value=name,
        )


def _check_sex(ds: Dataset, out: _Collector) -> None:
    sex = text(ds, "PatientSex")
    if sex is None:
        out.add(
            "metadata.patient_sex.missing",
            "PatientSex (0010,0040) is missing or empty",
            "性别 (0010,0040) 缺失或为空",
        )
    elif sex.upper() not in SEXES:
        out.add(
            "metadata.patient_sex.invalid",
            f"PatientSex (0010,0040) is {sex!r}, expected M, F or O",
            f"性别 (0010,0040) 为 {sex!r}，应为 M、F 或 O",
            value=sex,
            limit="M|F|O",
        )


def _check_study_date_time(ds: Dataset, out: _Collector, *, site_tz: dt.tzinfo, now: dt.datetime) -> StudyDates:
    raw_tz = text(ds, "TimezoneOffsetFromUTC")
    try:
        tz = parse_tz_offset(raw_tz) or site_tz
    except ValueError as exc:
        tz = site_tz
        out.add(
            "metadata.timezone_offset.invalid",
            f"TimezoneOffsetFromUTC (0008,0201) is invalid: {exc}; the site time zone is used",
            f"时区偏移 (0008,0201) 无效（{raw_tz!r}），改用本站时区",
            value=raw_tz,
        )
    raw_date = text(ds, "StudyDate")
    study_date: dt.date | None = None
    if raw_date is None:
        out.add(
            "metadata.study_date.missing",
            "StudyDate (0008,0020) is missing or empty",
            "检查日期 (0008,0020) 缺失或为空",
        )
    else:
        try:
            study_date = parse_da(raw_date)
        except ValueError as exc:
            out.add(
                "metadata.study_date.invalid",
                f"StudyDate (0008,0020) is not a valid date: {exc}",
                f"检查日期 (0008,0020) 不是有效日期：{raw_date!r}",
                value=raw_date,
            )
    raw_time = text(ds, "StudyTime")
    study_time: dt.time | None = None
    if raw_time is None:
        out.add(
            "metadata.study_time.missing",
            "StudyTime (0008,0030) is missing or empty",
            "检查时间 (0008,0030) 缺失或为空",
        )
    else:
        try:
            study_time = parse_tm(raw_time)
        except ValueError as exc:
            out.add(
                "metadata.study_time.invalid",
                f"StudyTime (0008,0030) is not a valid time: {exc}",
                f"检查时间 (0008,0030) 不是有效时间：{raw_time!r}",
                value=raw_time,
            )
    dates = StudyDates(study_date, study_time, tz)
    if raw_date is not None and study_date is not None:  # a date parsed from the raw text
        tolerance = dt.timedelta(minutes=out.thresholds.limit("metadata.study_date.future"))
        local_now = now.astimezone(tz)
        if study_time is None:
            future = study_date > local_now.date()
        else:
            stamp = dates.local_datetime()
            future = stamp is not None and stamp > now + tolerance
        if future:
            shown = raw_date + (f" {raw_time}" if raw_time and study_time else "")
            out.add(
                "metadata.study_date.future",
                f"StudyDate/StudyTime (0008,0020/0030) {shown} is in the future "
                f"(checked at {local_now:%Y-%m-%d %H:%M} {local_now.tzname()})",
                f"检查日期/时间 (0008,0020/0030) {shown} 晚于当前时间 {local_now:%Y-%m-%d %H:%M}",
                value=shown,
                limit=f"<= {local_now:%Y%m%d %H%M} + {tolerance.total_seconds() / 60:g} min",
            )
    return dates


def _valid_age(ds: Dataset, out: _Collector) -> str | None:
    """PatientAge when it is well formed and plausible (the birth-date age limit), else None."""
    raw = text(ds, "PatientAge")
    match = _AS.match(raw) if raw is not None else None
    if match is None:
        return None
    years = int(match[1]) / {"D": 365.25, "W": 52.18, "M": 12.0, "Y": 1.0}[match[2]]
    return raw if years <= out.thresholds.limit("metadata.patient_birth_date.implausible") else None


def _check_birth_date(ds: Dataset, out: _Collector, *, study_date: dt.date | None) -> dt.date | None:
    raw = text(ds, "PatientBirthDate")
    if raw is None and (age := _valid_age(ds, out)) is not None:
        out.add(
            "metadata.patient_birth_date.missing_age_recorded",
            f"PatientBirthDate (0010,0030) is missing or empty; PatientAge (0010,1010) {age} is valid, "
            "so the age at the exam is recorded: please confirm the patient's identity",
            f"出生日期 (0010,0030) 缺失或为空，但年龄 (0010,1010) {age} 有效，已记录检查时年龄，请人工确认患者身份",
            value=age,
        )
        return None
    if raw is None:
        out.add(
            "metadata.patient_birth_date.missing",
            "PatientBirthDate (0010,0030) is missing or empty",
            "出生日期 (0010,0030) 缺失或为空",
        )
        return None
    try:
        birth = parse_da(raw)
    except ValueError as exc:
        out.add(
            "metadata.patient_birth_date.invalid",
            f"PatientBirthDate (0010,0030) is not a valid date: {exc}",
            f"出生日期 (0010,0030) 不是有效日期：{raw!r}",
            value=raw,
        )
        return None
    assert birth is not None
    if study_date is None:
        return birth
    if birth > study_date:
        out.add(
            "metadata.patient_birth_date.after_study",
            f"PatientBirthDate (0010,0030) {raw} is after StudyDate (0008,0020) {study_date:%Y%m%d}",
            f"出生日期 (0010,0030) {raw} 晚于检查日期 (0008,0020) {study_date:%Y%m%d}",
            value=raw,
            limit=f"<= {study_date:%Y%m%d}",
        )
        return None
    max_years = out.thresholds.limit("metadata.patient_birth_date.implausible")
    years = age_in_unit(birth, study_date, "Y")
    if years > max_years:
        out.add(
            "metadata.patient_birth_date.implausible",
            f"PatientBirthDate (0010,0030) {raw} gives an age of {years} years at the exam (at most {max_years:g})",
            f"出生日期 (0010,0030) {raw} 对应检查时年龄 {years} 岁，超过上限 {max_years:g} 岁",
            value=years,
        )
        return None
    return birth


def _check_age(ds: Dataset, out: _Collector, *, birth: dt.date | None, study_date: dt.date | None) -> None:
    raw = text(ds, "PatientAge")
    if raw is None:
        return  # PatientAge is optional (type 3); the birth date carries the information
    match = _AS.match(raw)
    if match is None:
        out.add(
            "metadata.patient_age.invalid",
            f"PatientAge (0010,1010) {raw!r} is not of the form nnnD, nnnW, nnnM or nnnY",
            f"年龄 (0010,1010) {raw!r} 格式无效（应为 nnnD/nnnW/nnnM/nnnY）",
            value=raw,
        )
        return
    if birth is None or study_date is None:
        return
    stated, unit = int(match[1]), match[2]
    computed = age_in_unit(birth, study_date, unit)
    tolerance = out.thresholds.limit("metadata.patient_age.inconsistent")
    if abs(stated - computed) > tolerance:
        out.add(
            "metadata.patient_age.inconsistent",
            f"PatientAge (0010,1010) {raw} disagrees with the dates: born {birth:%Y%m%d}, "
            f"examined {study_date:%Y%m%d} gives {computed} {_AGE_UNIT_EN[unit]}",
            f"年龄 (0010,1010) {raw} 与日期不符：出生 {birth:%Y%m%d}、检查 {study_date:%Y%m%d}，"
            f"应为 {computed}{_AGE_UNIT_ZH[unit]}",
            value=raw,
            limit=f"{computed:03d}{unit} ± {tolerance:g}",
        )


def _check_consistency(datasets: Sequence[Dataset], non_images: Sequence[Dataset], out: _Collector) -> None:
    """Patient attributes must be identical in every object of the study.

    An image with an empty value disagrees with one that has it; a non-image object (dose report,
    SR, KOS) with an empty value does not, since scanners often leave them out there.
    """
    objects = [(ds, True) for ds in datasets] + [(ds, False) for ds in non_images]
    for keyword, tag, name_zh, identifying in _PATIENT_ATTRIBUTES:
        seen: dict[str, list[str]] = {}
        for ds, image in objects:
            value = text(ds, keyword) or ""
            if not value and not image:
                continue
            series = text(ds, "SeriesInstanceUID") or "?"
            bucket = seen.setdefault(value, [])
            if series not in bucket:
                bucket.append(series)
        if len(seen) < 2:
            continue
        values = sorted(seen)
        first_series = [seen[v][0] for v in values]
        if identifying:  # never spell out names or IDs in a message; the value field keeps them
            shown = f"{len(values)} different values"
            shown_zh = f"{len(values)} 个不同的值"
        else:
            shown = " vs ".join(repr(v) for v in values)
            shown_zh = " 与 ".join(repr(v) for v in values)
        out.add(
            "metadata.patient.inconsistent",
            f"{keyword} {tag} differs between the series of the study: {shown}",
            f"同一检查的不同序列中{name_zh} {tag} 不一致：{shown_zh}",
            value=" | ".join(values),
            series_instance_uid=first_series[1],
        )
