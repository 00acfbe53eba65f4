"""Valid DICOM Part-10 files from arrays, and real sample files re-identified for a demo.

Explicit VR Little Endian, uncompressed, written with pydicom's ``save_as(...,
enforce_file_format=True)``. Patient, study and series attributes come from small frozen
dataclasses; in all of them ``None`` leaves the tag out and ``""`` writes it present but empty
(a DICOM type-2 attribute without a value), so defects can be made on purpose.

UIDs are derived, never random: ``derive_uid`` hashes its arguments into a name-based UUID
under the 2.25 root, so the same inputs give byte-identical files. (pydicom 3.0's
``generate_uid(prefix=None, entropy_srcs=...)`` ignores ``entropy_srcs`` and returns a random
UUID, and with a prefix it joins the sources without a separator; hence our own function.)
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import struct
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.uid import (
    RE_VALID_UID,
    UID,
    ComputedRadiographyImageStorage,
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    MRImageStorage,
)

logger = logging.getLogger(__name__)

DEFAULT_CHARSET: Final = "ISO_IR 192"
"""UTF-8: any Chinese or Latin text."""
SUPPORTED_CHARSETS: Final = frozenset({"ISO_IR 6", "ISO_IR 100", "ISO_IR 192", "GB18030", "GBK"})
"""Single-byte Latin and the single-value Chinese sets DICOM defines (PS3.3 C.12.1.1.2)."""

SOP_CLASS_BY_MODALITY: Final[Mapping[str, UID]] = {
    "CT": CTImageStorage,
    "MR": MRImageStorage,
    "DX": DigitalXRayImageStorageForPresentation,
    "CR": ComputedRadiographyImageStorage,
}
CT_RESCALE_INTERCEPT: Final = -1024
"""Stored value = HU + 1024, in 12 unsigned bits."""

# Attributes that identify or locate one object; rewrite_file maps every value they hold to a
# new derived UID (consistently within the file), leaving class, coding-scheme and
# transfer-syntax UIDs untouched.
_INSTANCE_UID_KEYWORDS: Final = frozenset(
    {
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "FrameOfReferenceUID",
        "ReferencedSOPInstanceUID",
        "ReferencedFrameOfReferenceUID",
        "RelatedFrameOfReferenceUID",
        "SynchronizationFrameOfReferenceUID",
        "IrradiationEventUID",
        "ConcatenationUID",
        "DimensionOrganizationUID",
    }
)
# Patient attributes beyond PatientInfo that a real file may carry: removed on rewrite.
_PATIENT_EXTRA_KEYWORDS: Final = (
    "OtherPatientIDs",
    "OtherPatientIDsSequence",
    "OtherPatientNames",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "PatientBirthTime",
    "PatientMotherBirthName",
    "PatientComments",
    "TimezoneOffsetFromUTC",  # the rewritten dates are local to the site
)
_PATIENT_KEYWORDS: Final = frozenset({"PatientBirthDate", "PatientBirthTime"})
UID_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "https://qc-pipeline.invalid/samples")
"""The namespace of the name-based UUIDs behind ``derive_uid``; changing it changes every UID."""


def derive_uid(*parts: object) -> UID:
    """A UID derived from ``parts``: same parts, same UID; different parts, different UIDs.

    UID = "2.25." + the decimal integer of uuid5(UID_NAMESPACE, parts joined by NUL), a
    name-based (SHA-1) UUID as DICOM PS3.5 §B.2 and ISO/IEC 9834-8 allow; at most 44 characters.
    """
    if not parts:
        raise ValueError("derive_uid needs at least one part to hash")
    name = "\0".join(str(p) for p in parts)
    return UID(f"2.25.{uuid.uuid5(UID_NAMESPACE, name).int}")


def dicom_date(value: dt.date | str) -> str:
    """DA text: a date as YYYYMMDD; a str is taken as it is (to write invalid dates on purpose)."""
    return value if isinstance(value, str) else value.strftime("%Y%m%d")


def dicom_time(value: dt.time | str) -> str:
    """TM text: HHMMSS, with .FFFFFF when the time has microseconds; a str is taken as it is."""
    if isinstance(value, str):
        return value
    return value.strftime("%H%M%S.%f") if value.microsecond else value.strftime("%H%M%S")


def age_string(birth: dt.date, on: dt.date) -> str:
    """PatientAge (AS) as a scanner writes it: completed years ("045Y"), or months under 2 years,
    or days under 1 month. Raises ValueError when ``on`` is before ``birth``."""
    if on < birth:
        raise ValueError(f"age at {on.isoformat()} of a patient born {birth.isoformat()} is negative")
    months = (on.year - birth.year) * 12 + on.month - birth.month - (on.day < birth.day)
    if months >= 24:
        return f"{months // 12:03d}Y"
    if months >= 1:
        return f"{months:03d}M"
    return f"{(on - birth).days:03d}D"


@dataclass(frozen=True, slots=True)
class PatientInfo:
    """Patient module values. ``None`` leaves a tag out, ``""`` writes it empty.

    ``name`` may use DICOM PN groups: ``"Zhang^San=张^三"`` (alphabetic=ideographic).
    ``birth_date`` may be a str to write an invalid value on purpose.
    """

    name: str | None
    id: str | None
    sex: str | None
    birth_date: dt.date | str | None
    age: str | None = None
    """PatientAge (0010,1010), e.g. ``"045Y"`` (see ``age_string``); None leaves it out."""


@dataclass(frozen=True, slots=True)
class StudyInfo:
    """General Study module values plus the institution. ``None`` leaves a tag out."""

    study_instance_uid: str
    date: dt.date | str | None
    time: dt.time | str | None
    accession_number: str | None
    institution_name: str | None
    description: str | None
    referring_physician: str | None = ""
    study_id: str | None = "1"


@dataclass(frozen=True, slots=True)
class SeriesInfo:
    """General Series and equipment values of one series.

    ``extra`` holds further keyword -> value pairs written into every image of the series (MR
    sequence parameters, ViewPosition, KVP...); they are applied last and win over defaults.
    A value of None in ``extra`` removes that tag.
    """

    series_instance_uid: str
    modality: str
    number: int
    description: str | None
    body_part: str | None = None
    protocol_name: str | None = None
    manufacturer: str | None = "QC Pipeline Phantoms"
    model: str | None = None
    station_name: str | None = None
    frame_of_reference_uid: str | None = None
    """CT/MR only; None derives one from the study UID (all series of a study share it)."""
    extra: Mapping[str, object] = field(default_factory=dict)


class Plane(StrEnum):
    """Acquisition plane of a CT/MR series."""

    AXIAL = "AXIAL"
    SAGITTAL = "SAGITTAL"
    CORONAL = "CORONAL"


# ImageOrientationPatient (row direction cosines, then column direction cosines), LPS.
ORIENTATION: Final[Mapping[Plane, tuple[float, float, float, float, float, float]]] = {
    Plane.AXIAL: (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    Plane.SAGITTAL: (0.0, 1.0, 0.0, 0.0, 0.0, -1.0),
    Plane.CORONAL: (1.0, 0.0, 0.0, 0.0, 0.0, -1.0),
}


@dataclass(frozen=True, slots=True)
class Geometry:
    """Where the slices of a CT/MR series lie, in patient coordinates (mm, LPS).

    Slice k lies at ImagePositionPatient = origin + k * spacing * n, with n = row x col (the
    normal of ImageOrientationPatient) and spacing = ``slice_spacing_mm`` or, when None, the
    slice thickness (contiguous slices). ``origin_mm`` None centres slice 0's grid on the axis.
    For radiographs only ``pixel_spacing_mm`` is used (as ImagerPixelSpacing).
    """

    pixel_spacing_mm: tuple[float, float] = (0.7, 0.7)
    """(row spacing, column spacing): the distance between rows, then between columns."""
    slice_thickness_mm: float = 5.0
    slice_spacing_mm: float | None = None
    plane: Plane = Plane.AXIAL
    origin_mm: tuple[float, float, float] | None = None
    first_slice_offset_mm: float = 0.0
    """Distance of slice 0 from the origin along the normal (e.g. a table position)."""

    def __post_init__(self) -> None:
        if min(self.pixel_spacing_mm) <= 0:
            raise ValueError(f"pixel_spacing_mm must be > 0, got {self.pixel_spacing_mm!r}")
        if self.slice_thickness_mm <= 0:
            raise ValueError(f"slice_thickness_mm must be > 0, got {self.slice_thickness_mm!r}")
        if self.slice_spacing_mm is not None and self.slice_spacing_mm <= 0:
            raise ValueError(f"slice_spacing_mm must be > 0 or None, got {self.slice_spacing_mm!r}")

    @property
    def orientation(self) -> tuple[float, float, float, float, float, float]:
        return ORIENTATION[self.plane]

    @property
    def normal(self) -> npt.NDArray[np.float64]:
        o = np.asarray(self.orientation)
        return np.cross(o[:3], o[3:])

    def position(self, index: int, *, rows: int, cols: int) -> tuple[float, float, float]:
        """ImagePositionPatient (centre of the first transmitted pixel) of slice ``index``."""
        o = np.asarray(self.orientation)
        row_dir, col_dir = o[:3], o[3:]
        if self.origin_mm is None:
            # centre the grid: the first pixel sits half the field of view before the axis
            origin = (
                -(cols - 1) / 2 * self.pixel_spacing_mm[1] * row_dir
                - (rows - 1) / 2 * self.pixel_spacing_mm[0] * col_dir
            )
        else:
            origin = np.asarray(self.origin_mm, dtype=np.float64)
        step = self.slice_spacing_mm if self.slice_spacing_mm is not None else self.slice_thickness_mm
        pos = origin + (self.first_slice_offset_mm + index * step) * self.normal
        return (round(float(pos[0]), 4) + 0.0, round(float(pos[1]), 4) + 0.0, round(float(pos[2]), 4) + 0.0)


def _set(ds: Dataset, keyword: str, value: object) -> None:
    """Set ``keyword`` to ``value``; None removes the tag."""
    if value is None:
        if keyword in ds:
            del ds[keyword]
    else:
        setattr(ds, keyword, value)


def _check_charset(charset: str) -> None:
    if charset not in SUPPORTED_CHARSETS:
        raise ValueError(f"charset must be one of {sorted(SUPPORTED_CHARSETS)}, got {charset!r}")


def _check_uid(name: str, value: str) -> None:
    if not isinstance(value, str) or len(value) > 64 or re.match(RE_VALID_UID, value) is None:
        raise ValueError(f"{name} {value!r} is not a valid DICOM UID (digits and dots, at most 64 characters)")


def apply_patient(ds: Dataset, patient: PatientInfo) -> None:
    """Write the Patient module values of ``patient`` into ``ds`` (None removes a tag)."""
    _set(ds, "PatientName", patient.name)
    _set(ds, "PatientID", patient.id)
    _set(ds, "PatientBirthDate", None if patient.birth_date is None else dicom_date(patient.birth_date))
    _set(ds, "PatientSex", patient.sex)
    _set(ds, "PatientAge", patient.age)


def apply_study(ds: Dataset, study: StudyInfo) -> None:
    """Write the General Study values of ``study`` into ``ds`` (None removes a tag)."""
    _check_uid("study_instance_uid", study.study_instance_uid)
    ds.StudyInstanceUID = study.study_instance_uid
    _set(ds, "StudyDate", None if study.date is None else dicom_date(study.date))
    _set(ds, "StudyTime", None if study.time is None else dicom_time(study.time))
    _set(ds, "AccessionNumber", study.accession_number)
    _set(ds, "InstitutionName", study.institution_name)
    _set(ds, "StudyDescription", study.description)
    _set(ds, "ReferringPhysicianName", study.referring_physician)
    _set(ds, "StudyID", study.study_id)


def _file_dataset(
    sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str = ExplicitVRLittleEndian
) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    meta.TransferSyntaxUID = UID(transfer_syntax)
    ds = FileDataset("", Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = UID(sop_class_uid)
    ds.SOPInstanceUID = UID(sop_instance_uid)
    return ds


def _stored_pixels(
    modality: str, image: npt.NDArray[np.generic]
) -> tuple[npt.NDArray[np.uint16], int, dict[str, object]]:
    """Stored values, BitsStored and the rescale/window tags for one image of ``modality``."""
    if modality == "CT":
        if not np.issubdtype(image.dtype, np.integer):
            raise ValueError(f"CT pixels must be integer HU (e.g. int16), got dtype {image.dtype}")
        stored = image.astype(np.int32) - CT_RESCALE_INTERCEPT
        if stored.min() < 0 or stored.max() > 4095:
            raise ValueError(
                f"CT pixels must lie in [-1024, 3071] HU to fit 12 bits, got [{image.min()}, {image.max()}]"
            )
        tags: dict[str, object] = {
            "RescaleIntercept": CT_RESCALE_INTERCEPT,
            "RescaleSlope": 1,
            "RescaleType": "HU",
            "WindowCenter": 40,
            "WindowWidth": 400,
        }
        return stored.astype(np.uint16), 12, tags
    if image.dtype != np.uint16:
        raise ValueError(f"{modality} pixels must be uint16, got dtype {image.dtype}")
    top = int(image.max()) if image.size else 0
    bits = 12 if top <= 4095 else 16
    low = int(image.min()) if image.size else 0
    tags = {"WindowCenter": (top + low) // 2, "WindowWidth": max(top - low, 1)}
    if modality in ("DX", "CR"):
        tags.update({"RescaleIntercept": 0, "RescaleSlope": 1, "RescaleType": "US"})
    return image.astype(np.uint16, copy=False), bits, tags


def image_dataset(
    image: npt.NDArray[np.generic],
    *,
    patient: PatientInfo,
    study: StudyInfo,
    series: SeriesInfo,
    instance_number: int,
    sop_instance_uid: str,
    geometry: Geometry | None = None,
    slice_index: int = 0,
    charset: str = DEFAULT_CHARSET,
) -> FileDataset:
    """One image object (CT, MR, DX or CR) holding the 2-D ``image`` (row, col).

    CT takes HU (int16) and stores HU + 1024 in 12 bits with RescaleIntercept -1024; MR, DX and
    CR take uint16 as stored values (12 bits when the maximum fits, else 16).
    """
    modality = series.modality.upper()
    if modality not in SOP_CLASS_BY_MODALITY:
        raise ValueError(f"series.modality must be one of {sorted(SOP_CLASS_BY_MODALITY)}, got {series.modality!r}")
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D (row, col), got shape {image.shape}")
    _check_charset(charset)
    _check_uid("series_instance_uid", series.series_instance_uid)
    _check_uid("sop_instance_uid", sop_instance_uid)

    ds = _file_dataset(SOP_CLASS_BY_MODALITY[modality], sop_instance_uid)
    ds.SpecificCharacterSet = charset
    apply_patient(ds, patient)
    apply_study(ds, study)
    date = None if study.date is None else dicom_date(study.date)
    time = None if study.time is None else dicom_time(study.time)
    for keyword in ("InstanceCreationDate", "SeriesDate", "AcquisitionDate", "ContentDate"):
        _set(ds, keyword, date)
    for keyword in ("InstanceCreationTime", "SeriesTime", "AcquisitionTime", "ContentTime"):
        _set(ds, keyword, time)

    ds.Modality = modality
    ds.SeriesInstanceUID = UID(series.series_instance_uid)
    ds.SeriesNumber = series.number
    _set(ds, "SeriesDescription", series.description)
    _set(ds, "BodyPartExamined", series.body_part)
    _set(ds, "ProtocolName", series.protocol_name)
    _set(ds, "Manufacturer", series.manufacturer)
    _set(ds, "ManufacturerModelName", series.model)
    _set(ds, "StationName", series.station_name)
    ds.InstanceNumber = instance_number
    ds.AcquisitionNumber = 1
    ds.LossyImageCompression = "00"
    ds.BurnedInAnnotation = "NO"

    rows, cols = image.shape
    if modality in ("CT", "MR"):
        geometry = geometry or Geometry()
        ds.FrameOfReferenceUID = UID(
            series.frame_of_reference_uid or derive_uid(study.study_instance_uid, "frame-of-reference")
        )
        ds.PositionReferenceIndicator = ""
        ds.PatientPosition = "HFS"
        ds.ImageOrientationPatient = list(geometry.orientation)
        position = geometry.position(slice_index, rows=rows, cols=cols)
        ds.ImagePositionPatient = list(position)
        ds.PixelSpacing = list(geometry.pixel_spacing_mm)
        ds.SliceThickness = geometry.slice_thickness_mm
        ds.SliceLocation = round(float(np.dot(position, geometry.normal)), 4) + 0.0
        if modality == "CT":
            ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
            ds.KVP = 120
            ds.ConvolutionKernel = "STANDARD"
        else:
            ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
            ds.SpacingBetweenSlices = geometry.slice_spacing_mm or geometry.slice_thickness_mm
            ds.ScanningSequence = "SE"
            ds.SequenceVariant = "NONE"
            ds.ScanOptions = ""
            ds.MRAcquisitionType = "2D"
            ds.MagneticFieldStrength = 3.0
    else:
        geometry = geometry or Geometry(pixel_spacing_mm=(0.14, 0.14))
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
        ds.ImagerPixelSpacing = list(geometry.pixel_spacing_mm)
        ds.PatientOrientation = ["L", "F"]
        ds.KVP = 125
        if modality == "DX":
            ds.PresentationIntentType = "FOR PRESENTATION"
            ds.DetectorType = "SCINTILLATOR"
            ds.PixelIntensityRelationship = "LOG"
            ds.PixelIntensityRelationshipSign = 1

    stored, bits, pixel_tags = _stored_pixels(modality, image)
    ds.set_pixel_data(
        np.ascontiguousarray(stored),
        photometric_interpretation="MONOCHROME2",
        bits_stored=bits,
        generate_instance_uid=False,
    )
    for keyword, value in pixel_tags.items():
        setattr(ds, keyword, value)
    for keyword, value in series.extra.items():
        _set(ds, keyword, value)
    return ds


def write_series(
    volume: npt.NDArray[np.generic],
    out_dir: Path | str,
    *,
    patient: PatientInfo,
    study: StudyInfo,
    series: SeriesInfo,
    geometry: Geometry | None = None,
    charset: str = DEFAULT_CHARSET,
    first_file_number: int = 1,
    file_name: str = "IM{:04d}.dcm",
) -> list[Path]:
    """Write one file per slice of ``volume`` (slice, row, col), or one file for a 2-D image.

    Files are named ``file_name.format(first_file_number + k)``; InstanceNumber is k + 1 and
    SOPInstanceUID ``derive_uid(series UID, "sop", k)``. Returns the paths in slice order.
    """
    array = np.asarray(volume)
    if array.ndim == 2:
        array = array[np.newaxis]
    if array.ndim != 3 or array.shape[0] == 0:
        raise ValueError(
            f"volume must be (slice, row, col) with at least one slice or (row, col), got shape {volume.shape}"
        )
    if first_file_number < 0:
        raise ValueError(f"first_file_number must be >= 0, got {first_file_number}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, plane in enumerate(array):
        ds = image_dataset(
            plane,
            patient=patient,
            study=study,
            series=series,
            instance_number=k + 1,
            sop_instance_uid=derive_uid(series.series_instance_uid, "sop", k),
            geometry=geometry,
            slice_index=k,
            charset=charset,
        )
        path = out / file_name.format(first_file_number + k)
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    logger.debug("wrote series %s: %d file(s) in %s", series.series_instance_uid, len(paths), out)
    return paths


def _remap_uids(ds: Dataset, mapping: dict[str, str], namespace: str) -> None:
    """Replace every instance-identifying UID (recursively) by its mapped value."""

    def new(old: str) -> str:
        old = str(old).strip().rstrip("\0")
        if old not in mapping:
            mapping[old] = derive_uid(namespace, old)
        return mapping[old]

    def callback(_: Dataset, elem: DataElement) -> None:
        if elem.keyword not in _INSTANCE_UID_KEYWORDS or elem.value in (None, ""):
            return
        if isinstance(elem.value, (MultiValue, list)):
            elem.value = [new(v) for v in elem.value]
        else:
            elem.value = new(elem.value)

    ds.walk(callback)


def _rewrite_dates(ds: Dataset, date: str | None, time: str | None) -> None:
    """Set every non-empty DA/TM/DT value (recursively, patient birth excepted) to the study's."""

    def callback(_: Dataset, elem: DataElement) -> None:
        if elem.keyword in _PATIENT_KEYWORDS or elem.value in (None, ""):
            return
        if elem.VR == "DA" and date is not None:
            elem.value = date
        elif elem.VR == "TM" and time is not None:
            elem.value = time
        elif elem.VR == "DT" and date is not None:
            elem.value = date + (time or "")

    ds.walk(callback)


