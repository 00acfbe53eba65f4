"""Phantoms, the DICOM writer and the demo study set (qc_pipeline.samples)."""

from __future__ import annotations

import datetime as dt
import math
import os
import struct
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    MRImageStorage,
)

from qc_pipeline.domain import Verdict
from qc_pipeline.samples import demo, phantoms
from qc_pipeline.samples.writer import (
    Geometry,
    PatientInfo,
    Plane,
    SeriesInfo,
    StudyInfo,
    age_string,
    derive_uid,
    pixel_data_span,
    rewrite_file,
    truncate_pixel_data,
    write_series,
)
from tests.demo_expectations import expected_verdict

STUDY_DATE = dt.date(2026, 10, 18)
PATIENT = PatientInfo(name="Zhang^San=张^三", id="0001234567", sex="M", birth_date=dt.date(1981, 3, 2), age="045Y")


def _study(uid_seed: str = "test-study", **changes: object) -> StudyInfo:
    values: dict[str, object] = {
        "study_instance_uid": derive_uid(uid_seed),
        "date": STUDY_DATE,
        "time": dt.time(9, 30),
        "accession_number": "CT202610180001",
        "institution_name": "重庆医科大学附属第一医院",
        "description": "胸部CT平扫",
    }
    values.update(changes)
    return StudyInfo(**values)  # type: ignore[arg-type]


def _series(modality: str, number: int = 2, **changes: object) -> SeriesInfo:
    values: dict[str, object] = {
        "series_instance_uid": derive_uid("test-series", modality, number),
        "modality": modality,
        "number": number,
        "description": f"{modality} series 序列",
        "body_part": "CHEST",
    }
    values.update(changes)
    return SeriesInfo(**values)  # type: ignore[arg-type]


def _disc(size: int, center: tuple[float, float], radius: float) -> np.ndarray:
    rows, cols = np.ogrid[:size, :size]
    return (rows - center[0]) ** 2 + (cols - center[1]) ** 2 <= radius**2


# ----------------------------------------------------------------------------------------------
# Phantoms

GENERATORS = {
    "ct": lambda seed: phantoms.ct_water_cylinder(n_slices=4, seed=seed),
    "mr": lambda seed: phantoms.mr_head_phantom(n_slices=4, seed=seed),
    "dr": lambda seed: phantoms.dr_chest_phantom(seed=seed),
}


@pytest.mark.parametrize("kind", sorted(GENERATORS))
def test_phantoms_are_reproducible_from_their_seed_and_differ_between_seeds(kind: str) -> None:
    make = GENERATORS[kind]
    first, again, other = make(7), make(7), make(8)
    np.testing.assert_array_equal(first, again)
    assert first.shape == other.shape and first.dtype == other.dtype
    # noise differs in most pixels; the anatomy under it is the same
    assert np.mean(first != other) > 0.5


def test_ct_phantom_types_ranges_and_layers() -> None:
    ct = phantoms.ct_water_cylinder(n_slices=16, size=64, noise_sd_hu=10.0, insert_hu=100.0, seed=3)
    assert ct.dtype == np.int16 and ct.shape == (16, 64, 64)
    c, radius = 31.5, 0.7 * 32
    corner = ct[:, :6, :6].astype(float)
    rod = ct[:, _disc(64, (c - radius / 2, c + radius / 2), radius / 4 - 1)].astype(float)
    water = ct[:, _disc(64, (c, c), radius / 4)].astype(float)
    # means of >= 500 voxels with SD 10 HU: standard errors < 0.5 HU, so 3 HU is > 6 SE
    assert abs(corner.mean() - phantoms.HU_AIR) < 3.0
    assert abs(water.mean() - phantoms.HU_WATER) < 3.0
    assert abs(rod.mean() - 100.0) < 3.0


