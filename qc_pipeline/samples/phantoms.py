"""Seeded synthetic phantoms for CT, MR and DR: numbers in, arrays out, no I/O.

Every generator draws its noise from ``numpy.random.default_rng(seed)``, so a seed gives the same
array on every machine, and different seeds give different noise on the same anatomy. Arrays are
(slice, row, col) for CT/MR volumes and (row, col) for radiographs. Geometry is built from soft
or hard ellipses (``_ellipse_radius``) so that each phantom is a few composable layers.

The noise models are the textbook ones that the image-quality metrics assume:

- CT: additive Gaussian noise of known SD in HU (quantum noise after reconstruction).
- MR: magnitude of a complex signal with independent Gaussian noise in both channels, so that
  tissue follows a Rician and the air background a Rayleigh distribution
  (Gudbjartsson & Patz 1995, MRM 34:910).
- DR: additive Gaussian noise on a smooth 12-bit "for presentation" image.
"""

from __future__ import annotations

import logging
import math
from typing import Final

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

HU_AIR: Final = -1000.0
HU_WATER: Final = 0.0
CT_MIN_HU: Final = -1024
"""Lowest HU a 12-bit CT stores (RescaleIntercept -1024, stored value 0)."""
CT_MAX_HU: Final = 3071
"""Highest HU a 12-bit CT stores (stored value 4095)."""
DR_MAX_VALUE: Final = 4095
"""Largest value of a 12-bit radiograph."""
RAYLEIGH_MEAN_OVER_SD: Final = math.sqrt(math.pi / 2) / math.sqrt(2 - math.pi / 2)
"""mean/sd of a Rayleigh distribution, whatever its sigma: sqrt(pi/2) / sqrt(2 - pi/2) ≈ 1.913."""

FloatArray = npt.NDArray[np.float64]


