"""Header reading on pydicom's malformed and unusual test files (a ready bad-input corpus)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from qc_pipeline.io.dicom import is_image, read_header


def sample_file(name: str) -> Path:
    path = get_testdata_file(name)
    assert path is not None, f"pydicom test file {name} not found"
    return Path(path)


def test_good_ct_header_without_pixels():
    result = read_header(sample_file("CT_small.dcm"))
    assert result.error is None
    assert result.dataset.Modality == "CT"
    assert "PixelData" not in result.dataset
    assert result.pixel_data.present and not result.pixel_data.truncated
    assert result.pixel_data.expected_bytes == result.pixel_data.declared_bytes == 128 * 128 * 2


def test_truncated_pixel_data_is_detected():
    # pydicom's MR_truncated.dcm: header intact, pixel data cut short.
    result = read_header(sample_file("MR_truncated.dcm"))
    assert result.error is None
    assert result.pixel_data.truncated
    assert result.pixel_data.available_bytes < result.pixel_data.declared_bytes
    assert "the file holds" in result.pixel_data.describe()


def test_file_without_preamble_is_read(tmp_path):
    import pydicom

    ds = pydicom.dcmread(sample_file("CT_small.dcm"))
    from pydicom.dataset import FileMetaDataset

    ds.preamble = None
    ds.file_meta = FileMetaDataset()
    path = tmp_path / "raw.dcm"
    ds.save_as(path, enforce_file_format=False, implicit_vr=True, little_endian=True)
    raw = path.read_bytes()
    assert raw[128:132] != b"DICM"  # written as a bare dataset, as old writers do
    result = read_header(path)
    assert result.error is None
    assert result.dataset.SOPInstanceUID == ds.SOPInstanceUID
    assert not result.pixel_data.truncated


def test_pydicom_no_meta_file_is_unreadable():
    # pydicom's no_meta.dcm has no file meta and does not parse as a dataset either.
    result = read_header(sample_file("no_meta.dcm"))
    assert result.dataset is None
    assert "not a DICOM file" in result.error


def test_big_endian_enhanced_mr():
    result = read_header(sample_file("emri_small_big_endian.dcm"))
    assert result.error is None
    assert not result.pixel_data.truncated
    assert result.pixel_data.declared_bytes == result.pixel_data.expected_bytes == 10 * 64 * 64 * 2


def test_encapsulated_pixel_data_cut_before_delimiter(tmp_path):
    source = sample_file("JPEG2000.dcm")
    whole = read_header(source)
    assert whole.pixel_data.encapsulated and not whole.pixel_data.truncated
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(source.read_bytes()[:-100])
    result = read_header(cut)
    assert result.pixel_data.truncated
    assert "runs past the end of the file" in result.pixel_data.describe()


def test_lying_header_costs_nothing(tmp_path):
    """Rows x Columns of 60,000 x 60,000 with a small pixel element: flagged, not allocated."""
    import pydicom

    ds = pydicom.dcmread(sample_file("CT_small.dcm"))
    ds.Rows = 60000
    ds.Columns = 60000
    path = tmp_path / "liar.dcm"
    ds.save_as(path)
    result = read_header(path)
    assert result.error is None
    assert result.pixel_data.truncated
    assert result.pixel_data.expected_bytes == 60000 * 60000 * 2


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"", "empty file"), (bytes(range(256)) * 8, "not a DICOM file"), (b"DICM" * 40, "header cannot be parsed")],
)
def test_unreadable_files_give_a_reason(tmp_path, content, reason):
    path = tmp_path / "x.dcm"
    path.write_bytes(content)
    result = read_header(path)
    assert result.dataset is None
    assert reason in result.error


def test_cut_inside_the_header(tmp_path):
    path = tmp_path / "head.dcm"
    path.write_bytes(sample_file("CT_small.dcm").read_bytes()[:700])
    result = read_header(path)
    # Either pydicom refuses the header, or what it read is flagged as missing its pixels.
    assert result.error is not None or not result.pixel_data.present


@pytest.mark.parametrize(
    ("name", "image"), [("test-SR.dcm", False), ("rtplan.dcm", False), ("CT_small.dcm", True), ("MR_small.dcm", True)]
)
def test_image_or_not(name, image):
    result = read_header(sample_file(name))
    assert is_image(result.dataset, result.pixel_data) is image


def test_reading_never_modifies(tmp_path):
    path = tmp_path / "ct.dcm"
    shutil.copy(sample_file("CT_small.dcm"), path)
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    read_header(path)
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before
