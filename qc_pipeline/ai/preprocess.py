"""Deterministic preprocessing shared by training and inference: pixels in, model input out.

One function, :func:`model_input`, turns one 2-D image (a radiograph, or one CT/MR slice in
modality units) into the ``(channels, 128, 128)`` float32 array the classifiers read. Training
(``qc_pipeline.modeltools.training``) and the flow (``qc_pipeline.ai.runtime``) both call it, so what a
model saw when it learned is exactly what it sees in production.

Steps:

1. **Working grid** (:func:`to_working_grid`): the image is resampled so that its longer side is
   ``WORKING_SIZE`` (256) pixels (area averaging, ``skimage.transform.resize`` with anti-aliasing)
   and padded to a square with its own lowest value, so that every vendor's matrix and aspect ratio
   reads the same. Degradations during training are applied on this grid.
2. **Channels** (:func:`channels`), per modality, each scaled to 0..1:

   - ``global``: the whole working grid, 2x area-downsampled to 128;
   - ``detail``: the central 128x128 of the working grid at full working resolution (noise,
     rings and fine blur survive here);
   - a third, modality-specific channel at 128: DR ``at_max`` (the share of pixels at the largest
     storable value: saturation survives the normalisation, while the absolute grey level, which
     differs from vendor to vendor, does not reach the model), CT ``wide`` (-1000..1000 HU), MR
     ``gamma`` (the normalised image to the power 0.4, so that ghosts and wrap in the dark
     background are visible).

   DR and MR are normalised by the image's own 1st and 99.5th percentiles; CT by fixed HU windows
   (soft tissue: level 40, width 400).
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt
from skimage.transform import resize

from qc_pipeline.errors import DegenerateInputError

WORKING_SIZE: Final = 256
INPUT_SIZE: Final = 128
MIN_LONG_SIDE: Final = 64
"""Smaller images are not scored: no training image was smaller (``dataset.SMALL_MATRIX``), and the
metric features of a 16-pixel image upsampled 16-fold are meaningless (and slow)."""
CHANNELS: Final[dict[str, tuple[str, str, str]]] = {
    "DR": ("global", "detail", "at_max"),
    "CT": ("global", "detail", "wide"),
    "MR": ("global", "detail", "gamma"),
}
CT_SOFT_TISSUE: Final = (40.0 - 200.0, 40.0 + 200.0)
CT_WIDE: Final = (-1000.0, 1000.0)
PERCENTILES: Final = (1.0, 99.5)
MR_GAMMA: Final = 0.4
AT_MAX_TOLERANCE: Final = 0.002
"""A DR pixel within 0.2 % of the stored range below the largest storable value counts as at the maximum
(the working grid's resampling moves values at a saturated edge slightly)."""

FloatArray = npt.NDArray[np.float32]


def to_working_grid(image: npt.ArrayLike) -> FloatArray:
    """Resample a 2-D image to a ``WORKING_SIZE`` square: longer side to 256, pad with its minimum."""
    array = np.asarray(image, dtype=np.float32)
    if array.ndim != 2 or min(array.shape) < 8:
        raise DegenerateInputError(f"expected a 2-D image of at least 8x8 pixels, got shape {array.shape}")
    if max(array.shape) < MIN_LONG_SIDE:
        raise DegenerateInputError(
            f"image of {array.shape[0]}x{array.shape[1]} pixels: the models were trained on matrices of at least "
            f"{MIN_LONG_SIDE} pixels"
        )
    if not np.all(np.isfinite(array)):
        raise DegenerateInputError("the image holds NaN or infinite values")
    rows, cols = array.shape
    scale = WORKING_SIZE / max(rows, cols)
    shape = (max(1, round(rows * scale)), max(1, round(cols * scale)))
    if shape != array.shape:
        array = resize(array, shape, order=1, anti_aliasing=scale < 1, preserve_range=True).astype(np.float32)
    out = np.full((WORKING_SIZE, WORKING_SIZE), float(array.min()), dtype=np.float32)
    r0 = (WORKING_SIZE - shape[0]) // 2
    c0 = (WORKING_SIZE - shape[1]) // 2
    out[r0 : r0 + shape[0], c0 : c0 + shape[1]] = array
    return out


def _window(values: FloatArray, lo: float, hi: float) -> FloatArray:
    if not hi > lo:
        return np.zeros_like(values)
    return np.clip((values - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def _downsample(grid: FloatArray) -> FloatArray:
    half = grid.reshape(INPUT_SIZE, 2, INPUT_SIZE, 2)
    return half.mean(axis=(1, 3)).astype(np.float32)


def _centre(grid: FloatArray) -> FloatArray:
    start = (WORKING_SIZE - INPUT_SIZE) // 2
    return grid[start : start + INPUT_SIZE, start : start + INPUT_SIZE]


def channels(grid: FloatArray, modality: str, *, stored_range: tuple[float, float] | None = None) -> FloatArray:
    """The model input ``(3, 128, 128)`` of a working-grid image (see the module docstring).

    ``stored_range`` (DR only): the smallest and largest value the file can store, for the
    ``at_max`` channel; without it the image's own maximum is used.
    """
    if grid.shape != (WORKING_SIZE, WORKING_SIZE):
        raise DegenerateInputError(f"expected a {WORKING_SIZE}x{WORKING_SIZE} working grid, got {grid.shape}")
    if modality == "CT":
        soft = _window(grid, *CT_SOFT_TISSUE)
        return np.stack([_downsample(soft), _centre(soft), _downsample(_window(grid, *CT_WIDE))])
    if modality not in ("DR", "MR"):
        raise DegenerateInputError(f"no preprocessing for modality {modality!r} (DR, CT or MR)")
    lo, hi = (float(v) for v in np.percentile(grid, PERCENTILES))
    norm = _window(grid, lo, hi)
    if modality == "MR":
        third = _downsample(norm) ** MR_GAMMA
    else:
        s_lo, s_hi = stored_range if stored_range is not None else (float(grid.min()), float(grid.max()))
        third = _downsample((grid >= s_hi - AT_MAX_TOLERANCE * max(s_hi - s_lo, 1.0)).astype(np.float32))
    return np.stack([_downsample(norm), _centre(norm), third.astype(np.float32)])


def model_input(image: npt.ArrayLike, modality: str, *, stored_range: tuple[float, float] | None = None) -> FloatArray:
    """Working grid, then channels: the whole preprocessing of one 2-D image."""
    return channels(to_working_grid(image), modality, stored_range=stored_range)


def sample_slices(n_slices: int, *, max_slices: int) -> list[int]:
    """Up to ``max_slices`` evenly spaced slice indices over the central 80 % of a series.

    The first and last 10 % are left out: they hold the scan's ends (partial volume, the coverage
    margin) rather than the anatomy the artifact classifiers judge.
    """
    if n_slices <= 0:
        return []
    if n_slices <= 2:
        return list(range(n_slices))
    lo, hi = int(np.floor(0.1 * (n_slices - 1))), int(np.ceil(0.9 * (n_slices - 1)))
    count = min(max_slices, hi - lo + 1)
    return sorted({int(round(x)) for x in np.linspace(lo, hi, count)})
