"""Scanning a run folder: non-DICOM files are skipped (listed once), directory links are followed."""

from __future__ import annotations

import os
from pathlib import Path

from click.testing import CliRunner

from qc_pipeline.cli import main
from qc_pipeline.sources import FolderSource

from .test_folder import write_instance

NOT_DICOM = ("DICOMDIR", "readme.txt", "photo.jpg", "list.csv", "brain.nii", "export.zip")


def test_non_dicom_files_are_skipped_and_listed_not_judged(tmp_path: Path) -> None:
    write_instance(tmp_path / "s1" / "a.dcm", study="1.2.3.1", series="1.2.3.1.1", sop="1.2.3.1.1.1")
    for name in NOT_DICOM:
        (tmp_path / "s1" / name).write_bytes(b"not dicom at all\n" * 20)
    (tmp_path / "s1" / "broken.dcm").write_bytes(b"\0" * 300)  # looks like ours: judged (unreadable), never skipped
    source = FolderSource(tmp_path)
    entries = list(source.discover())
    assert sorted(source.skipped) == sorted(f"s1/{n}" for n in NOT_DICOM)
    assert [e.study_instance_uid for e in entries if e.uid_readable] == ["1.2.3.1"]
    assert [e.locations for e in entries if not e.uid_readable] == [("s1/broken.dcm",)]


def test_a_dicom_file_with_a_misleading_name_is_still_read(tmp_path: Path) -> None:
    write_instance(tmp_path / "x.txt", study="1.2.3.2", series="1.2.3.2.1", sop="1.2.3.2.1.1")
    source = FolderSource(tmp_path)
    assert [e.study_instance_uid for e in source.discover()] == ["1.2.3.2"] and source.skipped == []


def test_directory_links_are_followed_once_even_in_a_loop(tmp_path: Path) -> None:
    real = tmp_path / "nas" / "study1"
    write_instance(real / "a.dcm", study="1.2.3.3", series="1.2.3.3.1", sop="1.2.3.3.1.1")
    root = tmp_path / "run"
    root.mkdir()
    os.symlink(real, root / "study1")
    os.symlink(root, root / "study1-loop")  # a link back to the folder itself
    entries = list(FolderSource(root).discover())
    assert [(e.study_instance_uid, e.locations) for e in entries] == [("1.2.3.3", ("study1/a.dcm",))]


def test_an_empty_folder_says_no_dicom_files_and_exits_non_zero(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("nothing here")
    result = CliRunner().invoke(main, ["run", str(tmp_path / "in"), "--db", f"sqlite:///{tmp_path / 'r.sqlite'}"])
    assert result.exit_code == 1, result.output
    assert "no DICOM files found" in result.output and "未找到 DICOM 文件" in result.output
