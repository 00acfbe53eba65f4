"""Image quality never fails open: a metric that cannot be measured says why, and when the reason
may be the defect itself (ghosts in the air, no object) the study goes to a person."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from qc_pipeline.checks.image_quality import (
    LOSSY,
    NOT_APPLICABLE,
    UNMEASURABLE,
    check_image_quality,
)
from qc_pipeline.domain import Severity, Unmeasured
from qc_pipeline.errors import DegenerateInputError, NotApplicableError
from qc_pipeline.io.pixels import load_series
from qc_pipeline.metrics import mr
from tests.checks.test_image_quality import demo, loaded, thresholds  # noqa: F401 - the same fixtures
from tests.metrics.phantoms_mr import motion_ghosts, mr_phantom

WG04 = Path(__file__).resolve().parents[1] / "data" / "wg04"


def replace_series(folder: Path, number: int, change) -> str:
    """Apply ``change`` to the (slice, row, col) pixels of series ``number``; its SeriesInstanceUID."""
    files = sorted(
        (p for p in folder.glob("*.dcm") if int(pydicom.dcmread(p, stop_before_pixels=True).SeriesNumber) == number),
        key=lambda p: int(pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber),
    )
    datasets = [pydicom.dcmread(p) for p in files]
    volume = np.stack([ds.pixel_array.astype(np.float64) for ds in datasets])
    changed = np.clip(np.rint(change(volume)), 0, 65535).astype(np.uint16)
    for path, ds, image in zip(files, datasets, changed, strict=True):
        ds.PixelData = image.tobytes()
        ds.save_as(path)
    return str(datasets[0].SeriesInstanceUID)


def test_heavily_ghosted_t2_brain_does_not_pass(demo, thresholds, tmp_path):
    folder = tmp_path / "ghosted"
    shutil.copytree(demo / "phantom_mr_brain", folder)
    # motion every 4th phase line (ROW: horizontal), 3 px: ghosts fill the air beside the head
    uid = replace_series(folder, 1, lambda v: motion_ghosts(v, every=4, shift_px=3.0, phase_axis=1))
    source, study = loaded(folder)
    result = check_image_quality(study, thresholds, source, item_modality="MR", item_code=None)
    ours = {m.metric: m for m in result.measurements if m.series_instance_uid == uid}
    assert ours["mr.ghosting_percent"].value is not None  # measured despite the contaminated air
    assert "not noise-like" in ours["mr.ghosting_percent"].detail
    assert ours["mr.snr"].value is None and ours["mr.snr"].unmeasured is Unmeasured.UNMEASURABLE
    (finding,) = [f for f in result.findings if f.series_instance_uid == uid and f.code == UNMEASURABLE]
    assert finding.severity is Severity.REVIEW
    assert "mr.snr" in finding.value and "mr.wrap_percent" in finding.value
    assert "does not look like magnitude noise" in finding.message and "无法测量" in finding.message_zh
    # before, the image-quality findings of this series were all info: the series passed
    assert max(f.severity.rank for f in result.findings if f.series_instance_uid == uid) == Severity.REVIEW.rank


def test_clean_phantom_brain_has_no_unmeasurable_metric(demo, thresholds):
    source, study = loaded(demo / "phantom_mr_brain")
    result = check_image_quality(study, thresholds, source, item_modality="MR", item_code=None)
    assert {f.severity for f in result.findings} <= {Severity.INFO}, [f.message for f in result.findings]
    assert not [f for f in result.findings if f.code == UNMEASURABLE]


def test_tight_crop_with_no_air_is_info_only(demo, thresholds, tmp_path):
    folder = tmp_path / "crop"
    shutil.copytree(demo / "phantom_mr_brain", folder)
    crop = mr_phantom(shape=(12, 64, 64), radius_frac=0.62, sigma=10.0, signal=400.0, seed=5)
    uid = replace_series(folder, 1, lambda _v: crop)
    source, study = loaded(folder)
    result = check_image_quality(study, thresholds, source, item_modality="MR", item_code=None)
    ours = [f for f in result.findings if f.series_instance_uid == uid]
    assert ours and {f.severity for f in ours} == {Severity.INFO}, [f.message for f in ours]
    (na,) = [f for f in ours if f.code == NOT_APPLICABLE]
    assert "no air around the object" in na.message and "mr.snr" in na.value and "mr.ghosting_percent" in na.value


def test_a_slice_with_no_object_does_not_raise():
    volume = mr_phantom(shape=(4, 128, 128), seed=2)
    rng = np.random.default_rng(9)
    # a slice of noise with a thin bright line: the series' Otsu test keeps it, the opening empties it
    noise = np.abs(rng.normal(0, 2.0, (128, 128)) + 1j * rng.normal(0, 2.0, (128, 128)))
    noise[64, 40:80] = 500.0  # a line one pixel wide
    volume[2] = noise
    result = {m.metric: m for m in mr.measure(volume, spacing_mm=(5.0, 1.0, 1.0), phase_encode_direction="ROW")}
    assert result["mr.snr"].value is not None and result["mr.ghosting_percent"].value is not None
    assert "3/4 slices with an object" in result["mr.fov_coverage_percent"].detail


def test_no_object_at_all_is_unmeasurable():
    rng = np.random.default_rng(4)
    noise = np.abs(rng.normal(0, 2.0, (3, 64, 64)) + 1j * rng.normal(0, 2.0, (3, 64, 64)))
    result = mr.measure(noise, spacing_mm=(5.0, 1.0, 1.0), phase_encode_direction="ROW")
    snr = next(m for m in result if m.metric == "mr.snr")
    assert snr.value is None and snr.unmeasured is Unmeasured.UNMEASURABLE and "no object found" in snr.detail


def test_zero_filled_air_is_not_applicable_for_snr():
    volume = mr_phantom(shape=(4, 128, 128), zero_background=True, seed=3)
    result = {m.metric: m for m in mr.measure(volume, spacing_mm=(5.0, 1.0, 1.0), phase_encode_direction="ROW")}
    assert result["mr.snr"].value is None and result["mr.snr"].unmeasured is Unmeasured.NOT_APPLICABLE


def test_lossy_real_mr_is_flagged_and_its_noise_metrics_are_not_judged(demo, thresholds, tmp_path):
    folder = tmp_path / "lossy"
    folder.mkdir()
    for name in ("MR4_JPLY",):
        shutil.copy(WG04 / name, folder / f"{name}.dcm")
    source, study = loaded(folder)
    result = check_image_quality(study, thresholds, source, item_modality="MR", item_code=None)
    codes = {f.code: f for f in result.findings}
    assert "image_quality.pixels.not_decoded" not in codes  # 12-bit lossy JPEG decodes
    lossy = codes[LOSSY]
    assert lossy.severity is Severity.REVIEW and "1.2.840.10008.1.2.4.51" in lossy.value
    assert "有损压缩" in lossy.message_zh
    # the image decoded and was measured (this 512^2 slice fills its FOV: no air, hence no SNR)
    coverage = next(m for m in result.measurements if m.metric == "mr.fov_coverage_percent")
    assert coverage.value is not None and coverage.value > 99


def test_lossy_ct_noise_is_not_applicable(thresholds, tmp_path):
    folder = tmp_path / "ct"
    folder.mkdir()
    shutil.copy(WG04 / "CT2_J2KI", folder / "CT2_J2KI.dcm")
    source, study = loaded(folder)
    result = check_image_quality(study, thresholds, source, item_modality="CT", item_code=None)
    assert LOSSY in {f.code for f in result.findings}
    noise = next(m for m in result.measurements if m.metric == "ct.noise_hu")
    assert noise.value is None and noise.unmeasured is Unmeasured.NOT_APPLICABLE
    assert noise.detail.startswith("lossy compression (LossyImageCompression (0028,2110) = 01, ratio 106")
    assert "invalidates this metric (it read" in noise.detail
    streak = next(m for m in result.measurements if m.metric == "ct.streak_index")
    assert streak.value is None and streak.detail.startswith("lossy compression (")
    ring = next(m for m in result.measurements if m.metric == "ct.ring_hu")
    assert ring.value is not None  # a low-frequency metric stays judged
    assert not any(f.code.startswith("image_quality.ct.noise") for f in result.findings)


def test_ghosted_air_of_an_echo_planar_diffusion_series_is_not_applicable(demo, thresholds, tmp_path):
    folder = tmp_path / "dwi"
    shutil.copytree(demo / "phantom_mr_brain", folder)
    uid = replace_series(folder, 4, lambda v: motion_ghosts(v, every=4, shift_px=3.0, phase_axis=1))  # ep2d_diff
    source, study = loaded(folder)
    result = check_image_quality(study, thresholds, source, item_modality="MR", item_code=None)
    ours = [f for f in result.findings if f.series_instance_uid == uid]
    assert not [f for f in ours if f.code == UNMEASURABLE], [f.message for f in ours]
    (na,) = [f for f in ours if f.code == NOT_APPLICABLE]
    assert "not applicable: DWI series" in na.message and "mr.snr" in na.value  # DWI is named before its EPI readout


def test_a_ghosting_reference_that_is_not_air_is_unmeasurable():
    # signal across the frequency side (above and below the disc, header says ROW) and some on the
    # phase side: neither air is noise-like, and the ratio would read strongly negative
    volume = mr_phantom(shape=(4, 128, 128), phase_axis=0, ghost_smear=0.3, seed=6).astype(np.float64)
    yy, xx = np.mgrid[0:128, 0:128]
    disc = (yy - 63.5) ** 2 + (xx - 63.5) ** 2 <= (0.3 * 128) ** 2
    band = disc.any(axis=1)[:, None] & ~disc
    volume[:, band] += 15.0
    result = {m.metric: m for m in mr.measure(volume, spacing_mm=(5.0, 1.0, 1.0), phase_encode_direction="ROW")}
    ghosting = result["mr.ghosting_percent"]
    assert ghosting.value is None and ghosting.unmeasured is Unmeasured.UNMEASURABLE
    assert "the ghosting reference is not air" in ghosting.detail


def test_a_series_too_large_to_decode_is_not_applicable_but_a_lying_header_is_reviewed(
    demo, thresholds, tmp_path, monkeypatch
):
    monkeypatch.setattr("qc_pipeline.checks.image_quality.MAX_SERIES_BYTES", 1000)
    source, study = loaded(demo / "phantom_ct_chest")
    result = check_image_quality(study, thresholds, source, item_modality="CT", item_code=None)
    (finding,) = result.findings
    assert finding.code == NOT_APPLICABLE and finding.severity is Severity.INFO
    assert "more than max_bytes=1000" in finding.message and "不适用" in finding.message_zh

    # in the decoder: too large and whole is not applicable; a header larger than its file is not
    paths = sorted((demo / "phantom_ct_chest").glob("*.dcm"))
    with pytest.raises(NotApplicableError, match="more than max_bytes=1000"):
        load_series(paths, max_bytes=1000)
    ds = pydicom.dcmread(paths[0])
    ds.Rows = ds.Columns = 60000  # the header claims far more pixels than the file holds
    ds.save_as(tmp_path / "liar.dcm")
    with pytest.raises(DegenerateInputError, match="Rows=60000") as raised:
        load_series([tmp_path / "liar.dcm"])
    assert not isinstance(raised.value, NotApplicableError)
