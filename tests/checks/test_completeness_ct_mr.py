"""Completeness of enhanced CT (contrast phases, not series) and MR (planes, joint protocols).

Headers are built here with the values scanners write: reconstructions of one helical
acquisition share its AcquisitionTime range; phases of one injection are tens of seconds apart
(requirements.md: arterial ~25-35 s, portal ~60-70 s after the injection). Expected planes come
from rotations built here, not from the code under test.
"""

from __future__ import annotations

import math
import random

import pytest
from pydicom.dataset import Dataset

from qc_pipeline.checks.completeness import check_completeness
from qc_pipeline.pipeline import load_pipeline_thresholds
from qc_pipeline.samples.catalog_studies import STYLES, build_study

AXIAL = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
SAGITTAL = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]
CORONAL = [1.0, 0.0, 0.0, 0.0, 0.0, -1.0]


@pytest.fixture(scope="module")
def thresholds():
    return load_pipeline_thresholds()


@pytest.fixture(scope="module")
def catalog(thresholds):
    return thresholds.catalog


def judge(code, datasets, thresholds, catalog):
    return check_completeness(catalog.by_code(code), datasets, thresholds, catalog)


def codes(findings):
    return sorted(f.code for f in findings)


def _seconds(hhmmss: str) -> float:
    return int(hhmmss[:2]) * 3600 + int(hhmmss[2:4]) * 60 + float(hhmmss[4:])


def _tm(seconds: float) -> str:
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{int(h):02d}{int(m):02d}{s:09.6f}"


def ct_series(
    number: int,
    description: str,
    *,
    n: int = 4,
    agent: str | None = None,
    start: str | None = None,
    scan_s: float = 6.0,
    acquisition_number: int | None = None,
    bolus: str | None = None,
    derived: bool = False,
    kernel: str | None = None,
    thickness: float = 5.0,
    iop: list[float] = AXIAL,
    localizer: bool = False,
) -> list[Dataset]:
    """``n`` images of one CT series; with ``start``, AcquisitionTime spreads over ``scan_s`` seconds
    from it (a helical scan: each image has the time its table position was acquired)."""
    out = []
    for i in range(n):
        ds = Dataset()
        ds.Modality = "CT"
        ds.SeriesInstanceUID = f"1.2.826.0.1.3680043.10.1717.{number}"
        ds.SOPInstanceUID = f"1.2.826.0.1.3680043.10.1717.{number}.{i + 1}"
        ds.SeriesNumber = number
        ds.InstanceNumber = i + 1
        ds.SeriesDescription = description
        ds.ProtocolName = description
        if localizer:
            ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        elif derived:
            ds.ImageType = ["DERIVED", "SECONDARY", "MPR"]
        else:
            ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SliceThickness = thickness
        ds.ImageOrientationPatient = iop
        if agent is not None:
            ds.ContrastBolusAgent = agent
        if start is not None:
            ds.AcquisitionTime = _tm(_seconds(start) + scan_s * i / max(n - 1, 1))
        if acquisition_number is not None:
            ds.AcquisitionNumber = acquisition_number
        if bolus is not None:
            ds.ContrastBolusStartTime = bolus
        if kernel is not None:
            ds.ConvolutionKernel = kernel
        out.append(ds)
    return out


def plain(number: int = 1, **kw) -> list[Dataset]:
    return ct_series(number, "Abdomen 5mm Plain", start="101000", **kw)


# --- enhanced CT: phases, not series ------------------------------------------------------------


def test_one_portal_phase_reconstructed_twice_is_one_phase(thresholds, catalog):
    """Pelvis needs >= 2 post-contrast phases: 5 mm + 1 mm of one portal scan are one phase."""
    study = (
        plain()
        + ct_series(2, "Pelvis portal 5mm", agent="Iohexol 350", start="101205")
        + ct_series(3, "Pelvis portal 1mm", agent="Iohexol 350", start="101205.2", thickness=1.0, n=12)
    )
    findings = judge("YB-048", study, thresholds, catalog)
    assert codes(findings) == ["completeness.ct.post_contrast_missing"]
    (f,) = findings
    assert "1 contrast phase" in f.message and "2 required" in f.message
    assert "Pelvis portal 5mm" in f.message and "Pelvis portal 1mm" in f.message  # both series named
    assert f.value == "1" and f.limit == ">= 2"
    assert "1 个" in f.message_zh


