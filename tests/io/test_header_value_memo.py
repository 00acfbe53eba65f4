"""Reused element values (the header-reading memo in ``qc_pipeline.io.dicom``).

The memo must be invisible: every value read through it equals what pydicom's own conversion
gives, a multi-valued element is a list of its own in each dataset, and a value that cannot be
converted fails on every file, not only the first.
"""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_charset_files, get_testdata_file
from pydicom.dataelem import RawDataElement
from pydicom.hooks import hooks, raw_element_value
from pydicom.multival import MultiValue
from pydicom.tag import Tag

from qc_pipeline.io import dicom

# pydicom's own test files: little and big endian, implicit and explicit VR; and its character
# set files (ISO 2022 with escapes, multi-byte, person names with ideographic groups, a sequence
# with its own character set).
FILES = [
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_implicit.dcm",
    "rtplan.dcm",
    "SC_rgb.dcm",
    "US1_UNCR.dcm",
]
CHARSET_FILES = [
    "chrH31.dcm",
    "chrH32.dcm",
    "chrX1.dcm",
    "chrX2.dcm",
    "chrJapMulti.dcm",
    "chrKoreanMulti.dcm",
    "chrSQEncoding.dcm",
    "chrSQEncoding1.dcm",
    "chrRuss.dcm",
    "chrGreek.dcm",
]


def _path(name: str) -> Path:
    found = get_testdata_file(name) or next(iter(get_charset_files(name)), None)
    assert found is not None, f"pydicom test file {name} not found"
    return Path(found)


def _values(ds: pydicom.Dataset) -> list[tuple[str, str, object]]:
    out = []
    for element in ds.iterall():
        value = element.value
        if element.VR == "SQ":
            continue
        out.append((str(element.tag), element.VR, list(value) if isinstance(value, MultiValue) else value))
    return out


def _read_with(callback, path: Path) -> list[tuple[str, str, object]]:
    hooks.register_callback("raw_element_value", callback)
    try:
        return _values(pydicom.dcmread(path, stop_before_pixels=True))
    finally:
        hooks.register_callback("raw_element_value", dicom._cached_raw_element_value)


@pytest.mark.parametrize("name", FILES + CHARSET_FILES)
def test_values_equal_pydicoms_own_conversion(name):
    path = _path(name)
    expected = _read_with(raw_element_value, path)
    dicom._value_cache.clear()
    first = _read_with(dicom._cached_raw_element_value, path)  # fills the memo
    second = _read_with(dicom._cached_raw_element_value, path)  # served from it
    assert first == expected
    assert second == expected
    assert dicom._value_cache  # the memo was used


def test_multi_valued_elements_are_not_shared():
    path = _path("CT_small.dcm")
    dicom._value_cache.clear()
    first = dicom.read_header(path).dataset  # fills the memo
    second = dicom.read_header(path).dataset  # served from it
    third = dicom.read_header(path).dataset
    assert first.ImageOrientationPatient == second.ImageOrientationPatient == third.ImageOrientationPatient
    assert second.ImageOrientationPatient is not third.ImageOrientationPatient
    second.ImageOrientationPatient[0] = 0.5
    assert third.ImageOrientationPatient[0] != 0.5
    assert dicom.read_header(path).dataset.ImageOrientationPatient[0] != 0.5


def test_a_value_that_cannot_be_converted_fails_every_time():
    # An Unknown-VR element cannot be converted: pydicom raises, and so must every later read of
    # the same bytes (a failure is not remembered as a value).
    raw = RawDataElement(Tag(0x0009, 0x1001), "ZZ", 4, b"abcd", 0, False, True)
    for _ in range(2):
        with pytest.raises(NotImplementedError, match="Unknown Value Representation"):
            dicom._cached_raw_element_value(raw, {"VR": "ZZ"})
    assert not any(key[1] == "ZZ" for key in dicom._value_cache)


def test_the_memo_is_bounded(monkeypatch):
    monkeypatch.setattr(dicom, "_VALUE_CACHE_MAX_ENTRIES", 8)
    dicom._value_cache.clear()
    for i in range(50):
        raw = RawDataElement(Tag(0x0020, 0x0013), "IS", 4, f"{i:4d}".encode(), 0, False, True)
        data = {"VR": "IS"}
        dicom._cached_raw_element_value(raw, data)
        assert data["value"] == i
    assert len(dicom._value_cache) <= 8
