"""Small mixed input folders for the flow and CLI tests."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

GOOD_STUDY = "1.2.826.0.1.3680043.10.1001"
TRUNCATED_STUDY = "1.2.826.0.1.3680043.10.1002"
SR_STUDY = "1.2.826.0.1.3680043.10.1003"
# The exams are on 2026-10-12 at 09:30 in Shanghai; their files arrive at 11:30.
RECEIVED_AT = dt.datetime(2026, 10, 12, 3, 30, tzinfo=dt.UTC)


def write_instance(
    path: Path, *, study: str, series_no: int, instance_no: int, name: str = "CT_small.dcm", **attrs: str
) -> Path:
    """A copy of a pydicom test file, with new UIDs and complete, valid patient data."""
    ds = pydicom.dcmread(get_testdata_file(name))
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = f"{study}.{series_no}"
    ds.SOPInstanceUID = f"{study}.{series_no}.{instance_no}"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientName = "Li^Si=李^四"
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientID = "P-" + study[-4:]
    ds.PatientSex = "F"
    ds.PatientBirthDate = "19700101"
    ds.PatientAge = "056Y"
    ds.StudyDate = "20261012"
    ds.StudyTime = "093000"
    ds.AccessionNumber = "ACC" + study[-4:]
    ds.InstitutionName = "四川省人民医院"
    ds.StudyDescription = "胸部CT平扫"  # recognition item YB-036, CT chest plain
    ds.InstanceNumber = instance_no
    ds.ImagePositionPatient = [-100.0, -100.0, 5.0 * instance_no]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.SliceThickness = 5.0
    if "ContrastBolusAgent" in ds:  # CT_small.dcm records a contrast agent: this is a plain CT
        del ds.ContrastBolusAgent
    if "TimezoneOffsetFromUTC" in ds:  # and a US time zone: these exams are in Chongqing
        del ds.TimezoneOffsetFromUTC
    for key, value in attrs.items():
        setattr(ds, key, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path)
    os.utime(path, (RECEIVED_AT.timestamp(), RECEIVED_AT.timestamp()))  # arrived 2 h after the exam
    return path


@pytest.fixture
def mixed_folder(tmp_path: Path) -> Path:
    """A good CT study, a study with a truncated file, an SR-only study, junk, an empty folder."""
    root = tmp_path / "incoming"
    write_instance(root / "good" / "1.dcm", study=GOOD_STUDY, series_no=1, instance_no=1)
    write_instance(root / "good" / "2.dcm", study=GOOD_STUDY, series_no=1, instance_no=2)
    write_instance(root / "trunc" / "1.dcm", study=TRUNCATED_STUDY, series_no=1, instance_no=1)
    cut = write_instance(root / "trunc" / "2.dcm", study=TRUNCATED_STUDY, series_no=1, instance_no=2)
    cut.write_bytes(cut.read_bytes()[:-5000])
    os.utime(cut, (RECEIVED_AT.timestamp(), RECEIVED_AT.timestamp()))
    sr = pydicom.dcmread(get_testdata_file("test-SR.dcm"))
    sr.StudyInstanceUID = SR_STUDY
    sr.SeriesInstanceUID = SR_STUDY + ".1"
    sr.SOPInstanceUID = SR_STUDY + ".1.1"
    sr.file_meta.MediaStorageSOPInstanceUID = sr.SOPInstanceUID
    (root / "reports").mkdir(parents=True)
    sr.save_as(root / "reports" / "sr.dcm")
    (root / "junk.dat").write_bytes(b"this is not a DICOM file\n" * 20)
    (root / "empty" / "nested").mkdir(parents=True)
    return root
