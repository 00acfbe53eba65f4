"""Each metadata check on hand-built headers: what fires, with which severity, value and limit."""

from __future__ import annotations

import datetime as dt

import pytest
from pydicom.dataset import Dataset

from qc_pipeline.checks.metadata import age_in_unit, check_metadata, parse_da, parse_tm, parse_tz_offset
from qc_pipeline.domain import Category, Severity
from qc_pipeline.pipeline import load_pipeline_thresholds

# The check time: 2026-10-20 12:00 in Shanghai (04:00 UTC).
NOW = dt.datetime(2026, 10, 20, 4, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def thresholds():
    return load_pipeline_thresholds()


def good(**overrides: object) -> Dataset:
    ds = Dataset()
    ds.PatientName = "Zhang^San=张^三"
    ds.PatientID = "P0001"
    ds.PatientSex = "M"
    ds.PatientBirthDate = "19810315"
    ds.PatientAge = "045Y"
    ds.StudyDate = "20261012"
    ds.StudyTime = "093000"
    ds.AccessionNumber = "A123"
    ds.InstitutionName = "重庆医科大学附属第一医院"
    ds.SeriesInstanceUID = "1.2.3.1"
    ds.Modality = "CT"
    for key, value in overrides.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    return ds


def codes(findings):
    return {f.code for f in findings}


def test_complete_header_has_no_findings(thresholds):
    assert check_metadata([good()], thresholds, now=NOW) == []


@pytest.mark.parametrize(
    ("keyword", "code", "severity"),
    [
        ("PatientName", "metadata.patient_name.missing", Severity.FAIL),
        ("PatientID", "metadata.patient_id.missing", Severity.FAIL),
        ("PatientSex", "metadata.patient_sex.missing", Severity.REVIEW),
        ("PatientBirthDate", "metadata.patient_birth_date.missing", Severity.FAIL),
        ("StudyDate", "metadata.study_date.missing", Severity.FAIL),
        ("StudyTime", "metadata.study_time.missing", Severity.REVIEW),
        ("AccessionNumber", "metadata.accession_number.missing", Severity.REVIEW),
        ("InstitutionName", "metadata.institution.missing", Severity.REVIEW),
    ],
)
@pytest.mark.parametrize("how", ["absent", "empty"])
def test_missing_attribute(thresholds, keyword, code, severity, how):
    ds = good(**{keyword: None}) if how == "absent" else good(**{keyword: ""})
    if keyword == "PatientBirthDate":  # with an age recorded it is only a review (below)
        del ds.PatientAge
    findings = [f for f in check_metadata([ds], thresholds, now=NOW) if f.code == code]
    assert len(findings) == 1
    assert findings[0].severity is severity
    assert findings[0].category is Category.METADATA
    assert keyword in findings[0].message
    assert findings[0].message_zh


def test_invalid_values_name_tag_and_value(thresholds):
    ds = good(PatientSex="X", StudyDate="2026-10-12", PatientBirthDate="19811345", StudyTime="25:00", PatientAge="45")
    by_code = {f.code: f for f in check_metadata([ds], thresholds, now=NOW)}
    assert set(by_code) == {
        "metadata.patient_sex.invalid",
        "metadata.study_date.invalid",
        "metadata.patient_birth_date.invalid",
        "metadata.study_time.invalid",
        "metadata.patient_age.invalid",
    }
    assert by_code["metadata.patient_sex.invalid"].value == "X"
    assert "(0010,0040)" in by_code["metadata.patient_sex.invalid"].message
    assert by_code["metadata.study_date.invalid"].value == "2026-10-12"
    assert by_code["metadata.patient_birth_date.invalid"].value == "19811345"
    assert by_code["metadata.study_date.invalid"].severity is Severity.FAIL


def test_name_without_letters_is_invalid(thresholds):
    findings = check_metadata([good(PatientName="12345^^")], thresholds, now=NOW)
    assert codes(findings) == {"metadata.patient_name.invalid"}


def test_chinese_only_name_is_valid(thresholds):
    assert check_metadata([good(PatientName="王小明")], thresholds, now=NOW) == []


def test_birth_after_study(thresholds):
    findings = check_metadata([good(PatientBirthDate="20261013", PatientAge=None)], thresholds, now=NOW)
    assert codes(findings) == {"metadata.patient_birth_date.after_study"}
    assert findings[0].value == "20261013"
    assert findings[0].limit == "<= 20261012"


def test_implausible_age(thresholds):
    findings = check_metadata([good(PatientBirthDate="18800101", PatientAge=None)], thresholds, now=NOW)
    assert codes(findings) == {"metadata.patient_birth_date.implausible"}
    assert findings[0].value == "146"


class TestFutureStudy:
    def test_later_today_beyond_tolerance_is_future(self, thresholds):
        # 12:30 Shanghai is 30 min after NOW (12:00 Shanghai); tolerance is 10 min.
        findings = check_metadata([good(StudyDate="20261020", StudyTime="123000")], thresholds, now=NOW)
        assert codes(findings) == {"metadata.study_date.future"}

    def test_within_tolerance_is_not_future(self, thresholds):
        assert check_metadata([good(StudyDate="20261020", StudyTime="120500")], thresholds, now=NOW) == []

    def test_timezone_offset_is_honoured(self, thresholds):
        # 12:30 at UTC+14 is 22:30 UTC the day before: in the past.
        ds = good(StudyDate="20261020", StudyTime="123000", TimezoneOffsetFromUTC="+1400")
        assert check_metadata([ds], thresholds, now=NOW) == []

    def test_invalid_offset_falls_back_to_site_zone(self, thresholds):
        ds = good(TimezoneOffsetFromUTC="0800")
        assert codes(check_metadata([ds], thresholds, now=NOW)) == {"metadata.timezone_offset.invalid"}

    def test_date_without_time_compares_local_dates(self, thresholds):
        # NOW is already 2026-10-20 in Shanghai; tomorrow is the future, today is not.
        tomorrow = check_metadata([good(StudyDate="20261021", StudyTime=None)], thresholds, now=NOW)
        today = check_metadata([good(StudyDate="20261020", StudyTime=None)], thresholds, now=NOW)
        assert "metadata.study_date.future" in codes(tomorrow)
        assert "metadata.study_date.future" not in codes(today)

    def test_naive_now_is_rejected(self, thresholds):
        with pytest.raises(ValueError, match="now must be timezone-aware"):
            check_metadata([good()], thresholds, now=dt.datetime(2026, 10, 20))


@pytest.mark.parametrize(
    ("age", "consistent"),
    [("045Y", True), ("046Y", True), ("044Y", True), ("030Y", False), ("546M", True), ("560M", False)],
)
def test_age_consistency(thresholds, age, consistent):
    # Born 1981-03-15, examined 2026-10-12: 45 completed years, 546 completed months.
    findings = check_metadata([good(PatientAge=age)], thresholds, now=NOW)
    assert ("metadata.patient_age.inconsistent" not in codes(findings)) is consistent


def test_age_inconsistency_names_computed_age(thresholds):
    (finding,) = check_metadata([good(PatientAge="030Y")], thresholds, now=NOW)
    assert finding.value == "030Y"
    assert finding.limit == "045Y ± 1"
    assert finding.severity is Severity.REVIEW


def test_infant_age_in_days(thresholds):
    ds = good(PatientBirthDate="20261001", PatientAge="011D")
    assert check_metadata([ds], thresholds, now=NOW) == []
    assert codes(check_metadata([good(PatientBirthDate="20261001", PatientAge="030D")], thresholds, now=NOW)) == {
        "metadata.patient_age.inconsistent"
    }


def test_inconsistent_patient_across_series(thresholds):
    a = good()
    b = good(PatientSex="F", SeriesInstanceUID="1.2.3.2")
    (finding,) = check_metadata([a, b], thresholds, now=NOW)
    assert finding.code == "metadata.patient.inconsistent"
    assert finding.severity is Severity.FAIL
    assert "PatientSex" in finding.message and "'F' vs 'M'" in finding.message
    assert finding.series_instance_uid == "1.2.3.1"  # the series holding the second value, 'M'


def test_inconsistent_patient_id_is_not_spelled_out(thresholds):
    b = good(PatientID="P0002", SeriesInstanceUID="1.2.3.2")
    (finding,) = check_metadata([good(), b], thresholds, now=NOW)
    assert "P0001" not in finding.message and "P0002" not in finding.message
    assert finding.value == "P0001 | P0002"


def test_same_values_in_many_instances_are_consistent(thresholds):
    assert check_metadata([good() for _ in range(5)], thresholds, now=NOW) == []


def test_disabled_rule_is_silent(thresholds, tmp_path):
    import shutil

    tmp_path = tmp_path / "thresholds"
    shutil.copytree(thresholds.directory, tmp_path)
    text = (tmp_path / "metadata.yaml").read_text(encoding="utf-8")
    text = text.replace(
        "  - id: metadata.accession_number.missing\n    severity: review\n",
        "  - id: metadata.accession_number.missing\n    severity: review\n    enabled: false\n",
    )
    (tmp_path / "metadata.yaml").write_text(text, encoding="utf-8")
    custom = load_pipeline_thresholds(tmp_path)
    assert check_metadata([good(AccessionNumber=None)], custom, now=NOW) == []
    assert custom.version != thresholds.version


@pytest.mark.parametrize(
    ("value", "expected"),
    [("20261012", dt.date(2026, 10, 12)), (None, None)],
)
def test_parse_da(value, expected):
    assert parse_da(value) == expected


@pytest.mark.parametrize("value", ["2026-10-12", "20261301", "2026101", "20260230"])
def test_parse_da_rejects(value):
    with pytest.raises(ValueError, match=r"YYYYMMDD|month|day"):
        parse_da(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("09", dt.time(9)),
        ("0930", dt.time(9, 30)),
        ("093015.5", dt.time(9, 30, 15, 500000)),
        ("235960", dt.time(23, 59, 59)),
    ],
)
def test_parse_tm(value, expected):
    assert parse_tm(value) == expected


