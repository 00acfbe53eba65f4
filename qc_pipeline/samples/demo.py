"""The demo study set: real sample files and seeded phantoms, good studies and known defects.

``write_demo_studies(out_dir)`` writes one sub-folder per case (files ``IM0001.dcm``, ...) plus an
empty folder ``empty/``; ``demo_cases()`` lists the same cases without writing anything. Each
case says what it holds (its description); the verdict the pipeline must reach and the rule codes
among its findings are the tests' (``tests/demo_expectations.py``).

Deterministic: the same seed gives the same bytes on every call and every day. Study dates are
fixed in October 2026 (never relative to today) and every file gets a fixed modification time,
the acquisition time plus ``UPLOAD_DELAY``: the upload time, which the folder source reads from
the files' modification times when told they are upload times (the ``demo`` command does). Pass ``DEMO_NOW`` as the time of
the check to get results that do not depend on the clock either.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
from pydicom.data import get_testdata_file

from qc_pipeline.samples import phantoms
from qc_pipeline.samples.writer import (
    Geometry,
    PatientInfo,
    Plane,
    SeriesInfo,
    StudyInfo,
    age_string,
    derive_uid,
    rewrite_file,
    truncate_pixel_data,
    write_series,
)

logger = logging.getLogger(__name__)

DEMO_SEED: Final = 2026
DEMO_TIMEZONE: Final = dt.timezone(dt.timedelta(hours=8), "CST")
"""China Standard Time (Asia/Shanghai, no daylight saving): the demo's dates are local to it."""
DEMO_REFERENCE_DATE: Final = dt.date(2026, 10, 31)
"""The demo's "today": every valid study date lies before it."""
DEMO_NOW: Final = dt.datetime(2026, 10, 31, 18, 0, tzinfo=DEMO_TIMEZONE)
"""A time of the check that makes the demo's verdicts independent of the clock."""
UPLOAD_DELAY: Final = dt.timedelta(minutes=25)
"""Files' modification time = acquisition (StudyDate/StudyTime) + this."""
FUTURE_STUDY_DATE: Final = dt.date(2099, 1, 1)
EMPTY_FOLDER: Final = "empty"
GARBAGE_BYTES: Final = 2048
UID_SCOPE: Final = "qc-pipeline-demo"

HOSPITAL_CQ: Final = "重庆医科大学附属第一医院"
HOSPITAL_SC: Final = "Sichuan Provincial People's Hospital"
HOSPITAL_HX: Final = "四川大学华西医院"

CT_PIXEL_SPACING: Final = (5.46875, 5.46875)
"""64 pixels over a 350 mm field of view."""
MR_PIXEL_SPACING: Final = (3.59375, 3.59375)
"""64 pixels over a 230 mm field of view."""
DR_GEOMETRY: Final = Geometry(pixel_spacing_mm=(1.68, 1.68))
"""256 pixels over a 430 mm detector (ImagerPixelSpacing)."""


@dataclass(frozen=True, slots=True)
class DemoCase:
    """One study of the demo set: its name, what is in it (or wrong with it), its StudyInstanceUID.

    What the pipeline must conclude about each case is the tests' business, not the product's:
    ``tests/demo_expectations.py`` holds the expected verdict and finding codes by case name.
    """

    name: str
    description_en: str
    description_zh: str
    study_instance_uid: str | None
    """None for a file from which no UID can be read."""

    @property
    def folder(self) -> str:
        """The case's sub-folder of the demo directory."""
        return self.name


@dataclass(frozen=True, slots=True)
class _Context:
    """What a case builder gets: its folder, seed, study UID and acquisition date/time."""

    out: Path
    seed: int
    study_uid: str
    date: dt.date
    time: dt.time

    def series_uid(self, number: int) -> str:
        return derive_uid(self.study_uid, "series", number)

    def received_at(self) -> dt.datetime:
        return dt.datetime.combine(self.date, self.time, tzinfo=DEMO_TIMEZONE) + UPLOAD_DELAY