def test_upper_abdomen_one_portal_phase_names_the_missing_arterial(thresholds, catalog):
    study = (
        plain()
        + ct_series(2, "门脉期 5mm", agent="Iohexol", start="101205")
        + ct_series(3, "门脉期 1mm", agent="Iohexol", start="101205", thickness=1.0)
    )
    findings = judge("YB-047", study, thresholds, catalog)
    assert codes(findings) == ["completeness.ct.post_contrast_missing"]
    assert "arterial missing" in findings[0].message and "动脉期" in findings[0].message_zh


def test_arterial_and_portal_each_reconstructed_three_ways_pass(thresholds, catalog):
    """Thick + thin + coronal MPR (DERIVED, no AcquisitionTime) of each phase: two phases."""
    study = plain()
    study += ct_series(2, "Liver arterial 5mm", agent="Iohexol", start="101130", kernel="B30f")
    study += ct_series(3, "Liver arterial 1mm", agent="Iohexol", start="101130", thickness=1.0, kernel="B70f")
    study += ct_series(4, "Liver arterial cor MPR", agent="Iohexol", derived=True, iop=CORONAL)
    study += ct_series(5, "Liver portal venous 5mm", agent="Iohexol", start="101205")
    study += ct_series(6, "Liver portal venous 1mm", agent="Iohexol", start="101205", thickness=1.0)
    study += ct_series(7, "Liver portal venous sag MPR", agent="Iohexol", derived=True, iop=SAGITTAL)
    assert judge("YB-047", study, thresholds, catalog) == []


def test_arterial_and_delayed_lack_the_portal_phase(thresholds, catalog):
    study = (
        plain()
        + ct_series(2, "动脉期", agent="Iohexol", start="101130")
        + ct_series(3, "延迟期", agent="Iohexol", start="101400")
    )
    findings = judge("YB-047", study, thresholds, catalog)
    assert codes(findings) == ["completeness.ct.phase_missing"]
    f = findings[0]
    assert "portal" in f.message and "ARTERIAL" in f.value and "DELAYED" in f.value
    assert "门脉期" in f.message_zh


def test_venous_words_satisfy_the_portal_phase_of_the_upper_abdomen(thresholds, catalog):
    study = (
        plain()
        + ct_series(2, "动脉期", agent="Iohexol", start="101130")
        + ct_series(3, "静脉期", agent="Iohexol", start="101205")
    )
    assert judge("YB-047", study, thresholds, catalog) == []


def test_adrenal_needs_arterial_venous_and_delayed(thresholds, catalog):
    base = plain() + ct_series(2, "arterial", agent="Iohexol", start="101130")
    base += ct_series(3, "venous", agent="Iohexol", start="101205")
    assert (
        judge("YB-051", base + ct_series(4, "delayed 10min", agent="Iohexol", start="102100"), thresholds, catalog)
        == []
    )
    findings = judge(
        "YB-051", base + ct_series(4, "arterial 1mm", agent="Iohexol", start="101130", thickness=1), thresholds, catalog
    )
    assert codes(findings) == ["completeness.ct.post_contrast_missing"]
    assert "delayed missing" in findings[0].message


def test_unnamed_distinct_acquisitions_count_but_their_names_go_to_review(thresholds, catalog):
    """Two post-contrast scans minutes apart, named only 增强: the minimum is met, which phase each is
    cannot be told (no bolus start time): review, never a silent pass or a false fail."""
    study = (
        plain()
        + ct_series(2, "上腹部 增强 5mm", agent="Iohexol", start="101130")
        + ct_series(3, "上腹部 增强 5mm", agent="Iohexol", start="101210")
    )
    findings = judge("YB-047", study, thresholds, catalog)
    assert codes(findings) == ["completeness.ct.phase_unconfirmed"]
    f = findings[0]
    assert f.severity.value == "review"
    assert "arterial" in f.message and "not named" in f.message
    # The pelvis only counts phases: the same study passes it.
    assert judge("YB-048", study, thresholds, catalog) == []


