"""Decoding that pydicom's plugins refuse but the standard allows, and lossy coding recorded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file

from qc_pipeline.io.pixels import load_series, lossy_compression, sequential_scan_fixed

WG04 = Path(__file__).resolve().parents[1] / "data" / "wg04"


def test_12_bit_lossy_jpeg_decodes_like_the_jpeg_2000_copy():
    jpeg = load_series([WG04 / "MR4_JPLY"])  # 1.2.840.10008.1.2.4.51, scan header Se = 0
    j2k = load_series([WG04 / "MR4_J2KI"])  # the same image, irreversible JPEG 2000 (openjpeg)
    assert jpeg.array.shape == j2k.array.shape == (1, 512, 512)
    # two lossy codings of one image (ratios 33 and 51): the same picture, not the same noise
    assert np.corrcoef(jpeg.array.ravel(), j2k.array.ravel())[0, 1] > 0.999


def test_scan_header_fix_only_touches_sequential_jpeg():
    ds = pydicom.dcmread(WG04 / "MR4_JPLY")
    (frame,) = pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=1)
    fixed = sequential_scan_fixed(frame)
    assert fixed is not None and len(fixed) == len(frame)
    assert sum(a != b for a, b in zip(fixed, frame, strict=True)) == 1  # Se: 0 -> 63
    assert sequential_scan_fixed(fixed) is None
    assert sequential_scan_fixed(b"\x00\x01") is None


def test_a_file_without_file_meta_decodes(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    expected = ds.pixel_array.astype(np.float32)
    del ds.file_meta
    ds.preamble = None
    path = tmp_path / "no_meta.dcm"
    ds.save_as(path, implicit_vr=False, little_endian=True, enforce_file_format=False)
    assert path.read_bytes()[:4] != b"DICM"
    volume = load_series([path])
    np.testing.assert_array_equal(
        volume.array[0], expected * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))
    )


def test_lossy_compression_is_read_from_the_header():
    mr = pydicom.dcmread(WG04 / "MR4_JPLY", stop_before_pixels=True)
    assert "LossyImageCompression (0028,2110) = 01" in lossy_compression(mr)
    assert "1.2.840.10008.1.2.4.51 JPEG Extended" in lossy_compression(mr)
    ct = pydicom.dcmread(WG04 / "CT2_J2KI", stop_before_pixels=True)
    assert "1.2.840.10008.1.2.4.91 JPEG 2000" in lossy_compression(ct)
    assert lossy_compression(pydicom.dcmread(get_testdata_file("MR_small.dcm"), stop_before_pixels=True)) is None
    ct.LossyImageCompression = "00"  # a reversible JPEG 2000
    assert lossy_compression(ct) is None


def test_lossy_history_survives_decompression():
    # pydicom-data MR2_UNCI: stored uncompressed, but decoded from an 18:1 irreversible JPEG 2000
    import data_store

    path = Path(data_store.__file__).parent / "data" / "MR2_UNCI.dcm"
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    assert lossy_compression(ds) == "LossyImageCompression (0028,2110) = 01, method ISO_15444_1, ratio 18"
    uncompressed = pydicom.dcmread(Path(data_store.__file__).parent / "data" / "MR2_UNCR.dcm", stop_before_pixels=True)
    assert lossy_compression(uncompressed) is None
