"""MR image-quality metrics: known truth on seeded phantoms, invariances, raises, real MR goldens."""

from __future__ import annotations

import math
import os
from pathlib import Path

import data_store
import numpy as np
import pytest
import yaml
from numpy.lib.stride_tricks import sliding_window_view
from pydicom.data import get_testdata_file
from skimage.filters import threshold_otsu

from qc_pipeline.domain import Measurement, Unmeasured
from qc_pipeline.errors import DegenerateInputError
from qc_pipeline.io.dicom import text
from qc_pipeline.io.pixels import load_series
from qc_pipeline.metrics import mr
from qc_pipeline.rules.evaluate import evaluate
from qc_pipeline.rules.schema import Rule, RuleFile
from qc_pipeline.samples import phantoms as demo_phantoms
from tests.metrics.phantoms_mr import mr_phantom, rician_mean

THRESHOLDS = Path(__file__).resolve().parents[2] / "thresholds" / "image_quality_mr.yaml"
PIXEL_MM = (5.0, 1.0, 1.0)
SCALE_FREE = tuple(mr.METRICS)  # every MR metric is a ratio of intensities or a pixel share
SNR_REVIEW = "image_quality.mr.snr.review"
GHOST_REVIEW = "image_quality.mr.ghosting.review"
GHOST_FAIL = "image_quality.mr.ghosting.fail"
WRAP_REVIEW = "image_quality.mr.wrap.review"


def run(volume: np.ndarray, *, phase: str | None = "ROW", spacing_mm=PIXEL_MM) -> dict[str, Measurement]:
    return {m.metric: m for m in mr.measure(volume, spacing_mm=spacing_mm, phase_encode_direction=phase)}


def value(result: dict[str, Measurement], metric: str) -> float:
    v = result[metric].value
    assert v is not None, f"{metric} not measured: {result[metric].detail}"
    return v


def rules() -> list[Rule]:
    return RuleFile.model_validate(yaml.safe_load(THRESHOLDS.read_text(encoding="utf-8"))).rules


def fired(result: dict[str, Measurement]) -> dict[str, str]:
    """Rule id -> severity of the worst rule of image_quality_mr.yaml that fires on each metric, as
    the rule evaluator the checks use decides it (one finding per measurement, the worst)."""
    judged = [evaluate(rules(), metric, m.value, modality="MR", item_code=None) for metric, m in result.items()]
    return {ev.fired.rule.id: str(ev.fired.rule.severity) for ev in judged if ev.fired is not None}


# ----------------------------------------------------------------------------------- contract


def test_measure_returns_one_measurement_per_metric_in_order() -> None:
    result = mr.measure(mr_phantom(), spacing_mm=PIXEL_MM, phase_encode_direction="ROW")
    assert [m.metric for m in result] == list(mr.METRICS)
    assert [m.unit for m in result] == list(mr.METRICS.values())
    assert all(m.value is not None for m in result), [(m.metric, m.detail) for m in result if m.value is None]
    assert all(m.series_instance_uid is None and m.sop_instance_uid is None for m in result)


def test_thresholds_file_is_valid_and_names_only_mr_metrics() -> None:
    loaded = rules()
    assert {r.id for r in loaded} == {SNR_REVIEW, GHOST_REVIEW, GHOST_FAIL, WRAP_REVIEW}
    for rule in loaded:
        assert rule.metric in mr.METRICS
        assert rule.units == mr.METRICS[rule.metric]
        assert rule.modalities == ["MR"]
        assert rule.id.startswith("image_quality.mr.")
        assert "site default" in rule.source or "ACR" in rule.source


# ------------------------------------------------------------------------- truth: SNR, CNR