def test_parse_tz_offset():
    assert parse_tz_offset("+0800").utcoffset(None) == dt.timedelta(hours=8)
    assert parse_tz_offset("-0530").utcoffset(None) == -dt.timedelta(hours=5, minutes=30)
    with pytest.raises(ValueError, match=r"\+HHMM"):
        parse_tz_offset("+8")


def test_age_in_unit_counts_completed_units():
    birth = dt.date(2000, 2, 29)
    assert age_in_unit(birth, dt.date(2001, 2, 28), "Y") == 0
    assert age_in_unit(birth, dt.date(2001, 3, 1), "Y") == 1
    assert age_in_unit(birth, dt.date(2000, 3, 28), "M") == 0
    assert age_in_unit(birth, dt.date(2000, 3, 14), "W") == 2


@pytest.mark.parametrize(
    ("charset", "code", "severity"),
    [
        ("ISO_IR 192", None, None),
        ("GB18030", None, None),
        (["", "ISO 2022 IR 58"], None, None),
        ("ISO-IR 192", "metadata.charset.nonstandard", Severity.INFO),
        ("iso_ir 100", "metadata.charset.nonstandard", Severity.INFO),
        ("ISO_IR 999", "metadata.charset.unknown", Severity.REVIEW),
        (["ISO 2022 IR 6", "CHINESE"], "metadata.charset.unknown", Severity.REVIEW),
    ],
)
def test_specific_character_set_is_a_defined_term(thresholds, charset, code, severity):
    findings = [
        f
        for f in check_metadata([good(SpecificCharacterSet=charset)], thresholds, now=NOW)
        if f.code.startswith("metadata.charset.")
    ]
    if code is None:
        assert findings == []
        return
    (finding,) = findings
    assert (finding.code, finding.severity) == (code, severity)
    assert "(0008,0005)" in finding.message and "字符集" in finding.message_zh


