"""Realistic headers for every recognition item, in Chinese and English and vendor spellings.

One complete study per item, as hospitals write them: the order in Chinese (``胸部正侧位``) or
English (``CT Upper Abdomen plain + contrast``), protocol and series names in Siemens, GE,
Philips, United Imaging or Canon style, MR sequences told by their acquisition parameters, CT
phases by ContrastBolusAgent and names, DR views by ViewPosition or by words only (Chinese DR
systems often leave ViewPosition empty). Defects can be injected: a missing view, a missing
post-contrast series, a missing FLAIR, a dropped slice, left ordered but right imaged.

Deterministic: UIDs derive from the item code, style, defect and seed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from qc_pipeline.catalog.items import Item, PlaneName, SequenceReq
from qc_pipeline.samples import phantoms
from qc_pipeline.samples.writer import derive_uid

STYLES: Final = ("zh", "en", "siemens", "ge", "philips", "uih", "canon")
DEFECTS: Final = ("missing_view", "missing_post_contrast", "missing_flair", "dropped_slice", "left_vs_right")

SOP_CLASS: Final = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",
    "MR": "1.2.840.10008.5.1.4.1.1.4",
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",
}
IOP: Final = {
    "AXIAL": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
    "SAGITTAL": [0.0, 1.0, 0.0, 0.0, 0.0, -1.0],
    "CORONAL": [1.0, 0.0, 0.0, 0.0, 0.0, -1.0],
}
PLANE_WORDS: Final = {
    "siemens": {"AXIAL": "tra", "SAGITTAL": "sag", "CORONAL": "cor"},
    "ge": {"AXIAL": "Ax", "SAGITTAL": "Sag", "CORONAL": "Cor"},
    "philips": {"AXIAL": "TRA", "SAGITTAL": "SAG", "CORONAL": "COR"},
    "uih": {"AXIAL": "tra", "SAGITTAL": "sag", "CORONAL": "cor"},
    "canon": {"AXIAL": "AX", "SAGITTAL": "SAG", "CORONAL": "COR"},
    "zh": {"AXIAL": "横断位", "SAGITTAL": "矢状位", "CORONAL": "冠状位"},
    "en": {"AXIAL": "Axial", "SAGITTAL": "Sagittal", "CORONAL": "Coronal"},
}
# (ScanningSequence, SequenceVariant, TR ms, TE ms, TI ms or None)
MR_PARAMETERS: Final = {
    "T1": ("SE", "SK\\SP", 520.0, 12.0, None),
    "T2": ("SE", "SK\\SP", 4200.0, 98.0, None),
    "PD": ("SE", "SK\\SP", 3000.0, 30.0, None),
    "T2_FLAIR": ("SE\\IR", "SK\\SP\\MP", 9000.0, 95.0, 2500.0),
    "T1_FLAIR": ("SE\\IR", "SK\\SP\\MP", 2000.0, 10.0, 800.0),
    "STIR": ("SE\\IR", "SK\\SP\\MP", 4000.0, 60.0, 150.0),
    "DWI": ("EP", "SK\\SP", 5000.0, 80.0, None),
}
SEQ_NAMES: Final = {  # style -> weighting -> name pattern ({plane} is replaced)
    "siemens": {
        "T1": "t1_se_{plane}",
        "T2": "t2_tse_{plane}",
        "PD": "pd_tse_{plane}",
        "T2_FLAIR": "t2_tirm_{plane}_dark-fluid",
        "T1_FLAIR": "t1_tirm_{plane}",
        "STIR": "t2_tirm_{plane}",
        "DWI": "ep2d_diff_{plane}",
    },
    "ge": {
        "T1": "{plane} T1 FSE",
        "T2": "{plane} T2 FSE",
        "PD": "{plane} PD FSE",
        "T2_FLAIR": "{plane} T2 FLAIR",
        "T1_FLAIR": "{plane} T1 FLAIR",
        "STIR": "{plane} STIR",
        "DWI": "{plane} DWI",
    },
    "philips": {
        "T1": "T1W_SE_{plane}",
        "T2": "T2W_TSE_{plane}",
        "PD": "PDW_TSE_{plane}",
        "T2_FLAIR": "FLAIR_{plane}",
        "T1_FLAIR": "T1W_FLAIR_{plane}",
        "STIR": "STIR_{plane}",
        "DWI": "DWI_{plane}",
    },
    "uih": {
        "T1": "t1_fse_{plane}",
        "T2": "t2_fse_{plane}",
        "PD": "pd_fse_{plane}",
        "T2_FLAIR": "t2_flair_{plane}",
        "T1_FLAIR": "t1_flair_{plane}",
        "STIR": "t2_stir_{plane}",
        "DWI": "dwi_b1000_{plane}",
    },
    "canon": {
        "T1": "T1WI_SE_{plane}",
        "T2": "T2WI_FSE_{plane}",
        "PD": "PDWI_FSE_{plane}",
        "T2_FLAIR": "FLAIR_{plane}",
        "T1_FLAIR": "T1_FLAIR_{plane}",
        "STIR": "STIR_{plane}",
        "DWI": "DWI_{plane}",
    },
    "zh": {
        "T1": "{plane}T1WI",
        "T2": "{plane}T2WI",
        "PD": "{plane}PDWI",
        "T2_FLAIR": "{plane}T2 FLAIR",
        "T1_FLAIR": "{plane}T1 FLAIR",
        "STIR": "{plane}STIR",
        "DWI": "{plane}弥散DWI",
    },
    "en": {
        "T1": "{plane} T1",
        "T2": "{plane} T2",
        "PD": "{plane} PD",
        "T2_FLAIR": "{plane} FLAIR",
        "T1_FLAIR": "{plane} T1 FLAIR",
        "STIR": "{plane} STIR",
        "DWI": "{plane} DWI",
    },
}
BODY_ZH: Final = {
    "CHEST": "胸部",
    "SHOULDER": "肩关节",
    "ELBOW": "肘关节",
    "WRIST": "腕关节",
    "HAND": "手",
    "HIP": "髋关节",
    "KNEE": "膝关节",
    "ANKLE": "踝关节",
    "FOOT": "足",
    "CSPINE": "颈椎",
    "TSPINE": "胸椎",
    "LSPINE": "腰椎",
    "SACRUM": "骶尾椎",
    "PELVIS": "骨盆",
    "ABDOMEN": "腹部",
    "UPPER_ABDOMEN": "上腹部",
    "LOWER_ABDOMEN": "下腹部",
    "ADRENAL": "肾上腺",
    "HEAD": "颅脑",
    "SELLA": "鞍区",
    "SINUS": "鼻窦",
    "TIBIA": "胫腓骨",
    "FEMUR": "股骨",
}
BODY_EN: Final = {
    "CHEST": "Chest",
    "SHOULDER": "Shoulder",
    "ELBOW": "Elbow",
    "WRIST": "Wrist",
    "HAND": "Hand",
    "HIP": "Hip",
    "KNEE": "Knee",
    "ANKLE": "Ankle",
    "FOOT": "Foot",
    "CSPINE": "C-Spine",
    "TSPINE": "T-Spine",
    "LSPINE": "L-Spine",
    "SACRUM": "Sacrum Coccyx",
    "PELVIS": "Pelvis",
    "ABDOMEN": "Abdomen",
    "UPPER_ABDOMEN": "Upper Abdomen",
    "LOWER_ABDOMEN": "Lower Abdomen",
    "ADRENAL": "Adrenal",
    "HEAD": "Brain",
    "SELLA": "Sella Pituitary",
    "SINUS": "Paranasal Sinus",
    "TIBIA": "Tibia Fibula",
    "FEMUR": "Femur",
}
BODY_TAG: Final = {
    "CHEST": "CHEST",
    "SHOULDER": "SHOULDER",
    "ELBOW": "ELBOW",
    "WRIST": "WRIST",
    "HAND": "HAND",
    "HIP": "HIP",
    "KNEE": "KNEE",
    "ANKLE": "ANKLE",
    "FOOT": "FOOT",
    "CSPINE": "CSPINE",
    "TSPINE": "TSPINE",
    "LSPINE": "LSPINE",
    "SACRUM": "SSPINE",
    "PELVIS": "PELVIS",
    "ABDOMEN": "ABDOMEN",
    "UPPER_ABDOMEN": "ABDOMEN",
    "LOWER_ABDOMEN": "ABDOMEN",
    "ADRENAL": "ABDOMEN",
    "HEAD": "HEAD",
    "SELLA": "HEAD",
    "SINUS": "SINUS",
    "TIBIA": "LEG",
    "FEMUR": "THIGH",
}
VARIANT_ZH: Final = {
    "PA_ONLY": "后前位",
    "FRONTAL": "正位",
    "FRONTAL_LATERAL": "正侧位",
    "FRONTAL_OBLIQUE": "正斜位",
    "INFANT": "婴幼儿正位",
    "ERECT": "立位平片",
    "SUPINE": "卧位平片",
    "BOTH_OBLIQUES": "双斜位",
    "OPEN_MOUTH": "张口位",
    "FLEXION_EXTENSION": "过伸过屈位",
}
VARIANT_EN: Final = {
    "PA_ONLY": "PA",
    "FRONTAL": "AP",
    "FRONTAL_LATERAL": "AP and Lateral",
    "FRONTAL_OBLIQUE": "AP and Oblique",
    "INFANT": "Infant AP",
    "ERECT": "Erect",
    "SUPINE": "Supine",
    "BOTH_OBLIQUES": "Both Obliques",
    "OPEN_MOUTH": "Open Mouth",
    "FLEXION_EXTENSION": "Flexion Extension",
}
VIEW_TAG: Final = {
    "PA": "PA",
    "AP": "AP",
    "LAT": "LL",
    "OBL": "LAO",
    "OPEN_MOUTH": "AP",
    "FLEXION": "LL",
    "EXTENSION": "LL",
    "DECUBITUS": "LLD",
}
VIEW_ZH: Final = {
    "PA": "后前位",
    "AP": "正位",
    "LAT": "侧位",
    "OBL": "斜位",
    "OPEN_MOUTH": "张口位",
    "FLEXION": "过屈位",
    "EXTENSION": "过伸位",
    "DECUBITUS": "侧卧水平位",
}
VIEW_EN: Final = {
    "PA": "PA",
    "AP": "AP",
    "LAT": "Lateral",
    "OBL": "Oblique",
    "OPEN_MOUTH": "Open Mouth",
    "FLEXION": "Flexion",
    "EXTENSION": "Extension",
    "DECUBITUS": "Decubitus",
}
OBLIQUE_SIDES: Final = (("LAO", "左前斜位"), ("RAO", "右前斜位"))
# phase -> (English word, Chinese word, seconds after the injection starts at CT_BOLUS_START)
CT_PHASES: Final = {
    "ARTERIAL": ("arterial", "动脉期", 30),
    "PORTAL": ("portal venous", "门脉期", 65),
    "VENOUS": ("venous", "静脉期", 70),
    "DELAYED": ("delayed", "延迟期", 300),
}
CT_BOLUS_START: Final = 10 * 3600 + 12 * 60  # 10:12:00; the plain scan is at 10:10:00
STUDY_DATE: Final = dt.date(2026, 10, 14)


@dataclass
class SeriesPlan:
    modality: str
    description: str
    n_images: int
    attrs: dict[str, object] = field(default_factory=dict)
    plane: str | None = None
    thickness: float = 5.0
    views: tuple[str, ...] = ()
    drop_slice: bool = False


def _lat_words(side: str | None, style: str) -> str:
    if side is None:
        return ""
    return {"zh": {"L": "左侧", "R": "右侧", "B": "双侧"}, "en": {"L": "Left", "R": "Right", "B": "Bilateral"}}[
        "zh" if style == "zh" else "en"
    ][side]


def study_description(item: Item, style: str, *, side: str | None = None) -> str:
    """How a hospital writes the order for ``item`` in ``style`` (Chinese for zh, else English)."""
    side = item.laterality if side is None else side
    if style == "zh":
        lat = _lat_words(side, style)
        if item.modality == "DR":
            return f"{lat}{BODY_ZH[item.body_part]}{VARIANT_ZH.get(item.variant or '', '正位')}"
        contrast = "平扫+增强" if item.contrast == "enhanced" else "平扫"
        return f"{item.modality}{lat}{BODY_ZH[item.body_part]}{contrast}"
    lat = _lat_words(side, style)
    body = BODY_EN[item.body_part]
    if item.modality == "DR":
        return " ".join(filter(None, ("DX", body, lat, VARIANT_EN.get(item.variant or "", "AP"))))
    contrast = "plain + contrast" if item.contrast == "enhanced" else "plain"
    return " ".join(filter(None, (item.modality, body, lat, contrast)))


def _mr_series(req: SequenceReq, style: str, post: bool = False) -> SeriesPlan:
    weighting = req.weighting[0]
    plane = (req.plane or ["AXIAL"])[0]
    scanning, variant, tr, te, ti = MR_PARAMETERS[weighting]
    names = SEQ_NAMES[style]
    description = names[weighting].format(plane=PLANE_WORDS[style][plane])
    attrs: dict[str, object] = {
        "ScanningSequence": scanning,
        "SequenceVariant": variant,
        "RepetitionTime": tr,
        "EchoTime": te,
        "MRAcquisitionType": "2D",
    }
    if ti is not None:
        attrs["InversionTime"] = ti
    if req.fat_suppressed or weighting == "STIR":
        attrs["ScanOptions"] = "FS" if weighting != "STIR" else "IR"
        if req.fat_suppressed and weighting != "STIR":
            description += {
                "zh": "压脂",
                "siemens": "_fs",
                "ge": " FS",
                "philips": "_SPAIR",
                "uih": "_fs",
                "canon": "_FS",
            }.get(style, " FS")
    if weighting == "DWI":
        attrs["DiffusionBValue"] = 1000.0
        attrs["ImageType"] = ["DERIVED", "PRIMARY", "DIFFUSION", "TRACEW"]
    if post:
        attrs["ContrastBolusAgent"] = "Gd-DTPA"
        description += {
            "zh": "增强",
            "siemens": "_post",
            "ge": " +C",
            "philips": "_CE",
            "uih": "_+c",
            "canon": "_CE",
        }.get(style, " +C")
    return SeriesPlan("MR", description, 6, attrs, plane=plane, thickness=3.0 if weighting != "DWI" else 5.0)


def _tm(seconds: float) -> str:
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours:02d}{rest // 60:02d}{rest % 60:02d}"


def _ct_phases(item: Item) -> list[str]:
    """The post-contrast phases of a complete enhanced CT of ``item``: the first name of each named
    group, then arterial, portal, delayed up to the minimum."""
    req = item.requires.post_contrast_phases
    if req is None:
        return []
    phases: list[str] = [group[0] for group in req.named]
    for phase in ("ARTERIAL", "PORTAL", "DELAYED"):
        if len(phases) >= req.min:
            break
        if phase not in phases:
            phases.append(phase)
    return phases


def plan_study(item: Item, style: str, *, defect: str | None = None) -> tuple[str, list[SeriesPlan]]:
    """The series of a complete study for ``item`` (minus what ``defect`` removes)."""
    if style not in STYLES:
        raise ValueError(f"style {style!r} is not one of {', '.join(STYLES)}")
    if defect is not None and defect not in DEFECTS:
        raise ValueError(f"defect {defect!r} is not one of {', '.join(DEFECTS)}")
    side = item.laterality
    order_side = side
    if defect == "left_vs_right":
        order_side = "L"
        side = "R"
    description = study_description(item, "zh" if style == "zh" else "en", side=order_side)
    plans: list[SeriesPlan] = []
    if item.modality == "DR":
        assert item.requires.views is not None
        groups = item.requires.views.groups
        if defect == "missing_view":
            groups = groups[:-1]
        sides = iter(OBLIQUE_SIDES)  # a second oblique is of the other side
        for group in groups:
            view = group[0]
            words = VIEW_ZH[view] if style in ("zh", "uih") else VIEW_EN[view]
            body = BODY_ZH[item.body_part] if style in ("zh", "uih") else BODY_EN[item.body_part]
            attrs: dict[str, object] = {"BodyPartExamined": BODY_TAG[item.body_part]}
            tag = VIEW_TAG[view]
            if view == "OBL" and item.requires.views.opposite_obliques:
                tag, zh_words = next(sides)
                words = zh_words if style in ("zh", "uih") else tag
            if style not in ("zh", "uih"):  # Chinese DR systems often leave ViewPosition empty
                attrs["ViewPosition"] = tag
            if side in ("L", "R"):
                attrs["ImageLaterality"] = side
            plans.append(SeriesPlan("DX", f"{body} {words}", 1, attrs, views=(view,)))
    elif item.modality == "CT":
        thickness = item.requires.max_slice_thickness_mm.value if item.requires.max_slice_thickness_mm else 5.0
        body = BODY_ZH[item.body_part] if style == "zh" else BODY_EN[item.body_part]
        base = {"BodyPartExamined": BODY_TAG[item.body_part], "KVP": 120.0}
        if side in ("L", "R"):
            base["Laterality"] = side
        plain_name = f"{body} 平扫 {thickness:g}mm" if style == "zh" else f"{body} {thickness:g}mm Plain"
        plans.append(
            SeriesPlan(
                "CT",
                plain_name,
                8,
                {**base, "AcquisitionTime": _tm(CT_BOLUS_START - 120)},
                plane="AXIAL",
                thickness=thickness,
            )
        )
        phases = _ct_phases(item)
        if defect == "missing_post_contrast":
            phases = phases[:-1]
        for phase in phases:
            en, zh, delay = CT_PHASES[phase]
            name = f"{body} 增强{zh} {thickness:g}mm" if style == "zh" else f"{body} {en} {thickness:g}mm"
            attrs = {
                **base,
                "ContrastBolusAgent": "Iohexol 350",
                "ContrastBolusStartTime": _tm(CT_BOLUS_START),
                "AcquisitionTime": _tm(CT_BOLUS_START + delay),
            }
            plans.append(SeriesPlan("CT", name, 8, attrs, plane="AXIAL", thickness=thickness))
    else:
        assert item.requires.sequences is not None
        required = list(item.requires.sequences.required)
        planes_needed = int(item.requires.min_planes.value) if item.requires.min_planes else 0
        if item.requires.sequences.alternatives:  # the first accepted protocol, in full
            first = item.requires.sequences.alternatives[0]
            required += first.required
            planes_needed = max(planes_needed, first.min_planes or 0)
        if defect == "missing_flair":
            required = [r for r in required if r.weighting != ["T2_FLAIR"]]
        for req in required:
            plans.append(_mr_series(req, style))
        covered = {p.plane for p in plans}
        for plane in ("SAGITTAL", "CORONAL", "AXIAL"):
            if len(covered) >= planes_needed:
                break
            if plane not in covered:
                plans.append(
                    _mr_series(
                        SequenceReq(
                            weighting=["T2"],
                            plane=[plane],
                            fat_suppressed=True,
                            label_en="x",
                            label_zh="x",
                            source="sample",
                        ),
                        style,
                    )
                )
                covered.add(plane)
        if item.requires.post_contrast_t1_planes is not None:
            planes: tuple[PlaneName, ...] = ("AXIAL", "SAGITTAL", "CORONAL")
            for plane in planes[: int(item.requires.post_contrast_t1_planes.value)]:
                fs = item.body_part in ("CSPINE", "TSPINE", "LSPINE")
                plans.append(
                    _mr_series(
                        SequenceReq(
                            weighting=["T1"],
                            plane=[plane],
                            fat_suppressed=fs or None,
                            label_en="x",
                            label_zh="x",
                            source="sample",
                        ),
                        style,
                        post=True,
                    )
                )
        for plan in plans:
            plan.attrs["BodyPartExamined"] = BODY_TAG[item.body_part]
            if side in ("L", "R"):
                plan.attrs["Laterality"] = side
    if defect == "dropped_slice":
        stacks = [p for p in plans if p.n_images >= 3]
        if not stacks:
            raise ValueError(f"item {item.code} has no slice stack to drop a slice from")
        stacks[0].drop_slice = True
    return description, plans


def _uid(*parts: object) -> str:
    return str(derive_uid("catalog-study", *parts))


SAMPLE_SIDE: Final = {"CT": 128, "MR": 64, "DX": 128}
"""Rows and Columns of the sample images per modality: small, yet large enough for the
image-quality metrics (the DR noise mode needs at least 50 anatomy blocks, the CT noise 30
soft-tissue tiles)."""


def _sample_pixels(modality: str, *, seed: int, height: float = 0.0) -> npt.NDArray[np.uint16]:
    """A small plausible image of ``modality`` (12-bit stored values): a water section in air for
    CT (stored as HU + 1024) that narrows like a skull vault towards the last slice (``height``
    0..1 along the stack), a head with Rician noise for MR, a chest for DR. Blank images would be
    judged unmeasurable (a person must look), which is right for a real upload but not what these
    studies are for: they show the item mapping and completeness."""
    if modality == "CT":
        radius = 0.7 * float(np.sqrt(max(0.04, 1.0 - height**2)))
        hu = phantoms.ct_water_cylinder(n_slices=1, size=SAMPLE_SIDE["CT"], radius_fraction=radius, seed=seed)[0]
        return np.clip(hu.astype(np.int32) + 1024, 0, 4095).astype(np.uint16)
    if modality == "MR":
        return phantoms.mr_head_phantom(n_slices=1, size=SAMPLE_SIDE["MR"], seed=seed)[0]
    return phantoms.dr_chest_phantom(rows=SAMPLE_SIDE["DX"], cols=SAMPLE_SIDE["DX"], seed=seed)


def build_study(
    item: Item,
    style: str,
    *,
    defect: str | None = None,
    seed: int = 0,
    patient_id: str | None = None,
    pixels: bool = False,
) -> list[Dataset]:
    """The headers (and, with ``pixels``, tiny zero images) of one study for ``item``."""
    description, plans = plan_study(item, style, defect=defect)
    key = (item.code, style, defect, seed)
    study_uid = _uid("study", *key)
    patient = patient_id or "P" + _uid("patient", *key)[-8:]
    infant = item.variant == "INFANT"
    birth = dt.date(2025, 3, 2) if infant else dt.date(1975, 6, 15)
    age = "019M" if infant else "051Y"
    datasets: list[Dataset] = []
    for s_index, plan in enumerate(plans, start=1):
        series_uid = _uid("series", s_index, *key)
        positions = list(range(plan.n_images))
        if plan.drop_slice:
            del positions[plan.n_images // 2]
        for position in positions:
            ds = Dataset()
            ds.SpecificCharacterSet = "ISO_IR 192"
            ds.SOPClassUID = SOP_CLASS[plan.modality]
            ds.SOPInstanceUID = _uid("sop", s_index, position, *key)
            ds.StudyInstanceUID = study_uid
            ds.SeriesInstanceUID = series_uid
            ds.Modality = plan.modality
            ds.StudyDescription = description
            if style == "zh":
                ds.RequestedProcedureDescription = description
            ds.SeriesDescription = plan.description
            ds.ProtocolName = plan.description
            ds.SeriesNumber = s_index
            ds.InstanceNumber = position + 1
            ds.PatientName = "Wang^Fang=王^芳"
            ds.PatientID = patient
            ds.PatientSex = "F"
            ds.PatientBirthDate = f"{birth:%Y%m%d}"
            ds.PatientAge = age
            ds.StudyDate = f"{STUDY_DATE:%Y%m%d}"
            ds.StudyTime = "101500"
            ds.SeriesDate = ds.StudyDate
            ds.AccessionNumber = "A" + study_uid[-9:]
            ds.InstitutionName = "重庆医科大学附属第一医院"
            ds.Manufacturer = {
                "siemens": "SIEMENS",
                "ge": "GE MEDICAL SYSTEMS",
                "philips": "Philips",
                "uih": "UIH",
                "canon": "CANON_MEC",
            }.get(style, "SIEMENS")
            for k, v in plan.attrs.items():
                setattr(ds, k, v)
            ds.Rows = ds.Columns = SAMPLE_SIDE[plan.modality]
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.BitsAllocated = 16
            ds.BitsStored = 12
            ds.HighBit = 11
            ds.PixelRepresentation = 0
            if plan.modality in ("CT", "MR"):
                iop = IOP[plan.plane or "AXIAL"]
                normal = np.cross(iop[:3], iop[3:])
                ds.ImageOrientationPatient = iop
                ds.ImagePositionPatient = [
                    float(x)
                    for x in (
                        -100.0 * np.array(iop[:3]) - 100.0 * np.array(iop[3:]) + position * plan.thickness * normal
                    )
                ]
                ds.PixelSpacing = [0.8, 0.8]
                ds.SliceThickness = plan.thickness
                if plan.modality == "CT":
                    ds.RescaleIntercept = -1024
                    ds.RescaleSlope = 1
            else:
                ds.PixelSpacing = [0.15, 0.15]
            if pixels:
                height = position / max(1, plan.n_images - 1)
                ds.PixelData = _sample_pixels(plan.modality, seed=position, height=height).tobytes()
            datasets.append(ds)
    return datasets


def write_study(datasets: Iterable[Dataset], folder: Path) -> list[Path]:
    """Write datasets (with pixel data) as Part-10 files ``folder/S<series>/I<instance>.dcm``."""
    paths = []
    for ds in datasets:
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        path = folder / f"S{int(ds.SeriesNumber):02d}" / f"I{int(ds.InstanceNumber):03d}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        paths.append(path)
    return paths


@dataclass(frozen=True)
class CatalogCase:
    """One generated study of the catalog set and what it should get."""

    name: str
    item_code: str
    style: str
    defect: str | None
    study_instance_uid: str
    expected_verdict: str
    expected_category: str | None


DEFECT_CASES: Final = (
    ("YB-002", "missing_view", "completeness"),
    ("YB-045", "missing_post_contrast", "completeness"),
    ("YB-054", "missing_flair", "completeness"),
    ("YB-036", "dropped_slice", "continuity"),
    ("YB-013", "left_vs_right", "metadata"),
)


def write_catalog_set(out_dir: Path, items: Iterable[Item], *, seed: int = 0) -> list[CatalogCase]:
    """One complete study per item (styles rotating through Chinese, English and five vendors),
    plus the defective variants of ``DEFECT_CASES``; files arrive 30 min after the exam."""
    import os

    cases: list[CatalogCase] = []
    by_code = {}
    received = dt.datetime.combine(STUDY_DATE, dt.time(10, 45), tzinfo=dt.timezone(dt.timedelta(hours=8))).timestamp()
    plan: list[tuple[Item, str, str | None, str, str | None]] = []
    for index, item in enumerate(items):
        by_code[item.code] = item
        plan.append((item, STYLES[index % len(STYLES)], None, "pass", None))
    for code, case_defect, case_category in DEFECT_CASES:
        if code in by_code:
            verdict = "review" if case_defect == "left_vs_right" else "fail"
            style = "zh" if case_defect != "missing_flair" else "siemens"
            plan.append((by_code[code], style, case_defect, verdict, case_category))
    for item, style, defect, verdict, category in plan:
        datasets = build_study(item, style, defect=defect, seed=seed, pixels=True)
        name = f"{item.code}-{style}" + (f"-{defect}" if defect else "")
        for path in write_study(datasets, out_dir / name):
            os.utime(path, (received, received))
        cases.append(CatalogCase(name, item.code, style, defect, datasets[0].StudyInstanceUID, verdict, category))
    return cases