@pytest.mark.parametrize("sigma", [2.0, 10.0, 25.0])
def test_snr_recovers_the_seeded_signal_to_noise(sigma: float) -> None:
    # Truth: the object (S = 100) reads, on average, the Rician mean E|S + n| (its bias is 0.02 %
    # at sigma 2 and 3 % at sigma 25), and the air gives sigma through sd(Rayleigh) = 0.655 sigma.
    # Tolerance 2 %: the air SD comes from ~22 000 px, whose relative standard error is
    # sqrt((kurtosis - 1) / 4N) = 0.5 % for Rayleigh noise (2 % is 4 SE).
    result = run(mr_phantom(sigma=sigma, seed=11))
    expected = rician_mean(100.0, sigma) / sigma
    assert value(result, "mr.snr") == pytest.approx(expected, rel=0.02)


def test_low_snr_asks_for_review_and_good_snr_does_not() -> None:
    low = run(mr_phantom(sigma=25.0))  # SNR 4
    good = run(mr_phantom(sigma=5.0))  # SNR 20
    assert value(low, "mr.snr") < 5
    assert fired(low) == {SNR_REVIEW: "review"}
    assert fired(good) == {}


def test_cnr_recovers_the_contrast_of_two_seeded_tissues() -> None:
    # Inner disc 150, outer ring 100, sigma 2: CNR = (E|150+n| - E|100+n|) / sigma = 25.0. The two
    # classes are 25 sigma apart, so Otsu separates them without error; tolerance 2 % as for SNR
    # (the same air SD is the denominator).
    result = run(mr_phantom(inner_signal=150.0, sigma=2.0, seed=5))
    expected = (rician_mean(150.0, 2.0) - rician_mean(100.0, 2.0)) / 2.0
    assert value(result, "mr.cnr") == pytest.approx(expected, rel=0.02)


# ------------------------------------------------------------------------------ truth: ghosts


@pytest.mark.parametrize("strength", [0.04, 0.10])
def test_ghosting_recovers_a_known_phase_encode_smear(strength: float) -> None:
    # Ghost signal strength x S spread over every air pixel in the rows the object spans (a
    # horizontal phase encoding): the phase ROIs hold Rician(strength S, sigma) noise, the
    # frequency ROIs Rayleigh(sigma) noise. ACR ratio = (E|gS+n| - E|n|) / E|S+n| (the noise floor
    # does not cancel exactly under a Rician signal: 8.80 % for a 10 % ghost at sigma = S/100).
    # Tolerance 0.1 percentage point: each ROI mean has a standard error below 0.01 S / 100.
    result = run(mr_phantom(sigma=1.0, ghost_smear=strength, seed=2))
    expected = 100.0 * (rician_mean(100.0 * strength, 1.0) - rician_mean(0.0, 1.0)) / rician_mean(100.0, 1.0)
    assert value(result, "mr.ghosting_percent") == pytest.approx(expected, abs=0.1)


def test_ghosting_is_signed_along_the_phase_direction() -> None:
    # The same ghost seen with a vertical phase encoding: the air along the phase direction is
    # now the darker pair, and the ratio changes sign (the rule asks for ghosts along the phase).
    volume = mr_phantom(sigma=1.0, ghost_smear=0.1, phase_axis=0, seed=2)
    assert value(run(volume, phase="COL"), "mr.ghosting_percent") == pytest.approx(8.80, abs=0.1)
    assert value(run(np.ascontiguousarray(volume.transpose(0, 2, 1)), phase="ROW"), "mr.ghosting_percent") == (
        pytest.approx(8.80, abs=0.1)
    )


def test_a_ghost_copy_at_10_percent_asks_for_review_in_every_phase_reading() -> None:
    # An N/2 copy of a disc (radius 0.2 FOV) at 10 %: half of the phase-side air holds the copy,
    # so the ACR ratio reads about 4 % (not 10 %: the ACR ROIs average ghost and air).
    volume = mr_phantom(radius_frac=0.2, ghost_fraction=0.10, seed=3)
    clean = run(mr_phantom(radius_frac=0.2, seed=3))
    for phase in ("ROW", None, "COL"):
        result = run(volume, phase=phase)
        assert 3.0 < value(result, "mr.ghosting_percent") < 8.0
        assert fired(result) == {GHOST_REVIEW: "review"}
    assert "unknown" in run(volume, phase=None)["mr.ghosting_percent"].detail
    # The header names the wrong axis: the air that would hold the noise estimate is full of
    # ghosts, so the other axis is used, and the ghost is still reported.
    assert "not noise-like" in run(volume, phase="COL")["mr.ghosting_percent"].detail
    assert abs(value(clean, "mr.ghosting_percent")) < 0.2
    assert fired(clean) == {}