@pytest.mark.parametrize("noise_sd_hu", [5.0, 10.0, 25.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ct_noise_sd_in_central_water_roi_matches_the_requested_sd(noise_sd_hu: float, seed: int) -> None:
    size, n_slices = 64, 16
    ct = phantoms.ct_water_cylinder(n_slices=n_slices, size=size, noise_sd_hu=noise_sd_hu, seed=seed)
    c, radius = (size - 1) / 2, 0.7 * size / 2
    roi = ct[:, _disc(size, (c, c), radius / 4)].astype(np.float64)  # pure water per the docstring
    n = roi.size
    # For Gaussian samples the relative standard error of the sample SD is 1 / sqrt(2 (n - 1))
    # (1.8 % for these 1536 voxels). Allow 5 standard errors: a wrong noise model (e.g. variance
    # instead of SD, or noise only in every other slice) is off by far more. Rounding to integer
    # HU adds 1/12 HU^2 of variance, < 0.2 % of the SD even at 5 HU.
    tolerance = 5.0 / math.sqrt(2 * (n - 1))
    measured = float(np.std(roi, ddof=1))
    assert abs(measured / noise_sd_hu - 1.0) < tolerance


def test_mr_background_is_rayleigh() -> None:
    sigma = 10.0
    mr = phantoms.mr_head_phantom(n_slices=12, size=64, signal=400.0, noise_sigma=sigma, seed=11)
    assert mr.dtype == np.uint16 and mr.shape == (12, 64, 64)
    background = mr[:, phantoms.mr_head_background_mask(size=64)].astype(np.float64)
    n = background.size
    ratio = float(background.mean() / background.std(ddof=1))
    # Rayleigh: mean/sd = sqrt(pi/2) / sqrt(2 - pi/2) = 1.9131 whatever sigma. The relative
    # standard error of mean/sd for n Rayleigh samples is 0.71 / sqrt(n) (0.5 % here), found by
    # simulating 4000 samples of this size with numpy's rayleigh(); allow 5 of them, plus 0.1 %
    # for rounding to integers, which inflates the SD of sigma = 10 noise by 0.1 %.
    tolerance = 5 * 0.71 / math.sqrt(n) + 0.001
    assert abs(ratio / phantoms.RAYLEIGH_MEAN_OVER_SD - 1.0) < tolerance
    # and the scale: mean = sigma * sqrt(pi/2); relative SE of the mean 0.52 / sqrt(n)
    assert abs(background.mean() / (sigma * math.sqrt(math.pi / 2)) - 1.0) < 5 * 0.523 / math.sqrt(n) + 0.001
    # Gaussian (not Rician) background noise would have mean ~0 and ratio ~0: not the case
    brain = mr[:, 32, 20].astype(np.float64)
    assert abs(brain.mean() - 400.0) < 10.0


def test_dr_phantom_is_12_bit_with_darker_lungs() -> None:
    dr = phantoms.dr_chest_phantom(rows=256, cols=256, seed=5)
    assert dr.dtype == np.uint16 and dr.shape == (256, 256)
    assert int(dr.max()) <= phantoms.DR_MAX_VALUE
    lung = dr[105:125, 70:85].astype(float)  # centre of the right lung: (0.45, 0.32) of the image
    mediastinum = dr[105:125, 124:132].astype(float)
    outside = dr[:10, :10].astype(float)
    assert lung.mean() < mediastinum.mean() - 1000
    assert outside.mean() < lung.mean()


def test_overexpose_and_clip_saturate_the_image() -> None:
    dr = phantoms.dr_chest_phantom(seed=1)
    bright = phantoms.overexpose(dr, factor=2.0)
    assert bright.dtype == np.uint16 and int(bright.max()) == phantoms.DR_MAX_VALUE
    np.testing.assert_array_equal(bright[dr < 2000], np.rint(dr[dr < 2000] * 2.0))
    clipped = phantoms.clip(dr, fraction=0.1)
    saturated = float(np.mean(clipped == phantoms.DR_MAX_VALUE))
    assert 0.1 <= saturated < 0.11
    np.testing.assert_array_equal(clipped[clipped < phantoms.DR_MAX_VALUE], dr[clipped < phantoms.DR_MAX_VALUE])


def test_phantom_options_are_validated() -> None:
    with pytest.raises(ValueError, match=r"size must be an integer >= 8, got 4"):
        phantoms.ct_water_cylinder(size=4)
    with pytest.raises(ValueError, match=r"radius_fraction must be in \(0, 1\], got 1.5"):
        phantoms.ct_water_cylinder(radius_fraction=1.5)
    with pytest.raises(ValueError, match=r"noise_sigma must be a finite number >= 0, got -1"):
        phantoms.mr_head_phantom(noise_sigma=-1.0)
    with pytest.raises(ValueError, match=r"n_slices must be an integer >= 1, got 0"):
        phantoms.mr_head_phantom(n_slices=0)
    with pytest.raises(ValueError, match=r"factor must be a finite number > 0"):
        phantoms.overexpose(phantoms.dr_chest_phantom(rows=16, cols=16), factor=0.0)
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\), got 1.0"):
        phantoms.clip(phantoms.dr_chest_phantom(rows=16, cols=16), fraction=1.0)


# ----------------------------------------------------------------------------------------------
# Writer


def test_derive_uid_is_deterministic_valid_and_separates_parts() -> None:
    uid = derive_uid("case", 2026, "study")
    assert uid == derive_uid("case", 2026, "study")
    assert uid != derive_uid("case", 2027, "study")
    assert derive_uid("ab", "c") != derive_uid("a", "bc")
    assert uid.is_valid and uid.startswith("2.25.") and len(uid) <= 64
    with pytest.raises(ValueError, match="at least one part"):
        derive_uid()


@pytest.mark.parametrize(
    ("birth", "on", "expected"),
    [
        (dt.date(1981, 3, 2), dt.date(2026, 10, 18), "045Y"),
        (dt.date(1981, 10, 19), dt.date(2026, 10, 18), "044Y"),  # birthday tomorrow
        (dt.date(2025, 3, 1), dt.date(2026, 10, 18), "019M"),
        (dt.date(2026, 10, 1), dt.date(2026, 10, 18), "017D"),
    ],
)
def test_age_string(birth: dt.date, on: dt.date, expected: str) -> None:
    assert age_string(birth, on) == expected


def test_age_string_refuses_a_birth_after_the_date() -> None:
    with pytest.raises(ValueError, match="is negative"):
        age_string(dt.date(2027, 1, 1), dt.date(2026, 10, 18))


def test_ct_series_files_are_valid_with_geometry_and_hu(tmp_path: Path) -> None:
    hu = phantoms.ct_water_cylinder(n_slices=5, seed=2)
    geometry = Geometry(pixel_spacing_mm=(0.8, 0.8), slice_thickness_mm=2.5, origin_mm=(-25.0, -25.0, 100.0))
    paths = write_series(hu, tmp_path, patient=PATIENT, study=_study(), series=_series("CT"), geometry=geometry)
    assert [p.name for p in paths] == [f"IM{i:04d}.dcm" for i in range(1, 6)]
    for k, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        assert ds.preamble == b"\0" * 128
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert ds.SOPClassUID == CTImageStorage == ds.file_meta.MediaStorageSOPClassUID
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.InstanceNumber == k + 1
        assert [float(v) for v in ds.ImagePositionPatient] == [-25.0, -25.0, 100.0 + 2.5 * k]
        assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
        assert float(ds.SliceThickness) == 2.5 and [float(v) for v in ds.PixelSpacing] == [0.8, 0.8]
        assert ds.PhotometricInterpretation == "MONOCHROME2" and ds.BitsAllocated == 16
        assert (ds.StudyDate, ds.StudyTime, ds.PatientAge) == ("20261018", "093000", "045Y")
        restored = ds.pixel_array.astype(np.int32) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
        np.testing.assert_array_equal(restored, hu[k])
    assert len({pydicom.dcmread(p).SOPInstanceUID for p in paths}) == 5


def test_sagittal_mr_slices_step_along_the_normal(tmp_path: Path) -> None:
    mr = phantoms.mr_head_phantom(n_slices=3, seed=1)
    geometry = Geometry(pixel_spacing_mm=(1.0, 1.0), slice_thickness_mm=4.0, plane=Plane.SAGITTAL, origin_mm=(0, 0, 0))
    paths = write_series(mr, tmp_path, patient=PATIENT, study=_study(), series=_series("MR"), geometry=geometry)
    positions = [[float(v) for v in pydicom.dcmread(p).ImagePositionPatient] for p in paths]
    # IOP (0,1,0 / 0,0,-1): normal = row x col = (-1, 0, 0)
    assert positions == [[0.0, 0.0, 0.0], [-4.0, 0.0, 0.0], [-8.0, 0.0, 0.0]]
    ds = pydicom.dcmread(paths[1])
    assert ds.SOPClassUID == MRImageStorage
    np.testing.assert_array_equal(ds.pixel_array, mr[1])


def test_dx_image_is_for_presentation(tmp_path: Path) -> None:
    image = phantoms.dr_chest_phantom(seed=3)
    series = _series("DX", 1, extra={"ViewPosition": "PA"})
    (path,) = write_series(image, tmp_path, patient=PATIENT, study=_study(), series=series)
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == DigitalXRayImageStorageForPresentation
    assert (ds.Modality, ds.PresentationIntentType, ds.ViewPosition) == ("DX", "FOR PRESENTATION", "PA")
    assert ds.BitsStored == 12 and "ImagerPixelSpacing" in ds and "ImagePositionPatient" not in ds
    np.testing.assert_array_equal(ds.pixel_array, image)


@pytest.mark.parametrize("charset", ["ISO_IR 192", "GB18030"])
@pytest.mark.parametrize("name", ["Zhang^San=张^三", "张三", "Wang^Xiuying=王^秀英"])
def test_chinese_text_round_trips(tmp_path: Path, charset: str, name: str) -> None:
    patient = PatientInfo(name=name, id="0001", sex="F", birth_date=dt.date(1968, 4, 27))
    study = _study(description="头颅MR平扫", institution_name="四川大学华西医院")
    (path,) = write_series(
        phantoms.mr_head_phantom(n_slices=1),
        tmp_path,
        patient=patient,
        study=study,
        series=_series("MR"),
        charset=charset,
    )
    raw = path.read_bytes()
    codec = {"ISO_IR 192": "utf-8", "GB18030": "gb18030"}[charset]
    # the bytes are in the declared character set (checked with Python's own codec)
    assert name.encode(codec) in raw and "头颅MR平扫".encode(codec) in raw
    ds = pydicom.dcmread(path)
    assert ds.SpecificCharacterSet == charset
    assert (str(ds.PatientName), ds.StudyDescription, ds.InstitutionName) == (name, "头颅MR平扫", "四川大学华西医院")


def test_none_leaves_a_tag_out_and_empty_string_writes_it_empty(tmp_path: Path) -> None:
    patient = PatientInfo(name="Sun^Hong", id="", sex="F", birth_date=dt.date(1985, 9, 30), age=None)
    study = _study(accession_number="", institution_name=None)
    (path,) = write_series(
        phantoms.dr_chest_phantom(rows=32, cols=32), tmp_path, patient=patient, study=study, series=_series("DX", 1)
    )
    ds = pydicom.dcmread(path)
    assert "PatientAge" not in ds and "InstitutionName" not in ds
    assert "PatientID" in ds and ds["PatientID"].value == ""
    assert "AccessionNumber" in ds and ds["AccessionNumber"].value == ""


def test_writer_rejects_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"CT pixels must lie in \[-1024, 3071\] HU"):
        write_series(
            np.full((1, 8, 8), 5000, np.int16), tmp_path, patient=PATIENT, study=_study(), series=_series("CT")
        )
    with pytest.raises(ValueError, match=r"series.modality must be one of \['CR', 'CT', 'DX', 'MR'\], got 'US'"):
        write_series(np.zeros((8, 8), np.uint16), tmp_path, patient=PATIENT, study=_study(), series=_series("US"))
    with pytest.raises(ValueError, match=r"charset must be one of .* got 'ISO 2022 IR 58'"):
        write_series(
            np.zeros((8, 8), np.uint16),
            tmp_path,
            patient=PATIENT,
            study=_study(),
            series=_series("DX"),
            charset="ISO 2022 IR 58",
        )
    with pytest.raises(ValueError, match=r"study_instance_uid 'not-a-uid' is not a valid DICOM UID"):
        write_series(
            np.zeros((8, 8), np.uint16),
            tmp_path,
            patient=PATIENT,
            study=_study(study_instance_uid="not-a-uid"),
            series=_series("DX"),
        )