def rewrite_file(
    source: Path | str,
    destination: Path | str,
    *,
    patient: PatientInfo,
    study: StudyInfo,
    series_instance_uid: str,
    sop_instance_uid: str,
    series_number: int | None = None,
    charset: str = DEFAULT_CHARSET,
    overrides: Mapping[str, object] | None = None,
) -> Path:
    """Copy a real DICOM file under new identities, keeping its pixel data byte for byte.

    - Study, series and SOP instance UIDs become the given ones (MediaStorageSOPInstanceUID
      too); every other instance UID (frame of reference, references) is mapped to a UID derived
      from ``series_instance_uid`` and the old value, consistently within the file.
    - Every non-empty date, time and date-time (recursively) becomes the study's; patient
      attributes become ``patient``'s and other identifying patient tags are removed.
    - ``overrides`` are keyword -> value pairs applied last (None removes the tag).
    - Text is decoded with the file's own SpecificCharacterSet and re-encoded in ``charset``.
    The transfer syntax is kept, so compressed pixel data stays as it is too.
    """
    _check_charset(charset)
    _check_uid("series_instance_uid", series_instance_uid)
    _check_uid("sop_instance_uid", sop_instance_uid)
    _check_uid("study.study_instance_uid", study.study_instance_uid)
    src = Path(source)
    ds = pydicom.dcmread(src)
    if "SOPClassUID" not in ds:
        raise ValueError(f"{src} has no SOPClassUID (0008,0016): not a composite object to rewrite")
    transfer_syntax = ds.file_meta.TransferSyntaxUID
    ds.decode()  # every text element to str in its original character set, before it changes

    mapping: dict[str, str] = {}
    for keyword, new in (
        ("StudyInstanceUID", study.study_instance_uid),
        ("SeriesInstanceUID", series_instance_uid),
        ("SOPInstanceUID", sop_instance_uid),
    ):
        old = ds.get(keyword)
        if old:
            mapping[str(old).strip().rstrip("\0")] = new
    _remap_uids(ds, mapping, namespace=series_instance_uid)
    date = None if study.date is None else dicom_date(study.date)
    time = None if study.time is None else dicom_time(study.time)
    _rewrite_dates(ds, date, time)

    for keyword in _PATIENT_EXTRA_KEYWORDS:
        if keyword in ds:
            del ds[keyword]
    apply_patient(ds, patient)
    apply_study(ds, study)
    ds.SeriesInstanceUID = UID(series_instance_uid)
    ds.SOPInstanceUID = UID(sop_instance_uid)
    if series_number is not None:
        ds.SeriesNumber = series_number
    for keyword, value in (overrides or {}).items():
        _set(ds, keyword, value)
    ds.SpecificCharacterSet = charset

    out = _file_dataset(ds.SOPClassUID, sop_instance_uid, transfer_syntax)
    out.update(ds)
    dst = Path(destination)
    dst.parent.mkdir(parents=True, exist_ok=True)
    out.save_as(dst, enforce_file_format=True)
    logger.debug("rewrote %s as SOP instance %s", src.name, sop_instance_uid)
    return dst