@dataclass(frozen=True, slots=True)
class _Spec:
    name: str
    description_en: str
    description_zh: str
    date: dt.date
    build: Callable[[_Context], list[Path]]
    time: dt.time = dt.time(9, 30)
    readable: bool = True
    received_at: dt.datetime | None = None
    """Files' modification time; None: acquisition + UPLOAD_DELAY."""


# ----------------------------------------------------------------------------------------------
# People and studies


def _testdata(name: str) -> Path:
    """A file bundled with pydicom or pydicom-data (found offline)."""
    found = get_testdata_file(name)
    if not isinstance(found, str):
        raise FileNotFoundError(f"pydicom test file {name!r} not found: is pydicom-data installed?")
    return Path(found)


def _patient(
    name: str | None,
    patient_id: str | None,
    sex: str | None,
    birth: dt.date | str | None,
    study_date: dt.date,
    *,
    with_age: bool = True,
) -> PatientInfo:
    age = age_string(birth, study_date) if with_age and isinstance(birth, dt.date) else None
    return PatientInfo(name=name, id=patient_id, sex=sex, birth_date=birth, age=age)


def _study(
    ctx: _Context,
    *,
    accession: str | None,
    institution: str | None,
    description: str | None,
    date: dt.date | str | None = None,
) -> StudyInfo:
    return StudyInfo(
        study_instance_uid=ctx.study_uid,
        date=ctx.date if date is None else date,
        time=ctx.time,
        accession_number=accession,
        institution_name=institution,
        description=description,
        referring_physician="",
        study_id=accession[-4:] if accession else "1",
    )


def _ct_chest_series(
    ctx: _Context,
    patient: PatientInfo,
    study: StudyInfo,
    *,
    number: int = 2,
    description: str = "胸部平扫 5mm",
    first_file_number: int = 1,
    thickness_mm: float = 5.0,
    noise_sd_hu: float = 10.0,
) -> list[Path]:
    """A plain axial chest CT series of the 16-slice water phantom."""
    volume = phantoms.ct_water_cylinder(n_slices=16, size=64, noise_sd_hu=noise_sd_hu, seed=ctx.seed + number)
    series = SeriesInfo(
        series_instance_uid=ctx.series_uid(number),
        modality="CT",
        number=number,
        description=description,
        body_part="CHEST",
        protocol_name="胸部常规平扫 Chest routine",
        model="Phantom CT 64",
        station_name="CT01",
    )
    geometry = Geometry(
        pixel_spacing_mm=CT_PIXEL_SPACING,
        slice_thickness_mm=thickness_mm,
        first_slice_offset_mm=-40.0,
    )
    return write_series(
        volume,
        ctx.out,
        patient=patient,
        study=study,
        series=series,
        geometry=geometry,
        first_file_number=first_file_number,
    )


DR_TARGET_EXPOSURE_INDEX: Final = 400.0
"""EI_T of the demo's DR room (IEC 62494-1 target exposure index)."""


def _dr_chest_image(
    ctx: _Context,
    patient: PatientInfo,
    study: StudyInfo,
    *,
    number: int = 1,
    exposure_index: float = 420.0,
    clip_fraction: float | None = None,
) -> list[Path]:
    """One PA chest radiograph (DX, for presentation) of the phantom, with IEC 62494-1 exposure tags.

    DeviationIndex = 10 log10(EI / EI_T) with EI_T = 400; ``clip_fraction`` saturates that share of
    the brightest pixels at the 12-bit maximum.
    """
    deviation = 10.0 * math.log10(exposure_index / DR_TARGET_EXPOSURE_INDEX)
    series = SeriesInfo(
        series_instance_uid=ctx.series_uid(number),
        modality="DX",
        number=number,
        description="胸部 后前位 PA",
        body_part="CHEST",
        protocol_name="胸部后前位",
        model="Phantom DR",
        station_name="DR02",
        extra={
            "ViewPosition": "PA",
            "ExposureIndex": round(exposure_index, 1),
            "TargetExposureIndex": DR_TARGET_EXPOSURE_INDEX,
            "DeviationIndex": round(deviation, 2),
        },
    )
    image = phantoms.dr_chest_phantom(rows=256, cols=256, seed=ctx.seed + number)
    if clip_fraction is not None:
        image = phantoms.clip(image, fraction=clip_fraction)
    return write_series(image, ctx.out, patient=patient, study=study, series=series, geometry=DR_GEOMETRY)