def _check_positive_int(name: str, value: int, minimum: int = 1) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_non_negative(name: str, value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def _ellipse_radius(
    shape: tuple[int, int], *, center: tuple[float, float], semi_axes: tuple[float, float]
) -> FloatArray:
    """Normalised elliptic radius of every pixel of a (row, col) grid.

    d(r, c) = sqrt(((r - r0) / a)^2 + ((c - c0) / b)^2); d <= 1 is inside the ellipse.
    """
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    dr = (rows - center[0]) / semi_axes[0]
    dc = (cols - center[1]) / semi_axes[1]
    return np.sqrt(dr**2 + dc**2)


def _soft_inside(d: FloatArray, *, edge: float) -> FloatArray:
    """Smooth indicator of d <= 1: 1 / (1 + exp((d - 1) / edge)), edge in units of d."""
    return 1.0 / (1.0 + np.exp(np.clip((d - 1.0) / edge, -50.0, 50.0)))


def ct_water_cylinder(
    *,
    n_slices: int = 16,
    size: int = 64,
    radius_fraction: float = 0.7,
    noise_sd_hu: float = 10.0,
    insert_hu: float = 100.0,
    seed: int = 0,
) -> npt.NDArray[np.int16]:
    """A water cylinder in air with a denser rod, in HU, as (slice, row, col) int16.

    In every slice, with c = (size - 1) / 2 and R = radius_fraction * size / 2:

    - water, 0 HU, where (row - c)^2 + (col - c)^2 <= R^2, air (-1000 HU) elsewhere;
    - a rod of ``insert_hu`` (default +100 HU, so that CNR is defined) of radius R / 4 centred at
      (c - R / 2, c + R / 2), i.e. up and to the right of the centre;
    - plus Gaussian noise N(0, noise_sd_hu^2) drawn independently for every voxel;
    - rounded to the nearest integer and clipped to [-1024, 3071] (the 12-bit CT range).

    The central disc of radius R / 4 around (c, c) is pure water: use it as the noise ROI.
    Clipping touches only air voxels more than 2.4 SD below -1000 HU at the default noise.
    """
    _check_positive_int("n_slices", n_slices)
    _check_positive_int("size", size, minimum=8)
    if not 0.0 < radius_fraction <= 1.0:
        raise ValueError(f"radius_fraction must be in (0, 1], got {radius_fraction!r}")
    _check_non_negative("noise_sd_hu", noise_sd_hu)
    if not math.isfinite(insert_hu):
        raise ValueError(f"insert_hu must be finite, got {insert_hu!r}")

    rng = np.random.default_rng(seed)
    c = (size - 1) / 2
    radius = radius_fraction * size / 2
    shape = (size, size)
    body = _ellipse_radius(shape, center=(c, c), semi_axes=(radius, radius)) <= 1.0
    rod = _ellipse_radius(shape, center=(c - radius / 2, c + radius / 2), semi_axes=(radius / 4, radius / 4)) <= 1.0
    plane = np.where(body, HU_WATER, HU_AIR)
    plane = np.where(rod & body, insert_hu, plane)
    volume = np.broadcast_to(plane, (n_slices, size, size)) + rng.normal(0.0, noise_sd_hu, (n_slices, size, size))
    return np.clip(np.rint(volume), CT_MIN_HU, CT_MAX_HU).astype(np.int16)


def mr_head_phantom(
    *,
    n_slices: int = 12,
    size: int = 64,
    signal: float = 400.0,
    noise_sigma: float = 10.0,
    seed: int = 0,
) -> npt.NDArray[np.uint16]:
    """A magnitude MR "head", as (slice, row, col) uint16, with Rician noise.

    Noise-free signal S(row, col), the same in every slice (c = (size - 1) / 2):

    - head: ellipse centred at (c, c) with semi-axes (0.42, 0.34) * size; its outer shell
      (elliptic radius > 0.85) is "scalp" at 0.6 * signal, the inside "brain" at 1.0 * signal;
    - two "ventricles": ellipses of semi-axes (0.10, 0.04) * size at (c, c -/+ 0.07 * size),
      at 1.5 * signal (fluid bright, as on T2);
    - air: 0.

    Magnitude image: M = |S + n_re + i * n_im| with n_re, n_im ~ N(0, noise_sigma^2) independent
    for every voxel, rounded to the nearest integer. Where S = 0 (air) M is Rayleigh(noise_sigma):
    mean = sigma * sqrt(pi / 2), sd = sigma * sqrt(2 - pi / 2), mean / sd ≈ 1.913. Pixels with
    elliptic radius >= 1.15 of the head are background with no signal at all.
    """
    _check_positive_int("n_slices", n_slices)
    _check_positive_int("size", size, minimum=8)
    _check_non_negative("signal", signal)
    _check_non_negative("noise_sigma", noise_sigma)

    rng = np.random.default_rng(seed)
    c = (size - 1) / 2
    shape = (size, size)
    head_d = _ellipse_radius(shape, center=(c, c), semi_axes=(0.42 * size, 0.34 * size))
    plane = np.zeros(shape)
    plane[head_d <= 1.0] = 0.6 * signal
    plane[head_d <= 0.85] = 1.0 * signal
    for side in (-1.0, 1.0):
        ventricle = _ellipse_radius(shape, center=(c, c + side * 0.07 * size), semi_axes=(0.10 * size, 0.04 * size))
        plane[ventricle <= 1.0] = 1.5 * signal
    noise_shape = (n_slices, size, size)
    real = plane + rng.normal(0.0, noise_sigma, noise_shape)
    imag = rng.normal(0.0, noise_sigma, noise_shape)
    magnitude = np.hypot(real, imag)
    return np.clip(np.rint(magnitude), 0, np.iinfo(np.uint16).max).astype(np.uint16)


def mr_head_background_mask(*, size: int = 64) -> npt.NDArray[np.bool_]:
    """Pixels of a ``mr_head_phantom`` slice that hold air only (elliptic radius >= 1.15)."""
    _check_positive_int("size", size, minimum=8)
    c = (size - 1) / 2
    return _ellipse_radius((size, size), center=(c, c), semi_axes=(0.42 * size, 0.34 * size)) >= 1.15


def dr_chest_phantom(*, rows: int = 256, cols: int = 256, seed: int = 0) -> npt.NDArray[np.uint16]:
    """A frontal chest radiograph "for presentation", (row, col) uint16 in 12 bits, MONOCHROME2.

    Layers (r, c are fractions of rows, cols; soft edges are 1 / (1 + exp((d - 1) / 0.04))):

    - direct exposure outside the body: 300;
    - body: soft ellipse centred at (0.55, 0.5) with semi-axes (0.55, 0.42), value 2600, times a
      smooth vertical gradient 1 + 0.1 * (r - 0.5) (thicker toward the abdomen);
    - two lungs, darker by 1400: soft ellipses centred at (0.45, 0.5 -/+ 0.18) with semi-axes
      (0.28, 0.13);
    - mediastinum and spine, brighter by 500: soft ellipse at (0.5, 0.5), semi-axes (0.45, 0.06);
    - Gaussian noise N(0, 20^2), then rounded and clipped to [0, 4095].
    """
    _check_positive_int("rows", rows, minimum=16)
    _check_positive_int("cols", cols, minimum=16)

    rng = np.random.default_rng(seed)
    shape = (rows, cols)

    def soft(center: tuple[float, float], semi_axes: tuple[float, float]) -> FloatArray:
        d = _ellipse_radius(
            shape,
            center=(center[0] * rows, center[1] * cols),
            semi_axes=(semi_axes[0] * rows, semi_axes[1] * cols),
        )
        return _soft_inside(d, edge=0.04)

    r_frac = (np.arange(rows, dtype=np.float64) / rows)[:, None]
    body = soft((0.55, 0.5), (0.55, 0.42))
    image = 300.0 + (2600.0 - 300.0) * body * (1.0 + 0.1 * (r_frac - 0.5))
    for side in (-1.0, 1.0):
        image -= 1400.0 * soft((0.45, 0.5 + side * 0.18), (0.28, 0.13)) * body
    image += 500.0 * soft((0.5, 0.5), (0.45, 0.06)) * body
    image += rng.normal(0.0, 20.0, shape)
    return np.clip(np.rint(image), 0, DR_MAX_VALUE).astype(np.uint16)


def overexpose(
    image: npt.NDArray[np.integer], *, factor: float, max_value: int = DR_MAX_VALUE
) -> npt.NDArray[np.uint16]:
    """A radiograph made brighter: rint(image * factor), clipped to [0, max_value], as uint16.

    With factor > 1 the brightest parts saturate at ``max_value`` (burn-out), as an overexposed
    or badly processed image does.
    """
    if not math.isfinite(factor) or factor <= 0:
        raise ValueError(f"factor must be a finite number > 0, got {factor!r}")
    _check_positive_int("max_value", max_value)
    scaled = np.rint(np.asarray(image, dtype=np.float64) * factor)
    return np.clip(scaled, 0, max_value).astype(np.uint16)


def clip(image: npt.NDArray[np.integer], *, fraction: float, max_value: int = DR_MAX_VALUE) -> npt.NDArray[np.uint16]:
    """A radiograph whose brightest ``fraction`` of pixels is saturated at ``max_value``.

    Pixels >= the (1 - fraction) quantile of the image are set to ``max_value``; the others are
    kept. With ties at the quantile slightly more than ``fraction`` may be set.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
    _check_positive_int("max_value", max_value)
    values = np.asarray(image)
    threshold = np.quantile(values, 1.0 - fraction)
    out = np.where(values >= threshold, max_value, np.minimum(values, max_value))
    return out.astype(np.uint16)


def add_ghost(volume: npt.NDArray[np.integer], *, fraction: float, axis: int = -1) -> npt.NDArray[np.uint16]:
    """An MR series with an N/2 (Nyquist) ghost along the phase-encoding ``axis``.

    ghosted = rint(volume + fraction * roll(volume, N / 2, axis)), clipped to uint16, where N is
    the size of ``axis``: a copy of the object at ``fraction`` of its intensity, displaced by half
    the field of view along the phase-encoding direction, as an odd/even echo mismatch of EPI or
    periodic motion produces. With InPlanePhaseEncodingDirection ROW the phase axis is the row
    direction of the image, i.e. the column index (``axis=-1``); with COL it is ``axis=-2``.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    values = np.asarray(volume, dtype=np.float64)
    shift = values.shape[axis] // 2
    ghosted = values + fraction * np.roll(values, shift, axis=axis)
    return np.clip(np.rint(ghosted), 0, np.iinfo(np.uint16).max).astype(np.uint16)