def pixel_data_span(path: Path | str) -> tuple[int, int]:
    """(offset of the Pixel Data value, its declared length) of an uncompressed file whose Pixel
    Data (7FE0,0010) is the last element, in Explicit VR Little Endian.

    Raises ValueError when the bytes before the value are not that element's header.
    """
    p = Path(path)
    ds = pydicom.dcmread(p)
    if "PixelData" not in ds:
        raise ValueError(f"{p} has no Pixel Data (7FE0,0010)")
    if ds.file_meta.TransferSyntaxUID != ExplicitVRLittleEndian:
        raise ValueError(f"{p} is not Explicit VR Little Endian ({ds.file_meta.TransferSyntaxUID})")
    length = len(ds.PixelData)
    offset = p.stat().st_size - length
    with p.open("rb") as fp:
        fp.seek(offset - 12)
        header = fp.read(12)
    vr = header[4:6]
    expected = b"\xe0\x7f\x10\x00" + vr + b"\0\0" + struct.pack("<I", length)
    if vr not in (b"OW", b"OB") or header != expected:
        raise ValueError(f"{p}: Pixel Data is not the last element; cannot locate its value")
    return offset, length


def truncate_pixel_data(path: Path | str, *, keep_fraction: float = 0.5) -> int:
    """Cut a file in the middle of its pixel data, keeping ``keep_fraction`` of the value bytes.

    Simulates an interrupted transfer. Returns the new file size.
    """
    if not 0.0 <= keep_fraction < 1.0:
        raise ValueError(f"keep_fraction must be in [0, 1), got {keep_fraction!r}")
    offset, length = pixel_data_span(path)
    size = offset + int(length * keep_fraction)
    with Path(path).open("r+b") as fp:
        fp.truncate(size)
    return size
