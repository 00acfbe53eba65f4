"""Preprocessing shared by training and inference, and the physics of the training degradations."""

from __future__ import annotations

import numpy as np
import pytest

from qc_pipeline.ai.preprocess import INPUT_SIZE, WORKING_SIZE, channels, model_input, sample_slices, to_working_grid
from qc_pipeline.errors import DegenerateInputError
from qc_pipeline.modeltools import degrade
from qc_pipeline.samples import phantoms


def ct_slice(seed: int = 0, noise: float = 5.0) -> np.ndarray:
    return to_working_grid(phantoms.ct_water_cylinder(n_slices=1, size=256, noise_sd_hu=noise, seed=seed)[0])


def mr_slice(seed: int = 0) -> np.ndarray:
    return to_working_grid(phantoms.mr_head_phantom(n_slices=1, size=256, noise_sigma=4.0, seed=seed)[0])


def test_model_input_is_three_channels_of_128_in_0_to_1_for_every_modality():
    dr_image = phantoms.dr_chest_phantom(rows=300, cols=200, seed=1)
    for modality, image, stored in (
        ("DR", dr_image, (0.0, 4095.0)),
        ("CT", ct_slice(), None),
        ("MR", mr_slice(), None),
    ):
        x = model_input(image, modality, stored_range=stored)
        assert x.shape == (3, INPUT_SIZE, INPUT_SIZE) and x.dtype == np.float32
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0


def test_working_grid_keeps_the_aspect_ratio_and_pads_with_the_minimum():
    image = np.full((100, 50), 7.0, dtype=np.float32)
    image[:, 25:] = 3.0  # right half darker: the minimum
    grid = to_working_grid(image)
    assert grid.shape == (WORKING_SIZE, WORKING_SIZE)
    # 100 x 50 -> 256 x 128, centred: columns 0..63 and 192..255 are padding at the minimum
    assert np.all(grid[:, :64] == 3.0) and np.all(grid[:, 192:] == 3.0)
    assert np.allclose(grid[:, 64:120], 7.0) and np.allclose(grid[:, 136:192], 3.0)


def test_preprocessing_is_deterministic_and_independent_of_the_matrix_size():
    image = phantoms.ct_water_cylinder(n_slices=1, size=512, noise_sd_hu=0.0, seed=0)[0]
    half = image[::2, ::2]
    a = model_input(image, "CT")
    assert np.array_equal(a, model_input(image, "CT"))
    # the same anatomy at 512 and 256 pixels gives nearly the same input (global channel)
    assert float(np.abs(a[0] - model_input(half, "CT")[0]).mean()) < 0.02


def test_ct_channels_use_fixed_hu_windows_so_noise_is_not_normalised_away():
    quiet, noisy = ct_slice(noise=2.0), degrade.ct_excess_noise(ct_slice(noise=2.0), np.random.default_rng(0))
    assert channels(noisy, "CT")[1].std() > 2 * channels(quiet, "CT")[1].std()


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.zeros((4, 4)), r"at least 8x8 pixels, got shape \(4, 4\)"),
        (np.zeros((16, 16)), r"16x16 pixels: the models were trained on matrices of at least 64 pixels"),
        (np.zeros((3, 16, 16)), r"expected a 2-D image"),
        (np.full((64, 64), np.nan), r"NaN or infinite"),
    ],
)
def test_unusable_images_raise_a_clear_error(image, match):
    with pytest.raises(DegenerateInputError, match=match):
        model_input(image, "MR")


def test_unknown_modality_is_refused():
    with pytest.raises(DegenerateInputError, match=r"no preprocessing for modality 'US'"):
        channels(np.zeros((WORKING_SIZE, WORKING_SIZE), np.float32), "US")


def test_sample_slices_spread_over_the_central_80_percent():
    assert sample_slices(0, max_slices=8) == []
    assert sample_slices(1, max_slices=8) == [0]
    chosen = sample_slices(100, max_slices=8)
    assert len(chosen) == 8 and chosen[0] == 9 and chosen[-1] == 90  # floor(0.1 * 99), ceil(0.9 * 99)
    assert sample_slices(5, max_slices=8) == [0, 1, 2, 3, 4]


# --- degradations: each does what its physics says, seeded ------------------------------------


def measured_noise(image: np.ndarray) -> float:
    """The objective metric's global noise level, at the full measurement path (qc_pipeline.metrics.ct)."""
    from qc_pipeline.metrics import ct

    (noise,) = [
        m.value for m in ct.measure(image, spacing_mm=(None, None, None), body_part=None) if m.metric == "ct.noise_hu"
    ]
    return float(noise)


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_ct_excess_noise_brings_the_measured_noise_into_its_range(seed):
    # The label is the outcome: whatever the image had, the objective metric reads the drawn level.
    for present in (0.0, 12.0):
        noisy = degrade.ct_excess_noise(ct_slice(seed=seed, noise=present), np.random.default_rng(seed))
        # 4 %: the mode of a tile-SD histogram of correlated noise scatters by a few per cent between seeds
        assert degrade.CT_NOISE_SD_HU[0] * 0.96 <= measured_noise(noisy) <= degrade.CT_NOISE_SD_HU[1] * 1.04


