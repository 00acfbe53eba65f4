"""Generated bad and unusual DICOM inputs (bad input is normal in uploads): each case is a folder of files a hospital's
gateway could upload, with the verdict and the finding the pipeline must give it.

Used by ``tests/hardening`` (every case judged, memory bounded) and by the fuzz target in
``fuzz/`` (its seed corpus). Not used by the pipeline itself. Everything is derived from fixed
seeds: the same call writes the same bytes.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
from pydicom.dataset import FileDataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless

from qc_pipeline.domain import Verdict
from qc_pipeline.samples import phantoms
from qc_pipeline.samples.writer import Geometry, PatientInfo, SeriesInfo, StudyInfo, derive_uid, image_dataset

STUDY_DATE: Final = dt.date(2026, 10, 20)
PHANTOM_SLICES: Final = 16
LYING_SIZE: Final = 60_000
"""Rows and Columns of the lying headers: 60,000² x 16 bits would be 7.2 GB."""
NAMESPACE: Final = "qc-hardening-bad-inputs"


@dataclass(frozen=True, slots=True)
class BadCase:
    """One generated case: what it is, and the verdict and finding code it must get."""

    name: str
    description: str
    verdict: Verdict
    code: str
    write: Callable[[Path], list[Path]]


def _patient(name: str = "Zhang^San=张^三", patient_id: str = "HARD-0001") -> PatientInfo:
    return PatientInfo(name=name, id=patient_id, sex="M", birth_date=dt.date(1970, 5, 6), age="056Y")


def _study(case: str) -> StudyInfo:
    return StudyInfo(
        study_instance_uid=derive_uid(NAMESPACE, case, "study"),
        date=STUDY_DATE,
        time=dt.time(9, 30),
        accession_number="ACC-HARD-" + case[:8],
        institution_name="重庆市测试医院",
        description="胸部CT平扫",
    )


@functools.cache
def _phantom(seed: int) -> npt.NDArray[np.int16]:
    volume = phantoms.ct_water_cylinder(n_slices=PHANTOM_SLICES, size=64, noise_sd_hu=10.0, seed=seed)
    volume.setflags(write=False)
    return volume


def _ct(
    case: str,
    *,
    k: int = 0,
    series: str = "ct",
    modality: str = "CT",
    patient: PatientInfo | None = None,
    charset: str = "ISO_IR 192",
    seed: int = 0,
) -> FileDataset:
    """A small valid chest CT (or MR) slice of ``case``'s study."""
    plane = _phantom(seed)[k % PHANTOM_SLICES]
    image = plane if modality == "CT" else (plane.astype(np.int32) + 1024).clip(0, 4095).astype(np.uint16)
    info = SeriesInfo(
        series_instance_uid=derive_uid(NAMESPACE, case, series),
        modality=modality,
        number=2,
        description="胸部平扫 5mm",
        body_part="CHEST",
    )
    return image_dataset(
        image,
        patient=patient or _patient(),
        study=_study(case),
        series=info,
        instance_number=k + 1,
        sop_instance_uid=derive_uid(NAMESPACE, case, series, "sop", k),
        geometry=Geometry(pixel_spacing_mm=(5.46875, 5.46875), slice_thickness_mm=5.0, first_slice_offset_mm=-40.0),
        slice_index=k,
        charset=charset,
    )


def _save(ds: FileDataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _zero_length(out: Path) -> list[Path]:
    path = out / "empty.dcm"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return [path]


def _short_pixel_data(out: Path) -> list[Path]:
    ds = _ct("short_pixel_data")
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 3]  # element length says 1/3 of Rows x Columns
    return [_save(ds, out / "IM0001.dcm")]


def _cut_file(out: Path) -> list[Path]:
    path = _save(_ct("cut_file"), out / "IM0001.dcm")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])  # element length intact, the file ends early
    return [path]


def _cut_in_header(out: Path) -> list[Path]:
    path = _save(_ct("cut_in_header"), out / "IM0001.dcm")
    path.write_bytes(path.read_bytes()[:400])
    return [path]


def _lying_header(out: Path) -> list[Path]:
    ds = _ct("lying_header")
    ds.Rows = LYING_SIZE
    ds.Columns = LYING_SIZE
    return [_save(ds, out / "IM0001.dcm")]


def _lying_frames(out: Path) -> list[Path]:
    ds = _ct("lying_frames")
    ds.NumberOfFrames = 2_000_000_000
    return [_save(ds, out / "IM0001.dcm")]


def _lying_header_compressed(out: Path) -> list[Path]:
    """60,000² declared, a few bytes of 'JPEG 2000' inside complete fragments: only a decoder
    would find out, so the budget check must refuse it before decoding."""
    ds = _ct("lying_header_compressed")
    ds.Rows = LYING_SIZE
    ds.Columns = LYING_SIZE
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + b"\0" * 60])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    return [_save(ds, out / "IM0001.dcm")]