def _sr_object(ctx: _Context, patient: PatientInfo, study: StudyInfo, *, number: int, file_number: int) -> Path:
    """pydicom's test SR document, moved into the case's study."""
    return rewrite_file(
        _testdata("test-SR.dcm"),
        ctx.out / f"IM{file_number:04d}.dcm",
        patient=patient,
        study=study,
        series_instance_uid=ctx.series_uid(number),
        sop_instance_uid=derive_uid(ctx.series_uid(number), "sop", 0),
        series_number=number,
        overrides={"SeriesDescription": "诊断报告 Report"},
    )


# ----------------------------------------------------------------------------------------------
# Case builders


def _real_cr_chest(ctx: _Context) -> list[Path]:
    patient = _patient("Liu^Fang=刘^芳", "0003271845", "F", dt.date(1962, 5, 14), ctx.date)
    study = _study(ctx, accession="DR202610080012", institution=HOSPITAL_SC, description="胸部后前位 Chest PA")
    path = rewrite_file(
        _testdata("RG1_UNCR.dcm"),
        ctx.out / "IM0001.dcm",
        patient=patient,
        study=study,
        series_instance_uid=ctx.series_uid(1),
        sop_instance_uid=derive_uid(ctx.series_uid(1), "sop", 0),
        series_number=1,
        overrides={
            "SeriesDescription": "胸部 后前位",
            "BodyPartExamined": "CHEST",
            "ViewPosition": "PA",
            "ImageComments": None,
        },
    )
    return [path]


def _real_ct(ctx: _Context) -> list[Path]:
    patient = _patient("Chen^Jianguo=陈^建国", "0005510293", "M", dt.date(1958, 11, 2), ctx.date)
    study = _study(ctx, accession="CT202610090031", institution=HOSPITAL_CQ, description="胸部CT平扫")
    path = rewrite_file(
        _testdata("CT_small.dcm"),
        ctx.out / "IM0001.dcm",
        patient=patient,
        study=study,
        series_instance_uid=ctx.series_uid(2),
        sop_instance_uid=derive_uid(ctx.series_uid(2), "sop", 0),
        series_number=2,
        # The source names a contrast agent; the demo presents the slice as a plain chest CT.
        overrides={
            "SeriesDescription": "胸部平扫 5mm",
            "BodyPartExamined": "CHEST",
            "ContrastBolusAgent": None,
            "ContrastBolusRoute": None,
            "ImageComments": None,
        },
    )
    return [path]


def _real_mr(ctx: _Context) -> list[Path]:
    patient = _patient("Zhou^Min=周^敏", "0007730018", "M", dt.date(1979, 8, 21), ctx.date)
    study = _study(ctx, accession="MR202610100007", institution=HOSPITAL_HX, description="右肩关节MR平扫 R shoulder MR")
    path = rewrite_file(
        _testdata("MR2_UNCR.dcm"),
        ctx.out / "IM0001.dcm",
        patient=patient,
        study=study,
        series_instance_uid=ctx.series_uid(3),
        sop_instance_uid=derive_uid(ctx.series_uid(3), "sop", 0),
        series_number=3,
        overrides={"SeriesDescription": "T1W_SE 斜冠状位", "BodyPartExamined": "SHOULDER", "ImageComments": None},
    )
    return [path]


def _phantom_ct_chest(ctx: _Context) -> list[Path]:
    patient = _patient("张伟", "0002018867", "M", dt.date(1971, 2, 9), ctx.date)
    study = _study(ctx, accession="CT202610110045", institution=HOSPITAL_CQ, description="胸部CT平扫")
    return _ct_chest_series(ctx, patient, study)