def test_bolus_start_time_names_unnamed_phases_by_the_catalogued_windows(thresholds, catalog):
    """Injection at 10:11:00; scans at +30 s and +70 s: arterial and portal by the lexicon windows."""
    study = (
        plain(bolus="101100")
        + ct_series(2, "Abdomen 5mm C+", agent="Iohexol", start="101130", bolus="101100")
        + ct_series(3, "Abdomen 5mm C+", agent="Iohexol", start="101210", bolus="101100")
    )
    assert judge("YB-047", study, thresholds, catalog) == []


def test_series_that_cannot_be_told_apart_go_to_review(thresholds, catalog):
    """Two post-contrast series with no times, no acquisition numbers, no phase words: one scan in
    two reconstructions or two phases? Review, with the reason; never counted as two."""
    study = (
        plain()
        + ct_series(2, "Pelvis C+ 5mm", agent="Iohexol")
        + ct_series(3, "Pelvis C+ 1mm", agent="Iohexol", thickness=1)
    )
    findings = judge("YB-048", study, thresholds, catalog)
    assert codes(findings) == ["completeness.ct.phase_unconfirmed"]
    assert "cannot tell" in findings[0].message and "Pelvis C+ 1mm" in findings[0].message


def test_two_scans_named_the_same_phase_are_not_two_phases_for_sure(thresholds, catalog):
    """A portal scan repeated two minutes later: a repeat, or a later phase named like the first?"""
    study = (
        plain()
        + ct_series(2, "Pelvis portal", agent="Iohexol", start="101205")
        + ct_series(3, "Pelvis portal", agent="Iohexol", start="101405")
    )
    findings = judge("YB-048", study, thresholds, catalog)
    assert codes(findings) == ["completeness.ct.phase_unconfirmed"]
    assert "1 certain, up to 2" in findings[0].message and "both named PORTAL" in findings[0].message


def test_different_acquisition_numbers_are_different_acquisitions(thresholds, catalog):
    study = (
        plain()
        + ct_series(2, "Pelvis C+", agent="Iohexol", acquisition_number=2)
        + ct_series(3, "Pelvis C+", agent="Iohexol", acquisition_number=3)
    )
    assert judge("YB-048", study, thresholds, catalog) == []


@pytest.mark.parametrize(
    "placeholder", ["ANONYMIZED", "ANONYMISED", "REMOVED", "DELETED", "XXX", "NONE", "N/A", "0", "XXXXXX"]
)
def test_an_anonymiser_placeholder_in_the_agent_tag_is_not_contrast(thresholds, catalog, placeholder):
    """A plain head CT whose agent tag an anonymiser overwrote does not pass as plain + enhanced."""
    study = ct_series(1, "Head 5mm", agent=placeholder, start="101000") + ct_series(
        2, "Head 1mm", agent=placeholder, start="101000", thickness=1
    )
    findings = judge("YB-045", study, thresholds, catalog)
    assert codes(findings) == ["completeness.ct.post_contrast_missing"]
    assert "0 contrast phases" in findings[0].message
    assert judge("YB-034", study, thresholds, catalog) == []  # and it is a complete plain head CT


def test_a_series_named_plain_stays_plain_when_the_console_copies_the_agent(thresholds, catalog):
    study = ct_series(1, "Head 5mm Plain", agent="Iohexol", start="101000") + ct_series(
        2, "Head 5mm C+", agent="Iohexol", start="101400"
    )
    assert judge("YB-045", study, thresholds, catalog) == []


def test_a_scan_before_the_injection_is_plain(thresholds, catalog):
    study = ct_series(1, "Head 5mm", agent="Iohexol", start="101000", bolus="101300") + ct_series(
        2, "Head 5mm", agent="Iohexol", start="101400", bolus="101300"
    )
    assert judge("YB-045", study, thresholds, catalog) == []