@pytest.mark.parametrize(("present", "target"), [(4.0, 20.0), (10.0, 30.0), (0.0, 45.0)])
def test_add_ct_noise_adds_in_variance_to_what_the_image_has(present, target):
    image = ct_slice(seed=1, noise=present)
    out = degrade.add_ct_noise(image, np.random.default_rng(2), target_hu=target)
    assert measured_noise(out) == pytest.approx(
        target, rel=0.05
    )  # see the 4 % above, plus the present noise's own mode


def test_add_ct_noise_leaves_an_image_already_that_noisy_alone():
    image = ct_slice(seed=1, noise=25.0)
    assert np.array_equal(degrade.add_ct_noise(image, np.random.default_rng(2), target_hu=20.0), image)


def test_ct_noise_level_is_none_without_soft_tissue():
    assert degrade.ct_noise_level(np.full((256, 256), -1000.0, dtype=np.float32)) is None


def test_ct_rings_are_centred_on_the_isocentre():
    clean = ct_slice(noise=0.0)
    diff = degrade.ct_rings(clean, np.random.default_rng(5)) - clean
    rows, cols = np.mgrid[0:WORKING_SIZE, 0:WORKING_SIZE]
    radius = np.hypot(rows - 127.5, cols - 127.5).round().astype(int)
    # a ring is rotationally symmetric: the SD along each radius is small next to the ring's amplitude
    per_radius_sd = max(diff[radius == r].std() for r in range(5, 110))
    assert np.abs(diff).max() > degrade.CT_RING_HU[0] * 0.5 and per_radius_sd < 0.5 * np.abs(diff).max()


@pytest.mark.parametrize("seed", range(5))
def test_ct_rings_cross_the_body_at_any_matrix(seed):
    # a ring that lies wholly in the air outside the patient is invisible in the soft-tissue window
    # and would teach the model a label it cannot see
    small = phantoms.ct_water_cylinder(n_slices=1, size=96, radius_fraction=0.5, noise_sd_hu=0.0, seed=seed)[0].astype(
        np.float32
    )
    diff = np.abs(degrade.ct_rings(small, np.random.default_rng(seed)) - small)
    body = small > -300
    ring = diff > 0.5 * degrade.CT_RING_HU[0]
    assert ring.any() and (ring & body).sum() > 0.5 * ring.sum()


def test_mr_motion_ghosting_moves_signal_into_the_background_along_one_axis():
    clean = mr_slice()
    background = clean < 0.05 * clean.max()
    ghosted = degrade.mr_motion_ghosting(clean, np.random.default_rng(1))
    assert ghosted[background].mean() > 2 * clean[background].mean()


def test_mr_wrap_folds_the_object_onto_itself():
    clean = mr_slice()
    wrapped = degrade.mr_wrap_around(clean, np.random.default_rng(2))
    # the smaller field of view along phase encoding keeps the matrix's longer side
    assert max(wrapped.shape) == WORKING_SIZE and min(wrapped.shape) < WORKING_SIZE
    # folding adds the cut-off parts onto the opposite side: the brightest pixel grows
    assert wrapped.max() > 1.2 * clean.max()


@pytest.mark.parametrize("seed", range(6))
def test_mr_wrap_of_a_small_matrix_stays_scorable(seed):
    # a 64 x 47 acquisition folded to 62 % of its height used to come out 40 px long: below what
    # preprocessing accepts, so building a training set stopped with DegenerateInputError
    small = phantoms.mr_head_phantom(n_slices=1, size=64, noise_sigma=4.0, seed=seed)[0][:, 8:55].astype(np.float32)
    wrapped = degrade.mr_wrap_around(small, np.random.default_rng(seed))
    assert max(wrapped.shape) == 64
    assert model_input(wrapped, "MR").shape == (3, INPUT_SIZE, INPUT_SIZE)


def test_mr_noise_is_rician_and_lowers_the_snr():
    clean = mr_slice()
    noisy = degrade.mr_noise(clean, np.random.default_rng(4))
    background = clean < 0.05 * clean.max()
    assert noisy[background].min() >= 0.0 and noisy[background].std() > 3 * clean[background].std()


def test_mr_nonuniformity_is_smooth_and_multiplicative():
    clean = mr_slice()
    biased = degrade.mr_nonuniformity(clean, np.random.default_rng(6))
    brain = clean > 0.3 * clean.max()  # the whole head: the field varies across it
    ratio = biased[brain] / clean[brain]
    assert ratio.max() / ratio.min() > 1.3