def test_demo_head_phantom_ghost_fails_and_the_clean_head_passes() -> None:
    # qc_pipeline.samples' head (64 x 64, sigma 10, uint16): the demo's "ghosted_mr" study adds an
    # N/2 ghost at 15 % along the rows; the demo expects image_quality.mr.ghosting.fail.
    for signal in (150.0, 400.0):
        head = demo_phantoms.mr_head_phantom(n_slices=12, size=64, signal=signal, noise_sigma=10.0, seed=1)
        ghosted = demo_phantoms.add_ghost(head, fraction=0.15, axis=-1)
        assert fired(run(head.astype(np.float32), spacing_mm=(5.0, 3.6, 3.6))) == {}
        result = run(ghosted.astype(np.float32), spacing_mm=(5.0, 3.6, 3.6))
        assert value(result, "mr.ghosting_percent") > 8.0
        assert fired(result) == {GHOST_FAIL: "fail"}


# ------------------------------------------------------------------------- truth: PIU, wrap


def test_piu_recovers_a_linear_shading() -> None:
    # Truth: the noise-free disc with a 1 + 0.2 (x - c) / R ramp. Expected PIU from an independent
    # brute force: every 10 x 10 window (1 cm at 1 mm) wholly inside the ACR large ROI (a centred
    # disc of 200/283.5 of the object's area), its mean over the noise-free image. Tolerance 0.3
    # percentage point: the measured windows average 100 noisy px (sigma 0.5 -> 0.05 per mean), and
    # the extremes of ~1000 such means move by < 0.2.
    n, radius = 128, 0.3 * 128
    yy, xx = np.mgrid[0:n, 0:n].astype(float)
    c = (n - 1) / 2
    disc = (yy - c) ** 2 + (xx - c) ** 2 <= radius**2
    truth = np.where(disc, 100.0 * (1 + 0.2 * (xx - c) / radius), 0.0)
    roi = disc & ((yy - c) ** 2 + (xx - c) ** 2 <= mr.ACR_LARGE_ROI_FRACTION * disc.sum() / math.pi)
    inside = sliding_window_view(roi, (10, 10)).all(axis=(-2, -1))
    means = sliding_window_view(truth, (10, 10)).mean(axis=(-2, -1))[inside]
    expected = 100.0 * (1 - (means.max() - means.min()) / (means.max() + means.min()))
    result = run(mr_phantom(shading=0.2, sigma=0.5, seed=4))
    assert value(result, "mr.piu_percent") == pytest.approx(expected, abs=0.3)
    assert 80 < expected < 90  # the ramp is strong enough to matter (ACR limit 87.5 %)


def test_piu_needs_pixel_spacing() -> None:
    result = run(mr_phantom(), spacing_mm=(None, None, None))
    assert result["mr.piu_percent"].value is None
    assert "spacing" in result["mr.piu_percent"].detail


def test_wrap_of_an_arm_outside_the_fov_asks_for_review() -> None:
    # An "arm" disc centred 8 % of the FOV beyond the right edge: the part inside the FOV and the
    # part folded in at the left edge are separate pieces at the phase-encode edges.
    wrapped = run(mr_phantom(wrap_radius_frac=0.12, seed=6))
    assert value(wrapped, "mr.wrap_percent") > 2.0
    assert fired(wrapped) == {WRAP_REVIEW: "review"}
    # Along the other axis nothing folds: with a vertical phase encoding the same image reads 0.
    assert value(run(mr_phantom(wrap_radius_frac=0.12, seed=6), phase="COL"), "mr.wrap_percent") == 0.0
    assert value(run(mr_phantom(seed=6)), "mr.wrap_percent") == 0.0


