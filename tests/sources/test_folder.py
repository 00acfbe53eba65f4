"""The folder source: grouping, unreadable files, fingerprints, and never touching the inputs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from qc_pipeline.errors import SourceError
from qc_pipeline.sources import FolderSource, open_source
from qc_pipeline.sources.base import ProblemKind, uid_for_unreadable


def write_instance(path: Path, *, study: str, series: str, sop: str, name: str = "CT_small.dcm") -> None:
    ds = pydicom.dcmread(get_testdata_file(name))
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.SOPInstanceUID = sop
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path)


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    return {
        p.relative_to(root).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    write_instance(root / "a" / "1.dcm", study="1.2.826.0.1.1", series="1.2.826.0.1.1.1", sop="1.2.826.0.1.1.1.1")
    write_instance(
        root / "a" / "deeper" / "2", study="1.2.826.0.1.1", series="1.2.826.0.1.1.1", sop="1.2.826.0.1.1.1.2"
    )
    write_instance(
        root / "b.dcm", study="1.2.826.0.1.2", series="1.2.826.0.1.2.1", sop="1.2.826.0.1.2.1.1", name="MR_small.dcm"
    )
    (root / "junk.bin").write_bytes(b"\x00\x01not dicom" * 50)
    (root / "empty").mkdir()
    (root / ".hidden").write_bytes(b"ignored")
    return root


def test_groups_by_study_uid_at_any_depth(folder):
    entries = {e.study_instance_uid: e for e in FolderSource(folder).discover()}
    assert entries["1.2.826.0.1.1"].locations == ("a/1.dcm", "a/deeper/2")
    assert entries["1.2.826.0.1.2"].locations == ("b.dcm",)
    junk = entries[uid_for_unreadable("junk.bin")]
    assert junk.locations == ("junk.bin",) and not junk.uid_readable
    assert len(entries) == 3  # the hidden file and the empty folder make no study
    ct = entries["1.2.826.0.1.1"]
    patient_id = pydicom.dcmread(folder / "b.dcm").PatientID
    assert ct.patient_key and len(ct.patient_key) == 16 and patient_id not in repr(ct)
    assert ct.study_date == pydicom.dcmread(folder / "a" / "1.dcm").StudyDate
    assert junk.patient_key is None


def test_unreadable_study_uid_is_stable_and_valid():
    uid = uid_for_unreadable("x/y.dcm")
    assert uid == uid_for_unreadable("x/y.dcm") != uid_for_unreadable("x/z.dcm")
    assert uid.startswith("2.25.") and len(uid) <= 64
    assert pydicom.uid.UID(uid).is_valid


def test_file_times_are_upload_times_only_when_the_operator_says_so(folder, monkeypatch):
    import os

    os.utime(folder / "a" / "1.dcm", (1_790_000_000, 1_790_000_000))
    os.utime(folder / "a" / "deeper" / "2", (1_790_003_600, 1_790_003_600))
    monkeypatch.delenv("QC_FILE_TIMES_ARE_UPLOAD_TIMES", raising=False)
    (entry,) = [e for e in FolderSource(folder).discover() if e.study_instance_uid == "1.2.826.0.1.1"]
    assert FolderSource(folder).load(entry).received_at is None
    said = FolderSource(folder, file_times_are_upload_times=True).load(entry)
    assert said.received_at is not None and said.received_at.timestamp() == 1_790_003_600  # the latest file
    assert said.received_at.tzinfo is not None and said.received_at_is_upper_bound is False
    monkeypatch.setenv("QC_FILE_TIMES_ARE_UPLOAD_TIMES", "1")
    assert FolderSource(folder).load(entry).received_at is not None


def test_load_reads_headers_and_problems(folder):
    source = FolderSource(folder)
    entries = {e.study_instance_uid: e for e in source.discover()}
    study = source.load(entries["1.2.826.0.1.1"])
    assert [i.ref.location for i in study.instances] == ["a/1.dcm", "a/deeper/2"]
    assert all(i.is_image and "PixelData" not in i.dataset for i in study.instances)
    assert study.received_at is None  # file times are not upload times (a plain copy resets them)
    ref = study.ref()
    assert len(ref.series) == 1 and len(ref.instances) == 2 and ref.series[0].modality == "CT"
    junk = source.load(entries[uid_for_unreadable("junk.bin")])
    assert junk.instances == []
    assert [p.kind for p in junk.problems] == [ProblemKind.UNREADABLE]
    assert "not a DICOM file" in junk.problems[0].reason


def test_missing_uid_is_a_problem(tmp_path):
    write_instance(tmp_path / "x.dcm", study="1.2.826.0.1.9", series="1.2.826.0.1.9.1", sop="1.2.826.0.1.9.1.1")
    ds = pydicom.dcmread(tmp_path / "x.dcm")
    del ds.SeriesInstanceUID
    ds.save_as(tmp_path / "x.dcm")
    source = FolderSource(tmp_path)
    (entry,) = source.discover()
    study = source.load(entry)
    assert [(p.kind, p.reason) for p in study.problems] == [(ProblemKind.MISSING_UID, "SeriesInstanceUID missing")]


def test_fingerprint_tracks_content(folder):
    def prints() -> dict[str, str]:
        return {e.study_instance_uid: e.fingerprint for e in FolderSource(folder).discover()}

    first = prints()
    assert prints() == first  # stable
    (folder / "a" / "deeper" / "2").touch()  # a new mtime alone is not new content
    assert prints() == first
    write_instance(folder / "a" / "3.dcm", study="1.2.826.0.1.1", series="1.2.826.0.1.1.1", sop="1.2.826.0.1.1.1.3")
    second = prints()
    assert second["1.2.826.0.1.1"] != first["1.2.826.0.1.1"]  # an instance added
    assert second["1.2.826.0.1.2"] == first["1.2.826.0.1.2"]
    ds = pydicom.dcmread(folder / "b.dcm")
    ds.PatientBirthDate = "19991231"  # same length: only the content changes
    ds.save_as(folder / "b.dcm")
    assert prints()["1.2.826.0.1.2"] != first["1.2.826.0.1.2"]


def test_never_modifies_inputs(folder):
    before = snapshot(folder)
    source = FolderSource(folder)
    for entry in source.discover():
        source.load(entry)
    assert snapshot(folder) == before


def test_missing_folder_is_a_source_error(tmp_path):
    with pytest.raises(SourceError, match=r"does not exist or is not a folder"):
        FolderSource(tmp_path / "missing")


def test_check_says_when_the_folder_can_no_longer_be_read(tmp_path):
    root = tmp_path / "incoming"
    root.mkdir()
    source = FolderSource(root)
    source.check()  # readable, even empty
    root.rmdir()  # gone since it was opened (a network mount that went away)
    with pytest.raises(SourceError, match=r"source folder .*incoming cannot be read: No such file or directory"):
        source.check()


def test_open_source(tmp_path):
    assert isinstance(open_source(tmp_path), FolderSource)
    assert open_source(tmp_path.as_uri()).root == tmp_path.resolve()
    from qc_pipeline.sources.dicomweb import DicomWebSource

    web = open_source("http://qc:secret@127.0.0.1:8042/dicom-web/")
    assert isinstance(web, DicomWebSource)
    assert web.uri == "http://127.0.0.1:8042/dicom-web"  # credentials never kept in the URI