@dataclass(frozen=True, slots=True)
class _MRSequence:
    """One series of the brain MR: Siemens-style name and the parameters that tell its weighting."""

    name: str
    scanning_sequence: tuple[str, ...]
    sequence_variant: tuple[str, ...]
    scan_options: tuple[str, ...]
    repetition_time_ms: float
    echo_time_ms: float
    inversion_time_ms: float | None
    plane: Plane
    signal: float
    """Brain signal of the phantom (sets the contrast between series)."""
    b_value: float | None = None


_MR_BRAIN_SERIES: Final = (
    _MRSequence("t2_tse_tra", ("SE",), ("SK", "SP"), (), 4200.0, 98.0, None, Plane.AXIAL, 400.0),
    _MRSequence("t1_se_tra", ("SE",), ("SK", "SP"), (), 520.0, 12.0, None, Plane.AXIAL, 300.0),
    _MRSequence(
        "t2_tirm_tra_dark-fluid", ("SE", "IR"), ("SK", "SP", "MP"), ("IR",), 9000.0, 95.0, 2500.0, Plane.AXIAL, 350.0
    ),
    _MRSequence(
        "ep2d_diff_tra b1000", ("EP",), ("SK", "SP"), ("PFP", "FS"), 5000.0, 80.0, None, Plane.AXIAL, 150.0, 1000.0
    ),
    _MRSequence("t2_tse_sag", ("SE",), ("SK", "SP"), (), 4000.0, 100.0, None, Plane.SAGITTAL, 400.0),
)


def _phantom_mr_brain(ctx: _Context) -> list[Path]:
    patient = _patient("Wang^Xiuying=王^秀英", "0006602741", "F", dt.date(1968, 4, 27), ctx.date)
    study = _study(ctx, accession="MR202610120019", institution=HOSPITAL_HX, description="头颅MR平扫")
    return _mr_brain_series(ctx, patient, study)


def _mr_brain_series(
    ctx: _Context, patient: PatientInfo, study: StudyInfo, *, ghost_fraction: float | None = None
) -> list[Path]:
    """The five series of a plain brain MR; ``ghost_fraction`` adds an N/2 ghost to the axial T2."""
    written: list[Path] = []
    for number, seq in enumerate(_MR_BRAIN_SERIES, start=1):
        extra: dict[str, object] = {
            "ScanningSequence": list(seq.scanning_sequence),
            "SequenceVariant": list(seq.sequence_variant),
            "ScanOptions": list(seq.scan_options),
            "RepetitionTime": seq.repetition_time_ms,
            "EchoTime": seq.echo_time_ms,
            "InversionTime": seq.inversion_time_ms,
            "EchoTrainLength": 1 if seq.b_value is not None else 16,
            "ImagingFrequency": 123.2,
            "MagneticFieldStrength": 3.0,
            "DiffusionBValue": seq.b_value,
            "InPlanePhaseEncodingDirection": "ROW",
        }
        series = SeriesInfo(
            series_instance_uid=ctx.series_uid(number),
            modality="MR",
            number=number,
            description=seq.name,
            body_part="HEAD",
            protocol_name=seq.name,
            model="Phantom MR 3T",
            station_name="MR01",
            extra=extra,
        )
        volume = phantoms.mr_head_phantom(
            n_slices=12, size=64, signal=seq.signal, noise_sigma=10.0, seed=ctx.seed + number
        )
        if ghost_fraction is not None and number == 1:
            volume = phantoms.add_ghost(volume, fraction=ghost_fraction, axis=-1)  # phase along the rows
        geometry = Geometry(
            pixel_spacing_mm=MR_PIXEL_SPACING, slice_thickness_mm=5.0, plane=seq.plane, first_slice_offset_mm=-27.5
        )
        paths = write_series(
            volume,
            ctx.out,
            patient=patient,
            study=study,
            series=series,
            geometry=geometry,
            charset="GB18030",
            first_file_number=len(written) + 1,
        )
        written.extend(paths)
    return written


def _phantom_dr_chest(ctx: _Context) -> list[Path]:
    patient = _patient("Huang^Li=黄^丽", "0004417720", "F", dt.date(1990, 12, 3), ctx.date)
    study = _study(ctx, accession="DR202610130008", institution=HOSPITAL_HX, description="胸部后前位")
    return _dr_chest_image(ctx, patient, study)