# --------------------------------------------------------------------------- geometry, padding


def test_coverage_and_edge_contact_of_a_known_disc() -> None:
    # A disc of radius 0.3 x 128 covers pi 0.09 = 28.3 % of the FOV; 1 % tolerance (relative) for
    # the pixelated edge. It touches no edge.
    result = run(mr_phantom(sigma=1.0))
    assert value(result, "mr.fov_coverage_percent") == pytest.approx(100 * math.pi * 0.09, rel=0.01)
    assert value(result, "mr.edge_contact_percent") == 0.0


def test_zero_filled_lines_are_left_out() -> None:
    # 20 zero lines top and bottom (a 70 % phase FOV in a square matrix): neither object nor air.
    padded = run(mr_phantom(pad_lines=20, seed=7))
    plain = run(mr_phantom(seed=7))
    assert value(padded, "mr.snr") == pytest.approx(value(plain, "mr.snr"), rel=0.03)  # less air: 3 %
    assert value(padded, "mr.fov_coverage_percent") == pytest.approx(
        value(plain, "mr.fov_coverage_percent") * 128 / 88, rel=1e-3
    )
    assert value(padded, "mr.efc") != value(plain, "mr.efc")
    assert "88" not in padded["mr.efc"].detail and str(4 * 88 * 128) in padded["mr.efc"].detail


def test_masked_background_gives_no_snr_and_says_why() -> None:
    result = run(mr_phantom(zero_background=True))
    for metric in ("mr.snr", "mr.cnr", "mr.fber", "mr.ghosting_percent", "mr.wrap_percent"):
        assert result[metric].value is None
        assert "no air" in result[metric].detail
    assert result["mr.efc"].value is not None


def test_end_slices_of_pure_noise_have_no_object() -> None:
    volume = mr_phantom(shape=(6, 96, 96), seed=8)
    volume[0] = mr_phantom(shape=(1, 96, 96), radius_frac=0.0, seed=9)[0]  # air only
    volume[-1] = mr_phantom(shape=(1, 96, 96), radius_frac=0.0, seed=10)[0]
    masks = mr.segment(volume)
    assert masks.has_object.tolist() == [False, True, True, True, True, False]
    assert "4/6 slices" in run(volume)["mr.fov_coverage_percent"].detail


# ------------------------------------------------------------------------------ perturbations


@pytest.mark.parametrize("factor", [8.0, 3.7, 1e-3])
def test_intensity_scaling_changes_nothing(factor: float) -> None:
    # Masks are made from relative levels (Otsu, min/p99), so a gain leaves them unchanged: exact
    # for a power of two, float32 rounding (< 1e-6) otherwise.
    volume = mr_phantom(inner_signal=150.0, radius_frac=0.2, ghost_fraction=0.05, shading=0.1, seed=12)
    base, scaled = run(volume), run(volume * np.float32(factor))
    for metric in SCALE_FREE:
        # N4 fits its field iteratively in float32: the object's median in float32 moves the fit in
        # the sixth digit for a gain that is not a power of two
        rel = 1e-4 if metric == "mr.inu_range_percent" else 1e-6
        assert value(scaled, metric) == pytest.approx(value(base, metric), rel=rel, abs=1e-12), metric