def _mixed_modalities(out: Path) -> list[Path]:
    """One SeriesInstanceUID holding a CT slice and an MR slice."""
    paths = [_save(_ct("mixed_modalities", k=k), out / f"IM{k + 1:04d}.dcm") for k in range(3)]
    mr = _ct("mixed_modalities", k=3, modality="MR")
    mr.SeriesInstanceUID = derive_uid(NAMESPACE, "mixed_modalities", "ct")
    paths.append(_save(mr, out / "IM0004.dcm"))
    return paths


def _duplicate_sop(out: Path) -> list[Path]:
    """Two files with one SOPInstanceUID and different pixels (a resend after an edit)."""
    first = _ct("duplicate_sop", k=0, seed=1)
    second = _ct("duplicate_sop", k=0, seed=2)
    second.InstanceNumber = 2
    paths = [_save(first, out / "IM0001.dcm"), _save(second, out / "IM0001-resent.dcm")]
    third = _ct("duplicate_sop", k=2)
    paths.append(_save(third, out / "IM0003.dcm"))
    return paths


def _illegal_study_uid(out: Path) -> list[Path]:
    paths = []
    for k in range(2):
        ds = _ct("illegal_study_uid", k=k)
        ds.StudyInstanceUID = "1.2.840.10008.ABC x/../01"
        paths.append(_save(ds, out / f"IM{k + 1:04d}.dcm"))
    return paths


def _control_chars_in_uid(out: Path) -> list[Path]:
    """A NUL and a newline inside the StudyInstanceUID (PostgreSQL refuses NUL in text)."""
    ds = _ct("control_chars_in_uid")
    ds.StudyInstanceUID = "1.2.840.99\x00.7\n.1"
    return [_save(ds, out / "IM0001.dcm")]


def _overlong_study_uid(out: Path) -> list[Path]:
    ds = _ct("overlong_study_uid")
    ds.StudyInstanceUID = "1.2." + "9" * 80
    return [_save(ds, out / "IM0001.dcm")]


def _name_in(charset: str, case: str) -> Callable[[Path], list[Path]]:
    def write(out: Path) -> list[Path]:
        patient = _patient(name="Wang^Xiaoming=王^小明", patient_id="HARD-" + case[-4:])
        return [
            _save(_ct(case, k=k, patient=patient, charset=charset), out / f"IM{k + 1:04d}.dcm")
            for k in range(PHANTOM_SLICES)
        ]

    return write


def _wrong_charset(out: Path) -> list[Path]:
    """GB18030 bytes in PatientName under a declared UTF-8 character set."""
    path = _save(_ct("wrong_charset", patient=_patient(name="XXXXXXXX")), out / "IM0001.dcm")
    data = path.read_bytes()
    gb = "李^四四".encode("gb18030")
    path.write_bytes(data.replace(b"XXXXXXXX", gb + b" " * (8 - len(gb))))
    return [path]


def _unknown_charset(out: Path) -> list[Path]:
    path = _save(_ct("unknown_charset", patient=_patient(name="Li^Si")), out / "IM0001.dcm")
    data = path.read_bytes()
    path.write_bytes(data.replace(b"ISO_IR 192", b"ISO_IR 999"))
    return [path]


def _huge_element_length(out: Path) -> list[Path]:
    """StudyDescription whose length field claims 4 GB - 16 bytes (explicit VR, UT)."""
    path = _save(_ct("huge_element_length"), out / "IM0001.dcm")
    data = bytearray(path.read_bytes())
    tag = struct.pack("<HH", 0x0008, 0x1030)  # StudyDescription, LO: 2-byte length
    at = data.find(tag, 132)
    if at < 0:  # pragma: no cover - the writer always sets it
        raise RuntimeError("StudyDescription not found")
    data[at + 4 : at + 8] = b"LO" + struct.pack("<H", 0xFFF0)
    path.write_bytes(bytes(data))
    return [path]


def _not_dicom(out: Path) -> list[Path]:
    # named like an upload (no suffix): a file named report.pdf is skipped by the folder scan as
    # not DICOM (tests/sources/test_folder_scan.py); one named as an image must be judged
    path = out / "IM000123"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 8)
    return [path]


def _dicm_garbage(out: Path) -> list[Path]:
    """A valid preamble and DICM prefix followed by noise."""
    path = out / "IM0001.dcm"
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(7).integers(0, 256, size=4096, dtype=np.uint8).tobytes()
    path.write_bytes(b"\0" * 128 + b"DICM" + noise)
    return [path]