def _noisy_ct(ctx: _Context) -> list[Path]:
    # A low-dose protocol gone wrong: noise SD 80 HU instead of 10.
    patient = _patient("Lin^Tao=林^涛", "0001730588", "M", dt.date(1958, 11, 2), ctx.date)
    study = _study(ctx, accession="CT202610250031", institution=HOSPITAL_SC, description="胸部CT平扫")
    return _ct_chest_series(ctx, patient, study, noise_sd_hu=80.0)


def _ghosted_mr(ctx: _Context) -> list[Path]:
    # Motion during the axial T2: a copy of the head at 15 % displaced by half the field of view.
    patient = _patient("Cao^Min=曹^敏", "0002846137", "F", dt.date(1975, 5, 21), ctx.date)
    study = _study(ctx, accession="MR202610260014", institution=HOSPITAL_CQ, description="头颅MR平扫")
    return _mr_brain_series(ctx, patient, study, ghost_fraction=0.15)


def _overexposed_dr(ctx: _Context) -> list[Path]:
    # EI 1900 against a target of 400: DI = +6.8, about 4.75 times the intended dose.
    patient = _patient("Yang^Fan=杨^帆", "0003957264", "M", dt.date(1999, 1, 14), ctx.date)
    study = _study(ctx, accession="DR202610270006", institution=HOSPITAL_HX, description="胸部后前位")
    return _dr_chest_image(ctx, patient, study, exposure_index=1900.0)


def _clipped_dr(ctx: _Context) -> list[Path]:
    # Saturated detector / bad processing: the brightest 15 % of the image pinned at 4095.
    patient = _patient("Zhou^Jing=周^静", "0005068391", "F", dt.date(1982, 9, 9), ctx.date)
    study = _study(ctx, accession="DR202610280027", institution=HOSPITAL_CQ, description="胸部后前位")
    return _dr_chest_image(ctx, patient, study, clip_fraction=0.15)


def _birth_after_study(ctx: _Context) -> list[Path]:
    # A typing slip: 2072 for 1972. PatientAge is left out so that only the date rule fires.
    patient = _patient("Zhao^Lei=赵^磊", "0008813360", "M", dt.date(2072, 6, 8), ctx.date, with_age=False)
    study = _study(ctx, accession="CT202610140022", institution=HOSPITAL_CQ, description="胸部CT平扫")
    return _ct_chest_series(ctx, patient, study)


def _missing_patient_id(ctx: _Context) -> list[Path]:
    patient = _patient("Sun^Hong=孙^红", "", "F", dt.date(1985, 9, 30), ctx.date)
    study = _study(ctx, accession="CT202610150017", institution=HOSPITAL_SC, description="CT Chest plain 胸部平扫")
    return _ct_chest_series(ctx, patient, study)


def _future_study_date(ctx: _Context) -> list[Path]:
    # The modality's clock was set to 2099: StudyDate lies in the future. No PatientAge.
    patient = _patient("Wu^Qiang=吴^强", "0009920145", "M", dt.date(1985, 1, 19), ctx.date, with_age=False)
    study = _study(
        ctx, accession="CT202610160005", institution=HOSPITAL_CQ, description="胸部CT平扫", date=FUTURE_STUDY_DATE
    )
    return _ct_chest_series(ctx, patient, study)


def _inconsistent_patient(ctx: _Context) -> list[Path]:
    # Two series of one study whose PatientSex disagrees (M, then F).
    birth = dt.date(1966, 7, 12)
    first = _patient("Xu^Jun=徐^军", "0001187352", "M", birth, ctx.date)
    second = _patient("Xu^Jun=徐^军", "0001187352", "F", birth, ctx.date)
    study = _study(ctx, accession="CT202610170026", institution=HOSPITAL_SC, description="胸部CT平扫")
    paths = _ct_chest_series(ctx, first, study, number=2, description="胸部平扫 5mm 纵隔窗")
    return paths + _ct_chest_series(
        ctx,
        second,
        study,
        number=3,
        description="胸部平扫 1.25mm 肺窗",
        first_file_number=len(paths) + 1,
        thickness_mm=1.25,
    )


