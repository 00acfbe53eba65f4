"""Which MR sequence a series is: weighting, fat suppression, plane, contrast — and why.

The acquisition parameters decide; the series name is a hint. Hospitals name the same sequence in
Chinese, English and each vendor's spelling (``t2_tirm_tra_dark-fluid``, ``Ax T2 FLAIR``,
``FLAIR_TRA``, ``横断位T2 FLAIR``), and a name can be wrong (a protocol copied and edited), so the
name is used only where the parameters are missing or inconclusive, to refine what the parameters
cannot see (an ADC map of a diffusion series, a FLAIR whose inversion time was not exported), and
to record a conflict when it disagrees.

Weighting ranges (ms) follow the Chinese MRI technique expert consensus, brain (中华放射学杂志
2016; requirements S5): T2WI TR > 2000, TE 80-130; T1WI TR 300-800, TE < 30; PDWI long TR,
TE < 30; T2-FLAIR TR 8000-10000, TI 2000-3000; T1-FLAIR TI 600-900. The accepted ranges below are
wider (site default) so that 3 T, fast spin echo and 3D variants of the same contrasts are
recognised; where a value lies outside the consensus range the evidence says so. TE = 30 ms is
accepted for T1WI at the consensus limit "TE < 30" (spin-echo T1 at TR 500/TE 30 exists); the
evidence says so. Below 1 T the inversion ranges follow the shorter tissue T1 (see LOW_FIELD_T).

Beyond the weightings the items name, the module tells apart what a study also holds, so that
none of it is mistaken for one: T2*-weighted GRE (T2STAR), perfusion (ImageType PERFUSION/ASL,
perfusion names), BOLD fMRI (gradient-echo EPI with a BOLD TE; a GRE time series at series
level), and field maps and diffusion-derived maps (OTHER, with the reason). A b-value of 0 is no
evidence of diffusion (GE writes its b-value tag on every EPI); :func:`identify_series` decides a
series from all its images (a DTI whose first image is its b = 0 volume is DWI).

Classic objects: RepetitionTime (0018,0080), EchoTime (0018,0081), InversionTime (0018,0082),
ScanningSequence (0018,0020), SequenceVariant (0018,0021), ScanOptions (0018,0022),
DiffusionBValue (0018,9087) and vendor b-value tags, ImageType (0008,0008). Enhanced MR objects:
the same from the functional groups (MRTimingAndRelatedParametersSequence, MREchoSequence,
MRModifierSequence, MRDiffusionSequence, MRImageFrameTypeSequence) and the MR Pulse Sequence
module (EchoPulseSequence, EchoPlanarPulseSequence, SpectrallySelectedSuppression).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import struct
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from pydicom.dataset import Dataset
from pydicom.tag import Tag

from qc_pipeline.catalog.contrast import contrast_agent
from qc_pipeline.catalog.items import MRNamePatterns, Vocabulary, shipped_vocabulary
from qc_pipeline.io.geometry import (
    DEFAULT_OBLIQUE_TOLERANCE_DEG,
    Plane,
    as_floats,
    frame_functional_group,
    frame_geometry,
    has_functional_groups,
    header_text,
    header_value,
    plane_from_orientation,
)

logger = logging.getLogger(__name__)


class Weighting(StrEnum):
    """The contrast of an MR series, as the recognition items name it."""

    T1 = "T1"
    T2 = "T2"
    PD = "PD"
    T2_FLAIR = "T2_FLAIR"
    T1_FLAIR = "T1_FLAIR"
    STIR = "STIR"
    DWI = "DWI"
    ADC = "ADC"
    SWI = "SWI"
    T2STAR = "T2STAR"
    """T2*-weighted gradient echo (long TE, no SWI processing)."""
    PERFUSION = "PERFUSION"
    """DSC/DCE/ASL perfusion, source images or maps."""
    BOLD = "BOLD"
    """Gradient-echo EPI time series with a BOLD echo time (fMRI)."""
    MRA = "MRA"
    LOCALIZER = "LOCALIZER"
    OTHER = "OTHER"
    """Identified, but none of the above (field map, FA map, EPI reference...); the evidence says what."""
    UNKNOWN = "UNKNOWN"
    """Neither the parameters nor the name tell."""

    @property
    def label(self) -> str:
        return _LABELS.get(self, self.value)


_LABELS: Final = {
    Weighting.T1: "T1WI",
    Weighting.T2: "T2WI",
    Weighting.PD: "PDWI",
    Weighting.T2_FLAIR: "T2-FLAIR",
    Weighting.T1_FLAIR: "T1-FLAIR",
    Weighting.T2STAR: "T2*WI",
    Weighting.PERFUSION: "PWI",
}

# --- Parameter ranges, ms. (low, high) inclusive; "core" = the S5 consensus range. ------------
T2_MIN_TR: Final = 2000.0  # S5: TR > 2000
T2_MIN_TE: Final = 70.0  # S5 core 80-130; 70 accepted for short-TE T2 FSE (site default)
T2_CORE_TE: Final = (80.0, 130.0)
T1_TR: Final = (300.0, 1000.0)  # S5 core 300-800; up to 1000 accepted for SE T1 (site default)
T1_CORE_TR: Final = (300.0, 800.0)
T1_MAX_TE: Final = 30.0  # S5: "TE < 30"; TE = 30 accepted at the limit (the evidence says so)
T1_CORE_MAX_TE: Final = 30.0
PD_MIN_TR: Final = 1500.0  # "long TR" (site default: above the T1 range, allows 1.5 T knee PD)
PD_MAX_TE: Final = 45.0  # S5 core TE < 30; fast spin echo PD up to ~45 (site default)
PD_CORE_MAX_TE: Final = 30.0
T2_FLAIR_TI: Final = (1500.0, 3500.0)  # S5 core 2000-3000 (brief: 1800-3000); 3D FLAIR ~1600-1800
T2_FLAIR_CORE_TI: Final = (1800.0, 3000.0)
T2_FLAIR_MIN_TR: Final = 4500.0  # S5 core 8000-10000 (brief: 6000-12000); 3D FLAIR ~4800-6500
T2_FLAIR_CORE_TR: Final = (6000.0, 12000.0)
T2_FLAIR_MIN_TE: Final = 50.0  # a long inversion with a short TE is not a T2-FLAIR
T1_FLAIR_TI: Final = (500.0, 1200.0)  # S5 core 600-900; 3 T T1-FLAIR reaches ~1000 (site default)
T1_FLAIR_CORE_TI: Final = (600.0, 900.0)
T1_FLAIR_TR: Final = (1200.0, 3500.0)  # brief: 1500-3000
T1_FLAIR_MAX_TE: Final = 30.0
STIR_TI: Final = (80.0, 300.0)  # brief: 100-250 (1.5 T ~150, 3 T ~230); widened at both ends
STIR_CORE_TI: Final = (100.0, 250.0)
GRE_IR_T1_TI: Final = (300.0, 1300.0)  # IR-prepared 3D GRE: BRAVO ~450, MPRAGE 900-1100
GRE_T1_MAX_TE: Final = 10.0  # spoiled GRE with short TE (FLASH, VIBE, FSPGR, TFE)
GRE_T1_MAX_TR: Final = 1000.0
GRE_T2STAR_MIN_TE: Final = 15.0  # GRE with long TE: T2*-weighted (hemo, MEDIC, SWI-like)
GRE_LIKE_MAX_TE: Final = 6.0  # a TE this short is only reached by gradient echoes
DWI_MIN_B: Final = 500.0  # s/mm²; b >= 500 is diffusion-weighted (site default)
BOLD_TE: Final = (
    12.0,
    60.0,
)  # gradient-echo EPI: BOLD TE ~ T2* of grey matter (3 T ~30, 1.5 T ~45-50); multi-echo TE1 ~12-15
BOLD_CORE_TE: Final = (25.0, 50.0)
BOLD_TR: Final = (300.0, 5000.0)  # multiband fMRI reaches TR 300-500 ms; sparse/slow designs up to 5 s

# Low field. Tissue T1 shortens with field strength, T1 = A * B0^b (Bottomley et al., Med Phys
# 1984;11:425-448: b ~ 0.3 for brain, muscle and fat), so inversion times and the TR of IR
# sequences built for 1.5/3 T scale by (B0 / 1.5 T)^0.3 below LOW_FIELD_T; CSF T1 (~4 s) hardly
# changes, and a T2-FLAIR nulls CSF at TI_null = T1_csf * ln(2 / (1 + exp(-TR / T1_csf)))
# (inversion recovery with incomplete recovery at short TR), so at low field the FLAIR TI is
# accepted down to CSF_NULL_TOLERANCE * TI_null of its own TR. At or above LOW_FIELD_T, or when
# the field strength is unknown, the 1.5/3 T ranges above apply unchanged.
LOW_FIELD_T: Final = 1.0
MAX_PLAUSIBLE_FIELD_T: Final = 20.0  # larger values are not tesla (gauss, millitesla): field unknown
TISSUE_T1_FIELD_EXPONENT: Final = 0.3
REFERENCE_FIELD_T: Final = 1.5
CSF_T1_MS: Final = 4000.0
CSF_NULL_TOLERANCE: Final = 0.85
_FIXED_FIELD_SCANNERS: Final = {"HYPERFINE": 0.064}
"""Scanners with one field strength, for headers without MagneticFieldStrength (Hyperfine Swoop: 64 mT)."""

_FAT_SAT_OPTIONS: Final = frozenset(
    {"FS", "SFS", "FSAT", "FAT-SAT", "FATSAT", "FAT_SAT", "FAT SAT", "SPIR", "SPAIR", "WE", "CHESS"}
)
_DIFFUSION_IMAGE_TYPES: Final = frozenset({"DIFFUSION", "TRACEW", "TRACE", "ISODWI", "ISOTROPIC"})
_DIFFUSION_MAPS: Final = frozenset({"FA", "TENSOR", "TENSOR_B0", "EADC", "EXP", "COLFA", "FA_COLOR", "MD", "TRACE_B0"})
_PERFUSION_IMAGE_TYPES: Final = frozenset(
    {"PERFUSION", "ASL", "DSC", "DCE", "RCBF", "RCBV", "CBF", "CBV", "MTT", "TTP"}
)
_BOLD_IMAGE_TYPES: Final = frozenset({"FMRI", "BOLD"})


@dataclass(frozen=True, slots=True)
class MRParameters:
    """The header values that tell a sequence, read from a classic or enhanced MR object."""

    repetition_time: float | None = None
    echo_time: float | None = None
    inversion_time: float | None = None
    scanning_sequence: frozenset[str] = frozenset()
    """SE, IR, GR, EP, RM (enhanced objects: derived from EchoPulseSequence etc.)."""
    sequence_variant: frozenset[str] = frozenset()
    scan_options: tuple[str, ...] = ()
    image_type: tuple[str, ...] = ()
    acquisition_contrast: tuple[str, ...] = ()
    b_values: tuple[float, ...] = ()
    b_value_source: str | None = None
    flip_angle: float | None = None
    inversion_recovery: bool | None = None
    """Enhanced MR InversionRecovery (0018,9009); None when not stated."""
    fat_suppression: str | None = None
    """Why the tags say fat-suppressed (e.g. "ScanOptions (0018,0022) FS"), or None."""
    angiography: str | None = None
    """Why the tags say angiography (TimeOfFlightContrast, PhaseContrast), or None."""
    contrast_agent: str | None = None
    orientation: tuple[float, ...] | None = None
    enhanced: bool = False
    field_strength: float | None = None
    """Tesla: MagneticFieldStrength (0018,0087), or the one field of a fixed-field scanner."""
    field_source: str | None = None
    epi_source: str | None = None
    """Why the object is echo-planar when ScanningSequence does not say EP (Philips technique tag)."""

    @property
    def is_inversion_recovery(self) -> bool:
        return (
            "IR" in self.scanning_sequence
            or self.inversion_recovery is True
            or (self.inversion_time is not None and self.inversion_recovery is not False)
        )

    @property
    def max_b_value(self) -> float | None:
        return max(self.b_values) if self.b_values else None


@dataclass(frozen=True, slots=True)
class SequenceInfo:
    """What an MR series is, with the reasons, in the order they were weighed."""

    weighting: Weighting
    fat_suppressed: bool
    plane: Plane | None
    post_contrast: bool
    evidence: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NameHints:
    """What a series name suggests. ``post_contrast`` is False where it says pre-contrast."""

    weighting: Weighting | None = None
    weighting_reason: str | None = None
    fat_suppressed: str | None = None
    post_contrast: bool | None = None
    post_reason: str | None = None
    plane: Plane | None = None
    plane_reason: str | None = None


# --- reading ----------------------------------------------------------------------------------


def _number(value: object) -> float | None:
    """The first number of a header value (multi-value, text, raw little-endian bytes), or None."""
    if value is None:
        return None
    if isinstance(value, bytes):
        text = value.strip(b"\x00 ")
        try:
            value = text.decode("ascii").split("\\")[0]
        except UnicodeDecodeError:
            value = None
        if value is None or not re.fullmatch(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*", value):
            if len(text) == 4:
                value = struct.unpack("<f", text)[0]
            elif len(text) == 8:
                value = struct.unpack("<d", text)[0]
            else:
                return None
    if isinstance(value, str):
        value = value.split("\\")[0].strip()
    elif isinstance(value, Iterable):
        value = next(iter(value), None)
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def cs_values(value: object) -> tuple[str, ...]:
    """A CS value (multi-value, list or ``a\\b`` text) as upper-case stripped strings; () if absent."""
    if value is None:
        return ()
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    items: Iterable[object]
    if isinstance(value, str):
        items = value.split("\\")
    elif isinstance(value, Iterable):
        items = value
    else:
        items = (value,)
    return tuple(s for s in (str(v).strip().strip("\x00").strip().upper() for v in items) if s)


def _positive(value: float | None) -> float | None:
    return value if value is not None and value > 0 else None


# Vendor b-value tags: (tag, private creator word, manufacturer word, description).
_VENDOR_B_TAGS: Final = (
    (0x0019100C, "SIEMENS", "SIEMENS", "Siemens B_value (0019,100C)"),
    (0x00431039, "GEMS", "GE", "GE slop_int_6 (0043,1039) first value"),
    (0x20011003, "PHILIPS", "PHILIPS", "Philips Diffusion B-Factor (2001,1003)"),
    (0x00651009, "IMAGE PRIVATE HEADER", "UIH", "United Imaging b-value (0065,1009)"),
)


def _vendor_b_value(ds: Dataset) -> tuple[float, str] | None:
    manufacturer = (header_text(ds, "Manufacturer") or "").upper()
    for tag, creator_word, maker_word, name in _VENDOR_B_TAGS:
        raw = header_value(ds, tag)
        if raw is None:
            continue
        creator_tag = Tag(tag).group << 16 | ((Tag(tag).element >> 8) & 0xFF)
        creator = header_value(ds, creator_tag)
        if creator is not None:
            if creator_word not in str(creator).upper():
                continue
        elif not re.search(rf"\b{maker_word}\b", manufacturer):
            continue  # without its private creator, trust the tag only on that vendor's data
        value = _number(raw)
        if value is None:
            continue
        if maker_word == "GE" and value >= 1e9:
            value -= 1e9 * (value // 1e9)  # some GE versions add 10^9 to the b-value
        return value, name
    return None


def diffusion_b_value(ds: Dataset) -> float | None:
    """The b-value (s/mm²) of one classic object: DiffusionBValue (0018,9087), else a vendor tag."""
    value = _number(header_value(ds, "DiffusionBValue"))
    if value is not None and value >= 0:
        return value
    vendor = _vendor_b_value(ds)
    return vendor[0] if vendor is not None else None


def _fat_from_options(options: Iterable[str]) -> str | None:
    for option in options:
        if (
            option in _FAT_SAT_OPTIONS
            or option.startswith("FS_")
            or "FATSAT" in option.replace("-", "").replace("_", "")
        ):
            return f"ScanOptions (0018,0022) {option}"
    return None


def _first_frame_item(ds: Dataset, keyword: str) -> Dataset | None:
    for item in frame_functional_group(ds, keyword):
        if item is not None:
            return item
    return None


def read_mr_parameters(ds: Dataset, vocabulary: Vocabulary | None = None) -> MRParameters:
    """The sequence parameters of one MR object; absent or garbled values are None/empty.

    ``vocabulary`` gives the contrast-agent placeholders (the catalog's lexicon; the shipped
    lexicon when None)."""
    enhanced = has_functional_groups(ds)
    tr = _positive(_number(header_value(ds, "RepetitionTime")))
    te = _positive(_number(header_value(ds, "EchoTime")))
    ti = _positive(_number(header_value(ds, "InversionTime")))
    flip = _number(header_value(ds, "FlipAngle"))
    scanning = set(cs_values(header_value(ds, "ScanningSequence")))
    variant = frozenset(cs_values(header_value(ds, "SequenceVariant")))
    options = cs_values(header_value(ds, "ScanOptions"))
    image_type = list(cs_values(header_value(ds, "ImageType")))
    contrast = list(cs_values(header_value(ds, "AcquisitionContrast")))
    inversion: bool | None = None
    fat = _fat_from_options(options)
    angio: str | None = None
    if "IR_GEMS" in options:
        scanning.add("IR")
    b_values: list[float] = []
    b_source: str | None = None
    top_b = _number(header_value(ds, "DiffusionBValue"))
    if top_b is not None and top_b >= 0:
        b_values.append(top_b)
        b_source = "DiffusionBValue (0018,9087)"
    orientation: tuple[float, ...] | None = None

    if enhanced:
        timing = _first_frame_item(ds, "MRTimingAndRelatedParametersSequence")
        tr = _positive(_number(header_value(timing, "RepetitionTime"))) or tr
        timing_flip = _number(header_value(timing, "FlipAngle"))
        flip = timing_flip if timing_flip is not None else flip
        echo = _first_frame_item(ds, "MREchoSequence")
        te = _positive(_number(header_value(echo, "EffectiveEchoTime"))) or te
        modifier = _first_frame_item(ds, "MRModifierSequence")
        ir_flag = header_text(modifier, "InversionRecovery")
        if ir_flag is not None:
            inversion = ir_flag.upper() == "YES"
            if inversion:
                scanning.add("IR")
        if inversion is not False:
            ti = _positive(_number(header_value(modifier, "InversionTimes"))) or ti
        else:
            ti = None
        excitation = (
            header_text(modifier, "SpectrallySelectedExcitation")
            or header_text(ds, "SpectrallySelectedExcitation")
            or ""
        ).upper()
        if excitation == "WATER":
            fat = fat or "SpectrallySelectedExcitation (0018,9026) WATER"
        for item in frame_functional_group(ds, "MRDiffusionSequence"):
            value = _number(header_value(item, "DiffusionBValue"))
            if value is not None and value >= 0:
                b_values.append(value)
                b_source = "MRDiffusionSequence DiffusionBValue (0018,9087)"
        frame_type = _first_frame_item(ds, "MRImageFrameTypeSequence")
        image_type.extend(cs_values(header_value(frame_type, "FrameType")))
        contrast.extend(cs_values(header_value(frame_type, "AcquisitionContrast")))
        echo_pulse = (header_text(ds, "EchoPulseSequence") or "").upper()
        if echo_pulse in ("SPIN", "BOTH"):
            scanning.add("SE")
        if echo_pulse in ("GRADIENT", "BOTH"):
            scanning.add("GR")
        if (header_text(ds, "EchoPlanarPulseSequence") or "").upper() == "YES":
            scanning.add("EP")
        frames = frame_geometry(ds)
        orientation = frames[0].orientation if frames else None
    else:
        orientation = as_floats(header_value(ds, "ImageOrientationPatient"), count=6)

    if "WATER" in image_type:
        fat = fat or "ImageType (0008,0008) WATER (Dixon water image)"
    suppression = (header_text(ds, "SpectrallySelectedSuppression") or "").upper()
    if suppression in ("FAT", "FAT_AND_WATER"):
        fat = fat or f"SpectrallySelectedSuppression (0018,9025) {suppression}"
    if (header_text(ds, "TimeOfFlightContrast") or "").upper() == "YES":
        angio = "TimeOfFlightContrast (0018,9015) YES"
    elif (header_text(ds, "PhaseContrast") or "").upper() == "YES":
        angio = "PhaseContrast (0018,9014) YES"
    elif {"TOF", "FLOW_ENCODED"} & set(contrast):
        angio = f"AcquisitionContrast (0008,9209) {'/'.join(sorted({'TOF', 'FLOW_ENCODED'} & set(contrast)))}"

    epi_source: str | None = None
    if "PHILIPS" in (header_text(ds, "Manufacturer") or "").upper():
        technique = header_value(ds, 0x20011020)
        technique_text = str(technique).strip().upper() if technique is not None else ""
        if "EPI" in technique_text or technique_text.startswith("DWI"):  # FEEPI, SEEPI, DwiSE
            epi_source = f"Philips Scanning Technique (2001,1020) {technique_text}"
            scanning.add("EP")
    field, field_source = _field_strength(ds)

    vendor = _vendor_b_value(ds)
    if vendor is not None and not b_values:
        b_values.append(vendor[0])
        b_source = vendor[1]

    return MRParameters(
        repetition_time=tr,
        echo_time=te,
        inversion_time=ti,
        scanning_sequence=frozenset(scanning),
        sequence_variant=variant,
        scan_options=options,
        image_type=tuple(dict.fromkeys(image_type)),
        acquisition_contrast=tuple(dict.fromkeys(contrast)),
        b_values=tuple(b_values),
        b_value_source=b_source,
        flip_angle=flip,
        inversion_recovery=inversion,
        fat_suppression=fat,
        angiography=angio,
        contrast_agent=_contrast_agent(ds, vocabulary),
        orientation=orientation,
        enhanced=enhanced,
        field_strength=field,
        field_source=field_source,
        epi_source=epi_source,
    )


def _field_strength(ds: Dataset) -> tuple[float | None, str | None]:
    field = _positive(_number(header_value(ds, "MagneticFieldStrength")))
    if field is not None and field <= MAX_PLAUSIBLE_FIELD_T:
        return field, "MagneticFieldStrength (0018,0087)"
    if field is not None:  # gauss or millitesla from an odd exporter: not guessed, treated as unknown
        logger.debug("MagneticFieldStrength %s is not in tesla; ignored", field)
    manufacturer = (header_text(ds, "Manufacturer") or "").upper()
    for word, tesla in _FIXED_FIELD_SCANNERS.items():
        if word in manufacturer:
            return tesla, f"Manufacturer {manufacturer!r} (fixed {tesla:g} T)"
    return None, None


def _contrast_agent(ds: Dataset, vocabulary: Vocabulary | None) -> str | None:
    """What says an agent was given (anonymisers' placeholders are none): one reader for CT and MR."""
    return contrast_agent(ds, vocabulary or shipped_vocabulary())


# --- parameters -> weighting --------------------------------------------------------------------


def _g(value: float | None) -> str:
    return "?" if value is None else f"{value:g}"


def _within(value: float | None, bounds: tuple[float, float]) -> bool:
    return value is not None and bounds[0] <= value <= bounds[1]


def _outside_core(name: str, value: float | None, core: tuple[float, float]) -> str:
    if value is None or core[0] <= value <= core[1]:
        return ""
    return f" ({name} outside the consensus range {core[0]:g}-{core[1]:g}; accepted)"


@dataclass(frozen=True, slots=True)
class ParameterVerdict:
    """What the parameters alone say. ``weighting`` None: inconclusive (see ``reasons``)."""

    weighting: Weighting | None
    reasons: tuple[str, ...]
    inversion_known: bool
    """False when no inversion information was recorded (no TI, no IR flag)."""
    fat_suppressed: str | None = None
    """Why the inversion says fat-suppressed (STIR, spectral inversion on a GRE), or None."""
    final: bool = False
    """True for a derived map the ImageType names: no series name may turn it into anything else."""


def _low_field_scale(field: float | None) -> float:
    """Factor on tissue T1 (and so on inversion times and IR repetition times) below LOW_FIELD_T."""
    if field is None or field >= LOW_FIELD_T:
        return 1.0
    return float((field / REFERENCE_FIELD_T) ** TISSUE_T1_FIELD_EXPONENT)


def _scaled(bounds: tuple[float, float], factor: float) -> tuple[float, float]:
    return (bounds[0] * factor, bounds[1] * factor)


def csf_null_ti(tr: float) -> float:
    """TI (ms) that nulls CSF for repetition time ``tr`` (ms): T1 ln(2 / (1 + exp(-TR/T1)))."""
    return CSF_T1_MS * math.log(2.0 / (1.0 + math.exp(-tr / CSF_T1_MS)))


def weighting_from_parameters(p: MRParameters) -> ParameterVerdict:
    """Classify from acquisition parameters only (see the module docstring for the ranges)."""
    inversion_known = p.inversion_time is not None or "IR" in p.scanning_sequence or p.inversion_recovery is not None

    fat: str | None = None

    def done(weighting: Weighting | None, *reasons: str, final: bool = False) -> ParameterVerdict:
        return ParameterVerdict(weighting, tuple(reasons), inversion_known, fat, final)

    image_type = set(p.image_type)
    shown_type = f"ImageType (0008,0008) {'/'.join(p.image_type)}"
    if {"LOCALIZER", "SCOUT"} & image_type:
        return done(Weighting.LOCALIZER, f"{shown_type} → localizer")
    if "ADC" in image_type or "ADC_MAP" in image_type:
        return done(Weighting.ADC, f"{shown_type} → ADC map")
    if _DIFFUSION_MAPS & image_type and (
        "DIFFUSION" in image_type or "TENSOR" in image_type or "DERIVED" in image_type
    ):
        return done(Weighting.OTHER, f"{shown_type} → diffusion-derived map (not DWI/ADC)", final=True)
    max_b = p.max_b_value
    if max_b is not None and max_b >= DWI_MIN_B:
        return done(Weighting.DWI, f"b = {max_b:g} s/mm² ({p.b_value_source}) → DWI")
    if _DIFFUSION_IMAGE_TYPES & image_type or "DIFFUSION" in p.acquisition_contrast:
        where = shown_type if _DIFFUSION_IMAGE_TYPES & image_type else "AcquisitionContrast (0008,9209) DIFFUSION"
        return done(Weighting.DWI, f"{where} → DWI")
    perfusion = _PERFUSION_IMAGE_TYPES & (image_type | {t.split("_")[0] for t in image_type})
    if perfusion or "PERFUSION" in p.acquisition_contrast:
        return done(Weighting.PERFUSION, f"{shown_type} → perfusion (ASL/DSC/DCE)")
    if _BOLD_IMAGE_TYPES & image_type:
        return done(Weighting.BOLD, f"{shown_type} → BOLD fMRI")
    if {"SWI", "SWAN", "SWIP"} & image_type or any(t.startswith("SW_") for t in image_type):
        return done(Weighting.SWI, f"{shown_type} → SWI")
    if p.angiography is not None:
        return done(Weighting.MRA, f"{p.angiography} → MRA")

    tr, te, ti = p.repetition_time, p.echo_time, p.inversion_time
    seq = set(p.scanning_sequence)
    research = ""
    if "RM" in seq:
        seq.discard("RM")
        research = (
            f"; ScanningSequence (0018,0020) RM (research mode): decided from {'/'.join(sorted(seq))} and TR/TE/TI"
            if seq
            else "; ScanningSequence (0018,0020) RM (research mode) says no sequence type: decided from TR/TE/TI"
        )
    gradient = "GR" in seq and "SE" not in seq
    shown = (
        ", ".join(
            part
            for part in (
                f"TR {tr:g} ms" if tr is not None else "",
                f"TE {te:g} ms" if te is not None else "",
                f"TI {ti:g} ms" if ti is not None else "",
            )
            if part
        )
        or "no TR/TE/TI"
    )
    shown += research
    field = p.field_strength
    scale = _low_field_scale(field)
    if scale != 1.0 and p.is_inversion_recovery and ti is not None:
        shown += f"; {field:g} T ({p.field_source}): IR ranges × {scale:.2f} for the shorter tissue T1 at low field"

    if "EP" in seq:
        epi = f"echo-planar{f' ({p.epi_source})' if p.epi_source else ''}"
        spin = "SE" in seq and "GR" not in seq
        if max_b is not None and max_b > 0:
            return done(
                Weighting.DWI, f"{epi} with b = {max_b:g} s/mm² ({p.b_value_source}): image of a diffusion series → DWI"
            )
        if p.epi_source is not None and "DWI" in p.epi_source:
            return done(Weighting.DWI, f"{p.epi_source}: diffusion-weighted EPI technique → DWI")
        # b = 0 is no evidence of diffusion: GE writes its b-value tag on every EPI (fMRI, spin-echo
        # field maps); a b = 0 image of a diffusion series is told by the series (identify_series).
        zero_b = f", b = 0 ({p.b_value_source}) is no evidence of diffusion" if max_b is not None else ""
        if not spin and _within(te, BOLD_TE) and (tr is None or _within(tr, BOLD_TR)):
            return done(
                Weighting.BOLD,
                f"gradient-echo {epi} without diffusion weighting ({shown}{zero_b}): BOLD echo time → BOLD fMRI"
                f"{_outside_core('TE', te, BOLD_CORE_TE)}",
            )
        kind = "spin-echo " if spin else ""
        return done(
            Weighting.OTHER, f"{kind}{epi} without diffusion weighting ({shown}{zero_b}): not DWI, and not BOLD"
        )

    if gradient and ti is not None and ti < GRE_IR_T1_TI[0]:
        # A short inversion before a gradient echo is a spectral fat inversion (SPAIR-like), not STIR.
        fat = f"TI {ti:g} ms on a gradient echo (spectral fat inversion)"
        ti = None
    if p.is_inversion_recovery and ti is not None:
        note = (
            "" if "IR" in seq or p.inversion_recovery else " (InversionTime present although ScanningSequence lacks IR)"
        )
        stir_ti = _scaled(STIR_TI, scale)
        flair_ti = T2_FLAIR_TI
        flair_min_tr = T2_FLAIR_MIN_TR
        if scale != 1.0:
            flair_min_tr = T2_FLAIR_MIN_TR * scale
            low = (
                min(T2_FLAIR_TI[0], CSF_NULL_TOLERANCE * csf_null_ti(tr)) if tr is not None else T2_FLAIR_TI[0] * scale
            )
            flair_ti = (low, T2_FLAIR_TI[1])
        t1_flair_ti = _scaled(T1_FLAIR_TI, scale)
        if _within(ti, stir_ti):
            fat = "STIR (short-TI inversion recovery)"
            return done(
                Weighting.STIR,
                f"{shown}, inversion recovery with short TI → STIR (fat suppressed){_outside_core('TI', ti, _scaled(STIR_CORE_TI, scale))}{note}",
            )
        if _within(ti, flair_ti) and not _within(ti, t1_flair_ti):
            if tr is not None and tr < flair_min_tr:
                return done(None, f"{shown}: TI fits T2-FLAIR but TR < {flair_min_tr:g} ms is too short")
            if te is not None and te < T2_FLAIR_MIN_TE:
                return done(None, f"{shown}: TI fits T2-FLAIR but TE < {T2_FLAIR_MIN_TE:g} ms is too short")
            extra = ""
            if scale == 1.0:
                extra = _outside_core("TI", ti, T2_FLAIR_CORE_TI) + _outside_core("TR", tr, T2_FLAIR_CORE_TR)
            elif tr is not None:
                extra = f" (CSF null at this TR ≈ {csf_null_ti(tr):.0f} ms)"
            if tr is None:
                extra += " (TR not recorded)"
            return done(Weighting.T2_FLAIR, f"{shown} → T2-FLAIR{extra}{note}")
        if gradient or (te is not None and te <= GRE_LIKE_MAX_TE):
            if _within(ti, GRE_IR_T1_TI) and (te is None or te < GRE_T1_MAX_TE):
                kind = "gradient echo" if gradient else f"TE ≤ {GRE_LIKE_MAX_TE:g} ms (gradient-echo-like)"
                return done(Weighting.T1, f"{shown}, IR-prepared {kind} → T1 (MPRAGE/BRAVO/TFE type){note}")
            return done(None, f"{shown}: inversion-prepared gradient echo outside the T1 ranges")
        if _within(ti, t1_flair_ti):
            t1_flair_tr = _scaled(T1_FLAIR_TR, scale)
            if te is not None and te >= T1_FLAIR_MAX_TE:
                return done(None, f"{shown}: TI fits T1-FLAIR but TE ≥ {T1_FLAIR_MAX_TE:g} ms")
            if tr is not None and not _within(tr, t1_flair_tr):
                return done(
                    None, f"{shown}: TI fits T1-FLAIR but TR is outside {t1_flair_tr[0]:g}-{t1_flair_tr[1]:g} ms"
                )
            return done(
                Weighting.T1_FLAIR,
                f"{shown} → T1-FLAIR{_outside_core('TI', ti, _scaled(T1_FLAIR_CORE_TI, scale))}{note}",
            )
        return done(None, f"{shown}: inversion time fits no STIR/FLAIR range")

    if tr is None or te is None:
        return done(None, f"{shown}: TR or TE not recorded")
    if gradient:
        if te < GRE_T1_MAX_TE and tr < GRE_T1_MAX_TR:
            return done(Weighting.T1, f"{shown}, spoiled gradient echo with short TR/TE → T1")
        if te >= GRE_T2STAR_MIN_TE:
            return done(Weighting.T2STAR, f"{shown}, gradient echo with long TE → T2*-weighted GRE")
        return done(None, f"{shown}: gradient echo with intermediate TR/TE")
    if not seq and tr < T1_TR[0] and te <= GRE_LIKE_MAX_TE:
        return done(Weighting.T1, f"{shown}, very short TR/TE (gradient-echo-like; ScanningSequence not recorded) → T1")
    if tr >= T2_MIN_TR and te >= T2_MIN_TE:
        return done(Weighting.T2, f"{shown} → T2{_outside_core('TE', te, T2_CORE_TE)}")
    if tr >= PD_MIN_TR and te <= PD_MAX_TE:
        extra = "" if te < PD_CORE_MAX_TE else f" (TE ≥ {PD_CORE_MAX_TE:g} ms: fast spin echo PD range)"
        return done(Weighting.PD, f"{shown}, long TR and short TE → PD{extra}")
    if _within(tr, T1_TR) and te <= T1_MAX_TE:
        extra = (
            "" if te < T1_CORE_MAX_TE else f" (TE {te:g} ms at the consensus limit TE < {T1_CORE_MAX_TE:g}; accepted)"
        )
        return done(Weighting.T1, f"{shown} → T1{_outside_core('TR', tr, T1_CORE_TR)}{extra}")
    return done(None, f"{shown}: fits no T1/T2/PD range (intermediate or contradictory)")


# --- names -> hints -----------------------------------------------------------------------------
# The words are data: the lexicon's ``mr_series_names`` (thresholds/items/lexicon.yaml), compiled in
# :class:`~qc_pipeline.catalog.items.Vocabulary`; this module normalises names and ranks the hints.

_CJK = r"\u3400-\u9fff\uf900-\ufaff"
_SEPARATORS = re.compile(r"[_\-\s/\\.,:;()\[\]|#^=~'\"]+")
_SCRIPT_BOUNDARY = re.compile(rf"(?<=[{_CJK}])(?=[^{_CJK}\s])|(?<=[^{_CJK}\s])(?=[{_CJK}])")


def normalise_name(name: str) -> str:
    """NFKC, lower case, separators as single spaces, a space between Chinese and Latin runs."""
    value = unicodedata.normalize("NFKC", name).lower()
    value = _SCRIPT_BOUNDARY.sub(" ", value)
    return " " + _SEPARATORS.sub(" ", value).strip() + " "


def _weighting_hint(norm: str, patterns: MRNamePatterns) -> tuple[Weighting | None, str | None]:
    """The weighting a normalised name suggests, most specific first; None when it says none or two."""
    found: dict[str, str] = {}
    for key, pattern in patterns.weightings:
        match = pattern.search(norm)
        if match:
            found[key] = match.group(0).strip()
    for key in (Weighting.LOCALIZER, Weighting.MRA, Weighting.SWI, Weighting.ADC):
        if key in found:
            return key, found[key]
    if "FIELDMAP" in found:
        return Weighting.OTHER, f"{found['FIELDMAP']}: B0 field map, not a diagnostic weighting"
    for key in (Weighting.PERFUSION, Weighting.DWI, Weighting.BOLD):
        if key in found:
            return key, found[key]
    if "FLAIR" in found:
        t1 = patterns.t1_word.search(norm)
        if t1:
            return Weighting.T1_FLAIR, f"{t1.group(0).strip()} … {found['FLAIR']}"
        return Weighting.T2_FLAIR, found["FLAIR"]
    if Weighting.STIR in found:
        if found[Weighting.STIR] == "tirm" and Weighting.T1 in found:
            return Weighting.T1_FLAIR, f"{found[Weighting.T1]} … tirm"  # Siemens t1_tirm: T1 inversion recovery
        return Weighting.STIR, found[Weighting.STIR]
    if "SSFP" in found:
        return Weighting.OTHER, f"{found['SSFP']}: balanced steady-state GRE (mixed T2/T1 contrast)"
    if "T2STAR" in found or (Weighting.T2 in found and patterns.gradient_echo.search(norm)):
        return Weighting.T2STAR, found.get("T2STAR") or f"{found[Weighting.T2]} gradient echo (T2*)"
    basic = [w for w in (Weighting.PD, Weighting.T2, Weighting.T1) if w in found]
    if len(basic) == 1:
        return basic[0], found[basic[0]]
    return None, None  # nothing, or "PD T2" dual echo / "T1 T2": the name does not tell


def name_hints(*names: str | None, vocabulary: Vocabulary | None = None) -> NameHints:
    """What series names suggest, most specific name first (SeriesDescription, ProtocolName, ...).

    The patterns are the lexicon's ``mr_series_names`` (``vocabulary``: the catalog's; the shipped
    lexicon without one). The first name that suggests a weighting, fat suppression or a plane
    gives it. Contrast is read from the first name only: a ProtocolName can be the exam's protocol
    ("Brain +C") and name the pre-contrast series too.
    """
    patterns = (vocabulary or shipped_vocabulary()).mr_series_names
    weighting: Weighting | None = None
    weighting_reason: str | None = None
    fat: str | None = None
    post: bool | None = None
    post_reason: str | None = None
    plane: Plane | None = None
    plane_reason: str | None = None
    first = True
    for name in names:
        if not name:
            continue
        norm = normalise_name(name)
        if weighting is None:
            w, why = _weighting_hint(norm, patterns)
            if w is not None:
                weighting, weighting_reason = w, f"name {name!r} ({why})"
        if fat is None:
            m = patterns.fat_suppression.search(norm)
            if m:
                fat = f"name {name!r} ({m.group(0).strip()})"
        if first:  # "pre" beats "post" within the name ("增强前", "pre contrast")
            first = False
            pre = patterns.pre_contrast.search(norm)
            m = patterns.post_contrast.search(norm)
            if pre:
                post, post_reason = False, f"name {name!r} ({pre.group(0).strip()})"
            elif m:
                post, post_reason = True, f"name {name!r} ({m.group(0).strip()})"
        if plane is None:
            for candidate, pattern in patterns.planes:
                m = pattern.search(norm)
                if m:
                    plane, plane_reason = Plane(candidate), f"name {name!r} ({m.group(0).strip()})"
                    break
    return NameHints(weighting, weighting_reason, fat, post, post_reason, plane, plane_reason)


# --- both -> SequenceInfo -----------------------------------------------------------------------

# Refinements a name may make to what the parameters say: the parameters cannot tell an ADC map
# from its diffusion series when ImageType lacks ADC, a TOF from a T1 spoiled GRE, an SWI from a
# T2*-weighted GRE, or a localizer from any fast GRE.
# A name confirms what the parameters cannot see; it never turns a derived map (ParameterVerdict
# final) or an EPI/GRE series into a T1/T2/PD/FLAIR.
_NAME_REFINES: Final = {
    Weighting.DWI: {Weighting.ADC},
    # OTHER: a balanced SSFP or a field map looks like a short-TR GRE; PERFUSION: DCE is a T1 GRE
    Weighting.T1: {Weighting.MRA, Weighting.OTHER, Weighting.PERFUSION},
    Weighting.T2STAR: {Weighting.SWI, Weighting.OTHER, Weighting.PERFUSION, Weighting.BOLD},
    Weighting.BOLD: {Weighting.PERFUSION},  # DSC is a gradient-echo EPI with a BOLD-like TE
    # OTHER from the parameters here is an EPI outside the BOLD range (spin-echo EPI, b-value not exported)
    Weighting.OTHER: {Weighting.DWI, Weighting.ADC, Weighting.PERFUSION, Weighting.BOLD},
    # ASL is read with GRASE/FSE/EPI readouts that look like PD/T2 by TR/TE
    Weighting.PD: {Weighting.PERFUSION, Weighting.OTHER},
    Weighting.T2: {Weighting.PERFUSION},
}
# ... and, when no inversion was recorded at all (no TI, no IR flag), the inversion-recovery
# variant of what TR/TE say.
_NAME_REFINES_WITHOUT_INVERSION: Final = {
    Weighting.T2: {Weighting.T2_FLAIR, Weighting.STIR},
    Weighting.PD: {Weighting.STIR},
}


def _series_names(ds: Dataset) -> tuple[str | None, ...]:
    return (
        header_text(ds, "SeriesDescription"),
        header_text(ds, "ProtocolName"),
        header_text(ds, "SequenceName"),
        header_text(ds, "PulseSequenceName"),
    )


def identify_sequence(
    ds: Dataset,
    *,
    vocabulary: Vocabulary | None = None,
    oblique_tolerance_deg: float = DEFAULT_OBLIQUE_TOLERANCE_DEG,
) -> SequenceInfo:
    """Identify the sequence of the MR series that ``ds`` (one of its objects) belongs to.

    Acquisition parameters decide; the series name (SeriesDescription, ProtocolName,
    SequenceName, PulseSequenceName) is used where they are missing or inconclusive, refines what
    they cannot see (ADC vs DWI, FLAIR without a recorded TI, MRA, localizer), and is recorded in
    ``evidence`` when it disagrees. ``vocabulary``: see :func:`read_mr_parameters`. Never raises
    on missing or garbled header values.
    """
    params = read_mr_parameters(ds, vocabulary)
    verdict = weighting_from_parameters(params)
    hints = name_hints(*_series_names(ds), vocabulary=vocabulary)
    evidence: list[str] = list(verdict.reasons)

    weighting = verdict.weighting
    hinted = hints.weighting
    if weighting is None:
        if hinted is not None:
            weighting = hinted
            evidence.append(f"parameters inconclusive; {hints.weighting_reason} → {hinted.label}")
        else:
            weighting = Weighting.UNKNOWN
            evidence.append("no weighting from the parameters or the series name")
    elif hinted is not None and hinted is not weighting:
        allowed = set() if verdict.final else set(_NAME_REFINES.get(weighting, set())) | {Weighting.LOCALIZER}
        if not verdict.inversion_known:
            allowed |= _NAME_REFINES_WITHOUT_INVERSION.get(weighting, set())
            tr = params.repetition_time
            if tr is not None and tr < T2_FLAIR_MIN_TR:
                allowed.discard(Weighting.T2_FLAIR)  # a FLAIR needs the long TR of its inversion
        if hinted in allowed:
            evidence.append(f"{hints.weighting_reason} refines {weighting.label} → {hinted.label}")
            weighting = hinted
        else:
            evidence.append(
                f"conflict: {hints.weighting_reason} suggests {hinted.label}, the parameters say "
                f"{weighting.label}; parameters win"
            )
    elif hinted is not None:
        evidence.append(f"{hints.weighting_reason} agrees")

    if weighting is Weighting.BOLD and params.contrast_agent is not None and hints.post_contrast is not False:
        # a gradient-echo EPI time series during a contrast bolus is DSC perfusion, not fMRI
        evidence.append(f"{params.contrast_agent} on a gradient-echo EPI → DSC perfusion")
        weighting = Weighting.PERFUSION

    fat_reasons = [r for r in (params.fat_suppression, verdict.fat_suppressed, hints.fat_suppressed) if r]
    fat = bool(fat_reasons) or weighting is Weighting.STIR
    if fat_reasons:
        evidence.append(f"fat suppressed: {fat_reasons[0]}")
    elif weighting is Weighting.STIR:
        evidence.append("fat suppressed: STIR")

    post = params.contrast_agent is not None
    if post and hints.post_contrast is False:
        post = False
        evidence.append(
            f"{params.contrast_agent} is set but {hints.post_reason} says pre-contrast: taken as pre-contrast"
        )
    elif post:
        evidence.append(f"post-contrast: {params.contrast_agent}")
    elif hints.post_contrast:
        post = True
        evidence.append(f"post-contrast: {hints.post_reason}")

    plane = plane_from_orientation(params.orientation, oblique_tolerance_deg=oblique_tolerance_deg)
    if plane is not None:
        evidence.append(f"plane {plane.value} from ImageOrientationPatient (0020,0037)")
        if hints.plane is not None and hints.plane is not plane:
            evidence.append(f"conflict: {hints.plane_reason} suggests {hints.plane.value}; orientation wins")
    elif hints.plane is not None:
        plane = hints.plane
        evidence.append(f"ImageOrientationPatient missing or unreadable; plane {plane.value} from {hints.plane_reason}")

    info = SequenceInfo(
        weighting=weighting,
        fat_suppressed=fat,
        plane=plane,
        post_contrast=post,
        evidence=tuple(evidence),
    )
    logger.debug(
        "series %s: %s%s %s", header_text(ds, "SeriesInstanceUID"), info.weighting, "-FS" if fat else "", plane
    )
    return info


def _volume_key(ds: Dataset) -> tuple[object, ...] | None:
    """Slice position of a classic image (rounded to 0.1 mm), or None."""
    position = as_floats(header_value(ds, "ImagePositionPatient"), count=3)
    return tuple(round(v, 1) for v in position) if position is not None else None


def _repeated_volumes(datasets: Sequence[Dataset]) -> str | None:
    """Why the series holds repeated volumes (a time series), or None."""
    seen: dict[tuple[object, ...], set[str]] = {}
    for ds in datasets:
        key = _volume_key(ds)
        if key is None:
            continue
        stamp = "/".join(
            str(header_value(ds, k)) for k in ("AcquisitionNumber", "TemporalPositionIdentifier", "InstanceNumber")
        )
        seen.setdefault(key, set()).add(stamp)
    if any(len(stamps) > 1 for stamps in seen.values()):
        return "repeated volumes (images at the same slice position)"
    for ds in datasets:
        if has_functional_groups(ds):
            positions = [f.position for f in frame_geometry(ds) if f.position is not None]
            rounded = [tuple(round(v, 1) for v in position) for position in positions]
            if len(set(rounded)) < len(rounded):
                return "repeated volumes (frames at the same slice position)"
    for ds in datasets:
        temporal = _number(header_value(ds, "NumberOfTemporalPositions"))
        if temporal is not None and temporal > 1:
            return f"repeated volumes (NumberOfTemporalPositions (0020,0105) {temporal:g})"
    return None


def identify_series(
    datasets: Sequence[Dataset],
    *,
    vocabulary: Vocabulary | None = None,
    oblique_tolerance_deg: float = DEFAULT_OBLIQUE_TOLERANCE_DEG,
) -> SequenceInfo:
    """Identify an MR series from all of its images (or a sample of them).

    The first image decides as in :func:`identify_sequence`; the others can only add what one
    image cannot show: a diffusion series whose first image is its b = 0 volume (any image with
    b >= DWI_MIN_B makes the series DWI, unless it is a derived map or an ADC), and a gradient-echo
    time series with a BOLD echo time (repeated volumes at the same slice position make a
    T2*-weighted GRE series BOLD). The evidence says which image decided. Never raises on missing
    or garbled header values; an empty series is UNKNOWN.
    """
    if not datasets:
        return SequenceInfo(Weighting.UNKNOWN, False, None, False, ("no images in the series",))
    first = identify_sequence(datasets[0], vocabulary=vocabulary, oblique_tolerance_deg=oblique_tolerance_deg)
    params = [read_mr_parameters(ds, vocabulary) for ds in datasets]
    derived = any(_DIFFUSION_MAPS & set(p.image_type) for p in params)
    if first.weighting not in (Weighting.DWI, Weighting.ADC, Weighting.LOCALIZER) and not derived:
        for index, p in enumerate(params):
            b = p.max_b_value
            if b is not None and b >= DWI_MIN_B:
                first_b = params[0].max_b_value
                reason = (
                    f"series: image {index + 1} of {len(datasets)} has b = {b:g} s/mm² ({p.b_value_source}) → DWI series"
                    f" (first image {'b = ' + format(first_b, 'g') if first_b is not None else 'without b-value'},"
                    f" read alone as {first.weighting.label})"
                )
                return dataclasses.replace(first, weighting=Weighting.DWI, evidence=(*first.evidence, reason))
    p0 = params[0]
    # a T2*-weighted GRE, or an object that does not say its echo type (enhanced objects without
    # the MR Pulse Sequence module), repeated in time with a BOLD TE/TR is an fMRI time series
    pulse_unknown = not (p0.scanning_sequence - {"RM"})
    if first.weighting is Weighting.T2STAR or (
        pulse_unknown and first.weighting in (Weighting.T2, Weighting.PD, Weighting.UNKNOWN)
    ):
        repeated = _repeated_volumes(datasets)
        if repeated and _within(p0.echo_time, BOLD_TE) and _within(p0.repetition_time, BOLD_TR):
            kind = "a gradient echo" if first.weighting is Weighting.T2STAR else "an unrecorded echo type"
            reason = f"series: {repeated} of {kind} with BOLD TE/TR → BOLD fMRI (read alone as {first.weighting.label})"
            return dataclasses.replace(first, weighting=Weighting.BOLD, evidence=(*first.evidence, reason))
    return first
