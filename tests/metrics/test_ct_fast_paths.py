"""The CT metrics' faster ways of doing what scipy does give exactly scipy's results.

Hole filling by labelling, the running median of five by a sorting network and the tile
statistics a slice at a time replace scipy/numpy calls for speed only: any difference, even in
the last bit, would change a measurement.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy import ndimage

from qc_pipeline.metrics import ct
from tests.metrics.phantoms_ct import ct_phantom


def test_hole_filling_by_labels_is_scipys_binary_fill_holes():
    rng = np.random.default_rng(7)
    for k in range(2000):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        mask = rng.random((h, w)) < rng.random()
        if k % 3 == 0:
            mask = ndimage.binary_dilation(mask)
        assert np.array_equal(ct._fill_holes(mask), ndimage.binary_fill_holes(mask)), (k, h, w)
    ring = np.zeros((9, 9), dtype=bool)
    ring[2:7, 2:7] = True
    ring[4, 4] = False
    assert ct._fill_holes(ring)[4, 4] and not ct._fill_holes(np.zeros((3, 3), dtype=bool)).any()
    assert ct._fill_holes(np.ones((3, 3), dtype=bool)).all()


def test_running_median_of_five_is_scipys_median_filter():
    # every order of five distinct values, in the middle of a column of five
    for order in itertools.permutations(range(5)):
        column = np.array(order, dtype=np.float32)[:, None]
        assert ct._running_median_rows(column, 5)[2, 0] == 2.0, order
    rng = np.random.default_rng(8)
    for k in range(300):
        h, w = (int(v) for v in rng.integers(1, 50, 2))
        values = rng.normal(size=(h, w)).astype(np.float32)
        if k % 2:
            values = np.round(values * 2)  # ties
        expected = ndimage.median_filter(values, size=(5, 1), mode="nearest")
        assert np.array_equal(ct._running_median_rows(values, 5), expected), (k, h, w)


def _tile_statistics_whole_stack(stack, tile_px):
    """The tile statistics as first written: the whole stack at once."""
    n, h, w = stack.shape
    tr, tc = h // tile_px, w // tile_px
    x = stack[:, : tr * tile_px, : tc * tile_px]
    s1 = x.reshape(n, tr * tile_px, tc, tile_px).sum(axis=3, dtype=np.float64).reshape(n, tr, tile_px, tc).sum(axis=2)
    sq = np.square(x, dtype=np.float64)
    s2 = sq.reshape(n, tr * tile_px, tc, tile_px).sum(axis=3).reshape(n, tr, tile_px, tc).sum(axis=2)
    count = float(tile_px * tile_px)
    mean = s1 / count
    return mean, np.sqrt(np.maximum((s2 - s1 * mean) / (count - 1.0), 0.0))


def test_tile_statistics_a_slice_at_a_time_are_those_of_the_whole_stack():
    rng = np.random.default_rng(9)
    stack = ct_phantom(shape=(3, 100, 100), noise_sd=12.0, seed=4).astype(np.float32)
    stack = stack + rng.normal(0.0, 0.37, stack.shape).astype(np.float32)  # not integers
    for tile in (3, 7, 9):
        means, sds = ct.tile_statistics(stack, tile_px=tile)
        want_means, want_sds = _tile_statistics_whole_stack(stack, tile)
        assert np.array_equal(means, want_means) and np.array_equal(sds, want_sds), tile
