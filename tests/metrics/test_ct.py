"""CT image-quality metrics: seeded phantoms with known truth, rules, perturbations, real images.

Phantoms come from tests/metrics/phantoms_ct.py (128 x 128 pixels of 1 mm, 20 slices, a 90 x 100 mm
water ellipse in air, white Gaussian noise). The noise kernel is then 6 pixels (6 mm), so the
expected global noise level of white noise of sd s is s sqrt(34/35) = 0.986 s (the mode of the
tile SD, see ``expected_gnl``).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import data_store
import numpy as np
import pytest
from pydicom.data import get_testdata_file

from qc_pipeline.domain import Unmeasured
from qc_pipeline.errors import DegenerateInputError
from qc_pipeline.io.pixels import load_series
from qc_pipeline.metrics import ct
from qc_pipeline.metrics.ct import METRICS, measure
from qc_pipeline.rules.loader import read_yaml
from qc_pipeline.rules.schema import RuleFile
from tests.metrics.phantoms_ct import ct_phantom, expected_gnl

SPACING = (2.0, 1.0, 1.0)
THRESHOLDS = Path(__file__).resolve().parents[2] / "thresholds" / "image_quality_ct.yaml"
HEAD_PROFILE = np.sqrt(np.clip(1.0 - (np.arange(20) / 19.5) ** 2, 0.0, 1.0))
"""Head-like body scale per slice: a hemisphere, full width at slice 0, 22 % at slice 19 (the
vertex lies just above the last slice)."""


def values(volume: np.ndarray, *, body_part: str | None = None, spacing=SPACING) -> dict[str, float | None]:
    return {m.metric: m.value for m in measure(volume, spacing_mm=spacing, body_part=body_part)}


@pytest.fixture(scope="module")
def rules():
    return RuleFile.model_validate(read_yaml(THRESHOLDS)).rules


def fired(rules, measured: dict[str, float | None], *, item: str | None = None) -> set[str]:
    """Ids of the rules that fire (a minimal stand-in for the pipeline's rule evaluation)."""
    out = set()
    for rule in rules:
        value = measured.get(rule.metric)
        if value is None:
            continue
        limit = rule.per_item.get(item, rule.limit) if item else rule.limit
        if (rule.when == "above" and value > limit) or (rule.when == "below" and value < limit):
            out.add(rule.id)
    return out


@pytest.fixture(scope="module")
def clean():
    return ct_phantom(noise_sd=10.0)


@pytest.fixture(scope="module")
def clean_values(clean):
    return values(clean)


# ---------------------------------------------------------------------------------------------
# contract


def test_measure_reports_every_metric_in_order_with_its_unit(clean):
    result = measure(clean, spacing_mm=SPACING, body_part="CHEST")
    assert [m.metric for m in result] == list(METRICS)
    assert [m.unit for m in result] == list(METRICS.values())
    assert all(m.series_instance_uid is None and m.sop_instance_uid is None for m in result)
    assert all(m.detail for m in result)  # each says how (or why not) it was measured


def test_rules_name_only_known_metrics(rules):
    assert {r.metric for r in rules} <= set(METRICS)
    assert all(r.modalities == ["CT"] for r in rules)


def test_sample_slices_at_most_30_evenly_spaced_with_both_ends():
    index = ct.sample_slices(300)
    assert index.size == 30 and index[0] == 0 and index[-1] == 299
    assert np.all(np.diff(index) >= 10) and np.all(np.diff(index) <= 11)
    assert ct.sample_slices(7).tolist() == list(range(7))
    # symmetric, so reversing the slice order samples the same slices
    assert np.array_equal(299 - ct.sample_slices(300)[::-1], ct.sample_slices(300))


def test_detail_says_how_many_slices_were_used():
    vol = ct_phantom(shape=(90, 64, 64), body_semi_axes_mm=(20.0, 24.0))
    by_id = {m.metric: m for m in measure(vol, spacing_mm=SPACING, body_part=None)}
    assert "30 of 90 slices" in by_id["ct.noise_hu"].detail
    assert "10 of 90 slices" in by_id["ct.streak_index"].detail


# ---------------------------------------------------------------------------------------------
# analytic: known truth


@pytest.mark.parametrize("noise_sd", [10.0, 60.0])
def test_global_noise_level_recovers_white_noise_sd(noise_sd):
    # Over 12 seeds the estimate's mean was 1.000 x expected (sd 10: 9.858 vs 9.856) with a
    # sampling sd of 1.3 % (~900 soft-tissue tiles: a water body at 0 HU puts only half of its
    # tiles in 0 < mean < 150 HU); 5 % is ~4 sampling sd.
    measured = values(ct_phantom(noise_sd=noise_sd))["ct.noise_hu"]
    assert measured == pytest.approx(expected_gnl(noise_sd, 6), rel=0.05)


def test_expected_gnl_is_the_mode_of_the_chi_distribution():
    # independent check of the helper: maximise scipy's density of the sample SD numerically
    from scipy import optimize, stats

    n = 36
    density = stats.chi(df=n - 1, scale=20.0 / np.sqrt(n - 1))
    peak = optimize.minimize_scalar(
        lambda s: -density.pdf(s), bounds=(10.0, 30.0), method="bounded", options={"xatol": 1e-8}
    )
    assert peak.x == pytest.approx(expected_gnl(20.0, 6), rel=1e-6)  # the optimiser stops at 1e-8


def test_air_and_soft_tissue_hu_read_the_phantom_values(clean_values):
    # the median of ~8000 air samples of sd 10 has a standard error of ~0.14 HU: 1 HU is 7 se
    assert clean_values["ct.air_hu"] == pytest.approx(-1000.0, abs=1.0)
    # tile means have sd 10/6 = 1.7 HU; the mode of ~1800 of them scattered 0.3 HU over 6 seeds
    assert clean_values["ct.soft_tissue_hu"] == pytest.approx(0.0, abs=1.0)
    assert values(ct_phantom(water_hu=40.0))["ct.soft_tissue_hu"] == pytest.approx(40.0, abs=1.0)


def test_noisy_phantom_keeps_hu_values():
    noisy = values(ct_phantom(noise_sd=60.0))
    assert noisy["ct.air_hu"] == pytest.approx(-1000.0, abs=2.0)  # 6x the se of the median
    # tile means have sd 10 HU: the mode scattered 1.8 HU over 6 seeds; 4 HU is ~2 sd
    assert noisy["ct.soft_tissue_hu"] == pytest.approx(0.0, abs=4.0)


def test_miscalibrated_air_is_measured():
    assert values(ct_phantom(air_hu=-800.0))["ct.air_hu"] == pytest.approx(-800.0, abs=1.0)


def test_a_body_wider_than_the_field_is_truncated_on_every_slice(clean_values):
    assert clean_values["ct.truncated_slices_percent"] == 0.0
    wide = ct_phantom(body_semi_axes_mm=(40.0, 80.0))  # 160 mm wide in a 128 mm field
    assert values(wide)["ct.truncated_slices_percent"] == 100.0
    # the same with the scanner's padding (-3024 HU) outside the reconstruction circle
    padded = ct_phantom(body_semi_axes_mm=(40.0, 80.0), padding_hu=-3024.0)
    assert values(padded)["ct.truncated_slices_percent"] == 100.0


def test_truncation_is_judged_against_the_reconstruction_circle():
    # a 90 mm body moved 15 px right and down: 60 px from the centre along the axes (inside the
    # 128 px square), 66 px along the diagonal (outside the inscribed circle of radius 64 px)
    kwargs = {"center_offset_px": (15, 15), "body_semi_axes_mm": (45.0, 45.0)}
    assert values(ct_phantom(**kwargs))["ct.truncated_slices_percent"] == 0.0  # no padding: the square
    assert values(ct_phantom(padding_hu=-3024.0, **kwargs))["ct.truncated_slices_percent"] == 100.0
    # a constant -1024 padding (the value of air) is recognised from the constant corners
    assert values(ct_phantom(padding_hu=-1024.0, **kwargs))["ct.truncated_slices_percent"] == 100.0
    # a body well inside the circle is not truncated
    inside = ct_phantom(body_semi_axes_mm=(40.0, 60.0), padding_hu=-3024.0)
    assert values(inside)["ct.truncated_slices_percent"] == 0.0


def test_targeted_field_inside_the_body_is_not_judged():
    targeted = ct_phantom(body_semi_axes_mm=(200.0, 200.0))  # the body fills the whole image
    result = {m.metric: m for m in measure(targeted, spacing_mm=SPACING, body_part=None)}
    for key in ("ct.air_hu", "ct.truncated_slices_percent"):
        assert result[key].value is None
        assert "targeted reconstruction" in result[key].detail
    assert result["ct.noise_hu"].value == pytest.approx(expected_gnl(10.0, 6), rel=0.05)


def test_chest_coverage_from_the_lungs():
    covered = ct_phantom(lung_slices=(3, 16))
    assert values(covered, body_part="CHEST")["ct.coverage_end_percent"] == 0.0
    # lungs on the first slice as large as anywhere: the stack starts inside the lungs
    cut = ct_phantom(lung_slices=(0, 16))
    assert values(cut, body_part="CHEST")["ct.coverage_end_percent"] == pytest.approx(100.0, abs=1.0)
    assert values(cut[::-1], body_part="chest")["ct.coverage_end_percent"] == pytest.approx(100.0, abs=1.0)


def test_head_coverage_from_the_section_at_the_vertex_end():
    # the last slice of HEAD_PROFILE is 0.22 of full width: area ratio 0.22^2 = 4.9 %
    full = ct_phantom(body_scale=HEAD_PROFILE)
    assert values(full, body_part="HEAD")["ct.coverage_end_percent"] == pytest.approx(4.9, abs=1.0)
    # the same hemisphere stopped 5 slices (1/4 of the head) below the vertex: 0.70^2 = 48 %
    stopped = ct_phantom(shape=(15, 128, 128), body_scale=HEAD_PROFILE[:15])
    assert values(stopped, body_part="HEAD")["ct.coverage_end_percent"] == pytest.approx(48.0, abs=3.0)
    # orientation does not matter: the vertex is the smaller end
    assert values(stopped[::-1], body_part="HEAD")["ct.coverage_end_percent"] == pytest.approx(
        values(stopped, body_part="HEAD")["ct.coverage_end_percent"], rel=1e-12
    )


def test_coverage_without_a_rule_or_with_one_slice_is_none(clean):
    by_id = {m.metric: m for m in measure(clean, spacing_mm=SPACING, body_part="PELVIS")}
    assert by_id["ct.coverage_end_percent"].value is None
    assert by_id["ct.coverage_end_percent"].detail == (
        "no coverage rule for body part 'PELVIS' (rules exist for CHEST and HEAD)"
    )
    single = {m.metric: m for m in measure(clean[:1], spacing_mm=SPACING, body_part="CHEST")}
    assert single["ct.coverage_end_percent"].value is None
    assert "at least 3 slices" in single["ct.coverage_end_percent"].detail
    assert single["ct.noise_hu"].value is not None  # everything else still works on one slice


@pytest.mark.parametrize(("streak_hu", "low", "high"), [(0.0, 1.0, 1.5), (30.0, 1.8, 2.6), (100.0, 4.0, 6.5)])
def test_streak_index_rises_with_streaks(streak_hu, low, high):
    # isotropic noise: 1.10-1.22 over 3 seeds (sector scatter); 12 one-pixel lines through a
    # metal rod of +/-30 HU read 2.13-2.14 and of +/-100 HU 4.9-5.1 (seeds 0-2)
    index = values(ct_phantom(streak_hu=streak_hu))["ct.streak_index"]
    assert low < index < high


@pytest.mark.parametrize("noise_sd", [10.0, 60.0])
def test_ring_indicator_is_zero_on_noise(noise_sd):
    # the mean over whole circles of pure noise stays below 4 standard errors
    assert values(ct_phantom(noise_sd=noise_sd))["ct.ring_hu"] == 0.0


def test_ring_indicator_reads_a_ring():
    # a 1-pixel ring of +30 HU at radius 30 px (no block mean on a 128 px image): bilinear polar
    # sampling spreads the thin ring over neighbouring radii and ~60 % of it survives: 17.98-18.03
    # over 3 seeds; a 10 HU ring reads 5.15-5.29
    assert values(ct_phantom(ring_hu=30.0))["ct.ring_hu"] == pytest.approx(18.0, abs=1.0)
    assert values(ct_phantom(ring_hu=10.0))["ct.ring_hu"] == pytest.approx(5.25, abs=0.5)
    assert values(ct_phantom(ring_hu=30.0, noise_sd=60.0))["ct.ring_hu"] > 12.0


# ---------------------------------------------------------------------------------------------
# required outcomes of the rules


def test_clean_phantom_fires_no_rule(rules, clean_values):
    assert fired(rules, clean_values) == set()


def test_noisy_phantom_fails_on_noise(rules):
    assert fired(rules, values(ct_phantom(noise_sd=60.0))) == {
        "image_quality.ct.noise.review",
        "image_quality.ct.noise.fail",
    }


def test_miscalibrated_air_asks_for_review(rules):
    assert fired(rules, values(ct_phantom(air_hu=-800.0))) == {"image_quality.ct.air_high.review"}
    # a whole-scale shift of +200 HU moves water out of the noise window and fires the HU rules
    shifted = values(ct_phantom(air_hu=-800.0, water_hu=200.0))
    assert shifted["ct.noise_hu"] is None
    assert fired(rules, shifted) == {"image_quality.ct.air_high.review", "image_quality.ct.soft_tissue_high.review"}


def test_truncated_phantom_asks_for_review(rules):
    measured = values(ct_phantom(body_semi_axes_mm=(40.0, 80.0)))
    assert fired(rules, measured) == {"image_quality.ct.truncation.review"}


def test_ring_phantom_asks_for_review(rules):
    assert fired(rules, values(ct_phantom(ring_hu=30.0))) == {"image_quality.ct.ring.review"}
    assert fired(rules, values(ct_phantom(ring_hu=10.0))) == set()


def test_coverage_rules_per_item(rules):
    cut = values(ct_phantom(lung_slices=(0, 16)), body_part="CHEST")
    assert fired(rules, cut, item="YB-036") == {"image_quality.ct.coverage.review"}
    full_head = values(ct_phantom(body_scale=HEAD_PROFILE), body_part="HEAD")
    assert fired(rules, full_head, item="YB-034") == set()
    stopped = values(ct_phantom(shape=(15, 128, 128), body_scale=HEAD_PROFILE[:15]), body_part="HEAD")
    assert fired(rules, stopped, item="YB-034") == {"image_quality.ct.coverage.review"}


def test_head_noise_limit_is_stricter(rules):
    measured = values(ct_phantom(noise_sd=20.0))  # GNL ~19.7 HU: fine for a body, not a head
    assert fired(rules, measured, item="YB-036") == set()
    assert fired(rules, measured, item="YB-034") == {"image_quality.ct.noise.review"}


# ---------------------------------------------------------------------------------------------
# perturbations


def test_reversed_slice_order_changes_nothing(clean):
    volume = ct_phantom(shape=(45, 96, 96), lung_slices=(5, 38), body_semi_axes_mm=(35.0, 40.0))
    forward = values(volume, body_part="CHEST")
    backward = values(volume[::-1], body_part="CHEST")
    assert forward.keys() == backward.keys()
    for key, value in forward.items():
        assert backward[key] == pytest.approx(value, rel=1e-9), key


def test_shift_and_flip_keep_the_values(clean_values):
    # a moved or mirrored body falls on other tiles and other noise samples: the values may move
    # within their sampling scatter (noise 1.3 %, HU 0.3 HU, streak index 0.1), no more
    shifted = values(ct_phantom(center_offset_px=(6, -9)))
    flipped = values(ct_phantom()[:, :, ::-1])
    for other in (shifted, flipped):
        assert other["ct.noise_hu"] == pytest.approx(clean_values["ct.noise_hu"], rel=0.05)
        assert other["ct.air_hu"] == pytest.approx(clean_values["ct.air_hu"], abs=1.0)
        assert other["ct.soft_tissue_hu"] == pytest.approx(clean_values["ct.soft_tissue_hu"], abs=1.0)
        assert other["ct.truncated_slices_percent"] == 0.0
        assert other["ct.ring_hu"] == 0.0
        assert other["ct.streak_index"] < 1.5


def test_rotation_by_90_degrees_keeps_the_artifact_indicators():
    volume = ct_phantom(ring_hu=30.0, streak_hu=30.0)
    turned = np.ascontiguousarray(np.rot90(volume, axes=(1, 2)))
    a, b = values(volume), values(turned)
    # the polar grid maps onto itself (360 angles, square image about its centre)
    assert b["ct.ring_hu"] == pytest.approx(a["ct.ring_hu"], rel=1e-6)
    # frequency bins on sector boundaries (0 and 90 degrees) are counted slightly differently
    assert b["ct.streak_index"] == pytest.approx(a["ct.streak_index"], rel=0.05)


def test_an_hu_offset_moves_air_and_soft_tissue_by_the_offset(clean, clean_values):
    shifted = values(clean + np.float32(50.0))
    assert shifted["ct.air_hu"] == pytest.approx(clean_values["ct.air_hu"] + 50.0, abs=1e-3)
    # the KDE grid starts at the sample minimum, so it moves with the data: same mode + 50
    assert shifted["ct.soft_tissue_hu"] == pytest.approx(clean_values["ct.soft_tissue_hu"] + 50.0, abs=1e-3)


def test_dtype_and_layout_do_not_matter(clean, clean_values):
    as_float64 = values(clean.astype(np.float64))
    as_fortran = values(np.asfortranarray(clean))
    for other in (as_float64, as_fortran):
        for key, value in clean_values.items():
            assert other[key] == (None if value is None else pytest.approx(value, rel=1e-6)), key


# ---------------------------------------------------------------------------------------------
# bad input: measure never raises, the functions raise DegenerateInputError with a reason


@pytest.mark.parametrize(
    ("volume", "message"),
    [
        (np.zeros((2, 32, 32), dtype=np.complex64), "expected a real numeric volume"),
        (np.zeros((2, 2, 32, 32), dtype=np.float32), r"expected a \(slice, row, col\) volume"),
        (np.zeros((2, 8, 8), dtype=np.float32), r"at least 16 x 16 pixels"),
        (np.full((2, 32, 32), np.nan, dtype=np.float32), "NaN or infinite"),
    ],
)
def test_measure_reports_unusable_volumes_without_raising(volume, message):
    result = measure(volume, spacing_mm=SPACING, body_part="CHEST")
    assert [m.metric for m in result] == list(METRICS)
    for m in result:
        assert m.value is None
        assert re.search(message, m.detail), m.detail


def test_measure_accepts_one_2d_slice_and_unknown_spacing(clean):
    by_id = {m.metric: m for m in measure(clean[0], spacing_mm=(None, None, None), body_part=None)}
    assert by_id["ct.noise_hu"].value is not None
    assert "pixel spacing unknown" in by_id["ct.noise_hu"].detail


def test_all_air_volume_has_no_soft_tissue():
    air = np.random.default_rng(0).normal(-1000.0, 10.0, (5, 64, 64)).astype(np.float32)
    by_id = {m.metric: m for m in measure(air, spacing_mm=SPACING, body_part="HEAD")}
    assert by_id["ct.air_hu"].value == pytest.approx(-1000.0, abs=1.0)
    assert by_id["ct.noise_hu"].value is None and "soft-tissue tiles" in by_id["ct.noise_hu"].detail
    assert by_id["ct.coverage_end_percent"].detail == "no body found on any sampled slice"


def test_sample_slices_raises():
    with pytest.raises(DegenerateInputError, match="n_slices must be >= 1, got 0"):
        ct.sample_slices(0)
    with pytest.raises(DegenerateInputError, match="max_slices must be >= 2, got 1"):
        ct.sample_slices(5, max_slices=1)


def test_segment_body_raises_on_a_2d_array():
    with pytest.raises(DegenerateInputError, match=r"expected a \(slice, row, col\) stack"):
        ct.segment_body(np.zeros((32, 32)), pixel_mm=1.0)


def test_outside_air_raises(clean):
    seg = ct.segment_body(clean, pixel_mm=1.0)
    with pytest.raises(DegenerateInputError, match="does not match the segmentation"):
        ct.outside_air_hu(clean[:3], seg)
    full = ct_phantom(shape=(3, 64, 64), body_semi_axes_mm=(200.0, 200.0))
    with pytest.raises(DegenerateInputError, match="targeted reconstruction"):
        ct.outside_air_hu(full, ct.segment_body(full, pixel_mm=1.0))
    # a body 2 px short of the reconstruction circle: all air is within 5 mm of body or edge
    tight = ct_phantom(shape=(3, 128, 128), body_semi_axes_mm=(61.0, 61.0), padding_hu=-3024.0)
    with pytest.raises(DegenerateInputError, match="only 0 air pixels outside the body"):
        ct.outside_air_hu(tight, ct.segment_body(tight, pixel_mm=1.0))


def test_truncation_raises_when_every_slice_is_targeted():
    full = ct_phantom(shape=(3, 64, 64), body_semi_axes_mm=(200.0, 200.0))
    with pytest.raises(DegenerateInputError, match="truncation cannot be judged"):
        ct.truncated_slices_percent(ct.segment_body(full, pixel_mm=1.0))


def test_coverage_raises(clean):
    seg = ct.segment_body(clean, pixel_mm=1.0)
    with pytest.raises(DegenerateInputError, match="no coverage rule for body part 'KNEE'"):
        ct.coverage_end_percent(clean, seg, body_part="KNEE")
    with pytest.raises(DegenerateInputError, match="needs at least 3 slices, got 2"):
        ct.coverage_end_percent(clean[:2], ct.segment_body(clean[:2], pixel_mm=1.0), body_part="HEAD")
    with pytest.raises(DegenerateInputError, match="no lung"):
        ct.coverage_end_percent(clean, seg, body_part="CHEST")
    air = np.full((3, 32, 32), -1000.0, dtype=np.float32)
    with pytest.raises(DegenerateInputError, match="no body found on any sampled slice"):
        ct.coverage_end_percent(air, ct.segment_body(air, pixel_mm=1.0), body_part="HEAD")


def test_tile_statistics_raises_and_computes():
    with pytest.raises(DegenerateInputError, match="tile_px must be >= 2, got 1"):
        ct.tile_statistics(np.zeros((1, 8, 8)), tile_px=1)
    with pytest.raises(DegenerateInputError, match="a 9-pixel tile does not fit"):
        ct.tile_statistics(np.zeros((1, 8, 8)), tile_px=9)
    x = np.arange(2 * 6 * 6, dtype=np.float32).reshape(2, 6, 6)
    means, sds = ct.tile_statistics(x, tile_px=3)
    assert means.shape == (2, 2, 2)
    assert means[0, 0, 0] == pytest.approx(x[0, :3, :3].mean())
    assert sds[1, 1, 0] == pytest.approx(x[1, 3:, :3].std(ddof=1))


def test_histogram_mode_raises_and_finds_the_peak():
    with pytest.raises(DegenerateInputError, match="only 5 values to take a mode of"):
        ct.histogram_mode(np.arange(5.0))
    # more than half the sample one value: that value
    assert ct.histogram_mode(np.r_[np.full(100, 3.0), np.arange(20.0)]) == 3.0
    # a mixture: 2000 values near 10 and 1000 spread over 20-200 -> the peak near 10
    rng = np.random.default_rng(3)
    mixed = np.r_[rng.normal(10.0, 1.0, 2000), rng.uniform(20.0, 200.0, 1000)]
    assert ct.histogram_mode(mixed) == pytest.approx(10.0, abs=0.3)  # KDE mode se ~0.1 at n=2000


def test_noise_and_soft_tissue_raise():
    means = np.full((1, 4, 4), 50.0)
    with pytest.raises(DegenerateInputError, match="differs from tile_sds shape"):
        ct.global_noise_level(means, np.ones((1, 4, 5)))
    with pytest.raises(DegenerateInputError, match="only 16 soft-tissue tiles"):
        ct.global_noise_level(means, np.ones((1, 4, 4)))
    with pytest.raises(DegenerateInputError, match="differs from tile_in_body shape"):
        ct.soft_tissue_hu(means, tile_in_body=np.ones((1, 4, 5), dtype=bool))
    with pytest.raises(DegenerateInputError, match="only 0 body tiles between -200 and 300 HU"):
        ct.soft_tissue_hu(means, tile_in_body=np.zeros((1, 4, 4), dtype=bool))


def test_streak_index_raises():
    with pytest.raises(DegenerateInputError, match="must be equal"):
        ct.streak_index(np.zeros((1, 32, 32)), np.ones((1, 32, 31), dtype=bool))
    with pytest.raises(DegenerateInputError, match="only 0 soft-tissue pixels"):
        ct.streak_index(np.zeros((2, 32, 32)), np.zeros((2, 32, 32), dtype=bool))
    with pytest.raises(DegenerateInputError, match="no high-frequency signal"):
        ct.streak_index(np.full((2, 32, 32), 40.0), np.ones((2, 32, 32), dtype=bool))
    noise = np.random.default_rng(0).normal(0.0, 10.0, (8, 16, 16))
    with pytest.raises(DegenerateInputError, match="too small for 36 direction sectors"):
        ct.streak_index(noise, np.ones((8, 16, 16), dtype=bool))


def test_ring_indicator_raises():
    with pytest.raises(DegenerateInputError, match="must be equal"):
        ct.ring_amplitude_hu(np.zeros((1, 64, 64)), np.ones((1, 64, 63), dtype=bool))
    with pytest.raises(DegenerateInputError, match="too small for the ring indicator"):
        ct.ring_amplitude_hu(np.zeros((1, 40, 40)), np.ones((1, 40, 40), dtype=bool))
    with pytest.raises(DegenerateInputError, match="no circle of radius >= 16 px"):
        ct.ring_amplitude_hu(np.zeros((1, 64, 64)), np.zeros((1, 64, 64), dtype=bool))


# ---------------------------------------------------------------------------------------------
# golden values on real images
#
# Decoded with qc_pipeline.io.pixels.load_series (rescale applied, float32), measured with this
# module on 2026-11-23 and written down here; the code is deterministic, hence rel 1e-4.
# - CT_small.dcm: pydicom 3 test file, a 128 x 128 crop (0.66 mm) of a thoracic slice at shoulder
#   level (STANDARD kernel, 120 kV): the body covers 63 % of the image edge, so air and truncation
#   are not judged; its soft tissue really is noisy (horizontal photon-starvation texture).
# - 693_UNCR.dcm: pydicom-data, axial head CT, 512 x 512 (0.48 mm), -3024 padding outside the
#   reconstruction circle, lossless; 693_J2KR.dcm is the same pixels in JPEG 2000 lossless.
# - 693_UNCI.dcm: the same slice after lossy compression ("lossy conversion").

_DATA = Path(os.path.dirname(data_store.__file__)) / "data"
GOLDEN = {
    "CT_small.dcm": {
        "ct.air_hu": None,
        "ct.soft_tissue_hu": 24.77220040678148,
        "ct.noise_hu": 29.349578641598306,
        "ct.truncated_slices_percent": None,
        "ct.coverage_end_percent": None,
        "ct.streak_index": 17.738719828758235,
        "ct.ring_hu": 0.0,
    },
    "693_UNCR.dcm": {
        "ct.air_hu": -988.0,
        "ct.soft_tissue_hu": 31.143527335256707,
        "ct.noise_hu": 3.2553123927544703,
        "ct.truncated_slices_percent": 0.0,
        "ct.coverage_end_percent": None,
        "ct.streak_index": 3.7141239257503855,
        "ct.ring_hu": 0.01102146138498894,
    },
    "693_J2KR.dcm": "693_UNCR.dcm",
    "693_UNCI.dcm": {
        "ct.air_hu": -980.0,
        "ct.soft_tissue_hu": 31.880887215487093,
        "ct.noise_hu": 1.4021438016452894,
        "ct.truncated_slices_percent": 0.0,
        "ct.coverage_end_percent": None,
        "ct.streak_index": 4.410466128992293,
        "ct.ring_hu": 0.09685159539818283,
    },
}


def _real(name: str) -> dict[str, float | None]:
    path = Path(get_testdata_file(name)) if name == "CT_small.dcm" else _DATA / name
    volume = load_series([path])
    part = "CHEST" if name == "CT_small.dcm" else "HEAD"
    return values(volume.array, body_part=part, spacing=volume.spacing_mm)


@pytest.mark.parametrize("name", list(GOLDEN))
def test_golden_values_on_real_ct(name):
    expected = GOLDEN[name]
    if isinstance(expected, str):
        expected = GOLDEN[expected]
    measured = _real(name)
    for key, value in expected.items():
        if value is None:
            assert measured[key] is None, key
        else:
            assert measured[key] == pytest.approx(value, rel=1e-4, abs=1e-9), key


@pytest.mark.parametrize(
    ("name", "item"),
    [
        ("CT_small.dcm", None),
        ("CT_small.dcm", "YB-036"),  # chest plain
        ("693_UNCR.dcm", None),
        ("693_UNCR.dcm", "YB-034"),  # head plain
        ("693_UNCI.dcm", None),
        ("693_UNCI.dcm", "YB-034"),
    ],
)
def test_real_ct_fires_no_rule(rules, name, item):
    assert fired(rules, _real(name), item=item) == set()


def test_noise_is_normalised_to_the_reference_slice_thickness():
    # image noise sd ~ 1/sqrt(dose x slice thickness): a 0.625 mm slice of the same scan has
    # sqrt(5 / 0.625) = 2.83 x the noise of a 5 mm slice
    volume = ct_phantom(noise_sd=40.0)
    plain = {m.metric: m for m in measure(volume, spacing_mm=SPACING, body_part=None)}
    thin = {m.metric: m for m in measure(volume, spacing_mm=SPACING, body_part=None, slice_thickness_mm=0.625)}
    measured = thin["ct.noise_measured_hu"].value
    assert measured == pytest.approx(expected_gnl(40.0, 6), rel=0.05)
    assert thin["ct.noise_hu"].value == pytest.approx(measured * math.sqrt(0.625 / ct.NOISE_REFERENCE_MM), rel=1e-6)
    assert "0.625 mm" in thin["ct.noise_hu"].detail and f"{ct.NOISE_REFERENCE_MM:g} mm" in thin["ct.noise_hu"].detail
    assert "sqrt" in thin["ct.noise_hu"].detail
    thick = {m.metric: m.value for m in measure(volume, spacing_mm=SPACING, body_part=None, slice_thickness_mm=10.0)}
    assert thick["ct.noise_hu"] == pytest.approx(measured * math.sqrt(2.0), rel=1e-6)
    # thickness unknown: the measured value is judged as it is, and the detail says so
    assert plain["ct.noise_hu"].value == pytest.approx(measured, rel=1e-6)
    assert "slice thickness unknown" in plain["ct.noise_hu"].detail


def test_a_targeted_reconstruction_inside_the_scan_field_is_not_truncation():
    # a 160 mm body in a 128 mm reconstruction circle: truncated when the circle is the whole scan
    # field, but a targeted reconstruction when the scan field (DataCollectionDiameter) is 500 mm
    wide = ct_phantom(body_semi_axes_mm=(40.0, 80.0), padding_hu=-3024.0)
    whole = {m.metric: m for m in measure(wide, spacing_mm=SPACING, body_part=None, scan_field_mm=128.0)}
    assert whole["ct.truncated_slices_percent"].value == 100.0
    targeted = {m.metric: m for m in measure(wide, spacing_mm=SPACING, body_part=None, scan_field_mm=500.0)}
    found = targeted["ct.truncated_slices_percent"]
    assert found.value is None and found.unmeasured is Unmeasured.NOT_APPLICABLE
    assert "DataCollectionDiameter" in found.detail and "500 mm" in found.detail and "128 mm" in found.detail
    # a body clear of the edge reads 0 % whatever the scan field
    inside = ct_phantom(body_semi_axes_mm=(40.0, 60.0), padding_hu=-3024.0)
    assert values(inside)["ct.truncated_slices_percent"] == 0.0
    assert {m.metric: m.value for m in measure(inside, spacing_mm=SPACING, body_part=None, scan_field_mm=500.0)}[
        "ct.truncated_slices_percent"
    ] == 0.0


def test_a_real_head_slice_cropped_by_a_targeted_field_is_not_truncated():
    # 693_UNCR (head, 245 mm display field in a 320 mm scan field) cropped to its central 163 mm:
    # the skull reaches the edge on 13 % of the rim. Without the scan field that read as 100 %
    # truncated (every slice); with the file's DataCollectionDiameter it is a targeted reconstruction.
    volume = load_series([_DATA / "693_UNCR.dcm"])
    crop = volume.array[:, 86:426, 86:426]
    blind = {m.metric: m for m in measure(crop, spacing_mm=volume.spacing_mm, body_part="HEAD")}
    assert blind["ct.truncated_slices_percent"].value == 100.0
    assert "scan field unknown" in blind["ct.truncated_slices_percent"].detail
    ds = volume.datasets[0]
    assert float(ds.DataCollectionDiameter) == 320.0
    known = {
        m.metric: m
        for m in measure(
            crop, spacing_mm=volume.spacing_mm, body_part="HEAD", scan_field_mm=float(ds.DataCollectionDiameter)
        )
    }
    found = known["ct.truncated_slices_percent"]
    assert found.value is None and found.unmeasured is Unmeasured.NOT_APPLICABLE
    assert "163 mm reconstruction field lies inside the 320 mm scan field" in found.detail
    # the uncropped slice stays at 0 % either way
    whole = {
        m.metric: m.value
        for m in measure(volume.array, spacing_mm=volume.spacing_mm, body_part="HEAD", scan_field_mm=320.0)
    }
    assert whole["ct.truncated_slices_percent"] == 0.0