def test_slice_order_flips_and_transposition_change_nothing() -> None:
    volume = mr_phantom(inner_signal=150.0, radius_frac=0.2, ghost_fraction=0.05, shading=0.1, seed=13)
    base = run(volume)
    variants = {
        "reversed slices": run(volume[::-1]),
        "shuffled slices": run(volume[[2, 0, 3, 1]]),
        "left-right flip": run(volume[:, :, ::-1]),
        "up-down flip": run(volume[:, ::-1]),
        "transposed, COL": run(np.ascontiguousarray(volume.transpose(0, 2, 1)), phase="COL"),
        "float64": run(volume.astype(np.float64)),
    }
    for name, result in variants.items():
        for metric in mr.METRICS:
            # 1e-7: only the order of floating-point sums (and EFC's float32 logs) differs. N4 fits
            # its B-spline field iteratively in float32 on a 48 px grid: mirrored or transposed, the
            # same field comes out within 2 % of its value (0.3 points at 15 %)
            rel = 2e-2 if metric == "mr.inu_range_percent" else 1e-7
            assert value(result, metric) == pytest.approx(value(base, metric), rel=rel, abs=1e-12), (name, metric)


def test_shifting_the_object_moves_the_scale_free_metrics_little() -> None:
    # A shift of (5, -7) px changes the pixelation of the disc and which noise samples fall where:
    # SNR, EFC, coverage within 1 %; the N/2 ghost's share of the ACR ROIs within 5 %.
    kw = dict(inner_signal=150.0, radius_frac=0.2, ghost_fraction=0.05, shading=0.1, seed=14)
    base, shifted = run(mr_phantom(**kw)), run(mr_phantom(center_offset_px=(5, -7), **kw))
    for metric in ("mr.snr", "mr.cnr", "mr.efc", "mr.fov_coverage_percent", "mr.piu_percent"):
        assert value(shifted, metric) == pytest.approx(value(base, metric), rel=0.01), metric
    assert value(shifted, "mr.ghosting_percent") == pytest.approx(value(base, "mr.ghosting_percent"), rel=0.05)


# ------------------------------------------------------------------------------ phase argument


@pytest.mark.parametrize("spelling", ["ROW", "row", " ROW "])
def test_phase_direction_spellings(spelling: str) -> None:
    assert "horizontally (ROW)" in run(mr_phantom(), phase=spelling)["mr.ghosting_percent"].detail


def test_unknown_phase_direction_value_is_treated_as_unknown() -> None:
    detail = run(mr_phantom(radius_frac=0.2, ghost_fraction=0.1), phase="OBLIQUE")["mr.ghosting_percent"].detail
    assert "'OBLIQUE' is not ROW/COL" in detail


# ------------------------------------------------------------------------ functions and raises


def test_snr_background_formula() -> None:
    # mean 10, sd(ddof=1) of [1, 3] = sqrt(2): 10 * 0.6551 / 1.4142
    assert mr.snr_background([10.0, 10.0], [1.0, 3.0]) == pytest.approx(10 * math.sqrt(2 - math.pi / 2) / math.sqrt(2))


def test_ghosting_ratio_formula_is_the_acr_one() -> None:
    # ACR: ((top + bottom) - (left + right)) / (2 large) with the phase pair first
    assert mr.ghosting_ratio_percent([[12.0], [14.0]], [[10.0], [10.0]], [100.0]) == pytest.approx(3.0)
    assert mr.ghosting_ratio_percent([[10.0]], [[12.0], [14.0]], [100.0]) == pytest.approx(-3.0)


def test_piu_formula_on_a_ramp() -> None:
    ramp = np.tile(100.0 + np.arange(30.0), (20, 1))  # columns 100..129
    piu = mr.percent_integral_uniformity(ramp, np.ones_like(ramp, dtype=bool), box_px=(1, 1))
    assert piu == pytest.approx(100 * (1 - 29 / 229))


def test_efc_limits() -> None:
    assert mr.efc(np.full((4, 5), 3.0)) == pytest.approx(1.0)  # uniform: maximum entropy
    spike = np.zeros((4, 5))
    spike[1, 2] = 7.0
    assert mr.efc(spike) == 0.0  # all energy in one voxel


def test_fber_formula() -> None:
    assert mr.fber([3.0, 4.0, 5.0], [1.0, -2.0, 1.0]) == pytest.approx(16.0 / 1.0)