CASES: Final[tuple[BadCase, ...]] = (
    BadCase("zero_length", "a zero-length file", Verdict.FAIL, "integrity.file.unreadable", _zero_length),
    BadCase(
        "short_pixel_data",
        "Pixel Data shorter than Rows x Columns x BitsAllocated",
        Verdict.FAIL,
        "integrity.pixel_data.truncated",
        _short_pixel_data,
    ),
    BadCase(
        "cut_file",
        "the file ends 100 bytes before its Pixel Data does",
        Verdict.FAIL,
        "integrity.pixel_data.truncated",
        _cut_file,
    ),
    BadCase(
        "cut_in_header",
        "the file ends inside its header (400 bytes: no series or SOP UID left)",
        Verdict.FAIL,
        "integrity.header.missing_uid",
        _cut_in_header,
    ),
    BadCase(
        "lying_header",
        "Rows = Columns = 60,000 over a 16x16 image",
        Verdict.FAIL,
        "integrity.pixel_data.truncated",
        _lying_header,
    ),
    BadCase(
        "lying_frames",
        "NumberOfFrames = 2,000,000,000 over one 16x16 frame",
        Verdict.FAIL,
        "integrity.pixel_data.truncated",
        _lying_frames,
    ),
    BadCase(
        "lying_header_compressed",
        "Rows = Columns = 60,000 over a 64-byte JPEG 2000 fragment",
        Verdict.REVIEW,
        "image_quality.pixels.not_decoded",
        _lying_header_compressed,
    ),
    BadCase(
        "mixed_modalities",
        "one series holding CT and MR images",
        Verdict.FAIL,
        "integrity.series.mixed_modality",
        _mixed_modalities,
    ),
    BadCase(
        "duplicate_sop",
        "two files with one SOPInstanceUID and different content",
        Verdict.FAIL,
        "integrity.instance.duplicate_uid",
        _duplicate_sop,
    ),
    BadCase(
        "illegal_study_uid",
        "StudyInstanceUID with letters, Chinese and slashes",
        Verdict.FAIL,
        "integrity.uid.invalid",
        _illegal_study_uid,
    ),
    BadCase(
        "control_chars_in_uid",
        "StudyInstanceUID with a NUL and a newline inside",
        Verdict.FAIL,
        "integrity.uid.invalid",
        _control_chars_in_uid,
    ),
    BadCase(
        "overlong_study_uid",
        "StudyInstanceUID of 84 characters",
        Verdict.FAIL,
        "integrity.uid.invalid",
        _overlong_study_uid,
    ),
    BadCase(
        "gb18030_name",
        "Chinese patient name in GB18030",
        Verdict.PASS,
        "catalog.item.matched",
        _name_in("GB18030", "gb18030_name"),
    ),
    BadCase(
        "utf8_name",
        "Chinese patient name in UTF-8 (ISO_IR 192)",
        Verdict.PASS,
        "catalog.item.matched",
        _name_in("ISO_IR 192", "utf8_name"),
    ),
    BadCase(
        "wrong_charset",
        "GB18030 bytes under a declared UTF-8 character set",
        Verdict.REVIEW,
        "metadata.patient_name.invalid",
        _wrong_charset,
    ),
    BadCase(
        "unknown_charset",
        "SpecificCharacterSet ISO_IR 999 (no such set)",
        Verdict.REVIEW,
        "metadata.charset.unknown",
        _unknown_charset,
    ),
    BadCase(
        "huge_element_length",
        "StudyDescription's length field claims 65,520 bytes: it swallows the UIDs after it",
        Verdict.FAIL,
        "integrity.header.missing_uid",
        _huge_element_length,
    ),
    BadCase(
        "not_dicom", "PDF bytes in a file named like an image", Verdict.FAIL, "integrity.file.unreadable", _not_dicom
    ),
    BadCase(
        "dicm_garbage",
        "preamble and DICM prefix, then noise",
        Verdict.FAIL,
        "integrity.header.missing_uid",
        _dicm_garbage,
    ),
)


RECEIVED_AT: Final = dt.datetime(2026, 10, 20, 3, 0, tzinfo=dt.UTC)
"""File times of the written cases: 1.5 h after the exam (Asia/Shanghai), uploaded in time."""


def write_case(case: BadCase, out: Path) -> list[Path]:
    """Write ``case`` into ``out`` (a folder of its own); file times are ``RECEIVED_AT``."""
    paths = case.write(Path(out))
    stamp = RECEIVED_AT.timestamp()
    for path in paths:
        os.utime(path, (stamp, stamp))
    return paths


def write_all(out: Path) -> dict[str, list[Path]]:
    """Every case in ``out/<case name>/``."""
    return {case.name: write_case(case, Path(out) / case.name) for case in CASES}
