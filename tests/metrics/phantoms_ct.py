"""Seeded synthetic CT volumes (HU) with known truth, for the tests of ``qc_pipeline.metrics.ct``.

``ct_phantom`` builds, slice by slice: air, an elliptic water cylinder (the body), optional
lungs, a metal insert with streaks, a ring about the isocentre, then white Gaussian noise, then
optional padding outside the reconstruction circle. What each metric should read is known by
construction (see the tests for the expected values and why).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

WATER_HU = 0.0
AIR_HU = -1000.0
LUNG_HU = -850.0


def ct_phantom(
    *,
    shape: tuple[int, int, int] = (20, 128, 128),
    seed: int = 0,
    noise_sd: float = 10.0,
    pixel_mm: float = 1.0,
    body_semi_axes_mm: tuple[float, float] = (45.0, 50.0),
    body_scale: Sequence[float] | None = None,
    center_offset_px: tuple[int, int] = (0, 0),
    water_hu: float = WATER_HU,
    air_hu: float = AIR_HU,
    lung_slices: tuple[int, int] | None = None,
    streak_hu: float = 0.0,
    ring_hu: float = 0.0,
    ring_radius_px: float = 30.0,
    padding_hu: float | None = None,
) -> npt.NDArray[np.float32]:
    """A (slice, row, col) float32 HU volume.

    - body: ellipse of semi-axes ``body_semi_axes_mm`` (row, col) at ``water_hu``, centred on the
      image centre + ``center_offset_px``; ``body_scale[z]`` scales both semi-axes on slice z
      (0 removes the body from that slice); the rest is ``air_hu``;
    - ``lung_slices=(first, last)``: two lungs at -850 HU on slices first..last inclusive,
      ellipses of semi-axes 0.55 x 0.3 of the body's, centred 0.45 of the body's half-width left
      and right of its centre (walls >= ~5 mm thick, enclosed by the body);
    - ``streak_hu``: a 3000 HU metal rod (3 px radius) at 15 px left of the centre and 12 lines
      through it, 1 px wide, alternately +streak_hu and -streak_hu, limited to the body;
    - ``ring_hu``: added on a 1-px annulus of radius ``ring_radius_px`` about the image centre
      ((rows - 1) / 2, (cols - 1) / 2) inside the body;
    - white Gaussian noise of sd ``noise_sd`` everywhere (numpy default_rng(seed));
    - ``padding_hu``: written, after the noise, outside the inscribed circle (the reconstruction
      field of a scanner).
    """
    n, h, w = shape
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    by, bx = cy + center_offset_px[0], cx + center_offset_px[1]
    dy_mm, dx_mm = (yy - by) * pixel_mm, (xx - bx) * pixel_mm
    scales = np.ones(n) if body_scale is None else np.asarray(body_scale, dtype=np.float64)
    if scales.shape != (n,):
        raise ValueError(f"body_scale needs {n} values, got {scales.shape}")
    ring = np.abs(np.hypot(yy - cy, xx - cx) - ring_radius_px) < 0.5
    metal_y, metal_x = by, bx - 15.0
    metal = np.hypot(yy - metal_y, xx - metal_x) <= 3.0
    streaks = np.zeros((h, w))
    for k in range(12):
        angle = np.pi * k / 12.0
        distance = np.abs((yy - metal_y) * np.cos(angle) - (xx - metal_x) * np.sin(angle))
        streaks[distance < 0.5] = streak_hu if k % 2 == 0 else -streak_hu
    out = np.empty(shape, dtype=np.float32)
    a_row, a_col = body_semi_axes_mm
    for z in range(n):
        s = scales[z]
        img = np.full((h, w), air_hu, dtype=np.float64)
        if s > 0:
            body = (dy_mm / (a_row * s)) ** 2 + (dx_mm / (a_col * s)) ** 2 <= 1.0
            img[body] = water_hu
            if lung_slices is not None and lung_slices[0] <= z <= lung_slices[1]:
                for side in (-1.0, 1.0):
                    lung = ((dy_mm + 0.1 * a_row * s) / (0.55 * a_row * s)) ** 2 + (
                        (dx_mm - side * 0.45 * a_col * s) / (0.3 * a_col * s)
                    ) ** 2 <= 1.0
                    img[lung & body] = LUNG_HU
            if streak_hu:
                img[body] += streaks[body]
                img[metal & body] = 3000.0
            if ring_hu:
                img[ring & body] += ring_hu
        img += rng.normal(0.0, noise_sd, size=(h, w))
        if padding_hu is not None:
            img[np.hypot(yy - cy, xx - cx) > min(h, w) / 2.0] = padding_hu
        out[z] = img
    return out


def expected_gnl(noise_sd: float, tile_px: int) -> float:
    """Mode of the SD (ddof=1) of n = tile_px^2 white Gaussian samples: sd sqrt((n-2)/(n-1)).

    (n-1) s^2 / sd^2 is chi-square with n-1 degrees of freedom, so s is sd / sqrt(n-1) times a chi
    variable with n-1 degrees of freedom, whose mode is sqrt(n-2).
    """
    n = tile_px * tile_px
    return noise_sd * float(np.sqrt((n - 2) / (n - 1)))
