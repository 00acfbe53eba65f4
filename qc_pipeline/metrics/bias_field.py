"""Intensity non-uniformity of an MR series from an N4 bias-field estimate (SimpleITK).

Receive-coil sensitivity, B1 inhomogeneity and a poorly placed coil make the same tissue brighter
on one side of the image than on the other. N4 (Tustison et al., "N4ITK: improved N3 bias
correction", IEEE TMI 29(6):1310-1320, 2010) models this as a smooth multiplicative field B(x)
(a B-spline fitted to log intensities) and is the standard estimator of it; MRIQC reports the same
quantity as ``inu_range`` / ``inu_med`` (Esteban et al. 2017, PLoS ONE 12(9):e0184661), from N4's
field in the brain mask.

:func:`inu_range_percent` is the spread of that field inside the object: the 95th minus the 5th
percentile of B / median(B), in percent. 0 % is a flat field; 40 % means the object's bright side
is about 40 % brighter than its dark side for the same tissue. It complements ``mr.piu_percent``,
which compares local mean intensities and so also moves with anatomy (grey vs white matter, fat):
N4's field is smooth by construction and does not follow tissue edges.

How it is computed (and why):

- On the metric grid of :mod:`qc_pipeline.metrics.mr` and its object mask, thinned to at most
  :data:`FIT_MAX_SIDE` px a side: the field is smooth, so the thinning loses little, and N4 costs
  tens of milliseconds a slice instead of seconds for a full-resolution volume.
- Slice by slice in 2-D, on the :data:`MAX_SLICES` slices where the object is largest; the series
  value is the median of the per-slice ranges. Routine MR is mostly multi-slice 2-D with
  thick slices and gaps, where a 3-D fit across slices is poorly conditioned, and a single-slice
  series must give a value too. The in-plane field is what a reader sees on one image.
- :data:`N4_LEVELS` fitting levels of :data:`N4_ITERATIONS` iterations each, SimpleITK's
  defaults otherwise (B-spline order 3, 4 control points per axis at the coarsest level).
- Deterministic: one thread (:data:`N4_THREADS`), so a re-run gives the same value.

Pure function: arrays in, a float and a detail out; no thresholds; SimpleITK is imported on the
first call only (the rest of the pipeline does not need it).
"""

from __future__ import annotations

import logging
from typing import Final

import numpy as np
import numpy.typing as npt

from qc_pipeline.errors import DegenerateInputError

logger = logging.getLogger(__name__)

MAX_SLICES: Final = 3
"""Object slices fitted per series: those where the object is largest (most of the field in view)."""
FIT_MAX_SIDE: Final = 48
"""The field is fitted on about every k-th row and column of the metric grid, k bringing the larger
side to at most this: the field is smooth (16 control points a side at the finest level). On phantoms
with known fields (flat; 0.8-1.2 and 0.6-1.4 left-right; radial) the fit on 48 px reads within 1.5
points of the fit on 128 px at a fifth of the cost; 32 px saves little more and reads a flat field
higher."""
N4_LEVELS: Final = 3
"""Fitting levels of N4 (each doubles the control-point grid: 4, 8, 16 points a side)."""
N4_ITERATIONS: Final = 10
"""Iterations per level (N4 stops earlier at its convergence threshold, 0.001). 25 per level moved
the phantoms' values by at most 2 points and doubled the cost."""
N4_THREADS: Final = 1
"""ITK threads for the fit: the flow already judges several series at once, and a multi-threaded
fit is not bit-for-bit repeatable."""
MIN_OBJECT_PIXELS: Final = 100
"""Fewer object pixels on a fitted slice than this (a 10 x 10 patch) and its field is not fitted."""
LOW_PERCENTILE: Final = 5.0
HIGH_PERCENTILE: Final = 95.0
"""The range is taken between these percentiles of B / median(B) inside the object (as MRIQC)."""