def _age_mismatch(ctx: _Context) -> list[Path]:
    # Born 1981-03-02: 45 years old at the exam, but PatientAge says 030Y.
    birth = dt.date(1981, 3, 2)
    patient = PatientInfo(name="Ma^Li=马^丽", id="0002290416", sex="F", birth_date=birth, age="030Y")
    study = _study(ctx, accession="CT202610180013", institution=HOSPITAL_CQ, description="胸部CT平扫")
    return _ct_chest_series(ctx, patient, study)


def _missing_accession_institution(ctx: _Context) -> list[Path]:
    # AccessionNumber present but empty, InstitutionName absent.
    patient = _patient("He^Yun=何^云", "0003305528", "F", dt.date(1988, 10, 1), ctx.date)
    study = _study(ctx, accession="", institution=None, description="胸部后前位")
    return _dr_chest_image(ctx, patient, study)


def _truncated_file(ctx: _Context) -> list[Path]:
    patient = _patient("Guo^Ping=郭^平", "0004471903", "M", dt.date(1960, 3, 25), ctx.date)
    study = _study(ctx, accession="CT202610200040", institution=HOSPITAL_SC, description="胸部CT平扫")
    paths = _ct_chest_series(ctx, patient, study)
    # An interrupted transfer: the 9th file ends half-way through its pixel data.
    truncate_pixel_data(paths[8], keep_fraction=0.5)
    return paths


def _sr_in_study(ctx: _Context) -> list[Path]:
    patient = _patient("Luo^Xia=罗^霞", "0005583014", "F", dt.date(1993, 6, 16), ctx.date)
    study = _study(ctx, accession="DR202610210011", institution=HOSPITAL_HX, description="胸部后前位")
    paths = _dr_chest_image(ctx, patient, study)
    return [*paths, _sr_object(ctx, patient, study, number=99, file_number=len(paths) + 1)]


def _sr_only(ctx: _Context) -> list[Path]:
    patient = _patient("Deng^Hui=邓^辉", "0006614420", "M", dt.date(1955, 2, 28), ctx.date)
    study = _study(ctx, accession="CT202610220009", institution=HOSPITAL_CQ, description="胸部CT平扫 诊断报告")
    return [_sr_object(ctx, patient, study, number=99, file_number=1)]


def _ultrasound(ctx: _Context) -> list[Path]:
    patient = _patient("Tang^Ying=唐^颖", "0007726105", "F", dt.date(1986, 8, 8), ctx.date)
    study = _study(ctx, accession="US202610230033", institution=HOSPITAL_SC, description="腹部彩超 Abdominal US")
    path = rewrite_file(
        _testdata("US1_UNCR.dcm"),
        ctx.out / "IM0001.dcm",
        patient=patient,
        study=study,
        series_instance_uid=ctx.series_uid(1),
        sop_instance_uid=derive_uid(ctx.series_uid(1), "sop", 0),
        series_number=1,
        overrides={"SeriesDescription": "腹部 Abdomen", "BodyPartExamined": "ABDOMEN", "ImageComments": None},
    )
    return [path]


def _not_dicom(ctx: _Context) -> list[Path]:
    data = np.random.default_rng(ctx.seed).bytes(GARBAGE_BYTES)
    path = ctx.out / "garbage.dcm"
    path.write_bytes(data)
    return [path]


# ----------------------------------------------------------------------------------------------
# The case table


def _d(day: int) -> dt.date:
    return dt.date(2026, 10, day)


