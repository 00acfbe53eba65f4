"""The anatomical CT slices used to train the CT classifiers: reproducible, anatomical, noise as asked."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from qc_pipeline.metrics import ct
from qc_pipeline.samples.ct_anatomy import REGIONS, ct_anatomical_slice


def noise_of(image: np.ndarray) -> float:
    (value,) = [
        m.value for m in ct.measure(image, spacing_mm=(None, None, None), body_part=None) if m.metric == "ct.noise_hu"
    ]
    return float(value)


@pytest.mark.parametrize("region", REGIONS)
def test_a_seed_gives_the_same_slice_and_another_seed_another(region):
    a = ct_anatomical_slice(region=region, seed=4)
    assert a.shape == (256, 256) and a.dtype == np.float32
    assert np.array_equal(a, ct_anatomical_slice(region=region, seed=4))
    assert not np.array_equal(a, ct_anatomical_slice(region=region, seed=5))


@pytest.mark.parametrize("region", REGIONS)
def test_every_region_has_air_fat_or_brain_soft_tissue_and_bone(region):
    image = ct_anatomical_slice(region=region, noise_sd_hu=0.0, kernel_px=0.0, seed=1)
    assert np.mean(image < -950) > 0.2  # air around the body
    assert np.mean((image > 0) & (image < 100)) > 0.1  # soft tissue or brain
    assert np.mean(image > 700) > 0.003  # cortical bone: vertebra and ribs, or the skull
    assert image.min() >= -1024 and image.max() <= 3071  # the 12-bit CT range
    if region in ("chest", "abdomen"):
        assert np.mean((image > -130) & (image < -60)) > 0.01  # subcutaneous fat


def test_the_skull_base_has_air_cells_inside_the_skull():
    image = ct_anatomical_slice(region="skull_base", noise_sd_hu=0.0, kernel_px=0.0, seed=2)
    air = image < -500
    outside, _ = ndimage.label(air)
    background = outside[0, 0]
    enclosed = ndimage.label(air & (outside != background))[1]
    # mastoid air cells and a sinus: air pockets surrounded by bone or tissue, not the room air
    assert enclosed >= 5


@pytest.mark.parametrize(("region", "sd"), [("abdomen", 8.0), ("head", 15.0), ("skull_base", 25.0)])
def test_the_objective_noise_metric_reads_the_noise_put_in(region, sd):
    # White noise (no kernel): the global noise level is the noise SD; the faint tissue texture and
    # the tiles at organ edges move the mode by a few per cent (8 %: abdomen at 8 HU reads 8.2-8.9
    # over seeds 0-5).
    image = ct_anatomical_slice(region=region, noise_sd_hu=sd, kernel_px=0.0, seed=3)
    assert noise_of(image) == pytest.approx(sd, rel=0.12 if sd < 10 else 0.08)


def test_a_chest_reads_its_noise_from_the_chest_wall_and_mediastinum():
    # Most of a chest slice is lung: about 100 soft-tissue tiles remain, and the vessels' and ribs'
    # edges in them raise the mode (8 HU read 9.1-11.9 over seeds 0-5): the metric's known bias.
    image = ct_anatomical_slice(region="chest", noise_sd_hu=8.0, kernel_px=0.0, seed=3)
    assert 8.0 <= noise_of(image) <= 8.0 * 1.6


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"region": "knee"}, r"region must be one of head, skull_base, chest, abdomen, got 'knee'"),
        ({"region": "head", "size": 16}, r"size must be an integer >= 32, got 16"),
        ({"region": "head", "noise_sd_hu": -1.0}, r"noise_sd_hu must be a finite number >= 0, got -1.0"),
        ({"region": "head", "kernel_px": float("nan")}, r"kernel_px must be a finite number >= 0, got nan"),
    ],
)
def test_bad_arguments_are_refused_by_name(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ct_anatomical_slice(**kwargs)