def test_localizers_are_not_phases(thresholds, catalog):
    study = (
        plain()
        + ct_series(2, "Topogram", agent="Iohexol", localizer=True, n=1)
        + ct_series(3, "C+", agent="Iohexol", start="101300")
    )
    findings = judge("YB-048", study, thresholds, catalog)
    assert codes(findings) == ["completeness.ct.post_contrast_missing"]


def test_an_unnamed_mpr_is_a_reconstruction_not_a_phase(thresholds, catalog):
    """A coronal MPR (DERIVED, no times, no phase word) beside one portal scan: still one phase."""
    study = (
        plain()
        + ct_series(2, "门脉期 5mm", agent="Iohexol", start="101205")
        + ct_series(3, "增强 冠状 MPR", agent="Iohexol", derived=True, iop=CORONAL)
    )
    findings = judge("YB-048", study, thresholds, catalog)
    assert codes(findings) == ["completeness.ct.post_contrast_missing"]
    assert "1 contrast phase found" in findings[0].message
    assert "reconstructions: '增强 冠状 MPR'" in findings[0].message


@pytest.mark.parametrize("seed", range(3))
def test_file_order_does_not_move_the_findings(thresholds, catalog, seed):
    study = (
        plain()
        + ct_series(2, "门脉期 5mm", agent="Iohexol", start="101205")
        + ct_series(3, "门脉期 1mm", agent="Iohexol", start="101205", thickness=1.0)
        + ct_series(4, "增强 冠状 MPR", agent="Iohexol", derived=True, iop=CORONAL)
    )
    expected = [(f.code, f.message, f.message_zh) for f in judge("YB-047", study, thresholds, catalog)]
    shuffled = list(study)
    random.Random(seed).shuffle(shuffled)
    assert [(f.code, f.message, f.message_zh) for f in judge("YB-047", shuffled, thresholds, catalog)] == expected


# --- MR planes and protocols --------------------------------------------------------------------


def tilted_axial(degrees: float) -> list[float]:
    """Axial rotated about the patient x axis by ``degrees`` (as a disc-parallel lumbar axial)."""
    a = math.radians(degrees)
    return [1.0, 0.0, 0.0, 0.0, math.cos(a), math.sin(a)]


# (ScanningSequence, TR, TE, TI, ScanOptions)
MR_PARAMS = {
    "T1": ("SE", 520.0, 12.0, None, None),
    "T2": ("SE", 4200.0, 98.0, None, None),
    "T2FS": ("SE", 4200.0, 80.0, None, "FS"),
    "PDFS": ("SE", 3000.0, 30.0, None, "FS"),
    "STIR": ("SE\\IR", 4000.0, 60.0, 150.0, "IR"),
}


def mr_series(number: int, kind: str, iop: list[float], description: str = "", *, n: int = 3) -> list[Dataset]:
    seq, tr, te, ti, options = MR_PARAMS[kind]
    out = []
    for i in range(n):
        ds = Dataset()
        ds.Modality = "MR"
        ds.SeriesInstanceUID = f"1.2.826.0.1.3680043.10.1718.{number}"
        ds.SOPInstanceUID = f"1.2.826.0.1.3680043.10.1718.{number}.{i + 1}"
        ds.SeriesNumber = number
        ds.InstanceNumber = i + 1
        ds.SeriesDescription = description or f"{kind} series {number}"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
        ds.ScanningSequence = seq
        ds.SequenceVariant = "SK\\SP"
        ds.RepetitionTime = tr
        ds.EchoTime = te
        if ti is not None:
            ds.InversionTime = ti
        if options is not None:
            ds.ScanOptions = options
        ds.ImageOrientationPatient = iop
        ds.SliceThickness = 3.0
        out.append(ds)
    return out


def lumbar(axial_iop: list[float]) -> list[Dataset]:
    return (
        mr_series(1, "T1", SAGITTAL)
        + mr_series(2, "T2", SAGITTAL)
        + mr_series(3, "STIR", SAGITTAL)
        + mr_series(4, "T2", axial_iop, "t2_tse_tra")
    )