def _field_range_percent(
    image: npt.NDArray[np.floating], mask: npt.NDArray[np.bool_], spacing_mm: tuple[float, float]
) -> float:
    """(P95 - P5) of N4's bias field over its median inside ``mask``, in percent, for one 2-D slice."""
    import SimpleITK as sitk  # only this metric needs it

    values = np.asarray(image, dtype=np.float64)
    inside = np.asarray(mask, dtype=bool)
    # N4 works on log intensities: the object must be positive. Shift a signed image (phase-
    # corrected or offset data) so that its lowest object value is 1; magnitude data are untouched.
    low = float(values[inside].min())
    if low <= 0:
        values = values - low + 1.0
    # In units of the object's median: the fit then sees the same numbers whatever the scanner's
    # scaling (the value is scale-free by definition; N4's float32 arithmetic would otherwise move it
    # in the fifth digit).
    values = (values / float(np.median(values[inside]))).astype(np.float32)
    img = sitk.GetImageFromArray(values)
    img.SetSpacing((float(spacing_mm[1]), float(spacing_mm[0])))  # SimpleITK: (x = col, y = row)
    msk = sitk.GetImageFromArray(inside.astype(np.uint8))
    msk.CopyInformation(img)
    n4 = sitk.N4BiasFieldCorrectionImageFilter()
    n4.SetMaximumNumberOfIterations([N4_ITERATIONS] * N4_LEVELS)
    n4.SetNumberOfThreads(N4_THREADS)
    n4.Execute(img, msk)
    field = np.exp(sitk.GetArrayFromImage(n4.GetLogBiasFieldAsImage(img)))[inside]
    median = float(np.median(field))
    if not np.isfinite(median) or median <= 0:
        raise DegenerateInputError("N4 gave no usable bias field on this slice")
    lo, hi = np.percentile(field / median, [LOW_PERCENTILE, HIGH_PERCENTILE])
    return float(100.0 * (hi - lo))


def _spread(n: int, step: int) -> npt.NDArray[np.intp]:
    """About n/step indices from 0 to n-1, evenly spaced and symmetric (index i taken iff n-1-i is)."""
    count = max(2, -(-n // step))
    half = np.floor(np.linspace(0, (n - 1) / 2, (count + 1) // 2) + 1e-9).astype(np.intp)
    return np.unique(np.concatenate([half, n - 1 - half]))


def inu_range_percent(
    grid: npt.NDArray[np.floating],
    object_mask: npt.NDArray[np.bool_],
    *,
    pixel_mm: tuple[float, float] = (1.0, 1.0),
) -> tuple[float, str]:
    """Intensity non-uniformity of a series: median over sampled slices of N4's field range.

    ``grid`` and ``object_mask`` are (slice, row, col) on the metric grid; ``pixel_mm`` the (row,
    col) size of a grid pixel in mm (only the field's smoothness scale depends on it). Returns the
    value in percent and a detail naming the slices used. Raises DegenerateInputError when no slice
    has enough object to fit a field.
    """
    grid = np.asarray(grid)
    mask = np.asarray(object_mask, dtype=bool)
    if grid.ndim != 3 or mask.shape != grid.shape:
        raise DegenerateInputError(
            f"expected (slice, row, col) image and mask of one shape, got {grid.shape} and {mask.shape}"
        )
    step = max(1, -(-max(grid.shape[1:]) // FIT_MAX_SIDE))
    if step > 1:  # evenly spaced rows and columns, both ends kept: a flipped image gives the mirrored grid
        rows = _spread(grid.shape[1], step)
        cols = _spread(grid.shape[2], step)
        grid, mask = grid[:, rows][:, :, cols], mask[:, rows][:, :, cols]
        pixel_mm = (pixel_mm[0] * step, pixel_mm[1] * step)
    sizes = mask.sum(axis=(1, 2))
    candidates = np.flatnonzero(sizes >= MIN_OBJECT_PIXELS)
    if candidates.size == 0:
        raise DegenerateInputError(
            f"no slice has an object of at least {MIN_OBJECT_PIXELS} grid px to fit a bias field on "
            f"(largest: {int(sizes.max()) if sizes.size else 0})"
        )
    # The slices where the object is largest (ties: the brighter object): chosen by content, not by
    # position, so the order in which the slices arrive does not change the value.
    sums = np.array([float(grid[i][mask[i]].sum()) for i in candidates])
    ranked = sorted(range(candidates.size), key=lambda k: (-int(sizes[candidates[k]]), -sums[k]))
    chosen = candidates[sorted(ranked[:MAX_SLICES])]
    ranges = []
    for i in chosen:
        try:
            ranges.append(_field_range_percent(grid[i], mask[i], pixel_mm))
        except (DegenerateInputError, RuntimeError) as exc:  # RuntimeError: ITK refused the slice
            logger.debug("no N4 field on slice %d: %s", i, exc)
    if not ranges:
        raise DegenerateInputError(f"N4 could not fit a bias field on any of {chosen.size} object slices")
    detail = (
        f"N4 bias field (P{LOW_PERCENTILE:.0f}-P{HIGH_PERCENTILE:.0f} of B/median inside the object), "
        f"median of {len(ranges)} slice(s) of {candidates.size} with an object, fitted on a {grid.shape[1]}x{grid.shape[2]} grid"
    )
    return float(np.median(ranges)), detail