def test_otsu_matches_scikit_image() -> None:
    # scikit-image's threshold_otsu is the independent implementation (same 256-bin histogram).
    rng = np.random.default_rng(0)
    for values in (rng.rayleigh(3.0, 5000), np.concatenate([rng.normal(10, 2, 3000), rng.normal(40, 5, 800)])):
        assert mr.otsu_threshold(values) == pytest.approx(threshold_otsu(values), rel=1e-9)


def test_otsu_effectiveness_tells_an_object_from_noise() -> None:
    rng = np.random.default_rng(1)
    noise = rng.rayleigh(1.0, 20000)
    two = np.concatenate([rng.rayleigh(1.0, 15000), 20 + rng.normal(0, 1, 5000)])
    assert mr.otsu_effectiveness(noise, mr.otsu_threshold(noise)) == pytest.approx(0.66, abs=0.02)
    assert mr.otsu_effectiveness(two, mr.otsu_threshold(two)) > 0.95
    assert mr.otsu_effectiveness(two, 1e9) == 0.0  # nothing above: no split


def test_wrap_percent_counts_only_pieces_at_the_phase_edges() -> None:
    mask = np.zeros((20, 40), dtype=bool)
    mask[5:15, 10:30] = True  # the object
    mask[8:12, 0:2] = True  # a piece at the left edge: 4 rows x 2 of the 20 x 2 left band
    assert mr.wrap_percent(mask, phase_axis=1, band_px=2) == pytest.approx(100 * 8 / 80)
    assert mr.wrap_percent(mask, phase_axis=0, band_px=2) == 0.0  # top/bottom bands: nothing


def test_snr_air_drops_the_lines_the_object_spans() -> None:
    air = np.ones((6, 6), dtype=bool)
    air[2:4, 2:4] = False
    assert np.flatnonzero(mr.snr_air(air, phase_axis=1).any(axis=1)).tolist() == [0, 1, 4, 5]
    assert np.flatnonzero(mr.snr_air(air, phase_axis=0).any(axis=0)).tolist() == [0, 1, 4, 5]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: mr.snr_background([1.0], [2.0, 2.0]), "background sd is 0"),
        (lambda: mr.snr_background([1.0], [2.0]), "background has 1 values"),
        (lambda: mr.snr_background([np.nan], [1.0, 2.0]), "signal holds 1 non-finite"),
        (lambda: mr.cnr_otsu([5.0, 5.0], [1.0, 2.0]), "foreground is constant"),
        (lambda: mr.cnr_otsu([1.0, 5.0], [2.0, 2.0]), "background sd is 0"),
        (lambda: mr.ghosting_ratio_percent([], [[1.0]], [1.0]), "got 0 phase and 1 frequency"),
        (lambda: mr.ghosting_ratio_percent([[1.0]], [[1.0]], [0.0]), "mean signal is 0.0"),
        (lambda: mr.percent_integral_uniformity(np.ones(4), np.ones(4), box_px=(1, 1)), "must be 2-D"),
        (lambda: mr.percent_integral_uniformity(np.ones((4, 4)), np.ones((4, 4)), box_px=(0, 1)), "box_px must be"),
        (lambda: mr.percent_integral_uniformity(np.ones((4, 4)), np.ones((4, 4)), box_px=(5, 5)), "no 5x5 px window"),
        (lambda: mr.percent_integral_uniformity(np.zeros((4, 4)), np.ones((4, 4)), box_px=(2, 2)), "positive signal"),
        (lambda: mr.efc([1.0]), "at least 2 voxels"),
        (lambda: mr.efc([1.0, -1.0]), "magnitude image"),
        (lambda: mr.efc([0.0, 0.0]), "all zero"),
        (lambda: mr.efc([1.0, np.inf]), "non-finite"),
        (lambda: mr.fber([1.0], [0.0, 0.0, 1.0]), "median background energy is 0"),
        (lambda: mr.fov_coverage_percent(np.zeros(0)), "empty mask"),
        (lambda: mr.edge_contact_percent(np.zeros((2, 1, 5))), "at least 2|>= 2 rows"),
        (lambda: mr.wrap_percent(np.zeros(5), phase_axis=1, band_px=1), "must be 2-D"),
        (lambda: mr.wrap_percent(np.zeros((5, 5)), phase_axis=2, band_px=1), "phase_axis must be 0"),
        (lambda: mr.wrap_percent(np.zeros((5, 5)), phase_axis=1, band_px=3), r"band_px must be in \[1, 2\]"),
        (lambda: mr.ghost_rois(np.zeros((5, 5)), np.ones((5, 5))), "no object in the slice"),
        (lambda: mr.ghost_rois(np.zeros((5, 5)), np.ones((4, 5))), "one shape"),
        (lambda: mr.snr_air(np.ones((5, 5)), phase_axis=3), "phase_axis 0 or 1"),
        (lambda: mr.otsu_threshold([1.0]), "values has 1 values"),
        (lambda: mr.otsu_effectiveness([2.0, 2.0], 1.0), "values are constant"),
        (lambda: mr.segment(np.zeros((4, 4))), r"must be 3-D .* got shape \(4, 4\)"),
        (lambda: mr.segment(np.zeros((0, 4, 4))), "volume is empty"),
        (lambda: mr.segment(np.full((1, 8, 8), np.nan)), "64 non-finite voxels"),
        (lambda: mr.segment(np.random.default_rng(0).random((1, 4, 40))), "acquired region is 4x40 px"),
        (lambda: mr.segment(np.full((2, 8, 8), 3.0)), "blank image"),
    ],
)
def test_raises(call, match: str) -> None:
    with pytest.raises(DegenerateInputError, match=match):
        call()


