"""MR sequence identification and slice geometry, on hand-built headers.

Parameters are typical protocol values of each vendor (TR/TE/TI in ms as the consoles export
them: Siemens syngo, GE, Philips, United Imaging, Canon); expected weightings follow the ranges
of requirements S5 (Chinese MRI technique expert consensus, brain, 2016) that the module cites.
Expected planes come from rotations built here, not from the code under test.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag

from qc_pipeline.catalog.items import Vocabulary, load_lexicon
from qc_pipeline.catalog.mr_sequences import (
    SequenceInfo,
    Weighting,
    diffusion_b_value,
    identify_sequence,
    identify_series,
    name_hints,
    read_mr_parameters,
)
from qc_pipeline.io.geometry import (
    FrameGeometry,
    Plane,
    frame_geometry,
    plane_from_orientation,
    slice_normal,
    slice_position,
)
from qc_pipeline.rules import default_thresholds_dir

AXIAL = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
SAGITTAL = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]
CORONAL = [1.0, 0.0, 0.0, 0.0, 0.0, -1.0]
MANUFACTURER = {
    "siemens": "SIEMENS",
    "ge": "GE MEDICAL SYSTEMS",
    "philips": "Philips Medical Systems",
    "uih": "UIH",
    "canon": "CANON_MEC",
    "zh": "SIEMENS",
}


def tilted_axial(degrees: float) -> list[float]:
    """Axial orientation rotated about the patient x axis by ``degrees`` (normal tilts toward -y)."""
    a = math.radians(degrees)
    return [1.0, 0.0, 0.0, 0.0, math.cos(a), math.sin(a)]


def mr(
    description: str | None,
    *,
    vendor: str = "siemens",
    tr: float | None = None,
    te: float | None = None,
    ti: float | None = None,
    seq: str | None = "SE",
    variant: str = "SK\\SP",
    options: str | None = None,
    image_type: str = "ORIGINAL\\PRIMARY\\M\\ND",
    iop: list[float] | None = AXIAL,
    b: float | None = None,
    agent: str | None = None,
    **extra: object,
) -> Dataset:
    ds = Dataset()
    ds.Modality = "MR"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.10.1717.99"
    ds.Manufacturer = MANUFACTURER[vendor]
    if description is not None:
        ds.SeriesDescription = description
        ds.ProtocolName = description
    if tr is not None:
        ds.RepetitionTime = tr
    if te is not None:
        ds.EchoTime = te
    if ti is not None:
        ds.InversionTime = ti
    if seq is not None:
        ds.ScanningSequence = seq
        ds.SequenceVariant = variant
    if options is not None:
        ds.ScanOptions = options
    ds.ImageType = image_type
    if iop is not None:
        ds.ImageOrientationPatient = iop
    if b is not None:
        ds.DiffusionBValue = b
    if agent is not None:
        ds.ContrastBolusAgent = agent
    for key, value in extra.items():
        setattr(ds, key, value)
    return ds


def siemens_b(ds: Dataset, b: int, *, creator: str = "SIEMENS MR HEADER") -> Dataset:
    ds.add_new(0x00190010, "LO", creator)
    ds.add_new(0x0019100C, "IS", str(b))
    return ds


def ge_b(ds: Dataset, b: int) -> Dataset:
    ds.add_new(0x00430010, "LO", "GEMS_PARM_01")
    ds.add_new(0x00431039, "IS", [b, 8, 0, 0])
    return ds


def philips_b(ds: Dataset, b: float) -> Dataset:
    ds.add_new(0x20010010, "LO", "Philips Imaging DD 001")
    ds.add_new(0x20011003, "FL", b)
    return ds


W = Weighting
# (vendor, series name, header builder kwargs, weighting, fat suppressed, post-contrast)
VENDOR_TABLE = [
    # Siemens syngo names
    ("siemens", "t2_tse_tra", {"tr": 5000, "te": 98, "variant": "SK\\SP\\OSP"}, W.T2, False, False),
    ("siemens", "t1_se_sag", {"tr": 550, "te": 9.5, "variant": "SP\\OSP", "iop": SAGITTAL}, W.T1, False, False),
    (
        "siemens",
        "t2_tirm_tra_dark-fluid",
        {"seq": "SE\\IR", "variant": "SK\\SP\\MP\\OSP", "tr": 9000, "te": 81, "ti": 2500},
        W.T2_FLAIR,
        False,
        False,
    ),
    (
        "siemens",
        "t2_tirm_cor",
        {"seq": "SE\\IR", "variant": "SK\\SP\\MP", "tr": 4000, "te": 41, "ti": 150, "iop": CORONAL},
        W.STIR,
        True,
        False,
    ),
    (
        "siemens",
        "t1_tirm_tra_dark-fluid",
        {"seq": "SE\\IR", "variant": "SK\\SP\\MP", "tr": 2000, "te": 9, "ti": 860},
        W.T1_FLAIR,
        False,
        False,
    ),
    (
        "siemens",
        "ep2d_diff_tra",
        {"seq": "EP", "tr": 5200, "te": 89, "image_type": "DERIVED\\PRIMARY\\DIFFUSION\\TRACEW\\ND"},
        W.DWI,
        False,
        False,
    ),
    (
        "siemens",
        "ep2d_diff_3scan_trace_p2_ADC",
        {"seq": "EP", "tr": 5200, "te": 89, "image_type": "DERIVED\\PRIMARY\\DIFFUSION\\ADC\\ND"},
        W.ADC,
        False,
        False,
    ),
    (
        "siemens",
        "t1_fl2d_tra",
        {"seq": "GR", "variant": "SP\\OSP", "tr": 250, "te": 2.46, "FlipAngle": 70},
        W.T1,
        False,
        False,
    ),
    (
        "siemens",
        "t1_mprage_sag",
        {"seq": "GR\\IR", "variant": "SK\\SP\\MP", "tr": 2300, "te": 2.98, "ti": 900, "iop": SAGITTAL},
        W.T1,
        False,
        False,
    ),
    (
        "siemens",
        "pd_tse_fs_sag",
        {"tr": 3000, "te": 33, "variant": "SK\\SP\\OSP", "options": "PFP\\FS", "iop": SAGITTAL},
        W.PD,
        True,
        False,
    ),
    (
        "siemens",
        "t1_vibe_fs_tra_post",
        {"seq": "GR", "variant": "SP\\OSP", "tr": 4.2, "te": 1.9, "options": "FS", "agent": "Gd-DTPA"},
        W.T1,
        True,
        True,
    ),
    (
        "siemens",
        "t2_swi_tra_p2_2mm",
        {"seq": "GR", "variant": "SP", "tr": 27, "te": 20, "image_type": "DERIVED\\PRIMARY\\M\\SWI\\NORM\\DIS2D"},
        W.SWI,
        False,
        False,
    ),
    ("siemens", "tof_3d_multi-slab", {"seq": "GR", "variant": "SP\\OSP", "tr": 22, "te": 3.6}, W.MRA, False, False),
    (
        "siemens",
        "localizer",
        {"seq": "GR", "variant": "SP", "tr": 8.6, "te": 4.0, "image_type": "ORIGINAL\\PRIMARY\\M\\ND\\NORM"},
        W.LOCALIZER,
        False,
        False,
    ),
    # GE names
    (
        "ge",
        "Ax T2 FSE",
        {"tr": 4500, "te": 102, "variant": "SK", "options": "FAST_GEMS\\EDR_GEMS\\FILTERED_GEMS"},
        W.T2,
        False,
        False,
    ),
    (
        "ge",
        "Sag T1 FLAIR",
        {
            "seq": "SE\\IR",
            "variant": "SK",
            "tr": 2200,
            "te": 9,
            "ti": 860,
            "iop": SAGITTAL,
            "options": "FAST_GEMS\\IR_GEMS",
        },
        W.T1_FLAIR,
        False,
        False,
    ),
    (
        "ge",
        "Ax T2 FLAIR",
        {"seq": "SE\\IR", "variant": "SK", "tr": 9000, "te": 120, "ti": 2250, "options": "FAST_GEMS\\IR_GEMS"},
        W.T2_FLAIR,
        False,
        False,
    ),
    (
        "ge",
        "Ax DWI",
        {"seq": "EP\\SE", "variant": "SK\\SP", "tr": 6000, "te": 75, "image_type": "ORIGINAL\\PRIMARY\\OTHER"},
        W.DWI,
        False,
        False,
    ),
    (
        "ge",
        "Cor STIR",
        {
            "seq": "SE\\IR",
            "variant": "SK",
            "tr": 4000,
            "te": 42,
            "ti": 150,
            "iop": CORONAL,
            "options": "FAST_GEMS\\IR_GEMS",
        },
        W.STIR,
        True,
        False,
    ),
    (
        "ge",
        "Ax 3D FSPGR",
        {"seq": "GR", "variant": "SS\\SP\\SK", "tr": 6.8, "te": 2.6, "FlipAngle": 12},
        W.T1,
        False,
        False,
    ),
    (
        "ge",
        "Sag BRAVO",
        {
            "seq": "GR",
            "variant": "SS\\SP\\SK",
            "tr": 8.2,
            "te": 3.2,
            "ti": 450,
            "iop": SAGITTAL,
            "options": "FAST_GEMS\\EDR_GEMS\\ACC_GEMS\\IR_GEMS",
        },
        W.T1,
        False,
        False,
    ),
    ("ge", "Ax T2 Propeller", {"tr": 5000, "te": 110, "variant": "SK"}, W.T2, False, False),
    ("ge", "Ax SWAN", {"seq": "GR", "variant": "SS\\SP", "tr": 40, "te": 25}, W.SWI, False, False),
    (
        "ge",
        "3-Plane Loc",
        {"seq": "GR", "variant": "SS\\SP", "tr": 5.1, "te": 1.6, "image_type": "ORIGINAL\\PRIMARY\\OTHER"},
        W.LOCALIZER,
        False,
        False,
    ),
    ("ge", "Ax T1 FSE +C", {"tr": 600, "te": 10, "variant": "SK", "agent": "Magnevist"}, W.T1, False, True),
    # Philips names
    ("philips", "T2W_TSE", {"tr": 3000, "te": 80, "variant": "SK"}, W.T2, False, False),
    ("philips", "T1W_SE", {"tr": 550, "te": 15, "variant": "SP"}, W.T1, False, False),
    ("philips", "FLAIR", {"seq": "IR", "variant": "SK", "tr": 11000, "te": 125, "ti": 2800}, W.T2_FLAIR, False, False),
    ("philips", "DWI", {"seq": "SE", "variant": "SK", "tr": 3500, "te": 70}, W.DWI, False, False),
    ("philips", "T2W_SPAIR", {"tr": 3500, "te": 90, "variant": "SK"}, W.T2, True, False),
    ("philips", "PDW_SPAIR", {"tr": 2800, "te": 30, "variant": "SK", "iop": CORONAL}, W.PD, True, False),
    (
        "philips",
        "sT1W_3D_TFE",
        {"seq": "GR", "variant": "SK", "tr": 8.1, "te": 3.7, "FlipAngle": 8, "iop": SAGITTAL},
        W.T1,
        False,
        False,
    ),
    ("philips", "T1W_TSE_CE", {"tr": 600, "te": 12, "variant": "SK"}, W.T1, False, True),
    # United Imaging names
    ("uih", "t2_fse_tra", {"tr": 4200, "te": 96}, W.T2, False, False),
    ("uih", "t1_gre_fs", {"seq": "GR", "variant": "SP", "tr": 5.0, "te": 2.2, "options": "FS"}, W.T1, True, False),
    ("uih", "dwi_b1000", {"seq": "EP", "tr": 4500, "te": 78, "b": 1000}, W.DWI, False, False),
    ("uih", "t2_flair_tra", {"seq": "SE\\IR", "tr": 8500, "te": 110, "ti": 2400}, W.T2_FLAIR, False, False),
    # Canon names
    ("canon", "T2WI_FSE", {"tr": 4000, "te": 100}, W.T2, False, False),
    ("canon", "FLAIR", {"seq": "SE\\IR", "tr": 10000, "te": 110, "ti": 2600}, W.T2_FLAIR, False, False),
    ("canon", "DWI", {"seq": "EP", "tr": 5000, "te": 80, "b": 1000}, W.DWI, False, False),
    # Chinese names
    ("zh", "横断位T2", {"tr": 4500, "te": 95}, W.T2, False, False),
    ("zh", "矢状位T1", {"tr": 500, "te": 12, "iop": SAGITTAL}, W.T1, False, False),
    ("zh", "冠状位T2抑脂", {"tr": 3800, "te": 85, "iop": CORONAL}, W.T2, True, False),
    ("zh", "横断位T2 FLAIR", {"seq": "SE\\IR", "tr": 9000, "te": 100, "ti": 2500}, W.T2_FLAIR, False, False),
    ("zh", "横断位扩散加权", {"seq": "EP", "tr": 5000, "te": 80}, W.DWI, False, False),
    ("zh", "矢状位T1增强压脂", {"tr": 550, "te": 10, "iop": SAGITTAL}, W.T1, True, True),
    ("zh", "冠状位PD压脂", {"tr": 3000, "te": 28, "iop": CORONAL}, W.PD, True, False),
    ("zh", "横断位T1增强前", {"tr": 550, "te": 10, "agent": "钆喷酸葡胺"}, W.T1, False, False),
]


def build(vendor: str, name: str, kwargs: dict[str, object]) -> Dataset:
    ds = mr(name, vendor=vendor, **kwargs)  # type: ignore[arg-type]
    # Diffusion series carry their b-value where each vendor writes it.
    if name == "ep2d_diff_tra":
        siemens_b(ds, 1000)
    elif name == "Ax DWI":
        ge_b(ds, 1000)
    elif (vendor, name) == ("philips", "DWI"):
        philips_b(ds, 1000.0)
    return ds


@pytest.mark.parametrize(
    ("vendor", "name", "kwargs", "weighting", "fat", "post"),
    VENDOR_TABLE,
    ids=[f"{v}:{n}" for v, n, *_ in VENDOR_TABLE],
)
def test_vendor_names_and_parameters(vendor, name, kwargs, weighting, fat, post):
    info = identify_sequence(build(vendor, name, kwargs))
    assert (info.weighting, info.fat_suppressed, info.post_contrast) == (weighting, fat, post), info.evidence
    iop = kwargs.get("iop", AXIAL)
    expected_plane = {id(AXIAL): Plane.AXIAL, id(SAGITTAL): Plane.SAGITTAL, id(CORONAL): Plane.CORONAL}[id(iop)]
    assert info.plane is expected_plane
    assert not any(e.startswith("conflict") for e in info.evidence), info.evidence


def test_renaming_the_series_does_not_move_what_the_parameters_decide():
    """Perturbation: every series renamed "series 7"; where the parameters decided, nothing moves."""
    decided = 0
    for vendor, name, kwargs, weighting, _fat, _post in VENDOR_TABLE:
        named = identify_sequence(build(vendor, name, kwargs))
        if any("inconclusive" in e or "refines" in e for e in named.evidence):
            continue  # the name was needed: nothing to compare
        ds = build(vendor, name, kwargs)
        ds.SeriesDescription = ds.ProtocolName = "series 7"
        renamed = identify_sequence(ds)
        assert (renamed.weighting, renamed.plane) == (weighting, named.plane), (name, renamed.evidence)
        decided += 1
    assert decided >= 35  # most rows of the table are decided by their parameters alone


def test_evidence_names_the_parameters():
    info = identify_sequence(mr("t2_tirm_tra_dark-fluid", seq="SE\\IR", tr=9000, te=81, ti=2500))
    assert info.evidence[0] == "TR 9000 ms, TE 81 ms, TI 2500 ms → T2-FLAIR"


@pytest.mark.parametrize(
    ("name", "kwargs", "weighting", "said"),
    [
        ("t1_se_tra", {"tr": 4000, "te": 100}, W.T2, "T1WI"),  # TR 4000/TE 100 is T2 whatever the name
        ("Ax T2 FSE", {"tr": 500, "te": 10}, W.T1, "T2WI"),
        ("横断位T1", {"seq": "SE\\IR", "tr": 9000, "te": 110, "ti": 2500}, W.T2_FLAIR, "T1WI"),
        ("Cor STIR", {"tr": 550, "te": 12, "iop": CORONAL}, W.T1, "STIR"),
        ("DWI_TRA", {"tr": 4000, "te": 100}, W.T2, "DWI"),
        ("t2_tirm_cor", {"seq": "SE\\IR", "tr": 9000, "te": 90, "ti": 2500, "iop": CORONAL}, W.T2_FLAIR, "STIR"),
    ],
)
def test_parameters_beat_a_misleading_name(name, kwargs, weighting, said):
    info = identify_sequence(mr(name, **kwargs))
    assert info.weighting is weighting
    conflict = [e for e in info.evidence if e.startswith("conflict")]
    assert len(conflict) == 1 and f"suggests {said}" in conflict[0] and "parameters win" in conflict[0]


def test_tirm_is_stir_with_a_short_ti_and_flair_with_a_long_one():
    short = identify_sequence(mr("t2_tirm_cor", seq="SE\\IR", tr=4000, te=41, ti=150, iop=CORONAL))
    long = identify_sequence(mr("t2_tirm_cor", seq="SE\\IR", tr=9000, te=90, ti=2500, iop=CORONAL))
    assert (short.weighting, short.fat_suppressed) == (W.STIR, True)
    assert (long.weighting, long.fat_suppressed) == (W.T2_FLAIR, False)


@pytest.mark.parametrize("name", ["t2_tirm_tra_dark-fluid", "横断位T2 FLAIR", "Ax T2 FLAIR", "FLAIR_TRA"])
def test_flair_without_exported_inversion_time_is_flair_by_name(name):
    """TR/TE look T2 and no TI was exported: the name refines T2 to FLAIR (no conflict)."""
    info = identify_sequence(mr(name, tr=9000, te=100))
    assert info.weighting is W.T2_FLAIR
    assert any("refines T2WI → T2-FLAIR" in e for e in info.evidence)


def test_flair_name_with_a_short_tr_and_no_inversion_stays_t2():
    info = identify_sequence(mr("Ax T2 FLAIR", tr=3000, te=100))
    assert info.weighting is W.T2
    assert any(e.startswith("conflict") and "T2-FLAIR" in e for e in info.evidence)


def test_flair_name_does_not_override_a_recorded_short_inversion():
    """With an inversion recorded (TI 150), a FLAIR name does not override STIR parameters."""
    info = identify_sequence(mr("Ax T2 FLAIR", seq="SE\\IR", tr=4000, te=60, ti=150))
    assert info.weighting is W.STIR


def test_missing_parameters_fall_back_to_the_name():
    info = identify_sequence(mr("t2_tse_sag", seq=None, iop=None))
    assert (info.weighting, info.plane) == (W.T2, Plane.SAGITTAL)
    assert any("inconclusive" in e for e in info.evidence)
    assert any("plane SAGITTAL from name" in e for e in info.evidence)


def test_contradictory_parameters_fall_back_to_the_name():
    info = identify_sequence(mr("Sag T1 FSE", tr=500, te=100, iop=SAGITTAL))  # short TR, long TE
    assert info.weighting is W.T1
    assert any("fits no T1/T2/PD range" in e for e in info.evidence)


def test_nothing_to_go_on_is_unknown():
    info = identify_sequence(mr(None, seq=None, iop=None, image_type="ORIGINAL\\PRIMARY"))
    assert info == SequenceInfo(W.UNKNOWN, False, None, False, info.evidence)
    assert info.evidence[-1] == "no weighting from the parameters or the series name"


def test_gradient_echo_epi_with_bold_te_is_bold():
    info = identify_sequence(mr("ep2d_bold_moco", seq="EP", variant="SK", tr=2000, te=30))
    assert info.weighting is W.BOLD
    assert "BOLD" in info.evidence[0]


def test_spin_echo_epi_without_diffusion_is_other():
    info = identify_sequence(mr("se_epi_ref", seq="EP\\SE", variant="SK", tr=6000, te=80))
    assert info.weighting is W.OTHER
    assert "spin-echo echo-planar without diffusion weighting" in info.evidence[0]


def test_t2_star_gre_is_t2star_not_t2():
    info = identify_sequence(mr("t2_fl2d_tra_hemo", seq="GR", variant="SP", tr=650, te=20))
    assert info.weighting is W.T2STAR
    assert "T2*-weighted GRE" in info.evidence[0]


def test_balanced_ssfp_named_as_such_is_other_not_t1():
    """TrueFISP/FIESTA/bFFE have the short TR/TE of a spoiled GRE: only the name tells them apart."""
    for name in ("t2_trufi_cor", "Cor FIESTA", "bFFE_SAG"):
        info = identify_sequence(mr(name, seq="GR", variant="SK\\SS", tr=4.3, te=2.1, iop=None))
        assert info.weighting is W.OTHER, (name, info.evidence)


def test_dixon_water_image_is_fat_suppressed():
    ds = mr("t1_vibe_dixon_tra_W", seq="GR", variant="SP", tr=4.0, te=1.3, image_type="DERIVED\\PRIMARY\\DIXON\\WATER")
    info = identify_sequence(ds)
    assert (info.weighting, info.fat_suppressed) == (W.T1, True)


def test_orientation_wins_over_plane_words():
    info = identify_sequence(mr("t2_tse_sag", tr=4000, te=100, iop=AXIAL))
    assert info.plane is Plane.AXIAL
    assert any(e.startswith("conflict") and "SAGITTAL" in e for e in info.evidence)


def test_oblique_orientation_is_reported_as_oblique():
    info = identify_sequence(mr("t2_tse_tra", tr=4000, te=100, iop=tilted_axial(44)))  # within 5° of 45°
    assert info.plane is Plane.OBLIQUE


def test_post_contrast_words_and_tag():
    assert identify_sequence(mr("t1_se_tra_GD", tr=500, te=10)).post_contrast
    assert identify_sequence(mr("Ax T1 C+", tr=500, te=10)).post_contrast
    assert identify_sequence(mr("T1_CE", tr=500, te=10)).post_contrast
    assert identify_sequence(mr("t1_se_tra", tr=500, te=10, agent="Gadovist")).post_contrast
    assert not identify_sequence(mr("t1_se_tra", tr=500, te=10, agent="NONE")).post_contrast
    assert not identify_sequence(mr("Ax T2 Post Fossa", tr=4000, te=100)).post_contrast


@pytest.mark.parametrize(
    ("description", "weighting"),
    [
        ("t2_tse_tra", W.T2),
        ("t1_se_sag", W.T1),
        ("t2_tirm_tra_dark-fluid", W.T2_FLAIR),
        ("t2_tirm_cor", W.STIR),
        ("ep2d_diff", W.DWI),
        ("t1_fl2d", W.T1),
        ("t1_mprage", W.T1),
        ("pd_tse_fs", W.PD),
        ("Ax T2 FSE", W.T2),
        ("Sag T1 FLAIR", W.T1_FLAIR),
        ("Ax DWI", W.DWI),
        ("Cor STIR", W.STIR),
        ("FSPGR", W.T1),
        ("BRAVO", W.T1),
        ("Propeller", None),
        ("T2W_TSE", W.T2),
        ("T1W_SE", W.T1),
        ("FLAIR", W.T2_FLAIR),
        ("DWI", W.DWI),
        ("T2W_SPAIR", W.T2),
        ("PDW_SPAIR", W.PD),
        ("sT1W_3D_TFE", W.T1),
        ("t2_fse_tra", W.T2),
        ("t1_gre_fs", W.T1),
        ("dwi_b1000", W.DWI),
        ("T2WI_FSE", W.T2),
        ("横断位T2", W.T2),
        ("矢状位T1", W.T1),
        ("冠状位", None),
        ("横断位弥散", W.DWI),
        ("扩散加权成像", W.DWI),
        ("横断位T2 FLAIR", W.T2_FLAIR),
        ("ADC", W.ADC),
        ("SWI_Images", W.SWI),
        ("3D TOF", W.MRA),
        ("PD T2 dual echo", None),
        ("t2_fl2d_hemo", W.T2STAR),
        ("T2*W_FFE", W.T2STAR),
    ],
)
def test_name_hints(description, weighting):
    assert name_hints(description).weighting is weighting


@pytest.mark.parametrize(
    ("description", "fat", "post", "plane"),
    [
        ("pd_tse_fs_sag", True, None, Plane.SAGITTAL),
        ("冠状位T2抑脂", True, None, Plane.CORONAL),
        ("横断位T1压脂增强", True, True, Plane.AXIAL),
        ("T2W_SPAIR_TRA", True, None, Plane.AXIAL),
        ("Ax T1 FSE", False, None, Plane.AXIAL),
        ("t1_vibe_pre", False, False, None),
        ("横断位T1平扫", False, False, Plane.AXIAL),
        ("Sag T1 +C", False, True, Plane.SAGITTAL),
    ],
)
def test_name_hints_for_fat_contrast_and_plane(description, fat, post, plane):
    hints = name_hints(description)
    assert (hints.fat_suppressed is not None, hints.post_contrast, hints.plane) == (fat, post, plane)


def test_the_name_words_are_the_lexicons_so_a_site_can_add_its_own(tmp_path):
    """A series-name word added to a copy of the lexicon (mr_series_names) reaches name_hints and
    identify_sequence through the vocabulary; without it the name says nothing."""
    items = default_thresholds_dir() / "items"
    text = (items / "lexicon.yaml").read_text(encoding="utf-8")
    marker = "    SWI: '(?<![a-z0-9])(?:swi|"
    assert marker in text
    (tmp_path / "lexicon.yaml").write_text(text.replace(marker, marker + "xibian|"), encoding="utf-8")
    site = Vocabulary(load_lexicon(tmp_path))
    assert name_hints("Ax xibian 3D").weighting is None
    assert name_hints("Ax xibian 3D", vocabulary=site).weighting is W.SWI
    # a T2*-weighted GRE by its parameters, which the name may refine to SWI
    ds = mr("Ax xibian 3D", tr=40, te=20, seq="GR")
    assert identify_sequence(ds).weighting is W.T2STAR
    assert identify_sequence(ds, vocabulary=site).weighting is W.SWI


def test_contrast_words_of_an_exam_protocol_name_do_not_mark_every_series():
    """GE writes the exam protocol ("BRAIN +C") as ProtocolName of every series, pre-contrast too."""
    ds = mr("Ax T1 FSE", tr=500, te=10)
    ds.ProtocolName = "BRAIN +C"
    assert not identify_sequence(ds).post_contrast
    del ds.SeriesDescription
    assert identify_sequence(ds).post_contrast  # with no series name, the protocol name is all there is


def test_vendor_b_values():
    assert diffusion_b_value(siemens_b(mr("x", vendor="siemens"), 800)) == 800
    assert diffusion_b_value(ge_b(mr("x", vendor="ge"), 1000)) == 1000
    assert diffusion_b_value(ge_b(mr("x", vendor="ge"), 1_000_001_000)) == 1000  # GE adds 10^9
    assert diffusion_b_value(philips_b(mr("x", vendor="philips"), 1000.0)) == 1000
    # A Siemens element number under another vendor's private creator is not a b-value.
    assert diffusion_b_value(siemens_b(mr("x", vendor="siemens"), 800, creator="OTHER VENDOR")) is None
    # Without a private creator, trusted only on that vendor's data.
    ds = mr("x", vendor="ge")
    ds.add_new(0x0019100C, "IS", "800")
    assert diffusion_b_value(ds) is None
    ds.Manufacturer = "SIEMENS"
    assert diffusion_b_value(ds) == 800


def test_siemens_b0_image_of_a_diffusion_series_is_dwi():
    ds = siemens_b(mr("ep2d_diff_tra", seq="EP", tr=5200, te=89), 0)
    assert identify_sequence(ds).weighting is W.DWI


def test_localizer_image_type_wins():
    info = identify_sequence(mr("t2_haste_tra", tr=1400, te=90, image_type="ORIGINAL\\PRIMARY\\LOCALIZER"))
    assert info.weighting is W.LOCALIZER


def raw(ds: Dataset, tag: int, vr: str, value: bytes) -> None:
    """Put ``value`` into ``ds`` as a file would hold it: unconverted until read."""
    ds[tag] = RawDataElement(Tag(tag), vr, len(value), value, 0, True, True)


@pytest.mark.filterwarnings("ignore:Invalid value for VR")
def test_garbled_values_do_not_crash():
    ds = mr("t2_tse_tra", tr=4000, te=100)
    raw(ds, 0x00180080, "DS", b"abc ")  # RepetitionTime
    raw(ds, 0x00200037, "DS", b"1\\0\\0 ")  # ImageOrientationPatient with 3 of 6 values
    raw(ds, 0x00180022, "CS", b"")  # ScanOptions empty
    raw(ds, 0x00189087, "FD", b"\x00\x01")  # DiffusionBValue: 2 bytes for an 8-byte FD
    info = identify_sequence(ds)
    assert info.weighting is W.T2  # parameters inconclusive; the name tells
    assert info.plane is Plane.AXIAL  # from "tra"


# --- enhanced (multi-frame) MR ------------------------------------------------------------------


def item(**values: object) -> Dataset:
    ds = Dataset()
    for key, value in values.items():
        setattr(ds, key, value)
    return ds


def enhanced_mr(
    *,
    tr: float,
    te: float,
    ti: float | None = None,
    b_values: list[float] | None = None,
    iop: list[float] = AXIAL,
    n_frames: int = 4,
    spacing: float = 5.0,
    echo_pulse: str = "SPIN",
    name: str = "series 3",
    **top: object,
) -> Dataset:
    """An Enhanced MR Image Storage header with parameters only in the functional groups."""
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4.1"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.10.1717.5"
    ds.Modality = "MR"
    ds.Manufacturer = "Philips Medical Systems"
    ds.SeriesDescription = name
    ds.ImageType = "ORIGINAL\\PRIMARY\\M\\NONE"
    ds.EchoPulseSequence = echo_pulse
    ds.Rows = ds.Columns = 256
    for key, value in top.items():
        setattr(ds, key, value)
    modifier = item(InversionRecovery="YES" if ti is not None else "NO")
    if ti is not None:
        modifier.InversionTimes = [ti]
    shared = item(
        MRTimingAndRelatedParametersSequence=Sequence([item(RepetitionTime=tr, FlipAngle=90)]),
        MREchoSequence=Sequence([item(EffectiveEchoTime=te)]),
        MRModifierSequence=Sequence([modifier]),
        PlaneOrientationSequence=Sequence([item(ImageOrientationPatient=iop)]),
        PixelMeasuresSequence=Sequence([item(PixelSpacing=[0.9, 0.9], SliceThickness=spacing)]),
        MRImageFrameTypeSequence=Sequence([item(FrameType="ORIGINAL\\PRIMARY\\M\\NONE")]),
    )
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    row, col = iop[:3], iop[3:]
    normal = [row[1] * col[2] - row[2] * col[1], row[2] * col[0] - row[0] * col[2], row[0] * col[1] - row[1] * col[0]]
    frames = []
    b_list = b_values or [None]
    for index in range(n_frames):
        k = index // len(b_list)
        b = b_list[index % len(b_list)]
        position = [p + k * spacing * n for p, n in zip([-115.0, -115.0, -40.0], normal, strict=True)]
        frame = item(
            PlanePositionSequence=Sequence([item(ImagePositionPatient=position)]),
            FrameContentSequence=Sequence([item(StackID="1", InStackPositionNumber=k + 1)]),
        )
        if b is not None:
            frame.MRDiffusionSequence = Sequence(
                [item(DiffusionBValue=b, DiffusionDirectionality="ISOTROPIC" if b else "NONE")]
            )
        frames.append(frame)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.NumberOfFrames = n_frames
    return ds


def test_enhanced_mr_flair_from_functional_groups():
    ds = enhanced_mr(tr=11000, te=125, ti=2800)
    params = read_mr_parameters(ds)
    assert (params.repetition_time, params.echo_time, params.inversion_time, params.enhanced) == (
        11000,
        125,
        2800,
        True,
    )
    assert "IR" in params.scanning_sequence and "SE" in params.scanning_sequence
    info = identify_sequence(ds)
    assert (info.weighting, info.plane) == (W.T2_FLAIR, Plane.AXIAL)


def test_enhanced_mr_diffusion_frames():
    ds = enhanced_mr(tr=4000, te=80, b_values=[0, 1000], n_frames=8, EchoPlanarPulseSequence="YES")
    assert read_mr_parameters(ds).b_values == (0, 1000, 0, 1000, 0, 1000, 0, 1000)
    assert identify_sequence(ds).weighting is W.DWI


def test_enhanced_mr_t2_sagittal_and_fat_suppression():
    ds = enhanced_mr(tr=3500, te=95, iop=SAGITTAL, SpectrallySelectedSuppression="FAT")
    info = identify_sequence(ds)
    assert (info.weighting, info.fat_suppressed, info.plane) == (W.T2, True, Plane.SAGITTAL)


def test_enhanced_mr_ir_prepared_gradient_echo_is_t1():
    ds = enhanced_mr(tr=8.1, te=3.7, ti=1000, echo_pulse="GRADIENT", iop=SAGITTAL)
    assert identify_sequence(ds).weighting is W.T1


def test_enhanced_mr_angiography_flag():
    ds = enhanced_mr(tr=22, te=3.5, echo_pulse="GRADIENT", TimeOfFlightContrast="YES")
    assert identify_sequence(ds).weighting is W.MRA


def test_enhanced_inversion_recovery_no_ignores_a_stray_inversion_time():
    ds = enhanced_mr(tr=4000, te=100)
    ds.SharedFunctionalGroupsSequence[0].MRModifierSequence[0].InversionTimes = [150]
    assert identify_sequence(ds).weighting is W.T2


def test_sequence_info_is_frozen():
    info = identify_sequence(mr("t2_tse_tra", tr=4000, te=100))
    with pytest.raises(dataclasses.FrozenInstanceError, match="weighting"):
        info.weighting = W.T1  # type: ignore[misc]


# --- geometry ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("iop", "plane"),
    [
        (AXIAL, Plane.AXIAL),
        (SAGITTAL, Plane.SAGITTAL),
        (CORONAL, Plane.CORONAL),
        ([0.0, 1.0, 0.0, 1.0, 0.0, 0.0], Plane.AXIAL),  # feet-first/prone style: normal -z
        (tilted_axial(10), Plane.AXIAL),  # slightly tilted axial (e.g. along the AC-PC line)
        (tilted_axial(-19.9), Plane.AXIAL),
        (tilted_axial(25), Plane.AXIAL),  # angled along the disc: the largest cosine names the plane
        (tilted_axial(45), Plane.OBLIQUE),
        (tilted_axial(80), Plane.CORONAL),  # 10° from coronal
        ([0.999848, 0.0174524, 0.0, -0.0174524, 0.999848, 0.0], Plane.AXIAL),  # in-plane rotation only
        ([1.0001, 0.0, 0.0, 0.0, 0.9999, 0.0], Plane.AXIAL),  # cosines rounded off unit length
    ],
)
def test_plane_from_orientation(iop, plane):
    assert plane_from_orientation(iop) is plane


def test_oblique_tolerance_is_an_option():
    assert plane_from_orientation(tilted_axial(25), oblique_tolerance_deg=30) is Plane.AXIAL
    assert plane_from_orientation(tilted_axial(10), oblique_tolerance_deg=5) is Plane.OBLIQUE


@pytest.mark.parametrize("tolerance", [-1.0, 90.0, 120.0])
def test_oblique_tolerance_is_validated(tolerance):
    with pytest.raises(ValueError, match=r"oblique_tolerance_deg must be in \[0, 90\)"):
        plane_from_orientation(AXIAL, oblique_tolerance_deg=tolerance)


@pytest.mark.parametrize(
    "iop",
    [
        None,
        [1.0, 0.0, 0.0],
        "abc",
        [1, 0, 0, 1, 0, 0],
        [0, 0, 0, 0, 1, 0],
        [float("nan"), 0, 0, 0, 1, 0],
        "1\\0\\0\\0\\x\\0",
    ],
)
def test_garbled_orientation_gives_none(iop):
    assert slice_normal(iop) is None
    assert plane_from_orientation(iop) is None


def test_slice_normal_and_position():
    assert slice_normal(AXIAL) == pytest.approx((0.0, 0.0, 1.0))
    assert slice_normal("0\\1\\0\\0\\0\\-1") == pytest.approx((-1.0, 0.0, 0.0))  # text DS values
    # Along a 10°-tilted normal, points k·spacing·n apart project k·spacing apart (exact by construction).
    normal = slice_normal(tilted_axial(10))
    assert normal is not None
    for k in range(5):
        point = [10.0 + k * 2.5 * normal[0], -30.0 + k * 2.5 * normal[1], 42.0 + k * 2.5 * normal[2]]
        base = slice_position([10.0, -30.0, 42.0], normal)
        assert base is not None
        assert slice_position(point, normal) == pytest.approx(base + 2.5 * k, abs=1e-9)
    assert slice_position([1.0, 2.0], normal) is None
    assert slice_position([1.0, 2.0, 3.0], None) is None


def test_frame_geometry_classic_and_enhanced():
    classic = mr("x", tr=500, te=10, ImagePositionPatient=[-100, -100, 12.5], PixelSpacing=[0.5, 0.5], SliceThickness=3)
    assert frame_geometry(classic) == [FrameGeometry(tuple(AXIAL), (-100.0, -100.0, 12.5), (0.5, 0.5), 3.0)]
    enhanced = enhanced_mr(tr=4000, te=100, n_frames=3)
    # A per-frame PixelMeasuresSequence overrides the shared one for that frame only.
    enhanced.PerFrameFunctionalGroupsSequence[1].PixelMeasuresSequence = Sequence(
        [item(PixelSpacing=[1.0, 1.0], SliceThickness=5)]
    )
    frames = frame_geometry(enhanced)
    assert [f.position for f in frames] == [(-115.0, -115.0, -40.0), (-115.0, -115.0, -35.0), (-115.0, -115.0, -30.0)]
    assert [f.pixel_spacing for f in frames] == [(0.9, 0.9), (1.0, 1.0), (0.9, 0.9)]
    assert {f.orientation for f in frames} == {tuple(AXIAL)}


@pytest.mark.filterwarnings("ignore:Invalid value for VR")
def test_frame_geometry_of_garbled_headers():
    ds = Dataset()
    assert frame_geometry(ds) == [FrameGeometry(None, None, None, None)]
    raw(ds, 0x00200032, "DS", b"1\\2 ")  # ImagePositionPatient with 2 values
    raw(ds, 0x00280030, "DS", b"a\\b ")  # PixelSpacing not numbers
    assert frame_geometry(ds) == [FrameGeometry(None, None, None, None)]
    ds = Dataset()
    ds.PerFrameFunctionalGroupsSequence = Sequence([])
    assert frame_geometry(ds) == []


# --- cases seen on real scanner files (each failed before the fix) ------------------------------


def test_ge_bold_epi_with_zero_b_tag_is_bold_not_dwi():
    """GE writes its b-value tag (0043,1039) on every EPI, fMRI included, with b = 0."""
    ds = ge_b(mr("Ax fMRI", vendor="ge", seq="EP\\GR", variant="SS", tr=2000, te=30), 0)
    info = identify_sequence(ds)
    assert info.weighting is W.BOLD, info.evidence
    assert "BOLD echo time" in info.evidence[0]


def test_ge_spin_echo_epi_with_b0_needs_the_series_or_the_name():
    """GE spin-echo EPI field maps (epi_pepolar) carry b = 0 too: one b = 0 image is not DWI."""
    b0 = ge_b(mr(None, vendor="ge", seq="EP\\SE", variant="NONE", tr=8000, te=90), 0)
    alone = identify_sequence(b0)
    assert alone.weighting is W.OTHER
    assert "b = 0 (GE slop_int_6 (0043,1039) first value) is no evidence of diffusion" in alone.evidence[0]
    b1000 = ge_b(mr(None, vendor="ge", seq="EP\\SE", variant="NONE", tr=8000, te=90), 1000)
    assert identify_series([b0, b1000]).weighting is W.DWI
    named = ge_b(mr("Ax DWI", vendor="ge", seq="EP\\SE", variant="NONE", tr=8000, te=90), 0)
    assert identify_sequence(named).weighting is W.DWI


def test_philips_dwi_technique_is_dwi_on_the_b0_image():
    ds = philips_b(mr(None, vendor="philips", seq="SE", variant="SK", tr=4900, te=72), 0)
    ds.add_new(0x20011020, "LO", "DwiSE")
    info = identify_sequence(ds)
    assert info.weighting is W.DWI
    assert "Philips Scanning Technique (2001,1020) DWISE" in info.evidence[0]


@pytest.mark.parametrize("image_type", ["DERIVED\\PRIMARY\\DIFFUSION\\FA", "DERIVED\\PRIMARY\\DIFFUSION\\TENSOR_B0"])
def test_derived_diffusion_map_named_dwi_stays_other(image_type):
    ds = mr("DWI_dir80_PA_FA", seq="EP", tr=3500, te=68, image_type=image_type)
    info = identify_sequence(ds)
    assert info.weighting is W.OTHER, info.evidence
    assert "diffusion-derived map" in info.evidence[0]
    assert any("parameters win" in e for e in info.evidence)


def test_name_never_turns_an_epi_into_t2():
    ds = mr("t2_tse_tra", seq="EP", variant="SK", tr=6000, te=100)
    info = identify_sequence(ds)
    assert info.weighting is W.OTHER, info.evidence
    assert any("conflict" in e for e in info.evidence)


def test_philips_dti_series_whose_first_image_is_b0_is_dwi():
    b0 = philips_b(mr("DT_HIGH_32DIR", vendor="philips", seq="SE", variant="SK", tr=8800, te=58), 0)
    b1000 = philips_b(mr("DT_HIGH_32DIR", vendor="philips", seq="SE", variant="SK", tr=8800, te=58), 1000)
    assert identify_sequence(b0).weighting is not W.DWI  # one image alone cannot tell
    info = identify_series([b0, b1000])
    assert info.weighting is W.DWI
    assert any("image 2 of 2 has b = 1000" in e for e in info.evidence), info.evidence


def test_identify_series_of_nothing_is_unknown():
    info = identify_series([])
    assert info.weighting is W.UNKNOWN
    assert info.evidence == ("no images in the series",)


def test_philips_fe_epi_is_bold_not_t2():
    ds = mr("EPI_asc", vendor="philips", seq="GR", variant="SK", tr=2000, te=30)
    ds.add_new(0x20010010, "LO", "Philips Imaging DD 001")
    ds.add_new(0x20011020, "LO", "FEEPI")
    info = identify_sequence(ds)
    assert info.weighting is W.BOLD, info.evidence
    assert "Philips Scanning Technique (2001,1020) FEEPI" in info.evidence[0]


def test_gre_time_series_with_bold_te_is_bold_at_series_level():
    """A T2*-weighted GRE repeated at the same slice position is an fMRI time series."""
    volumes = []
    for n in (1, 2):
        ds = mr(None, vendor="philips", seq="GR", variant="SK", tr=2000, te=27)
        ds.ImagePositionPatient = [0.0, 0.0, 10.0]
        ds.AcquisitionNumber = n
        volumes.append(ds)
    assert identify_sequence(volumes[0]).weighting is W.T2STAR
    info = identify_series(volumes)
    assert info.weighting is W.BOLD
    assert any("repeated volumes" in e for e in info.evidence)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("B0 NS", {"seq": "GR", "tr": 3.8, "te": 1.5, "image_type": "ORIGINAL\\PRIMARY\\T1\\MIXED"}),
        ("gre_field_mapping", {"seq": "GR", "variant": "SP", "tr": 400, "te": 5.19}),
        (
            "gre_field_mapping",
            {"seq": "GR", "variant": "SP", "tr": 600, "te": 10, "image_type": "ORIGINAL\\PRIMARY\\P\\ND"},
        ),
        ("B0Map (GRE)", {"seq": "RM", "variant": "NONE", "tr": 800, "te": 4.94}),
    ],
)
def test_field_maps_are_other_with_the_reason(name, kwargs):
    info = identify_sequence(mr(name, **kwargs))
    assert info.weighting is W.OTHER, info.evidence
    assert any("field map" in e for e in info.evidence)


def test_philips_swip_image_type_is_swi():
    ds = mr(
        None,
        vendor="philips",
        seq="GR",
        variant="SP",
        tr=31,
        te=None,
        image_type="ORIGINAL\\PRIMARY\\SW_M_FFE\\SW_M\\FFE",
    )
    info = identify_sequence(ds)
    assert info.weighting is W.SWI
    assert "SW_M_FFE" in info.evidence[0]


@pytest.mark.parametrize("name", ["3 Axis locator", "3-Plane Loc", "TriPilot"])
def test_localizer_names(name):
    info = identify_sequence(mr(name, seq="GR", variant="SP", tr=7.5, te=1.7))
    assert info.weighting is W.LOCALIZER, info.evidence


@pytest.mark.parametrize("name", ["T1 loc ref", "LOC REF", "t1_loc_ref"])
def test_loc_ref_is_not_a_localizer(name):
    info = identify_sequence(mr(name, tr=500, te=12))
    assert info.weighting is W.T1, info.evidence


def test_research_mode_is_interpreted_from_the_rest():
    info = identify_sequence(
        mr("3D Ax T1 MP-RAGE", vendor="ge", seq="RM\\IR", variant="NONE", tr=2217, te=3.2, ti=1000)
    )
    assert info.weighting is W.T1
    assert "RM (research mode)" in info.evidence[0]
    only_rm = identify_sequence(mr(None, vendor="ge", seq="RM", variant="NONE", tr=500, te=12))
    assert only_rm.weighting is W.T1
    assert "research mode" in only_rm.evidence[0]


def test_spin_echo_tr500_te30_is_t1_at_the_consensus_limit():
    info = identify_sequence(mr(None, tr=500, te=30))
    assert info.weighting is W.T1, info.evidence
    assert "at the consensus limit TE < 30" in info.evidence[0]
    assert identify_sequence(mr(None, tr=500, te=31)).weighting is W.UNKNOWN


def test_low_field_ir_spin_echo_is_flair():
    """Hyperfine 64 mT FLAIR: TR 4000, TI 1400, TE 194 (CSF null at TR 4000 ≈ 1519 ms)."""
    ds = mr(None, vendor="siemens", seq="SE\\IR", variant="NONE", tr=4000, te=194, ti=1400, MagneticFieldStrength=0.064)
    info = identify_sequence(ds)
    assert info.weighting is W.T2_FLAIR, info.evidence
    assert "0.064 T" in info.evidence[0] and "CSF null" in info.evidence[0]
    ds.Manufacturer = "Hyperfine Research"
    del ds.MagneticFieldStrength
    assert identify_sequence(ds).weighting is W.T2_FLAIR


def test_high_field_flair_ranges_unchanged():
    """The same header at 1.5 T and 3 T is not a FLAIR: TI 1400 and TR 4000 are below the ranges."""
    for field in (1.5, 3.0):
        ds = mr(None, seq="SE\\IR", variant="NONE", tr=4000, te=194, ti=1400, MagneticFieldStrength=field)
        assert identify_sequence(ds).weighting is W.UNKNOWN


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        (
            "Perfusion_Weighted",
            {"seq": "EP\\GR", "tr": 4800, "te": 11, "image_type": "DERIVED\\PRIMARY\\ASL\\SUBTRACTION"},
        ),
        (
            "3DpCASL",
            {"seq": "GR", "tr": 4250, "te": 9, "image_type": "ORIGINAL\\PRIMARY\\PERFUSION_FFE\\PERFUSION\\FFE"},
        ),
        ("ep2d_perf", {"seq": "EP", "tr": 1500, "te": 30}),
        ("头颅灌注", {"seq": "EP", "tr": 1500, "te": 30}),
    ],
)
def test_perfusion(name, kwargs):
    info = identify_sequence(mr(name, **kwargs))
    assert info.weighting is W.PERFUSION, info.evidence


@pytest.mark.parametrize("agent", ["ANONYMIZED", "anonymised", "REMOVED", "DELETED", "XXX"])
def test_anonymised_contrast_agent_is_no_agent(agent):
    info = identify_sequence(mr("t1_se_tra", tr=550, te=10, agent=agent))
    assert info.post_contrast is False


def test_gradient_echo_epi_during_a_contrast_bolus_is_dsc_perfusion():
    info = identify_sequence(mr("ep2d_tra_dyn", seq="EP", variant="SK", tr=1500, te=32, agent="Gadovist"))
    assert info.weighting is W.PERFUSION
    assert "→ DSC perfusion" in " ".join(info.evidence)
    anonymised = identify_sequence(mr("ep2d_tra_dyn", seq="EP", variant="SK", tr=1500, te=32, agent="ANONYMIZED"))
    assert anonymised.weighting is W.BOLD
