"""MR limits only where they are valid: not on echo-planar, diffusion, perfusion or fMRI series, derived
maps or localizers (not judged: one info finding per series), and background SNR under parallel
imaging asks for review at most (Dietrich et al. 2007, JMRI 26:375)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from types import SimpleNamespace

import pydicom
import pytest

from qc_pipeline.checks.image_quality import (
    MR_SEQUENCE_BOUND,
    NOT_APPLICABLE,
    PARALLEL_IMAGING,
    Target,
    check_image_quality,
    mr_out_of_scope,
    parallel_imaging,
)
from qc_pipeline.domain import Severity, Unmeasured
from qc_pipeline.rules import load_thresholds
from tests.checks.test_image_quality import demo, loaded, thresholds  # noqa: F401 - the same fixtures
from tests.checks.test_image_quality_never_fail_open import replace_series
from tests.metrics.phantoms_mr import mr_phantom

T2_SERIES = 1  # the axial T2 that carries the 15 % N/2 ghost in the ghosted demo study
DWI_SERIES = 4  # the demo's ep2d_diff_tra b1000


def edit_series(folder: Path, number: int, **tags: object) -> str:
    uid = ""
    for path in folder.glob("*.dcm"):
        ds = pydicom.dcmread(path)
        if int(ds.SeriesNumber) != number:
            continue
        for keyword, value in tags.items():
            setattr(ds, keyword, value)
        ds.save_as(path)
        uid = str(ds.SeriesInstanceUID)
    return uid


def ours(result, uid: str):
    return [f for f in result.findings if f.series_instance_uid == uid]


@pytest.mark.parametrize(
    ("tags", "reason"),
    [
        ({"ImageType": ["ORIGINAL", "PRIMARY", "DIFFUSION", "TRACEW"], "DiffusionBValue": 1000.0}, "DWI series"),
        ({"ImageType": ["DERIVED", "PRIMARY", "ADC"]}, "ADC series"),
        ({"ImageType": ["DERIVED", "PRIMARY", "FA"]}, "derived map (ImageType DERIVED\\PRIMARY\\FA)"),
        ({"ScanningSequence": ["EP"], "SequenceVariant": ["SK"]}, "echo-planar series (ScanningSequence EP)"),
        ({"ImageType": ["ORIGINAL", "PRIMARY", "PERFUSION"]}, "PWI series"),
    ],
)
def test_ghosting_is_not_judged_on_echo_planar_diffusion_and_maps(demo, thresholds, tmp_path, tags, reason):
    folder = tmp_path / "ghosted"
    shutil.copytree(demo / "ghosted_mr", folder)
    uid = edit_series(folder, T2_SERIES, **tags)
    source, study = loaded(folder)
    result = check_image_quality(study, thresholds, source, item_modality="MR", item_code=None)
    found = ours(result, uid)
    # before: image_quality.mr.ghosting.fail (the 15 % ghost reads 13-15 %)
    assert not [f for f in found if f.code.startswith("image_quality.mr.")], [f.code for f in found]
    (na,) = [f for f in found if f.code == NOT_APPLICABLE]  # once per series, not per metric
    assert na.severity is Severity.INFO
    assert f"not applicable: {reason}" in na.message
    assert "不适用" in na.message_zh
    assert {"mr.snr", "mr.ghosting_percent", "mr.piu_percent"} <= set(na.value.split(", "))
    measured = {m.metric: m for m in result.measurements if m.series_instance_uid == uid}
    for metric in MR_SEQUENCE_BOUND:
        assert measured[metric].value is None and measured[metric].unmeasured is Unmeasured.NOT_APPLICABLE
    assert measured["mr.ghosting_percent"].detail.startswith("not applicable:")
    assert "read 1" in measured["mr.ghosting_percent"].detail  # the value it read is kept in the detail


def test_the_demo_dwi_series_is_not_judged(demo, thresholds):
    source, study = loaded(demo / "phantom_mr_brain")
    result = check_image_quality(study, thresholds, source, item_modality="MR", item_code=None)
    dwi = next(i.ref.series_instance_uid for i in study.images if int(i.dataset.SeriesNumber) == DWI_SERIES)
    (na,) = ours(result, dwi)
    assert na.code == NOT_APPLICABLE and "not applicable: DWI series" in na.message
    assert {f.severity for f in result.findings} <= {Severity.INFO}
    # the structural series are judged as before: none of them is "not applicable"
    assert [f for f in result.findings if f.code == NOT_APPLICABLE] == [na]


@pytest.fixture
def strict_snr(thresholds):
    """The shipped rules plus a fail limit on background SNR (a site may add one)."""
    review = thresholds.rules["image_quality.mr.snr.review"]
    fail = review.model_copy(update={"id": "image_quality.mr.snr.fail", "severity": Severity.FAIL})
    return dataclasses.replace(thresholds, rules={**thresholds.rules, fail.id: fail})


def noisy_t2(demo: Path, tmp_path: Path) -> tuple[Path, str]:
    folder = tmp_path / "noisy"
    shutil.copytree(demo / "phantom_mr_brain", folder)
    low = mr_phantom(shape=(12, 64, 64), signal=40.0, sigma=10.0, radius_frac=0.3, seed=3)  # Rician SNR 4
    return folder, replace_series(folder, T2_SERIES, lambda _v: low)


@pytest.mark.parametrize(
    ("tags", "detected"),
    [
        ({"ParallelReductionFactorInPlane": 2.0}, "ParallelReductionFactorInPlane (0018,9069) 2"),
        ({"ParallelAcquisition": "YES"}, "ParallelAcquisition (0018,9077) YES"),
        ({"ParallelAcquisitionTechnique": "GRAPPA"}, "ParallelAcquisitionTechnique (0018,9078) GRAPPA"),
        ({"SequenceName": "*tse2d1_15p2"}, "SequenceName (0018,0024) *tse2d1_15p2"),
        ({"ScanOptions": ["FAST_GEMS", "ASSET_GEMS"]}, "ScanOptions (0018,0022) ASSET_GEMS"),
        ({"ScanOptions": ["SENSE"]}, "ScanOptions (0018,0022) SENSE"),
    ],
)
def test_background_snr_under_parallel_imaging_asks_for_review_at_most(demo, strict_snr, tmp_path, tags, detected):
    folder, uid = noisy_t2(demo, tmp_path)
    source, study = loaded(folder)
    before = check_image_quality(study, strict_snr, source, item_modality="MR", item_code=None)
    assert "image_quality.mr.snr.fail" in {f.code for f in ours(before, uid)}
    edit_series(folder, T2_SERIES, **tags)
    source, study = loaded(folder)
    result = check_image_quality(study, strict_snr, source, item_modality="MR", item_code=None)
    found = {f.code: f for f in ours(result, uid)}
    assert "image_quality.mr.snr.fail" not in found
    snr = found["image_quality.mr.snr.review"]
    assert snr.severity is Severity.REVIEW
    assert "parallel imaging" in snr.message and detected in snr.message and "并行采集" in snr.message_zh
    pi = found[PARALLEL_IMAGING]
    assert pi.severity is Severity.INFO and pi.value == detected
    (m,) = [m for m in result.measurements if m.series_instance_uid == uid and m.metric == "mr.snr"]
    assert detected in m.detail


def test_no_parallel_imaging_is_read_from_plain_headers():
    ds = pydicom.Dataset()
    ds.ScanOptions = ["PFP", "FS"]
    ds.SequenceName = "*tse2d1_15"
    ds.ParallelReductionFactorInPlane = 1.0
    ds.ParallelAcquisition = "NO"
    assert parallel_imaging(ds) is None
    ds.add_new((0x0043, 0x1083), "DS", ["0.5", "1"])  # GE ASSET R factors (in-plane, slice)
    assert parallel_imaging(ds) == "GE ASSET factors (0043,1083) 0.5\\1"


def test_the_shipped_mr_limits_do_not_judge_piu_against_the_acr_phantom_limit():
    # the pipeline's PIU is the median over all slices; on real brains it reads 37-45 %, so the
    # ACR limits of the phantom's uniformity slice (87.5 % / 82 %) would fail normal brains
    rules = [r for r in load_thresholds().rules.values() if r.metric == "mr.piu_percent" and r.enabled]
    assert all(r.when == "below" and r.limit is not None and r.limit < 37 for r in rules)


def test_parallel_imaging_in_enhanced_and_philips_headers():
    enhanced = pydicom.Dataset()
    modifier = pydicom.Dataset()
    modifier.ParallelReductionFactorInPlane = 3.0
    shared = pydicom.Dataset()
    shared.MRModifierSequence = [modifier]
    enhanced.SharedFunctionalGroupsSequence = [shared]
    assert parallel_imaging(enhanced) == "ParallelReductionFactorInPlane (0018,9069) 3"
    philips = pydicom.Dataset()
    philips.add_new((0x2005, 0x0010), "LO", "Philips MR Imaging DD 001")
    philips.add_new((0x2005, 0x100F), "CS", "SENSE")
    assert parallel_imaging(philips) == "Philips (2005,100F) SENSE"
    philips[0x2005, 0x100F].value = "NO SENSE"
    assert parallel_imaging(philips) is None


CONFORMANCE = Path(__file__).resolve().parents[1] / "data" / "mr_conformance"  # real vendor headers


@pytest.mark.parametrize(
    ("name", "detected"),
    [
        ("ph_mprage", "Philips (2005,10A1) SENSE"),
        ("xa30_t1_tfl", "ParallelReductionFactorInPlane (0018,9069) 2"),
        ("ge_mprage", "GE ASSET factors (0043,1083) 0.5\\0.5"),
        ("toshiba_dti_ax", "ParallelAcquisition (0018,9077) YES"),
        ("hitachi_se", None),
        ("ph_t1_tse_enh", None),
        ("uih_t1_gre", None),
    ],
)
def test_parallel_imaging_on_real_vendor_headers(name, detected):
    ds = pydicom.dcmread(CONFORMANCE / f"{name}_1.dcm", stop_before_pixels=True)
    assert parallel_imaging(ds) == detected


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("xa30_dwi", "DWI series"),
        ("xa30_adc", "ADC series"),
        ("xa30_fa", "derived map (ImageType DERIVED\\PRIMARY\\DIFFUSION\\FA)"),
        ("xa30_asl_rcbf", "PWI series"),
        ("si_vb_ax_epi", "BOLD series"),
        ("ge_polar_fmap", "echo-planar series (ScanningSequence EP)"),
        ("ge_mprage", None),
        ("si_d2n_flair3d", None),
        ("ph_t1_tse_enh", None),
    ],
)
def test_which_real_series_the_structural_mr_limits_skip(thresholds, name, reason):
    datasets = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(CONFORMANCE.glob(f"{name}_[0-9].dcm"))]
    target = Target("mr", "1.2", tuple(SimpleNamespace(dataset=ds) for ds in datasets), name, name)
    found = mr_out_of_scope(target, thresholds)  # type: ignore[arg-type]
    assert (found[0] if found else None) == reason