def test_rewrite_file_replaces_identities_and_keeps_pixels(tmp_path: Path) -> None:
    source = Path(get_testdata_file("CT_small.dcm"))
    original = pydicom.dcmread(source)
    study = _study("rewrite")
    series_uid, sop_uid = derive_uid("rewrite", "series"), derive_uid("rewrite", "sop")
    out = rewrite_file(
        source,
        tmp_path / "IM0001.dcm",
        patient=PATIENT,
        study=study,
        series_instance_uid=series_uid,
        sop_instance_uid=sop_uid,
        series_number=7,
        overrides={"ContrastBolusAgent": None, "BodyPartExamined": "CHEST"},
    )
    ds = pydicom.dcmread(out)
    assert ds.PixelData == original.PixelData
    assert (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID) == (
        study.study_instance_uid,
        series_uid,
        sop_uid,
    )
    assert ds.file_meta.MediaStorageSOPInstanceUID == sop_uid and ds.SeriesNumber == 7
    assert ds.FrameOfReferenceUID != original.FrameOfReferenceUID
    assert {ds.StudyDate, ds.SeriesDate, ds.AcquisitionDate, ds.ContentDate} == {"20261018"}
    assert (str(ds.PatientName), ds.PatientID, ds.PatientSex, ds.PatientBirthDate) == (
        "Zhang^San=张^三",
        "0001234567",
        "M",
        "19810302",
    )
    assert "OtherPatientIDsSequence" not in ds and "TimezoneOffsetFromUTC" not in ds
    assert "ContrastBolusAgent" not in ds and ds.BodyPartExamined == "CHEST"
    raw = out.read_bytes()
    for old in (original.StudyInstanceUID, original.SeriesInstanceUID, original.SOPInstanceUID, "CompressedSamples"):
        assert old.encode() not in raw


