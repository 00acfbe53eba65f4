"""A seeded synthetic radiograph with known truth, for the DR metrics (and for demo files).

:func:`dr_phantom` builds a 12-bit "for presentation" radiograph in the MONOCHROME2 convention
from a few layers, and returns the image together with the truth the metrics should recover
(field, anatomy, clipped pixels, noise SD). Numbers in, arrays out, no I/O; the same seed gives
the same array on every machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy import ndimage

STORED_MAX: Final = 4095.0
"""Largest value of a 12-bit radiograph; the smallest is 0."""
STORED_RANGE: Final = (0.0, STORED_MAX)


@dataclass(frozen=True)
class DRPhantom:
    """A synthetic radiograph and what is true about it."""

    image: npt.NDArray[np.float64]
    """(row, col) pixel values in [0, 4095], integers, MONOCHROME2 (high = bright)."""
    stored_range: tuple[float, float]
    field: npt.NDArray[np.bool_]
    """True inside the collimated field (everything but the electronic shutters)."""
    body: npt.NDArray[np.bool_]
    """True where the noise-free body is above half its contrast over the background."""
    clipped: npt.NDArray[np.bool_]
    """Field pixels set to the stored maximum (the clipping truth)."""
    noise_sd: float
    """SD of the additive Gaussian noise (before rounding; rounding adds 1/12 to the variance)."""
    background: float
    body_level: float

    @property
    def clipped_percent(self) -> float:
        """100 x clipped pixels / field pixels."""
        return 100.0 * float(np.count_nonzero(self.clipped)) / float(np.count_nonzero(self.field))

    @property
    def field_percent(self) -> float:
        return 100.0 * float(np.count_nonzero(self.field)) / self.field.size


def dr_phantom(
    *,
    shape: tuple[int, int] = (256, 256),
    seed: int = 0,
    noise_sd: float = 20.0,
    clip_fraction: float = 0.0,
    background: float = 300.0,
    body_level: float = 2400.0,
    structure: float = 300.0,
    collimation: float = 0.1,
    body_center: tuple[float, float] = (0.55, 0.5),
    body_semi_axes: tuple[float, float] = (0.38, 0.26),
    blur_sd_px: float = 0.0,
) -> DRPhantom:
    """A seeded 12-bit radiograph (MONOCHROME2) with electronic shutters, a body and noise.

    Layers (r, c in fractions of the rows and columns):

    1. raw background (direct exposure) at ``background``;
    2. the body: an ellipse centred at ``body_center`` with ``body_semi_axes``, edge 1.5 px wide
       (logistic), at ``body_level``, plus ``structure`` x a smooth pattern
       sin(2 pi r / 0.5) sin(2 pi c / 0.4) (anatomy-like gradients, periods of 0.4-0.5 of the image);
    3. additive Gaussian noise N(0, ``noise_sd``^2), drawn from ``numpy.random.default_rng(seed)``;
    4. optionally a Gaussian blur of SD ``blur_sd_px`` pixels (of image and noise: defocus/motion);
    5. clipping: the ``round(clip_fraction x field pixels)`` field pixels nearest to the body centre
       (a disc inside the anatomy) set to 4095, the stored maximum;
    6. rounding to integers and clipping to [0, 4095];
    7. electronic shutters: the first and last ``collimation`` x cols columns set to 4095
       (unexposed, masked areas are painted white), without noise.

    Every input is checked; the result says exactly which pixels are field, body and clipped.
    """
    rows, cols = shape
    if rows < 32 or cols < 32:
        raise ValueError(f"shape must be at least (32, 32), got {shape}")
    if not (math.isfinite(noise_sd) and noise_sd >= 0.0):
        raise ValueError(f"noise_sd must be a finite number >= 0, got {noise_sd!r}")
    if not 0.0 <= clip_fraction < 1.0:
        raise ValueError(f"clip_fraction must be in [0, 1), got {clip_fraction!r}")
    if not 0.0 <= collimation < 0.45:
        raise ValueError(
            f"collimation (share of columns masked on each side) must be in [0, 0.45), got {collimation!r}"
        )
    if not (0.0 <= background < body_level <= STORED_MAX):
        raise ValueError(f"need 0 <= background < body_level <= {STORED_MAX:g}, got {background!r}, {body_level!r}")
    if not (math.isfinite(blur_sd_px) and blur_sd_px >= 0.0):
        raise ValueError(f"blur_sd_px must be a finite number >= 0, got {blur_sd_px!r}")

    rng = np.random.default_rng(seed)
    r = (np.arange(rows, dtype=np.float64) + 0.5)[:, None]
    c = (np.arange(cols, dtype=np.float64) + 0.5)[None, :]
    r0, c0 = body_center[0] * rows, body_center[1] * cols
    a, b = body_semi_axes[0] * rows, body_semi_axes[1] * cols
    radius = np.sqrt(((r - r0) / a) ** 2 + ((c - c0) / b) ** 2)
    edge_px = 1.5
    inside = 1.0 / (1.0 + np.exp((radius - 1.0) * min(a, b) / edge_px))
    pattern = np.sin(2 * np.pi * r / (0.5 * rows)) * np.sin(2 * np.pi * c / (0.4 * cols))
    clean = background + (body_level - background + structure * pattern) * inside
    image = clean + rng.normal(0.0, noise_sd, shape)
    if blur_sd_px > 0.0:
        image = ndimage.gaussian_filter(image, blur_sd_px, mode="reflect")

    n_shutter = int(round(collimation * cols))
    field = np.ones(shape, dtype=bool)
    if n_shutter:
        field[:, :n_shutter] = False
        field[:, cols - n_shutter :] = False

    clipped = np.zeros(shape, dtype=bool)
    n_clip = int(round(clip_fraction * np.count_nonzero(field)))
    if n_clip:
        distance = np.hypot(r - r0, c - c0) + np.zeros(shape)
        distance[~field] = np.inf
        order = np.argsort(distance, axis=None, kind="stable")[:n_clip]
        clipped.flat[order] = True
        image[clipped] = STORED_MAX
    image = np.clip(np.rint(image), 0.0, STORED_MAX)
    image[~field] = STORED_MAX
    return DRPhantom(
        image=image,
        stored_range=STORED_RANGE,
        field=field,
        body=field & (inside > 0.5),
        clipped=clipped,
        noise_sd=float(noise_sd),
        background=float(background),
        body_level=float(body_level),
    )


@dataclass(frozen=True)
class ChestPhantom:
    """A synthetic PA chest radiograph (MONOCHROME2, 12 bits) and what is true about it."""

    image: npt.NDArray[np.uint16]
    body: npt.NDArray[np.bool_]
    """True where the noise-free body weight is above one half."""
    lungs: npt.NDArray[np.bool_]
    """True inside the two lung ellipses (weight above one half)."""
    burned: npt.NDArray[np.bool_]
    """Lung pixels set to 0, the over-exposed end (burned out)."""

    @property
    def background_percent(self) -> float:
        return 100.0 * float(np.count_nonzero(~self.body)) / self.body.size

    @property
    def burned_lung_percent(self) -> float:
        return 100.0 * float(np.count_nonzero(self.burned)) / float(np.count_nonzero(self.lungs))


def chest_phantom(
    *,
    shape: tuple[int, int] = (256, 256),
    seed: int = 0,
    noise_sd: float = 20.0,
    body_semi_axes: tuple[float, float] = (0.45, 0.36),
    burnout: float = 0.0,
    background: float = 0.0,
    collimator: float = 0.0,
) -> ChestPhantom:
    """A seeded PA chest (MONOCHROME2, 12 bits, no shutters) with lungs that may be burned out.

    Layers (a, b = ``body_semi_axes`` in fractions of rows, cols; soft edges 1.5 px wide):

    1. direct exposure outside the body at ``background`` (0: pinned at the over-exposed end, as an
       unattenuated beam saturates the detector or the look-up table);
    2. body: ellipse centred at (0.55, 0.5), level 2600;
    3. two lungs, darker by 1400: ellipses at (0.55 - 0.2 a, 0.5 -/+ 0.45 b), semi-axes (0.6 a, 0.33 b),
       so that chest wall and mediastinum enclose them;
    4. mediastinum and spine, brighter by 500: ellipse at (0.55 - 0.1 a, 0.5), semi-axes (0.8 a, 0.12 b);
    5. Gaussian noise N(0, ``noise_sd``^2) from ``numpy.random.default_rng(seed)``, not in a
       pinned background (``background`` 0 stays exactly 0);
    6. burn-out: the darkest (noise-free) ``burnout`` share of the lung pixels set to 0;
    7. an unmasked collimator shadow: bands ``collimator`` x rows (cols) wide along the four edges
       at 3900 + N(0, ``noise_sd``^2) (scatter only, nearly white; not an electronic shutter);
    8. rounding and clipping to [0, 4095].
    """
    rows, cols = shape
    if rows < 64 or cols < 64:
        raise ValueError(f"shape must be at least (64, 64), got {shape}")
    if not 0.0 <= burnout <= 1.0:
        raise ValueError(f"burnout must be in [0, 1], got {burnout!r}")
    if not 0.0 <= collimator < 0.1:
        raise ValueError(f"collimator must be in [0, 0.1) (band width per edge), got {collimator!r}")
    if not 0.0 <= background < 1200.0:
        raise ValueError(f"background must be in [0, 1200) (darker than the lungs), got {background!r}")
    rng = np.random.default_rng(seed)
    r = (np.arange(rows, dtype=np.float64) + 0.5)[:, None]
    c = (np.arange(cols, dtype=np.float64) + 0.5)[None, :]
    a, b = body_semi_axes[0] * rows, body_semi_axes[1] * cols
    r0, c0 = 0.55 * rows, 0.5 * cols

    def weight(center: tuple[float, float], semi: tuple[float, float]) -> npt.NDArray[np.float64]:
        radius = np.sqrt(((r - center[0]) / semi[0]) ** 2 + ((c - center[1]) / semi[1]) ** 2)
        return 1.0 / (1.0 + np.exp((radius - 1.0) * min(semi) / 1.5))

    body = weight((r0, c0), (a, b))
    lungs = sum(weight((r0 - 0.2 * a, c0 + side * 0.45 * b), (0.6 * a, 0.33 * b)) for side in (-1.0, 1.0))
    clean = background + (2600.0 - background) * body - 1400.0 * lungs * body
    clean = clean + 500.0 * weight((r0 - 0.1 * a, c0), (0.8 * a, 0.12 * b)) * body
    noise = rng.normal(0.0, noise_sd, shape)
    if background == 0.0:
        noise = noise * (body > 0.5)
    image = clean + noise
    lung_mask = (lungs > 0.5) & (body > 0.5)
    burned = np.zeros(shape, dtype=bool)
    n_burn = int(round(burnout * np.count_nonzero(lung_mask)))
    if n_burn:
        order = np.argsort(np.where(lung_mask, clean, np.inf), axis=None, kind="stable")[:n_burn]
        burned.flat[order] = True
        image[burned] = 0.0
    band_r, band_c = int(round(collimator * rows)), int(round(collimator * cols))
    if band_r or band_c:
        band = np.zeros(shape, dtype=bool)
        band[:band_r, :] = band[rows - band_r :, :] = True
        band[:, :band_c] = band[:, cols - band_c :] = True
        image[band] = 3900.0 + rng.normal(0.0, noise_sd, int(np.count_nonzero(band)))
    image = np.clip(np.rint(image), 0.0, STORED_MAX).astype(np.uint16)
    return ChestPhantom(image=image, body=body > 0.5, lungs=lung_mask, burned=burned)
