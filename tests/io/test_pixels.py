"""Decoding a series once into a float32 volume: order, rescale, codecs, lies and budgets."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from qc_pipeline.errors import DegenerateInputError
from qc_pipeline.io.pixels import load_image, load_series


def sample_file(name: str) -> Path:
    path = get_testdata_file(name)
    assert path is not None, f"pydicom test file {name} not found"
    return Path(path)


def reference_pixels(path: Path) -> np.ndarray:
    """The independent expectation: pydicom's own decode, rescaled by the header's slope/intercept."""
    ds = pydicom.dcmread(path)
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    return ds.pixel_array.astype(np.float64) * slope + intercept


def write_stack(tmp_path: Path, z_positions: list[float], *, name: str = "CT_small.dcm") -> list[Path]:
    """One real CT slice repeated at the given z, each with its own pixel offset (value = index)."""
    series_uid = generate_uid()
    paths = []
    for index, z in enumerate(z_positions):
        ds = pydicom.dcmread(sample_file(name))
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.ImagePositionPatient = [-158.1, -179.0, z]
        ds.InstanceNumber = index + 1
        pixels = ds.pixel_array.copy()
        pixels[0, 0] = index  # marks which file a slice came from
        ds.PixelData = pixels.tobytes()
        path = tmp_path / f"slice{index:03d}.dcm"
        ds.save_as(path)
        paths.append(path)
    return paths


def test_ct_slice_rescaled_like_pydicom():
    path = sample_file("CT_small.dcm")
    volume = load_series([path])
    assert volume.array.shape == (1, 128, 128)
    assert volume.array.dtype == np.float32
    np.testing.assert_array_equal(volume.array[0], reference_pixels(path))
    assert volume.spacing_mm[1:] == pytest.approx((0.661468, 0.661468))
    assert volume.modality == "CT"
    assert not volume.array.flags.writeable


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm"])
def test_lossless_codecs_decode_to_the_uncompressed_pixels(name):
    # Same image, stored in another transfer syntax by pydicom's maintainers: lossless, so identical.
    expected = load_series([sample_file("MR_small.dcm")]).array
    np.testing.assert_array_equal(load_series([sample_file(name)]).array, expected)


def test_slices_sorted_along_the_normal_whatever_the_file_order(tmp_path):
    z = [10.0, 12.5, 15.0, 17.5, 20.0]
    paths = write_stack(tmp_path, z)
    shuffled = list(paths)
    random.Random(3).shuffle(shuffled)
    volume = load_series(shuffled)
    assert volume.positions_mm == pytest.approx(tuple(z))
    assert volume.spacing_mm[0] == pytest.approx(2.5)
    # Each slice carries its file's index in pixel (0, 0): the order is by position.
    assert [int(v) for v in volume.array[:, 0, 0] - volume.array[0, 0, 0]] == [0, 1, 2, 3, 4]
    assert [ds.SOPInstanceUID for ds in volume.datasets] == [
        pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in paths
    ]


def test_slices_without_position_fall_back_to_instance_number(tmp_path):
    paths = write_stack(tmp_path, [30.0, 20.0, 10.0])
    for path in paths:
        ds = pydicom.dcmread(path)
        del ds.ImagePositionPatient
        ds.save_as(path)
    volume = load_series(list(reversed(paths)))
    assert volume.positions_mm is None
    assert [int(ds.InstanceNumber) for ds in volume.datasets] == [1, 2, 3]


def test_mixed_matrix_sizes_are_refused(tmp_path):
    paths = write_stack(tmp_path, [1.0, 2.0])
    paths.append(sample_file("MR_small.dcm"))
    with pytest.raises(DegenerateInputError, match=r"mixed matrix sizes .*128x128.*64x64"):
        load_series(paths)


def test_header_that_lies_about_its_size_is_refused_before_decoding(tmp_path):
    ds = pydicom.dcmread(sample_file("CT_small.dcm"))
    ds.Rows = 60000
    ds.Columns = 60000
    path = tmp_path / "liar.dcm"
    ds.save_as(path)
    with pytest.raises(DegenerateInputError, match=r"Rows=60000 x Columns=60000: more than 16384 pixels on a side"):
        load_series([path])


def test_a_plausible_side_over_the_budget_is_refused_by_the_budget(tmp_path):
    ds = pydicom.dcmread(sample_file("CT_small.dcm"))
    ds.Rows = ds.Columns = 8000
    path = tmp_path / "liar.dcm"
    ds.save_as(path)
    with pytest.raises(DegenerateInputError, match=r"more than max_bytes=.*Rows=8000 x Columns=8000"):
        load_series([path], max_bytes=64 * 1024**2)


def test_budget_counts_the_whole_series(tmp_path):
    paths = write_stack(tmp_path, [1.0, 2.0, 3.0])
    one_slice = 128 * 128 * 4
    assert load_series(paths, max_bytes=4 * one_slice).array.shape == (3, 128, 128)
    with pytest.raises(DegenerateInputError, match="max_bytes"):
        load_series(paths, max_bytes=2 * one_slice)


def test_truncated_pixel_data_is_refused():
    with pytest.raises(DegenerateInputError, match=r"MR_truncated.dcm: truncated pixel data"):
        load_series([sample_file("MR_truncated.dcm")])


def test_file_without_pixel_data_is_refused():
    with pytest.raises(DegenerateInputError, match=r"no Pixel Data element"):
        load_series([sample_file("rtplan.dcm")])


def test_empty_series_and_bad_budget():
    with pytest.raises(DegenerateInputError, match="no paths"):
        load_series([])
    with pytest.raises(ValueError, match="max_bytes must be >= 1"):
        load_series([sample_file("CT_small.dcm")], max_bytes=0)


def test_monochrome1_is_inverted_over_the_stored_range(tmp_path):
    # MR_small holds values 0..2145 in 16 bits; store them as 12-bit MONOCHROME1 (4095 - v):
    # inverting over the 12-bit range must give back the original values exactly.
    original = pydicom.dcmread(sample_file("MR_small.dcm"))
    values = original.pixel_array.astype(np.int32)
    assert values.min() >= 0 and values.max() <= 4095
    ds = pydicom.dcmread(sample_file("MR_small.dcm"))
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = (4095 - values).astype(np.uint16).tobytes()
    path = tmp_path / "mono1.dcm"
    ds.save_as(path)
    image = load_image(path)
    assert image.inverted and image.photometric == "MONOCHROME1"
    np.testing.assert_array_equal(image.array, values.astype(np.float32))
    assert image.spacing_mm == pytest.approx((0.3125, 0.3125))


def test_load_image_refuses_multiframe():
    with pytest.raises(DegenerateInputError, match="10 frames; load_image reads single-frame"):
        load_image(sample_file("emri_small.dcm"))


def test_load_series_decodes_with_headers_read_before_and_does_not_parse_them_again(tmp_path, monkeypatch):
    from qc_pipeline.io import dicom as dicom_io
    from qc_pipeline.io import pixels as pixels_io

    paths = write_stack(tmp_path, [10.0, 0.0, 5.0])
    headers = [dicom_io.read_header(p) for p in paths]
    expected = load_series(paths)

    def no_second_read(path):
        raise AssertionError(f"{path} parsed again")

    monkeypatch.setattr(pixels_io, "read_header", no_second_read)
    volume = load_series(paths, headers=headers)
    np.testing.assert_array_equal(volume.array, expected.array)
    assert volume.positions_mm == expected.positions_mm and volume.slice_sources == expected.slice_sources
    assert load_image(paths[0], header=headers[0]).array.shape == expected.array.shape[1:]
    with pytest.raises(ValueError, match="2 headers for 3 paths"):
        load_series(paths, headers=headers[:2])