# -- birth date missing but age recorded; non-image objects -----------------------------------


@pytest.mark.parametrize("how", ["absent", "empty"])
def test_missing_birth_date_with_valid_age_is_review_not_fail(thresholds, how):
    ds = good(PatientBirthDate=None if how == "absent" else "", PatientAge="045Y")
    (finding,) = check_metadata([ds], thresholds, now=NOW)
    assert finding.code == "metadata.patient_birth_date.missing_age_recorded"
    assert finding.severity is Severity.REVIEW
    assert finding.value == "045Y"
    assert "PatientAge (0010,1010) 045Y" in finding.message and "age at the exam is recorded" in finding.message
    assert "年龄" in finding.message_zh


@pytest.mark.parametrize("age", [None, "45", "999Y"])
def test_missing_birth_date_without_a_usable_age_still_fails(thresholds, age):
    findings = check_metadata([good(PatientBirthDate=None, PatientAge=age)], thresholds, now=NOW)
    by_code = {f.code: f for f in findings}
    assert by_code["metadata.patient_birth_date.missing"].severity is Severity.FAIL
    assert "metadata.patient_birth_date.missing_age_recorded" not in by_code


def dose_report(**overrides: object) -> Dataset:
    """A CT radiation dose SR as scanners write it: few patient attributes, no institution."""
    sparse: dict[str, object] = {"PatientBirthDate": "", "PatientSex": "", "AccessionNumber": None}
    return good(
        SOPClassUID="1.2.840.10008.5.1.4.1.1.88.67",  # X-Ray Radiation Dose SR Storage
        Modality="SR",
        SeriesInstanceUID="1.2.3.999",
        InstitutionName=None,
        StudyTime=None,
        **{**sparse, **overrides},
    )


def test_fields_missing_only_on_a_non_image_object_do_not_fail(thresholds):
    findings = check_metadata([good(), good()], thresholds, now=NOW, non_images=[dose_report()])
    assert findings == []


def test_non_image_objects_do_not_stand_for_the_study(thresholds):
    # the image misses its birth date: the SR that has one does not make up for it
    image = good(PatientBirthDate=None, PatientAge=None)
    findings = check_metadata([image], thresholds, now=NOW, non_images=[dose_report(PatientBirthDate="19810315")])
    assert "metadata.patient_birth_date.missing" in codes(findings)


def test_a_non_image_object_naming_another_patient_is_still_a_conflict(thresholds):
    findings = check_metadata([good()], thresholds, now=NOW, non_images=[dose_report(PatientID="P0002")])
    (finding,) = findings
    assert finding.code == "metadata.patient.inconsistent"
    assert "PatientID (0010,0020) differs" in finding.message
    assert finding.value == "P0001 | P0002"


def test_an_empty_value_on_an_image_is_still_a_conflict(thresholds):
    b = good(PatientSex="", SeriesInstanceUID="1.2.3.2")
    by_code = {f.code: f for f in check_metadata([good(), b], thresholds, now=NOW)}
    assert "PatientSex" in by_code["metadata.patient.inconsistent"].message