def test_rewrite_file_moves_an_sr_into_a_study_and_reencodes_its_text(tmp_path: Path) -> None:
    source = Path(get_testdata_file("test-SR.dcm"))
    original_raw = source.read_bytes()
    assert "Jörg".encode("latin-1") in original_raw  # ISO_IR 100 in the source
    out = rewrite_file(
        source,
        tmp_path / "sr.dcm",
        patient=PATIENT,
        study=_study("sr"),
        series_instance_uid=derive_uid("sr", "series"),
        sop_instance_uid=derive_uid("sr", "sop"),
    )
    ds = pydicom.dcmread(out)
    assert ds.SpecificCharacterSet == "ISO_IR 192"
    assert "Jörg".encode() in out.read_bytes()
    assert str(ds.VerifyingObserverSequence[0].VerifyingObserverName) == "Riesmeier^Jörg"
    assert ds.StudyDate == "20261018" and ds.ObservationDateTime == "20261018093000"
    # references inside the content tree follow the new identities consistently
    assert b"1.2.276.0.7230010.3.1.4.2139363186" not in out.read_bytes()


def test_truncate_pixel_data_cuts_the_file_inside_its_pixels(tmp_path: Path) -> None:
    (path,) = write_series(
        phantoms.ct_water_cylinder(n_slices=1), tmp_path, patient=PATIENT, study=_study(), series=_series("CT")
    )
    offset, length = pixel_data_span(path)
    assert length == 64 * 64 * 2
    size = truncate_pixel_data(path, keep_fraction=0.25)
    assert size == path.stat().st_size == offset + length // 4
    with pytest.raises(ValueError, match=r"keep_fraction must be in \[0, 1\), got 1.0"):
        truncate_pixel_data(path, keep_fraction=1.0)