_SPECS: Final[tuple[_Spec, ...]] = (
    _Spec(
        "real_cr_chest",
        "Real CR chest PA (pydicom-data RG1_UNCR), headers rewritten; complete and valid.",
        "真实CR胸部后前位片（pydicom-data RG1_UNCR），重写头信息；信息完整有效。",
        date=_d(8),
        build=_real_cr_chest,
    ),
    _Spec(
        "real_ct",
        "Real CT slice (pydicom CT_small) presented as a plain chest CT, headers rewritten; complete and valid.",
        "真实CT单层图像（pydicom CT_small），作为胸部CT平扫，重写头信息；信息完整有效。",
        date=_d(9),
        build=_real_ct,
    ),
    _Spec(
        "real_mr",
        "Real MR shoulder image (pydicom-data MR2_UNCR, 1024x1024), headers rewritten; valid, but MR "
        "shoulder is not on the yubei-2023 recognition list.",
        "真实肩关节MR图像（pydicom-data MR2_UNCR，1024×1024），重写头信息；信息有效，"
        "但肩关节MR不在渝北首批互认项目中。",
        date=_d(10),
        build=_real_mr,
    ),
    _Spec(
        "phantom_ct_chest",
        "Synthetic plain chest CT, 16 slices of 5 mm (water phantom), Chinese patient name in UTF-8.",
        "合成胸部CT平扫，16层、层厚5 mm（水模），患者中文姓名（UTF-8 编码）。",
        date=_d(11),
        build=_phantom_ct_chest,
    ),
    _Spec(
        "phantom_mr_brain",
        "Synthetic plain brain MR in GB18030: axial T2, T1, T2-FLAIR, DWI and sagittal T2, 12 slices each. "
        "The DWI is not AI-scored (outside the MR models' training domain; an info finding says so).",
        "合成头颅MR平扫（GB18030 编码）：横断位T2、T1、T2-FLAIR、DWI及矢状位T2，各12层。"
        "DWI 序列不在MR模型的训练范围内，不进行AI评分（以提示性结果说明）。",
        date=_d(12),
        build=_phantom_mr_brain,
    ),
    _Spec(
        "phantom_dr_chest",
        "Synthetic DX chest PA radiograph (256x256, 12 bits).",
        "合成DX胸部后前位片（256×256，12位）。",
        date=_d(13),
        build=_phantom_dr_chest,
    ),
    _Spec(
        "birth_after_study",
        "PatientBirthDate 2072-06-08 is after the StudyDate (PatientAge left out).",
        "出生日期 2072-06-08 晚于检查日期（未写年龄）。",
        date=_d(14),
        build=_birth_after_study,
    ),
    _Spec(
        "missing_patient_id",
        "PatientID is present but empty.",
        "患者ID 为空。",
        date=_d(15),
        build=_missing_patient_id,
    ),
    _Spec(
        "future_study_date",
        "StudyDate 2099-01-01 lies in the future (PatientAge left out); the files arrived on "
        "2026-10-16, before their acquisition date, so the upload delay is negative too.",
        "检查日期 2099-01-01 晚于当前日期（未写年龄）；文件于 2026-10-16 到达，早于检查时间，上传时延为负。",
        date=_d(16),
        build=_future_study_date,
        received_at=dt.datetime(2026, 10, 16, 9, 55, tzinfo=DEMO_TIMEZONE),
    ),
    _Spec(
        "inconsistent_patient",
        "CT study with two series whose PatientSex differs (M vs F).",
        "同一CT检查的两个序列性别不一致（M 与 F）。",
        date=_d(17),
        build=_inconsistent_patient,
    ),
    _Spec(
        "age_mismatch",
        "PatientAge 030Y while birth and study dates give 45 years.",
        "年龄写为 030Y，而出生日期与检查日期计算为45岁。",
        date=_d(18),
        build=_age_mismatch,
    ),
    _Spec(
        "missing_accession_institution",
        "DX chest with an empty AccessionNumber and no InstitutionName.",
        "DX胸片检查号为空、缺少机构名称。",
        date=_d(19),
        build=_missing_accession_institution,
    ),
    _Spec(
        "truncated_file",
        "Synthetic chest CT whose 9th file is cut half-way through its pixel data.",
        "合成胸部CT，第9个文件在像素数据中途被截断。",
        date=_d(20),
        build=_truncated_file,
    ),
    _Spec(
        "sr_in_study",
        "Good DX chest study plus a structured report (pydicom test-SR) in the same study.",
        "合格的DX胸片检查，同一检查中另含一份结构化报告（pydicom test-SR）。",
        date=_d(21),
        build=_sr_in_study,
    ),
    _Spec(
        "sr_only",
        "A study holding only a structured report: no image to check.",
        "仅含结构化报告、没有图像的检查。",
        date=_d(22),
        build=_sr_only,
    ),
    _Spec(
        "ultrasound",
        "Real ultrasound image (pydicom-data US1_UNCR), headers rewritten: US is not on the list.",
        "真实超声图像（pydicom-data US1_UNCR），重写头信息：超声不在互认范围内。",
        date=_d(23),
        build=_ultrasound,
    ),
    _Spec(
        "noisy_ct",
        "Synthetic plain chest CT with image noise SD 80 HU (a dose or reconstruction error).",
        "合成胸部CT平扫，图像噪声标准差 80 HU（剂量或重建参数错误）。",
        date=_d(25),
        build=_noisy_ct,
    ),
    _Spec(
        "ghosted_mr",
        "Synthetic brain MR whose axial T2 has an N/2 ghost at 15 % along the phase-encoding direction.",
        "合成头颅MR，横断位T2沿相位编码方向有 15% 强度的 N/2 伪影（鬼影）。",
        date=_d(26),
        build=_ghosted_mr,
    ),
    _Spec(
        "overexposed_dr",
        "Synthetic DX chest PA with ExposureIndex 1900 against a target of 400 (DeviationIndex +6.8).",
        "合成DX胸部后前位片，曝光指数 1900，目标值 400（偏差指数 +6.8，曝光过度）。",
        date=_d(27),
        build=_overexposed_dr,
    ),
    _Spec(
        "clipped_dr",
        "Synthetic DX chest PA whose brightest 15 % of pixels are saturated at the 12-bit maximum.",
        "合成DX胸部后前位片，最亮的 15% 像素饱和于 12 位最大值（削波）。",
        date=_d(28),
        build=_clipped_dr,
    ),
    _Spec(
        "not_dicom",
        "garbage.dcm: 2 KiB of seeded random bytes, not DICOM; no UID can be read.",
        "garbage.dcm：2 KiB 随机字节，不是DICOM文件，无法读取任何UID。",
        date=_d(24),
        build=_not_dicom,
        readable=False,
    ),
)


