"""DR/CR image-quality metrics: known truth on seeded phantoms, invariances, raises, real CR goldens."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from pydicom.data import get_testdata_file
from scipy import ndimage
from skimage.measure import blur_effect as skimage_blur_effect

from qc_pipeline.domain import Measurement
from qc_pipeline.errors import DegenerateInputError
from qc_pipeline.io.pixels import load_image
from qc_pipeline.metrics import dr
from qc_pipeline.rules.evaluate import applicable_rules
from qc_pipeline.rules.schema import Rule, RuleFile
from tests.metrics.phantoms_dr import STORED_MAX, chest_phantom, dr_phantom

THRESHOLDS = Path(__file__).resolve().parents[2] / "thresholds" / "image_quality_dr.yaml"
SCALE_FREE = (
    "dr.pixel_exposure_voi_percent",
    "dr.clipped_stored_max_percent",
    "dr.clipped_stored_min_percent",
    "dr.pileup_max_percent",
    "dr.pileup_min_percent",
    "dr.burnout_anatomy_percent",
    "dr.dynamic_range_used_percent",
    "dr.noise_relative_percent",
    "dr.collimated_field_percent",
    "dr.edge_anatomy_percent",
    "dr.blur_effect",
)
"""Metrics unchanged by a gain and an offset of the pixel values (stored range transformed alike)."""
HIGH_REVIEW = "image_quality.dr.deviation_index_high.review"
LOW_REVIEW = "image_quality.dr.deviation_index_low.review"
LOW_FAIL = "image_quality.dr.deviation_index_low.fail"


def run(
    image: np.ndarray,
    *,
    stored_range: tuple[float, float] | None = (0.0, STORED_MAX),
    spacing_mm: tuple[float, float] | None = None,
    exposure_index: float | None = None,
    target_exposure_index: float | None = None,
    deviation_index: float | None = None,
) -> dict[str, Measurement]:
    result = dr.measure(
        image,
        spacing_mm=spacing_mm,
        stored_range=stored_range,
        exposure_index=exposure_index,
        target_exposure_index=target_exposure_index,
        deviation_index=deviation_index,
    )
    return {m.metric: m for m in result}


def values(measurements: dict[str, Measurement]) -> dict[str, float | None]:
    return {k: m.value for k, m in measurements.items()}


def load_rules() -> list[Rule]:
    return RuleFile.model_validate(yaml.safe_load(THRESHOLDS.read_text(encoding="utf-8"))).rules


def fired(measurements: dict[str, Measurement]) -> dict[str, str]:
    """Rule id -> severity of every rule of image_quality_dr.yaml that fires on these values (general
    limits, as the shared rule evaluator decides which apply and where they fire)."""
    rules = load_rules()
    return {
        limit.rule.id: limit.rule.severity.value
        for metric, m in measurements.items()
        if m.value is not None
        for limit in applicable_rules(rules, metric, modality=None, item_code=None)
        if limit.fires(m.value)
    }


# --- contract --------------------------------------------------------------------------------


def test_measure_reports_every_metric_in_order_with_its_unit() -> None:
    phantom = dr_phantom(seed=0)
    result = dr.measure(
        phantom.image,
        spacing_mm=None,
        stored_range=phantom.stored_range,
        exposure_index=None,
        target_exposure_index=None,
        deviation_index=None,
    )
    assert [m.metric for m in result] == list(dr.METRICS)
    assert [m.unit for m in result] == list(dr.METRICS.values())
    assert all(m.series_instance_uid is None and m.sop_instance_uid is None for m in result)
    assert all(m.value is None or isinstance(m.value, float) for m in result)


def test_thresholds_file_is_valid_and_names_only_known_metrics() -> None:
    rules = load_rules()
    assert rules, "no rule in image_quality_dr.yaml"
    for rule in rules:
        assert rule.id.startswith("image_quality.dr.")
        if rule.metric is None:  # judged by the check (the vendor exposure range), not by a metric limit
            assert rule.id == "image_quality.dr.vendor_exposure_outside_range.review"
            continue
        assert rule.metric in dr.METRICS
        assert rule.units == dr.METRICS[rule.metric]
        assert set(rule.modalities) <= {"CR", "DX"}
        assert rule.severity.value in ("review", "fail")


# --- exposure from the header ----------------------------------------------------------------


def test_deviation_index_formula() -> None:
    # Independent expectation: IEC 62494-1, DI = 10 log10(EI / EI_T); EI 4x target is +6.02.
    assert dr.deviation_index(1600.0, 400.0) == pytest.approx(10 * math.log10(4.0), rel=1e-12)
    assert dr.deviation_index(400.0, 400.0) == 0.0
    assert dr.deviation_index(200.0, 400.0) == pytest.approx(-3.0103, abs=1e-4)


@pytest.mark.parametrize(
    ("ei", "target", "match"),
    [
        (0.0, 400.0, "exposure_index must be a finite number > 0"),
        (-5.0, 400.0, "exposure_index must be a finite number > 0"),
        (400.0, 0.0, "target_exposure_index must be a finite number > 0"),
        (float("nan"), 400.0, "exposure_index must be a finite number > 0.*nan"),
        (400.0, float("inf"), "target_exposure_index must be a finite number > 0.*inf"),
    ],
)
def test_deviation_index_raises_on_non_positive_or_non_finite(ei: float, target: float, match: str) -> None:
    with pytest.raises(DegenerateInputError, match=match):
        dr.deviation_index(ei, target)


def test_header_deviation_index_is_preferred_and_a_disagreement_is_noted() -> None:
    image = dr_phantom(seed=0).image
    got = run(image, exposure_index=1600.0, target_exposure_index=400.0, deviation_index=4.0)
    assert got["dr.deviation_index"].value == 4.0
    assert "from the header" in got["dr.deviation_index"].detail
    assert "6.02" in got["dr.deviation_index"].detail
    assert got["dr.exposure_index"].value == 1600.0


def test_deviation_index_computed_from_ei_and_target_when_header_has_none() -> None:
    got = run(dr_phantom(seed=0).image, exposure_index=1600.0, target_exposure_index=400.0)
    assert got["dr.deviation_index"].value == pytest.approx(6.0206, abs=1e-4)
    assert "computed as 10*log10" in got["dr.deviation_index"].detail


@pytest.mark.parametrize(
    ("ei", "target", "di", "detail"),
    [
        (None, None, None, "ExposureIndex and TargetExposureIndex absent"),
        (400.0, None, None, "TargetExposureIndex absent"),
        (400.0, 0.0, None, "target_exposure_index must be a finite number > 0"),
        (400.0, 100.0, float("nan"), None),
    ],
)
def test_deviation_index_missing_or_invalid_tags(
    ei: float | None, target: float | None, di: float | None, detail: str | None
) -> None:
    got = run(dr_phantom(seed=0).image, exposure_index=ei, target_exposure_index=target, deviation_index=di)
    if detail is None:  # an invalid header DI falls back to EI / EI_T
        assert got["dr.deviation_index"].value == pytest.approx(6.0206, abs=1e-4)
        assert "invalid (nan)" in got["dr.deviation_index"].detail
    else:
        assert got["dr.deviation_index"].value is None
        assert detail in got["dr.deviation_index"].detail


def test_exposure_index_reported_as_given_or_none() -> None:
    image = dr_phantom(seed=0).image
    assert run(image, exposure_index=250.5)["dr.exposure_index"].value == 250.5
    absent = run(image)["dr.exposure_index"]
    assert absent.value is None and "absent" in absent.detail
    invalid = run(image, exposure_index=-3.0)["dr.exposure_index"]
    assert invalid.value is None and "invalid" in invalid.detail


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        # EI 4x target (DI +6.0) and header DI +4: excessive exposure -> review, not fail (TG-116:
        # repeat only if relevant anatomy is clipped; the clipping and burn-out rules judge that).
        ({"exposure_index": 1600.0, "target_exposure_index": 400.0}, {HIGH_REVIEW: "review"}),
        ({"deviation_index": 4.0}, {HIGH_REVIEW: "review"}),
        ({"deviation_index": 3.5}, {HIGH_REVIEW: "review"}),
        # +2: over-exposed but not clipped -> no finding (TG-116: repeat only if clipped).
        ({"deviation_index": 2.0}, {}),
        ({"deviation_index": 0.0}, {}),
        ({"deviation_index": -2.0}, {LOW_REVIEW: "review"}),
        ({"deviation_index": -4.0}, {LOW_REVIEW: "review", LOW_FAIL: "fail"}),
    ],
)
def test_exposure_rules_fire_on_the_intended_bands(kwargs: dict[str, float], expected: dict[str, str]) -> None:
    assert fired(run(dr_phantom(seed=0).image, **kwargs)) == expected


# --- clipping --------------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.0, 0.03, 0.15, 0.4])
def test_clipping_share_recovered_exactly(fraction: float) -> None:
    # The grid is the full image at 256 px (no subsampling) and the shutters cover whole columns,
    # so the field and the pinned pixels are found exactly: tolerance is float rounding only.
    phantom = dr_phantom(seed=1, clip_fraction=fraction)
    got = values(run(phantom.image))
    assert got["dr.clipped_stored_max_percent"] == pytest.approx(phantom.clipped_percent, abs=1e-9)
    assert got["dr.collimated_field_percent"] == pytest.approx(phantom.field_percent, abs=1e-9)
    if fraction > 0:
        assert got["dr.pileup_max_percent"] == pytest.approx(phantom.clipped_percent, abs=1e-9)
    else:
        # Continuous noise: only a pixel or so sits at the field's own maximum.
        assert got["dr.pileup_max_percent"] < 0.01


def test_clipping_below_the_stored_maximum_is_a_pile_up_only() -> None:
    # A processing LUT that saturates at 3000 of 4095: not at the stored maximum, piled up in the field.
    phantom = dr_phantom(seed=2, clip_fraction=0.15)
    image = phantom.image.copy()
    image[phantom.clipped] = 3000.0
    got = values(run(image))
    assert got["dr.clipped_stored_max_percent"] == 0.0
    assert got["dr.pileup_max_percent"] == pytest.approx(phantom.clipped_percent, abs=1e-9)


def test_clipping_at_the_stored_minimum() -> None:
    phantom = dr_phantom(seed=3, clip_fraction=0.1)
    image = phantom.image.copy()
    image[phantom.clipped] = 0.0
    got = values(run(image))
    assert got["dr.clipped_stored_min_percent"] == pytest.approx(phantom.clipped_percent, abs=1e-9)
    assert got["dr.pileup_min_percent"] == pytest.approx(phantom.clipped_percent, abs=1e-9)
    assert got["dr.clipped_stored_max_percent"] == 0.0


def test_clipping_rules_fire_on_the_intended_phantoms() -> None:
    assert fired(run(dr_phantom(seed=4, clip_fraction=0.15).image)) == {
        "image_quality.dr.clipped_stored_max.review": "review",
        "image_quality.dr.clipped_stored_max.fail": "fail",
        "image_quality.dr.pileup_max.review": "review",
        "image_quality.dr.pileup_max.fail": "fail",
    }
    assert fired(run(dr_phantom(seed=4, clip_fraction=0.03).image)) == {
        "image_quality.dr.clipped_stored_max.review": "review",
        "image_quality.dr.pileup_max.review": "review",
    }
    assert fired(run(dr_phantom(seed=4).image)) == {}


BURNOUT_REVIEW = "image_quality.dr.burnout_anatomy.review"
BURNOUT_FAIL = "image_quality.dr.burnout_anatomy.fail"


@pytest.mark.parametrize("burnout", [0.3, 0.6, 1.0])
def test_burned_out_lungs_are_measured_inside_the_anatomy(burnout: float) -> None:
    # 256 px, no subsampling: every burned lung pixel is enclosed by chest wall and mediastinum and
    # counts; the pinned background outside the body does not. Tolerance: the anatomy found reaches
    # down the body's soft edge to the background threshold (weight 0.24, about 1.7 px beyond the
    # truth's weight 0.5 on a 115 x 92 px ellipse: about 3.5 % more pixels), so 5 % relative.
    phantom = chest_phantom(seed=21, burnout=burnout)
    got = run(phantom.image.astype(np.float64))["dr.burnout_anatomy_percent"]
    truth = 100.0 * np.count_nonzero(phantom.burned) / np.count_nonzero(phantom.body)
    assert got.value == pytest.approx(truth, rel=0.05)
    assert "pinned at its darkest value 0" in got.detail


def test_black_direct_exposure_background_is_not_burn_out() -> None:
    for axes in ((0.45, 0.36), (0.34, 0.26)):
        phantom = chest_phantom(seed=22, body_semi_axes=axes)
        got = run(phantom.image.astype(np.float64))
        assert got["dr.pileup_min_percent"].value > 30.0  # the background is pinned at 0 ...
        assert got["dr.burnout_anatomy_percent"].value < 0.05  # ... and left out of the anatomy
        assert fired(got) == {}


def test_unmasked_collimation_does_not_enclose_the_background() -> None:
    # A bright collimator shadow along every edge (not an electronic shutter) encloses the pinned
    # background inside the collimation; it is found as collimator bands, so the background stays
    # background and burned-out lungs are still found.
    normal = chest_phantom(seed=23, body_semi_axes=(0.38, 0.3), collimator=0.06)
    got = run(normal.image.astype(np.float64))
    assert got["dr.burnout_anatomy_percent"].value < 0.05
    assert "collimator band" in got["dr.burnout_anatomy_percent"].detail
    burned = chest_phantom(seed=23, body_semi_axes=(0.38, 0.3), collimator=0.06, burnout=0.5)
    assert run(burned.image.astype(np.float64))["dr.burnout_anatomy_percent"].value > 10.0
    bands = dr.collimator_bands(normal.image.astype(np.float64), field=np.ones(normal.image.shape, dtype=bool))
    expected = np.zeros(normal.image.shape, dtype=bool)
    expected[:15, :] = expected[-15:, :] = expected[:, :15] = expected[:, -15:] = True  # round(0.06 x 256)
    assert np.array_equal(bands, expected)


def test_burnout_rules_per_item() -> None:
    by_id = {rule.id: rule for rule in load_rules()}
    for rule_id, default, chest in ((BURNOUT_REVIEW, 5.0, 2.0), (BURNOUT_FAIL, 25.0, 10.0)):
        rule = by_id[rule_id]
        assert rule.limit == default and rule.per_item == {"YB-001": chest, "YB-002": chest, "YB-003": chest}
        assert "site default" in rule.source and "TG-116" in rule.source


def test_open_background_reaches_the_edge_or_a_shutter() -> None:
    image = np.full((40, 40), 100.0)
    image[:, :4] = 1000.0  # a shutter on the left
    image[10:20, 4:8] = 0.0  # dark, touching the shutter: background
    image[25:30, 20:25] = 0.0  # dark, enclosed: anatomy
    image[0:3, 30:35] = 0.0  # dark, touching the top edge: background
    shutters = np.zeros(image.shape, dtype=bool)
    shutters[:, :4] = True
    mask = dr.open_background_mask(image, shutters=shutters, threshold=50.0)
    assert mask[10:20, 4:8].all() and mask[0:3, 30:35].all()
    assert not mask[25:30, 20:25].any() and not mask[shutters].any()
    assert np.count_nonzero(mask) == 40 + 15
    share, level = dr.burnout_percent(image[~shutters & ~mask], tolerance=0.0)
    assert level == 0.0 and share == pytest.approx(100.0 * 25 / (36 * 40 - 55))


def test_burned_out_real_chest_is_flagged() -> None:
    # RG1 (real CR chest) with its darkest 8 % of pixels pinned at their lowest value, as a look-up
    # table that saturates at the dark end does: the lungs burn out inside the chest (4.5 % of the
    # anatomy: above the chest items' review limit of 2 %); the darkest pixels that reach the image
    # edge (beside the shoulders) are direct exposure and do not count, hence less than 8 %.
    image = np.array(load_image(Path(get_testdata_file("RG1_UNCI.dcm"))).array, dtype=np.float64)
    cut = np.percentile(image, 8.0)
    image[image <= cut] = image.min()
    got = run(image, stored_range=(0.0, 2.0**15 - 1))["dr.burnout_anatomy_percent"]
    assert 2.0 < got.value < 8.0


def test_shutters_are_not_clipping_and_whole_edges_are_needed() -> None:
    # 20 % of the image is shutter at 4095, none of it counts; a pinned patch that touches one edge
    # without covering it stays in the field and counts as clipping.
    phantom = dr_phantom(seed=5, collimation=0.1)
    assert values(run(phantom.image))["dr.clipped_stored_max_percent"] == 0.0
    image = phantom.image.copy()
    image[:20, 100:140] = STORED_MAX
    got = values(run(image))
    assert got["dr.collimated_field_percent"] == pytest.approx(phantom.field_percent, abs=1e-9)
    assert got["dr.clipped_stored_max_percent"] == pytest.approx(100 * 800 / np.count_nonzero(phantom.field), abs=1e-9)


def test_no_stored_range_leaves_stored_metrics_none_and_says_why() -> None:
    got = run(dr_phantom(seed=0, clip_fraction=0.15).image, stored_range=None)
    for key in ("dr.clipped_stored_max_percent", "dr.clipped_stored_min_percent", "dr.dynamic_range_used_percent"):
        assert got[key].value is None and "stored value range not given" in got[key].detail
    assert got["dr.pileup_max_percent"].value == pytest.approx(15.0, abs=0.01)
    assert "field's own range" in got["dr.pixel_exposure_voi_percent"].detail


def test_invalid_stored_range_is_reported() -> None:
    got = run(dr_phantom(seed=0).image, stored_range=(4095.0, 0.0))
    assert got["dr.clipped_stored_max_percent"].value is None
    assert "min < max" in got["dr.clipped_stored_max_percent"].detail


# --- range, exposure estimate ---------------------------------------------------------------


def test_dynamic_range_and_voi_against_an_independent_computation() -> None:
    # Step 1 grid at 256 px: the same pixels as the truth masks, so only float rounding differs.
    phantom = dr_phantom(seed=6, structure=0.0)
    got = run(phantom.image)
    field_values = phantom.image[phantom.field]
    p_lo, p_hi = np.percentile(field_values, [0.5, 99.5])
    assert got["dr.dynamic_range_used_percent"].value == pytest.approx(100 * (p_hi - p_lo) / STORED_MAX, rel=1e-12)
    # The body plateau is 2400 of 4095: the VOI sits at (4095 - 2400) / 4095 = 41.4 %; the median
    # of the anatomy is within a few noise SDs (20) of the plateau -> 0.5 % of the range.
    assert got["dr.pixel_exposure_voi_percent"].value == pytest.approx(100 * (4095 - 2400) / 4095, abs=0.5)
    assert "ESTIMATE" in got["dr.pixel_exposure_voi_percent"].detail


# --- noise and SNR ---------------------------------------------------------------------------


@pytest.mark.parametrize("noise_sd", [5.0, 20.0, 80.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_noise_and_snr_recovered(noise_sd: float, seed: int) -> None:
    # 512 px, homogeneous body: about 1,900 anatomy blocks. Over 12 seeds the modal SD was within
    # 1.0 % and the SNR within 1.2 % of the truth (mode of a chi distribution with 61 dof is 0.8 %
    # below sigma, the log-histogram peak adds about 1 %): 3 % tolerance is about 5 SDs.
    phantom = dr_phantom(shape=(512, 512), seed=seed, noise_sd=noise_sd, structure=0.0)
    got = values(run(phantom.image))
    truth = math.sqrt(noise_sd**2 + 1.0 / 12.0)  # rounding to integers adds 1/12 to the variance
    assert got["dr.noise_sd"] == pytest.approx(truth, rel=0.03)
    assert got["dr.snr"] == pytest.approx(phantom.body_level / truth, rel=0.03)
    field_values = phantom.image[phantom.field]
    p1, p99 = np.percentile(field_values, [1.0, 99.0])
    assert got["dr.noise_relative_percent"] == pytest.approx(100 * truth / (p99 - p1), rel=0.03)


def test_noise_ignores_smooth_anatomy() -> None:
    # Gradients of +-300 over 0.4-0.5 of the image are removed by the per-block plane fit; what is
    # left (curvature) adds < 2 % at 512 px. Tolerance 4 %.
    phantom = dr_phantom(shape=(512, 512), seed=0, noise_sd=20.0, structure=300.0)
    assert values(run(phantom.image))["dr.noise_sd"] == pytest.approx(20.0, rel=0.04)


def test_noise_rule_fires_on_a_very_noisy_phantom_only() -> None:
    assert "image_quality.dr.noise_relative.review" in fired(run(dr_phantom(seed=0, noise_sd=100.0).image))
    assert "image_quality.dr.noise_relative.review" not in fired(run(dr_phantom(seed=0, noise_sd=20.0).image))


def test_block_stats_detrend_a_plane_exactly() -> None:
    rows, cols = np.mgrid[0:64, 0:64]
    plane = 3.0 * rows - 2.0 * cols + 100.0
    stats = dr.block_stats(plane)
    assert np.allclose(stats.sd, 0.0, atol=1e-9)
    # Independent expectation: np.std of each tile of white noise minus its lstsq plane.
    noise = np.random.default_rng(7).normal(0.0, 1.0, (16, 16))
    stats = dr.block_stats(noise)
    tile = noise[8:16, 0:8]
    r, c = np.mgrid[0:8, 0:8]
    design = np.column_stack([np.ones(64), r.ravel(), c.ravel()])
    coef, *_ = np.linalg.lstsq(design, tile.ravel(), rcond=None)
    expected = np.sqrt(np.sum((tile.ravel() - design @ coef) ** 2) / 61)
    assert stats.sd[2] == pytest.approx(expected, rel=1e-10)
    assert (stats.rows[2], stats.cols[2]) == (12, 4)


def test_sd_mode_of_known_chi_samples() -> None:
    # SDs of 61-dof chi samples around sigma = 7: mode sigma * sqrt(60/61) = 6.94; 20,000 samples,
    # log bins of 2.3 %: tolerance 2 %.
    rng = np.random.default_rng(11)
    sds = 7.0 * np.sqrt(rng.chisquare(61, 20_000) / 61)
    assert dr.sd_mode(sds) == pytest.approx(7.0 * math.sqrt(60 / 61), rel=0.02)
    assert dr.sd_mode(3.0 * sds) == pytest.approx(3.0 * dr.sd_mode(sds), rel=1e-9)


# --- edges and blur --------------------------------------------------------------------------


def test_edge_anatomy_share_recovered() -> None:
    # Body centred at 85 % of the rows: cut off at the bottom edge. Truth = body pixels in the
    # 5-px band (2 % of 256) / band pixels. The body edge is 1.5 px wide: noise moves a few edge
    # pixels across the threshold -> tolerance 1 percentage point.
    phantom = dr_phantom(seed=8, body_center=(0.85, 0.5))
    band = dr.border_band(phantom.image.shape, width=5)
    truth = 100 * np.count_nonzero(band & phantom.body) / np.count_nonzero(band)
    got = values(run(phantom.image))
    assert truth > 10
    assert got["dr.edge_anatomy_percent"] == pytest.approx(truth, abs=1.0)
    assert values(run(dr_phantom(seed=8).image))["dr.edge_anatomy_percent"] == 0.0


def test_edge_band_width_from_pixel_spacing() -> None:
    phantom = dr_phantom(seed=8, body_center=(0.85, 0.5))
    got = run(phantom.image, spacing_mm=(0.5, 0.5))  # 5 mm = 10 px
    band = dr.border_band(phantom.image.shape, width=10)
    truth = 100 * np.count_nonzero(band & phantom.body) / np.count_nonzero(band)
    assert got["dr.edge_anatomy_percent"].value == pytest.approx(truth, abs=1.0)
    assert "5 mm" in got["dr.edge_anatomy_percent"].detail


def test_blur_effect_matches_skimage() -> None:
    # Independent implementation: skimage.measure.blur_effect (same definition, Crete 2007).
    image = dr_phantom(seed=9).image[40:200, 40:200]
    assert dr.blur_effect(image) == pytest.approx(skimage_blur_effect(image), rel=1e-6)


def test_blur_effect_grows_with_blur() -> None:
    sharp = values(run(dr_phantom(seed=10).image))["dr.blur_effect"]
    blurred = values(run(dr_phantom(seed=10, blur_sd_px=1.0).image))["dr.blur_effect"]
    very = values(run(dr_phantom(seed=10, blur_sd_px=3.0).image))["dr.blur_effect"]
    assert 0.0 < sharp < blurred < very < 1.0


# --- perturbations ---------------------------------------------------------------------------


def test_gain_and_offset_do_not_change_scale_free_metrics() -> None:
    phantom = dr_phantom(seed=12, clip_fraction=0.05)
    base = run(phantom.image)
    gain, offset = 3.7, -500.0
    moved = run(phantom.image * gain + offset, stored_range=(offset, STORED_MAX * gain + offset))
    for key in SCALE_FREE:
        assert moved[key].value == pytest.approx(base[key].value, rel=1e-6, abs=1e-9), key
    # Noise SD scales with the gain; SNR (relative to pixel value 0) with a pure gain only.
    assert moved["dr.noise_sd"].value == pytest.approx(gain * base["dr.noise_sd"].value, rel=1e-6)
    scaled = run(phantom.image * 2.0, stored_range=(0.0, 2 * STORED_MAX))
    assert scaled["dr.snr"].value == pytest.approx(base["dr.snr"].value, rel=1e-6)


@pytest.mark.parametrize("flip", [np.fliplr, np.flipud])
def test_flips_do_not_change_the_metrics(flip) -> None:  # type: ignore[no-untyped-def]
    # 256 is a multiple of the 8-px block: a flip maps blocks onto blocks, so noise and clipping
    # are exact; the blur effect's interior excludes 2 pixels at the start and 1 at the end of
    # each axis (as skimage), so a flip moves a border row: tolerance 1 %.
    phantom = dr_phantom(seed=13, clip_fraction=0.05, body_center=(0.8, 0.45))
    base = values(run(phantom.image))
    flipped = values(run(np.ascontiguousarray(flip(phantom.image))))
    for key, value in base.items():
        if value is None:
            assert flipped[key] is None
        elif key == "dr.blur_effect":
            assert flipped[key] == pytest.approx(value, rel=0.01)
        else:
            assert flipped[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


def test_shifting_the_anatomy_does_not_change_the_metrics() -> None:
    # The body moved by 12 rows and 9 columns inside the field (same noise field): clipping and
    # field are pixel counts (exact); noise, SNR and VOI move within their statistical spread
    # (3 %, 3 %, 0.5 percentage point as in the truth tests).
    base = values(run(dr_phantom(seed=14, clip_fraction=0.05, structure=0.0).image))
    centre = (0.55 + 12 / 256, 0.5 + 9 / 256)
    moved = values(run(dr_phantom(seed=14, clip_fraction=0.05, structure=0.0, body_center=centre).image))
    for key in ("dr.clipped_stored_max_percent", "dr.pileup_max_percent", "dr.collimated_field_percent"):
        assert moved[key] == pytest.approx(base[key], abs=1e-9), key
    assert moved["dr.noise_sd"] == pytest.approx(base["dr.noise_sd"], rel=0.03)
    assert moved["dr.snr"] == pytest.approx(base["dr.snr"], rel=0.03)
    assert moved["dr.pixel_exposure_voi_percent"] == pytest.approx(base["dr.pixel_exposure_voi_percent"], abs=0.5)


def test_float32_and_float64_agree() -> None:
    image = dr_phantom(seed=15, clip_fraction=0.05).image
    a, b = values(run(image)), values(run(image.astype(np.float32)))
    for key, value in a.items():
        assert (b[key] is None) if value is None else (b[key] == pytest.approx(value, rel=1e-6, abs=1e-9)), key


def test_large_image_is_subsampled_and_agrees_with_full_resolution() -> None:
    # 1100 px: the grid is every 3rd pixel (at most 512 a side), noise blocks are sampled. Shares
    # measured on the grid are estimates of the full-image shares: the 15 % disc is counted on
    # ~1/9 of its pixels, within 0.3 percentage point.
    phantom = dr_phantom(shape=(1100, 1100), seed=16, clip_fraction=0.15, structure=0.0)
    got = values(run(phantom.image))
    assert got["dr.clipped_stored_max_percent"] == pytest.approx(phantom.clipped_percent, abs=0.3)
    assert got["dr.collimated_field_percent"] == pytest.approx(phantom.field_percent, abs=0.5)
    assert got["dr.noise_sd"] == pytest.approx(math.sqrt(20.0**2 + 1 / 12), rel=0.03)


# --- bad input: measure never raises ---------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "reason"),
    [
        (np.zeros((4, 64, 64)), "expected a 2-D"),
        (np.zeros(64), "expected a 2-D"),
        (np.zeros((16, 200)), "smaller than 32 pixels"),
        (np.full((64, 64), np.nan), "NaN or infinite"),
        (np.full((64, 64), 1000.0), "uniform"),
        (np.full((64, 64), 1 + 1j), "real numeric image"),
        (np.array([["a"] * 40] * 40), "real numeric image"),
    ],
)
def test_measure_never_raises_on_bad_images(image: np.ndarray, reason: str) -> None:
    got = run(image, deviation_index=1.5)
    assert got["dr.deviation_index"].value == 1.5  # header metrics survive a bad image
    for key in dr.METRICS:
        if key not in (
            "dr.deviation_index",
            "dr.exposure_index",
            "dr.vendor_exposure_indicator",
            "dr.deviation_index_vendor",
        ):
            assert got[key].value is None, key
            assert reason in got[key].detail, (key, got[key].detail)


def test_measure_on_an_image_that_is_all_shutter() -> None:
    image = np.full((64, 64), STORED_MAX)
    image[30:32, 30:32] = 100.0  # a few pixels left: under 1 % field
    got = run(image)
    assert got["dr.collimated_field_percent"].value == pytest.approx(100 * 4 / 4096)
    assert "collimated field is" in got["dr.noise_sd"].detail


def test_measure_on_a_field_without_anatomy_blocks() -> None:
    # A noise-free ramp: every block is a plane (SD 0 after detrending), so no noise can be estimated.
    rows, cols = np.mgrid[0:64, 0:64]
    image = 100.0 + 10.0 * cols + 5.0 * rows
    got = run(image)
    assert got["dr.noise_sd"].value is None
    assert "need at least 50 blocks" in got["dr.noise_sd"].detail
    assert got["dr.clipped_stored_max_percent"].value == 0.0


# --- raises of the pure functions ------------------------------------------------------------


def test_pure_function_raises() -> None:
    with pytest.raises(DegenerateInputError, match="uniform"):
        dr.shutter_mask(np.ones((8, 8)))
    with pytest.raises(DegenerateInputError, match="2-D image of at least 2 x 2"):
        dr.shutter_mask(np.ones(8))
    with pytest.raises(DegenerateInputError, match="got no field pixels"):
        dr.background_threshold(np.array([]))
    with pytest.raises(DegenerateInputError, match="no contrast"):
        dr.background_threshold(np.ones(100))
    with pytest.raises(DegenerateInputError, match="pinned_percent got no pixels"):
        dr.pinned_percent(np.array([]), level=1.0, tolerance=0.0)
    with pytest.raises(DegenerateInputError, match="tolerance must be a finite number >= 0"):
        dr.pinned_percent(np.ones(3), level=1.0, tolerance=-1.0)
    with pytest.raises(DegenerateInputError, match="stored_range must be two finite numbers"):
        dr.dynamic_range_used_percent(np.ones(3), stored_range=(1.0, 1.0))
    with pytest.raises(DegenerateInputError, match="got no field pixels"):
        dr.dynamic_range_used_percent(np.array([]), stored_range=(0.0, 1.0))
    with pytest.raises(DegenerateInputError, match="value_range must be two finite numbers"):
        dr.pixel_exposure_voi_percent(np.ones(3), value_range=(0.0, float("nan")))
    with pytest.raises(DegenerateInputError, match="got no anatomy pixels"):
        dr.pixel_exposure_voi_percent(np.array([]), value_range=(0.0, 1.0))
    with pytest.raises(DegenerateInputError, match="needs a 2-D image"):
        dr.block_stats(np.ones(64))
    with pytest.raises(DegenerateInputError, match="block must be >= 3"):
        dr.block_stats(np.ones((64, 64)), block=2)
    with pytest.raises(DegenerateInputError, match="smaller than one 8 x 8 block"):
        dr.block_stats(np.ones((4, 64)))
    with pytest.raises(DegenerateInputError, match="need at least 50 blocks"):
        dr.sd_mode(np.ones(10))
    with pytest.raises(DegenerateInputError, match="burnout_percent got no anatomy pixels"):
        dr.burnout_percent(np.array([]), tolerance=0.0)
    with pytest.raises(DegenerateInputError, match="image and field must be 2-D arrays of one shape"):
        dr.collimator_bands(np.ones((8, 8)), field=np.ones((9, 8), dtype=bool))
    with pytest.raises(DegenerateInputError, match="image and shutters must be 2-D arrays of one shape"):
        dr.open_background_mask(np.ones((8, 8)), shutters=np.zeros((8, 9), dtype=bool), threshold=0.5)
    with pytest.raises(DegenerateInputError, match="band width must be >= 1"):
        dr.border_band((64, 64), width=0)
    with pytest.raises(DegenerateInputError, match="leaves no interior"):
        dr.border_band((64, 64), width=32)
    with pytest.raises(DegenerateInputError, match="must have one shape"):
        dr.edge_anatomy_percent(np.ones((4, 4), bool), shutters=np.ones((4, 5), bool), anatomy=np.ones((4, 4), bool))
    with pytest.raises(DegenerateInputError, match="border band is empty"):
        dr.edge_anatomy_percent(np.zeros((4, 4), bool), shutters=np.zeros((4, 4), bool), anatomy=np.zeros((4, 4), bool))
    with pytest.raises(DegenerateInputError, match="at least 4 x 4"):
        dr.blur_effect(np.ones((3, 10)))
    with pytest.raises(DegenerateInputError, match="no gradient"):
        dr.blur_effect(np.ones((10, 10)))


def test_phantom_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="clip_fraction must be in"):
        dr_phantom(clip_fraction=1.0)
    with pytest.raises(ValueError, match="shape must be at least"):
        dr_phantom(shape=(16, 16))
    with pytest.raises(ValueError, match="noise_sd must be"):
        dr_phantom(noise_sd=-1.0)
    with pytest.raises(ValueError, match="collimation"):
        dr_phantom(collimation=0.5)
    with pytest.raises(ValueError, match="background < body_level"):
        dr_phantom(background=3000.0, body_level=2000.0)
    with pytest.raises(ValueError, match="blur_sd_px must be"):
        dr_phantom(blur_sd_px=float("nan"))


def test_phantom_is_seeded() -> None:
    assert np.array_equal(dr_phantom(seed=3).image, dr_phantom(seed=3).image)
    assert not np.array_equal(dr_phantom(seed=3).image, dr_phantom(seed=4).image)


# --- real CR images (pydicom-data) -----------------------------------------------------------

# Golden values measured on 2026-11-23 with this module (numpy 2.4.6, scipy 1.17.1), files from
# pydicom-data (package data_store), decoded with qc_pipeline.io.pixels.load_image (MONOCHROME1
# inverted), stored range (0, 2**BitsStored - 1), no pixel spacing in these headers.
# RG1_UNCI: CR chest PA 1955 x 1841, MONOCHROME1, 15 bits; RG3_UNCI: CR extremity (ankle) AP
# 1760 x 1760, MONOCHROME1, 10 bits, with electronic shutters on both sides (white after
# inversion: the field is 58.8 % of the image). The code is deterministic: rel 1e-6.
GOLDEN = {
    "RG1_UNCI.dcm": {
        "dr.pixel_exposure_voi_percent": 16.803491317484053,
        "dr.clipped_stored_max_percent": 0.0,
        "dr.clipped_stored_min_percent": 0.0,
        "dr.pileup_max_percent": 0.00044359864968571036,
        "dr.pileup_min_percent": 0.00044359864968571036,
        "dr.burnout_anatomy_percent": 0.00045387701748334273,
        "dr.dynamic_range_used_percent": 66.53340250862148,
        "dr.noise_sd": 160.0086441685298,
        "dr.noise_relative_percent": 0.7741584586202231,
        "dr.snr": 177.02437161873652,
        "dr.collimated_field_percent": 100.0,
        "dr.edge_anatomy_percent": 92.93633762517882,
        "dr.blur_effect": 0.40566015577670794,
    },
    "RG3_UNCI.dcm": {
        "dr.pixel_exposure_voi_percent": 35.386119257086996,
        "dr.clipped_stored_max_percent": 0.08171083151753708,
        "dr.clipped_stored_min_percent": 0.0,
        "dr.pileup_max_percent": 0.08171083151753708,
        "dr.pileup_min_percent": 0.0008786110915864202,
        "dr.burnout_anatomy_percent": 0.001509206157561123,
        "dr.dynamic_range_used_percent": 99.41348973607037,
        "dr.noise_sd": 3.9413074764154126,
        "dr.noise_relative_percent": 0.38945726051535695,
        "dr.snr": 161.22505128118684,
        "dr.collimated_field_percent": 58.789256198347104,
        "dr.edge_anatomy_percent": 19.99871100799175,
        "dr.blur_effect": 0.6936943234897693,
    },
}


@pytest.fixture(scope="module")
def real_cr() -> dict[str, dict[str, Measurement]]:
    out = {}
    for name in GOLDEN:
        path = get_testdata_file(name)
        assert path is not None, f"pydicom-data file {name} not found (pip install pydicom-data)"
        image = load_image(Path(path))
        bits = int(image.dataset.BitsStored)
        assert image.inverted  # both are MONOCHROME1: the loader turned them into MONOCHROME2
        out[name] = run(image.array, stored_range=(0.0, 2.0**bits - 1), spacing_mm=image.spacing_mm)
    return out


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_values_on_real_cr(real_cr: dict[str, dict[str, Measurement]], name: str) -> None:
    got = values(real_cr[name])
    assert got["dr.exposure_index"] is None and got["dr.deviation_index"] is None  # no EI tags
    for key, expected in GOLDEN[name].items():
        assert got[key] == pytest.approx(expected, rel=1e-6, abs=1e-12), key


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_no_rule_fires_on_real_cr(real_cr: dict[str, dict[str, Measurement]], name: str) -> None:
    assert fired(real_cr[name]) == {}


def test_monochrome1_must_be_inverted_before_measuring() -> None:
    # Passing RG3's stored MONOCHROME1 values (shutters dark) instead of the loader's MONOCHROME2
    # array hides the shutters: the field becomes the whole image. The loader's inversion matters.
    image = load_image(Path(get_testdata_file("RG3_UNCI.dcm")))
    raw = 1023.0 - np.asarray(image.array)
    got = values(run(raw, stored_range=(0.0, 1023.0)))
    assert got["dr.collimated_field_percent"] == 100.0
    assert got["dr.clipped_stored_min_percent"] > 30.0  # the shutters, now black


def test_blur_effect_of_a_blurred_real_image_rises() -> None:
    image = np.asarray(load_image(Path(get_testdata_file("RG1_UNCI.dcm"))).array)[600:1112, 600:1112]
    assert dr.blur_effect(ndimage.gaussian_filter(image, 2.0)) > dr.blur_effect(image) + 0.2