@pytest.mark.parametrize(
    ("volume", "reason"),
    [
        (np.zeros((3, 32, 32), dtype=np.float32), "blank image"),
        (np.full((3, 32, 32), 7.0, dtype=np.float32), "blank image"),
        (np.random.default_rng(0).rayleigh(1.0, (3, 32, 32)).astype(np.float32), "no slice holds an object"),
        (np.full((2, 16, 16), np.nan, dtype=np.float32), "non-finite"),
        (np.ones((16, 16), dtype=np.float32), "must be 3-D"),
        (np.random.default_rng(0).random((1, 4, 4)).astype(np.float32), "too small"),
    ],
)
def test_measure_never_raises_on_bad_content(volume: np.ndarray, reason: str) -> None:
    result = mr.measure(volume, spacing_mm=PIXEL_MM, phase_encode_direction=None)
    assert [m.metric for m in result] == list(mr.METRICS)
    for m in result:
        if m.value is None:
            assert m.detail, m.metric
    assert any(reason in m.detail for m in result)
    assert all(m.value is None for m in result if m.metric != "mr.efc")


# ------------------------------------------------------------------------------ real images

_DATA = Path(os.path.dirname(data_store.__file__)) / "data"
REAL = {
    "MR_small": Path(get_testdata_file("MR_small.dcm")),
    "emri_small": _DATA / "emri_small.dcm",
    "MR2_UNCI": _DATA / "MR2_UNCI.dcm",
}
# Golden values, measured 2026-11 with this module on the files as loaded by
# qc_pipeline.io.pixels.load_series (rescale applied), with the file's own
# InPlanePhaseEncodingDirection (MR2_UNCI: COL; the others have none) and spacing:
# - MR_small (pydicom test file, 64 x 64 crop of a head, 0.3125 mm): anatomy on 30 % of the FOV
#   border, no air around it -> the noise metrics are None; 1 cm^2 windows do not fit.
# - emri_small (pydicom-data, 10 x 64 x 64 brain crop, no PixelSpacing): the "air" beside the
#   bright white matter is gray matter and CSF, mean/sd 1.52, not Rayleigh -> noise metrics and wrap
#   None (unmeasurable); ghosting is measured all the same (it does not need noise-like air): 1.1 %.
# - MR2_UNCI (pydicom-data shoulder, 1024 x 1024 at 0.195 mm, phase COL, rows 0-98 and 930-1023
#   zero-filled): air on the left of the shoulder; the ghosting pair along the phase (above /
#   below) is darker than the left/right ROIs, which hold dark muscle: a negative ratio.
GOLDEN: dict[str, dict[str, float | None]] = {
    "MR_small": {
        "mr.snr": None,
        "mr.cnr": None,
        "mr.ghosting_percent": None,
        "mr.piu_percent": None,
        "mr.efc": 0.7822263256676738,
        "mr.fber": None,
        "mr.fov_coverage_percent": 20.41015625,
        "mr.edge_contact_percent": 29.761904761904763,
        "mr.wrap_percent": None,
    },
    "emri_small": {
        "mr.snr": None,
        "mr.cnr": None,
        "mr.ghosting_percent": 1.095082540365388,
        "mr.piu_percent": None,
        "mr.efc": 0.7760153946471762,
        "mr.fber": None,
        "mr.fov_coverage_percent": 29.221191406250004,
        "mr.edge_contact_percent": 12.658730158730158,
        "mr.wrap_percent": None,
    },
    "MR2_UNCI": {
        "mr.snr": 38.2827423797082,
        "mr.cnr": 17.25039344192107,
        "mr.ghosting_percent": -5.4453205126049085,
        "mr.piu_percent": 87.72246196755118,
        "mr.efc": 0.6337824692780928,
        "mr.fber": 132.2498435277901,
        "mr.fov_coverage_percent": 17.991286057692307,
        "mr.edge_contact_percent": 0.0,
        "mr.wrap_percent": 0.0,
    },
}