# ----------------------------------------------------------------------------------------------
# Demo study set


@pytest.fixture(scope="module")
def demo_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[demo.DemoCase]]:
    first = tmp_path_factory.mktemp("demo-a")
    second = tmp_path_factory.mktemp("demo-b")
    cases = demo.write_demo_studies(first)
    demo.write_demo_studies(second)
    return first, second, cases


def _tree(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*"))


def test_demo_set_is_byte_identical_when_written_twice(demo_dirs: tuple[Path, Path, list[demo.DemoCase]]) -> None:
    first, second, _ = demo_dirs
    assert _tree(first) == _tree(second)
    files = [p for p in _tree(first) if (first / p).is_file()]
    assert len(files) > 150
    for rel in files:
        assert (first / rel).read_bytes() == (second / rel).read_bytes(), rel


def test_demo_another_seed_differs_and_rewriting_in_place_changes_nothing(
    tmp_path: Path, demo_dirs: tuple[Path, Path, list[demo.DemoCase]]
) -> None:
    first, _, cases = demo_dirs
    other = demo.write_demo_studies(tmp_path, seed=7)
    assert {c.study_instance_uid for c in other}.isdisjoint({c.study_instance_uid for c in cases} - {None})
    a = pydicom.dcmread(first / "phantom_ct_chest" / "IM0001.dcm").pixel_array
    b = pydicom.dcmread(tmp_path / "phantom_ct_chest" / "IM0001.dcm").pixel_array
    assert np.mean(a != b) > 0.5
    # writing the same seed again into the same folder replaces each file by the same bytes
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    demo.write_demo_studies(tmp_path, seed=7)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_demo_cases_have_folders_and_matching_study_uids(demo_dirs: tuple[Path, Path, list[demo.DemoCase]]) -> None:
    root, _, cases = demo_dirs
    assert cases == demo.demo_cases()
    assert len({c.name for c in cases}) == len(cases) == 21
    for case in cases:
        folder = root / case.folder
        files = sorted(folder.iterdir())
        assert files, case.name
        if case.study_instance_uid is None:
            continue
        for path in files:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            assert ds.StudyInstanceUID == case.study_instance_uid, path
    assert (root / demo.EMPTY_FOLDER).is_dir() and not any((root / demo.EMPTY_FOLDER).iterdir())
    verdicts = {c.name: expected_verdict(c) for c in cases}
    assert verdicts["real_cr_chest"] is Verdict.PASS and verdicts["age_mismatch"] is Verdict.REVIEW
    assert verdicts["sr_only"] is Verdict.NOT_APPLICABLE and verdicts["not_dicom"] is Verdict.FAIL


def test_demo_files_have_fixed_modification_times(demo_dirs: tuple[Path, Path, list[demo.DemoCase]]) -> None:
    root, _, cases = demo_dirs
    assert os.stat(root / "phantom_ct_chest" / "IM0001.dcm").st_mtime == (
        dt.datetime(2026, 10, 11, 9, 55, tzinfo=dt.timezone(dt.timedelta(hours=8))).timestamp()
    )
    for case in cases:
        if case.study_instance_uid is None or case.name == "future_study_date":
            continue  # no header to read; the 2099 study arrived in 2026
        for path in (root / case.folder).iterdir():
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            acquired = dt.datetime.strptime(ds.StudyDate + ds.StudyTime, "%Y%m%d%H%M%S").replace(
                tzinfo=demo.DEMO_TIMEZONE
            )
            assert os.stat(path).st_mtime == (acquired + demo.UPLOAD_DELAY).timestamp(), path


def test_demo_headers_carry_the_defects_they_claim(demo_dirs: tuple[Path, Path, list[demo.DemoCase]]) -> None:
    root, _, _ = demo_dirs

    def head(case: str, name: str = "IM0001.dcm") -> pydicom.Dataset:
        return pydicom.dcmread(root / case / name, stop_before_pixels=True)

    good = head("phantom_ct_chest")
    assert str(good.PatientName) == "张伟" and good.SpecificCharacterSet == "ISO_IR 192"
    assert (good.StudyDate, good.StudyTime, good.PatientAge) == ("20261011", "093000", "055Y")
    mr = head("phantom_mr_brain", "IM0060.dcm")
    assert mr.SpecificCharacterSet == "GB18030" and mr.StudyDescription == "头颅MR平扫"
    assert head("birth_after_study").PatientBirthDate > head("birth_after_study").StudyDate
    assert "PatientAge" not in head("birth_after_study")
    assert head("missing_patient_id")["PatientID"].value == ""
    assert head("future_study_date").StudyDate == "20990101" and "PatientAge" not in head("future_study_date")
    assert {head("inconsistent_patient", f"IM{i:04d}.dcm").PatientSex for i in (1, 17)} == {"M", "F"}
    assert head("age_mismatch").PatientAge == "030Y"
    accession = head("missing_accession_institution")
    assert accession["AccessionNumber"].value == "" and "InstitutionName" not in accession
    modalities = {p.name: head("sr_in_study", p.name).Modality for p in (root / "sr_in_study").iterdir()}
    assert sorted(modalities.values()) == ["DX", "SR"]
    assert head("ultrasound").Modality == "US"


def test_demo_truncated_file_is_shorter_than_its_pixel_data_needs(
    demo_dirs: tuple[Path, Path, list[demo.DemoCase]],
) -> None:
    root, _, _ = demo_dirs
    path = root / "truncated_file" / "IM0009.dcm"
    raw = path.read_bytes()
    header = pydicom.dcmread(path, stop_before_pixels=True)
    needed = header.Rows * header.Columns * header.BitsAllocated // 8
    # find the Pixel Data element by its bytes: tag (7FE0,0010), VR OW, 2 reserved, 4-byte length
    at = raw.rfind(b"\xe0\x7f\x10\x00OW\x00\x00")
    assert at > 0
    (declared,) = struct.unpack("<I", raw[at + 8 : at + 12])
    available = len(raw) - (at + 12)
    assert declared == needed
    assert 0 < available < needed
    # the other files of the series are complete
    sibling = root / "truncated_file" / "IM0008.dcm"
    assert sibling.stat().st_size - len(raw) == needed - available


def test_demo_garbage_file_is_not_dicom(demo_dirs: tuple[Path, Path, list[demo.DemoCase]]) -> None:
    root, _, cases = demo_dirs
    path = root / "not_dicom" / "garbage.dcm"
    assert path.stat().st_size == demo.GARBAGE_BYTES
    with pytest.raises(InvalidDicomError, match="File is missing DICOM File Meta Information header"):
        pydicom.dcmread(path)
    assert next(c for c in cases if c.name == "not_dicom").study_instance_uid is None