def _case_seed(seed: int, name: str) -> int:
    """A per-case seed: the first 8 bytes of SHA-256("seed:name"), as an unsigned integer."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little")


def _study_uid(seed: int, name: str) -> str:
    return derive_uid(UID_SCOPE, seed, name, "study")


def demo_cases(*, seed: int = DEMO_SEED) -> list[DemoCase]:
    """The cases of the demo set, in a fixed order, without writing anything."""
    return [
        DemoCase(
            name=spec.name,
            description_en=spec.description_en,
            description_zh=spec.description_zh,
            study_instance_uid=_study_uid(seed, spec.name) if spec.readable else None,
        )
        for spec in _SPECS
    ]


def _set_mtimes(paths: Sequence[Path], when: dt.datetime) -> None:
    stamp = when.timestamp()
    for path in paths:
        os.utime(path, (stamp, stamp))


def write_demo_studies(out_dir: Path, *, seed: int = DEMO_SEED) -> list[DemoCase]:
    """Write the demo set into ``out_dir``: one sub-folder per case plus an empty ``empty/``.

    ``out_dir`` is created if needed. Writing again into the same folder replaces the demo's own
    files (same seed, same bytes) and leaves other files alone. Returns ``demo_cases(seed=seed)``.
    """
    out = Path(out_dir)
    cases = demo_cases(seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    for spec in _SPECS:
        folder = out / spec.name
        folder.mkdir(exist_ok=True)
        ctx = _Context(
            out=folder,
            seed=_case_seed(seed, spec.name),
            study_uid=_study_uid(seed, spec.name),
            date=spec.date,
            time=spec.time,
        )
        written = spec.build(ctx)
        _set_mtimes(written, spec.received_at or ctx.received_at())
        logger.debug("demo case %s written (study %s)", spec.name, ctx.study_uid)
    (out / EMPTY_FOLDER).mkdir(exist_ok=True)
    logger.info("wrote %d demo studies into %s", len(cases), out)
    return cases
