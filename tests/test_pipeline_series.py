"""judge() on studies with non-image objects, and the series of each study as the pipeline read them."""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file

from qc_pipeline.domain import Verdict
from qc_pipeline.pipeline import judge

from .flows.conftest import GOOD_STUDY, RECEIVED_AT, write_instance
from .test_pipeline import NOW, load_only, thresholds  # noqa: F401 (a fixture)


def write_dose_report(path: Path, *, study: str, **attrs: str) -> Path:
    """A structured report in the study (pydicom's test-SR.dcm) with the scanner's sparse patient data."""
    import os

    sr = pydicom.dcmread(get_testdata_file("test-SR.dcm"))
    sr.StudyInstanceUID = study
    sr.SeriesInstanceUID = study + ".99"
    sr.SeriesNumber = 99
    sr.SOPInstanceUID = study + ".99.1"
    sr.file_meta.MediaStorageSOPInstanceUID = sr.SOPInstanceUID
    sr.PatientID = "P-" + study[-4:]
    sr.SpecificCharacterSet = "ISO_IR 192"
    sr.PatientName = "Li^Si=李^四"
    for key, value in attrs.items():
        setattr(sr, key, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    sr.save_as(path)
    os.utime(path, (RECEIVED_AT.timestamp(), RECEIVED_AT.timestamp()))
    return path


def test_fields_missing_only_on_the_dose_report_do_not_fail_the_study(tmp_path, thresholds):
    write_instance(tmp_path / "1.dcm", study=GOOD_STUDY, series_no=1, instance_no=1)
    write_dose_report(
        tmp_path / "sr.dcm", study=GOOD_STUDY, PatientBirthDate="", PatientSex="", AccessionNumber="", InstitutionName=""
    )
    decision = judge(load_only(tmp_path), thresholds, now=NOW)
    assert decision.verdict is Verdict.PASS, [f.message for f in decision.reasons]
    assert not [f for f in decision.findings if f.code.startswith("metadata.")]


def test_a_dose_report_of_another_patient_is_still_a_conflict(tmp_path, thresholds):
    write_instance(tmp_path / "1.dcm", study=GOOD_STUDY, series_no=1, instance_no=1)
    write_dose_report(tmp_path / "sr.dcm", study=GOOD_STUDY, PatientID="P-9999")
    decision = judge(load_only(tmp_path), thresholds, now=NOW)
    (finding,) = [f for f in decision.findings if f.code.startswith("metadata.")]
    assert finding.code == "metadata.patient.inconsistent" and "PatientID (0010,0020)" in finding.message
    assert decision.verdict is Verdict.FAIL