@pytest.mark.parametrize("tilt", [0.0, 15.0, 25.0, 30.0, -28.0])
def test_an_axial_angled_along_the_disc_is_axial(thresholds, catalog, tilt):
    assert judge("YB-058", lumbar(tilted_axial(tilt)), thresholds, catalog) == []


def test_an_axial_tilted_to_45_degrees_is_not_credited_but_goes_to_review(thresholds, catalog):
    """45° between axial and coronal is either plane: the axial T2WI is unconfirmed, not missing."""
    findings = judge("YB-058", lumbar(tilted_axial(45.0)), thresholds, catalog)
    assert codes(findings) == ["completeness.mr.plane_unconfirmed"]
    f = findings[0]
    assert f.severity.value == "review" and "axial T2WI" in f.message and "OBLIQUE" in f.message


def test_a_lumbar_without_an_axial_t2_still_fails(thresholds, catalog):
    study = mr_series(1, "T1", SAGITTAL) + mr_series(2, "T2", SAGITTAL) + mr_series(3, "STIR", SAGITTAL)
    findings = judge("YB-058", study, thresholds, catalog)
    assert codes(findings) == ["completeness.mr.sequence_missing"]
    assert "axial T2WI" in findings[0].message


def test_hips_routine_two_plane_protocol_passes(thresholds, catalog):
    """Coronal T1 + coronal STIR + axial T2-FS: the routine of both hips, two planes."""
    study = mr_series(1, "T1", CORONAL) + mr_series(2, "STIR", CORONAL) + mr_series(3, "T2FS", AXIAL)
    assert judge("YB-059", study, thresholds, catalog) == []


def test_hips_three_plane_protocol_passes(thresholds, catalog):
    study = mr_series(1, "T1", AXIAL) + mr_series(2, "PDFS", SAGITTAL) + mr_series(3, "STIR", CORONAL)
    assert judge("YB-059", study, thresholds, catalog) == []


def test_hips_without_the_axial_names_what_the_closest_protocol_lacks(thresholds, catalog):
    study = mr_series(1, "T1", CORONAL) + mr_series(2, "STIR", CORONAL)
    findings = judge("YB-059", study, thresholds, catalog)
    assert codes(findings) == ["completeness.mr.protocol_incomplete"]
    f = findings[0]
    assert "routine: coronal T1" in f.message and "lacks axial T2-FS" in f.message
    assert "横断位T2压脂" in f.message_zh


def test_knee_needs_the_three_fat_suppressed_planes_and_a_t1(thresholds, catalog):
    full = (
        mr_series(1, "PDFS", SAGITTAL)
        + mr_series(2, "T2FS", CORONAL)
        + mr_series(3, "PDFS", AXIAL)
        + mr_series(4, "T1", SAGITTAL)
    )
    assert judge("YB-060", full, thresholds, catalog) == []
    without_axial = [ds for ds in full if not ds.SeriesInstanceUID.endswith(".3")]
    findings = judge("YB-060", without_axial, thresholds, catalog)
    assert codes(findings) == ["completeness.mr.sequence_missing"]
    assert "axial PD-FS" in findings[0].message


# --- the sample studies stay complete -----------------------------------------------------------


@pytest.mark.parametrize("style", STYLES)
def test_every_complete_sample_study_is_complete(thresholds, catalog, style):
    incomplete = {}
    for item in catalog.items:
        if item.modality == "DR":
            continue  # the DR views are checked by their own tests
        findings = check_completeness(item, build_study(item, style), thresholds, catalog)
        if findings:
            incomplete[item.code] = [f.message for f in findings]
    assert incomplete == {}


def test_the_missing_post_contrast_sample_lacks_its_phase(thresholds, catalog):
    item = catalog.by_code("YB-045")
    findings = check_completeness(item, build_study(item, "zh", defect="missing_post_contrast"), thresholds, catalog)
    assert codes(findings) == ["completeness.ct.post_contrast_missing"]
    assert "post-contrast series missing" in findings[0].message
