"""N4 intensity non-uniformity (``qc_pipeline.metrics.bias_field``): a known field is recovered, a
flat one reads near zero, a real brain reads low, and a slice without an object is said so."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from qc_pipeline.errors import DegenerateInputError
from qc_pipeline.metrics.bias_field import inu_range_percent
from qc_pipeline.metrics.mr import segment
from qc_pipeline.samples.phantoms import mr_head_phantom

WG04_MR = Path(__file__).parents[1] / "data" / "wg04" / "MR4_J2KI"


def _inu(volume: np.ndarray, pixel_mm: float = 1.0) -> tuple[float, str]:
    masks = segment(volume)
    return inu_range_percent(masks.image, masks.tissue, pixel_mm=(pixel_mm * masks.step, pixel_mm * masks.step))


@pytest.fixture(scope="module")
def head() -> np.ndarray:
    return mr_head_phantom(n_slices=4, size=192, seed=3).astype(np.float64)


def _expected_range_percent(gain: np.ndarray, volume: np.ndarray) -> float:
    """P95 - P5 of the imposed gain over its median, inside the object: what N4 should find."""
    inside = segment(volume).tissue  # on the grid
    step = segment(volume).step
    g = np.broadcast_to(gain[None, ::step, ::step], inside.shape)[inside]
    lo, hi = np.percentile(g / np.median(g), [5, 95])
    return 100 * (hi - lo)


def test_a_flat_field_reads_near_zero(head: np.ndarray) -> None:
    value, detail = _inu(head)
    assert value < 2.0
    assert "N4 bias field" in detail and "3 slice(s) of 4" in detail


@pytest.mark.parametrize("low, high", [(0.8, 1.2), (0.6, 1.4)])
def test_a_known_left_right_gain_is_recovered(head: np.ndarray, low: float, high: float) -> None:
    cols = np.linspace(low, high, head.shape[-1])
    gain = np.broadcast_to(cols, head.shape[1:])
    biased = head * gain[None]
    expected = _expected_range_percent(gain, biased)
    value, _ = _inu(biased)
    assert value == pytest.approx(expected, abs=4.0), (value, expected)


def test_stronger_fields_read_higher_and_a_rerun_reads_the_same(head: np.ndarray) -> None:
    rows, cols = np.mgrid[0 : head.shape[1], 0 : head.shape[2]]
    centre = (head.shape[1] - 1) / 2
    values = []
    for depth in (0.0, 0.2, 0.4):  # a coil's central brightening, stronger each time
        gain = 1.0 + depth * (1 - ((rows - centre) ** 2 + (cols - centre) ** 2) / centre**2)
        values.append(_inu(head * gain[None])[0])
    assert values[0] < values[1] < values[2]
    assert _inu(head * 1.0)[0] == _inu(head.copy())[0]


def test_a_real_brain_reads_low() -> None:
    """NEMA WG04 MR4 (512² brain, lossless JPEG 2000): a clinical image without a visible shading."""
    ds = pydicom.dcmread(WG04_MR)
    value, _ = _inu(ds.pixel_array.astype(np.float64)[None], float(ds.PixelSpacing[0]))
    assert 0.0 <= value < 10.0


def test_no_object_large_enough_is_a_degenerate_input() -> None:
    grid = np.zeros((2, 64, 64))
    mask = np.zeros_like(grid, dtype=bool)
    mask[:, 30:34, 30:34] = True
    with pytest.raises(DegenerateInputError, match="no slice has an object of at least"):
        inu_range_percent(grid + 100, mask)
    with pytest.raises(DegenerateInputError, match="expected \\(slice, row, col\\) image and mask of one shape"):
        inu_range_percent(grid[0], mask[0])