@pytest.fixture(scope="module")
def real_mr() -> dict[str, dict[str, Measurement]]:
    out = {}
    for name, path in REAL.items():
        series = load_series([path])
        out[name] = run(
            series.array,
            phase=text(series.datasets[0], "InPlanePhaseEncodingDirection"),
            spacing_mm=series.spacing_mm,
        )
    return out


@pytest.mark.parametrize("name", list(REAL))
def test_golden_values_on_real_mr(real_mr: dict[str, dict[str, Measurement]], name: str) -> None:
    for metric, expected in GOLDEN[name].items():
        got = real_mr[name][metric]
        if expected is None:
            assert got.value is None, (metric, got.value)
            assert got.detail, metric
        else:
            # the code is deterministic: 1e-4 allows only for BLAS/libm differences across machines
            assert got.value == pytest.approx(expected, rel=1e-4, abs=1e-9), metric


@pytest.mark.parametrize("name", list(REAL))
def test_no_rule_fires_on_real_mr(real_mr: dict[str, dict[str, Measurement]], name: str) -> None:
    assert fired(real_mr[name]) == {}


def test_real_mr_reasons_name_the_cause(real_mr: dict[str, dict[str, Measurement]]) -> None:
    assert "no air around the object" in real_mr["MR_small"]["mr.snr"].detail
    assert "does not look like magnitude noise" in real_mr["emri_small"]["mr.snr"].detail
    # a crop with no air is not applicable by design; air that is not noise-like may be the defect
    assert real_mr["MR_small"]["mr.snr"].unmeasured is Unmeasured.NOT_APPLICABLE
    assert real_mr["emri_small"]["mr.snr"].unmeasured is Unmeasured.UNMEASURABLE
    assert real_mr["emri_small"]["mr.wrap_percent"].unmeasured is Unmeasured.UNMEASURABLE
    assert "not noise-like" in real_mr["emri_small"]["mr.ghosting_percent"].detail
    assert "vertically (COL)" in real_mr["MR2_UNCI"]["mr.ghosting_percent"].detail