@pytest.mark.parametrize("seed", range(6))
def test_mr_kspace_spike_is_one_plane_wave_of_the_drawn_amplitude_away_from_the_centre(seed):
    # On a constant image I = c the result is |c + b exp(i theta(r, c))| with theta linear in
    # (row, col): its square is c^2 + b^2 + 2 c b cos(theta), whose DFT (numpy's, an independent
    # route from the formula in the docstring) is the centre and one conjugate pair, nothing else.
    rows, cols = 48, 64
    level = 100.0
    out = degrade.mr_kspace_spike(np.full((rows, cols), level, dtype=np.float32), np.random.default_rng(seed))
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(out.astype(np.float64) ** 2)))
    peaks = np.argwhere(spectrum > 1e-3 * spectrum.max())
    assert len(peaks) == 3, peaks  # float32 rounding leaves ~1e-7 of the peak elsewhere
    centre = np.array([rows // 2, cols // 2])
    pair = [p - centre for p in peaks if (p != centre).any()]
    assert (pair[0] == -pair[1]).all()
    u0, v0 = pair[0]
    # the distance drawn, as a share of the way to the edge along its direction (rounded to whole lines)
    share = np.hypot(u0 / (rows // 2), v0 / (cols // 2))
    assert degrade.MR_SPIKE_RADIUS[0] - 0.05 <= share <= degrade.MR_SPIKE_RADIUS[1] + 0.05
    # the pair's height is c * b * M * N, b = a * mean(I): the amplitude ratio a
    ratio = spectrum[tuple(pair[0] + centre)] / (level * level * rows * cols)
    assert degrade.MR_SPIKE_INTENSITY[0] - 1e-4 <= ratio <= degrade.MR_SPIKE_INTENSITY[1] + 1e-4
    # the magnitude of one plane wave over an even image: the level moves by at most b either way
    assert out.min() >= level * (1 - ratio) - 1e-3 and out.max() <= level * (1 + ratio) + 1e-3


def test_mr_kspace_spike_stripes_the_object_and_leaves_an_even_level_in_the_air():
    clean = mr_slice()
    spiked = degrade.mr_kspace_spike(clean, np.random.default_rng(3))
    assert np.array_equal(spiked, degrade.mr_kspace_spike(clean, np.random.default_rng(3)))
    air = clean == 0
    # a single complex plane wave has one magnitude: the air reads a * mean(I) everywhere
    assert air.any() and np.ptp(spiked[air]) < 1e-3 * spiked[air].mean()
    assert degrade.MR_SPIKE_INTENSITY[0] * clean.mean() * 0.99 <= spiked[air].mean()
    assert spiked[air].mean() <= degrade.MR_SPIKE_INTENSITY[1] * clean.mean() * 1.01
    assert degrade.DEGRADATIONS["MR"]["spike"] is degrade.mr_kspace_spike


def test_dr_saturation_puts_pixels_at_the_stored_maximum():
    image = phantoms.dr_chest_phantom(rows=256, cols=256, seed=0).astype(np.float32)
    out = degrade.dr_saturation(image, np.random.default_rng(0), stored_max=4095.0)
    share = float(np.mean(out == 4095.0))
    assert 100 - degrade.DR_SATURATION_PERCENTILE[1] - 1 <= 100 * share <= 100 - degrade.DR_SATURATION_PERCENTILE[0] + 1


def test_dr_collimation_cutoff_covers_at_least_the_drawn_depth_of_one_side():
    image = phantoms.dr_chest_phantom(rows=256, cols=256, seed=0).astype(np.float32)
    out = degrade.dr_collimation_cutoff(image, np.random.default_rng(8), stored_max=4095.0)
    changed = np.abs(out - image) > 200
    depth = degrade.DR_CUTOFF_FRACTION[0] * WORKING_SIZE
    edges = [
        changed[: int(depth) - 2].mean(),
        changed[-int(depth) + 2 :].mean(),
        changed[:, : int(depth) - 2].mean(),
        changed[:, -int(depth) + 2 :].mean(),
    ]
    assert max(edges) > 0.6


def test_degradations_are_reproducible_from_the_seed():
    clean = mr_slice()
    for name, fn in degrade.DEGRADATIONS["MR"].items():
        assert np.array_equal(fn(clean, np.random.default_rng(9)), fn(clean, np.random.default_rng(9))), name


@pytest.mark.parametrize("seed", range(5))
def test_faint_streaks_stay_below_the_streaks_the_model_flags(seed):
    # Clean training images carry faint streaks (skull base, shoulders); where lines cross they add
    # up, yet stay below the weakest single streak of the defect (the label is "strong enough to matter").
    clean = ct_slice(noise=0.0)
    faint = degrade.add_ct_streaks(clean, np.random.default_rng(seed), hu=degrade.CT_CLEAN_STREAK_HU) - clean
    strong = degrade.ct_streaks(clean, np.random.default_rng(seed)) - clean
    assert np.abs(faint).max() < degrade.CT_STREAK_HU[0] < np.abs(strong).max()
    assert np.percentile(np.abs(faint), 99.9) <= degrade.CT_CLEAN_STREAK_HU[1] * 1.1
