"""Seeded synthetic MR magnitude volumes with known truth, for the tests of ``qc_pipeline.metrics.mr``.

``mr_phantom`` builds the complex image of each slice from layers: a disc (the object) of signal
S, an optional concentric inner disc of another signal (two tissue classes), an optional linear
shading, optional ghosts along the phase-encode axis (shifted copies of the object, or a uniform
smear), an optional "arm" outside the FOV along the phase axis that folds in (wrap-around); then
complex white Gaussian noise of sigma per channel, and the magnitude is taken, so that the air
is Rayleigh and the object Rician, as in a real single-channel magnitude image. Optional
zero-filled lines (a rectangular phase FOV stored in a square matrix) come last.

``rician_mean`` is the exact mean of a Rician variable, for the expected values of the tests.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy.special import ive


def rician_mean(amplitude: float, sigma: float) -> float:
    """E|A + n| for complex Gaussian noise n of sigma per channel (Rice distribution):
    sigma sqrt(pi/2) L_1/2(-A^2 / 2 sigma^2), L_1/2(x) = e^(x/2) [(1 - x) I0(-x/2) - x I1(-x/2)]."""
    x = -(amplitude**2) / (2.0 * sigma**2)
    z = -x / 2.0
    laguerre = (1.0 - x) * ive(0, z) - x * ive(1, z)  # ive(k, z) = e^-z I_k(z) = e^(x/2) I_k(-x/2)
    return float(sigma * np.sqrt(np.pi / 2.0) * laguerre)


def mr_phantom(
    *,
    shape: tuple[int, int, int] = (4, 128, 128),
    seed: int = 0,
    signal: float = 100.0,
    sigma: float = 2.0,
    radius_frac: float = 0.3,
    center_offset_px: tuple[int, int] = (0, 0),
    inner_signal: float | None = None,
    inner_radius_frac: float = 0.5,
    shading: float = 0.0,
    phase_axis: int = 1,
    ghost_fraction: float = 0.0,
    ghost_shifts_px: Sequence[int] | None = None,
    ghost_smear: float = 0.0,
    wrap_radius_frac: float = 0.0,
    wrap_center_frac: float = 1.08,
    pad_lines: int = 0,
    zero_background: bool = False,
) -> npt.NDArray[np.float32]:
    """A (slice, row, col) float32 magnitude volume; the same object on every slice.

    - object: disc of radius ``radius_frac`` x min(rows, cols) at the centre + ``center_offset_px``,
      signal ``signal``; ``inner_signal``: a concentric disc of radius ``inner_radius_frac`` x that
      radius with that signal;
    - ``shading``: the object is multiplied by 1 + shading x (col - centre col) / radius (a linear
      receive-field ramp left to right);
    - ``phase_axis``: 1 = horizontal (DICOM "ROW"), 0 = vertical ("COL");
    - ``ghost_fraction`` x the object, shifted (circularly) by each of ``ghost_shifts_px`` along the
      phase axis (default: one copy at half the FOV, the N/2 ghost), added to the complex image;
    - ``ghost_smear``: ghost_smear x signal on every pixel outside the object in the lines
      (perpendicular to the phase axis) that the object spans: ghosting spread evenly;
    - ``wrap_radius_frac`` > 0: a disc ("arm") of that radius x min side, of signal ``signal``,
      centred ``wrap_center_frac`` x the phase side from the start of the phase axis (> 1: beyond
      the FOV), on the centre line; what lies outside the FOV folds in at the opposite edge;
    - complex Gaussian noise of ``sigma`` per channel (numpy default_rng(seed)), magnitude taken;
    - ``zero_background``: pixels outside the object set to 0 after the noise (vendor masking);
    - ``pad_lines``: that many lines at both ends of the row axis set to 0 (zero-filled matrix).
    """
    n, h, w = shape
    if phase_axis not in (0, 1):
        raise ValueError(f"phase_axis must be 0 or 1; got {phase_axis}")
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    cy = (h - 1) / 2.0 + center_offset_px[0]
    cx = (w - 1) / 2.0 + center_offset_px[1]
    radius = radius_frac * min(h, w)
    inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    obj = np.where(inside, signal, 0.0)
    if inner_signal is not None:
        inner = (yy - cy) ** 2 + (xx - cx) ** 2 <= (inner_radius_frac * radius) ** 2
        obj = np.where(inner, inner_signal, obj)
    if shading:
        obj = obj * (1.0 + shading * (xx - cx) / radius)
    truth = obj.astype(np.complex128)
    if ghost_fraction:
        n_phase = (h, w)[phase_axis]
        shifts = [n_phase // 2] if ghost_shifts_px is None else list(ghost_shifts_px)
        for s in shifts:
            truth = truth + ghost_fraction * np.roll(obj, s, axis=phase_axis)
    if ghost_smear:
        lines = inside.any(axis=phase_axis)  # lines perpendicular to the phase axis the object spans
        band = (lines[np.newaxis, :] if phase_axis == 0 else lines[:, np.newaxis]) & ~inside
        truth = truth + np.where(band, ghost_smear * signal, 0.0)
    if wrap_radius_frac:
        n_phase = (h, w)[phase_axis]
        pos = (yy, xx)[phase_axis]
        perp, perp_c = (xx, cx) if phase_axis == 0 else (yy, cy)
        centre = wrap_center_frac * n_phase
        r2 = (wrap_radius_frac * min(h, w)) ** 2
        arm = np.zeros_like(yy)
        for fold in (-1, 0, 1):  # the arm at its true place, and folded by one FOV either way
            arm += ((pos + fold * n_phase - centre) ** 2 + (perp - perp_c) ** 2 <= r2) * signal
        truth = truth + arm
    volume = np.empty(shape, dtype=np.float32)
    for z in range(n):
        noise = rng.normal(0.0, sigma, (h, w)) + 1j * rng.normal(0.0, sigma, (h, w))
        volume[z] = np.abs(truth + noise)
    if zero_background:
        volume[:, ~inside] = 0.0
    if pad_lines:
        volume[:, :pad_lines, :] = 0.0
        volume[:, h - pad_lines :, :] = 0.0
    return volume


def motion_ghosts(
    volume: npt.NDArray[np.floating], *, every: int, shift_px: float, phase_axis: int = 1
) -> npt.NDArray[np.float32]:
    """``volume`` with periodic motion ghosts along ``phase_axis`` (1 = horizontal, DICOM "ROW").

    Every ``every``-th phase-encode line of k-space is acquired with the object moved by
    ``shift_px`` along the other (frequency) axis: a linear phase on those lines, as breathing or
    pulsation puts on them; the magnitude is taken. The object repeats along the phase axis at
    multiples of N / ``every``. Deterministic; the k-space model of
    ``qc_pipeline.modeltools.degrade.mr_motion_ghosting`` with its random choices fixed.
    """
    if phase_axis not in (0, 1) or every < 1:
        raise ValueError(f"phase_axis must be 0 or 1 and every >= 1; got {phase_axis}, {every}")
    out = np.empty(np.shape(volume), dtype=np.float32)
    for z, image in enumerate(np.asarray(volume, dtype=np.float64)):
        k = np.fft.fftshift(np.fft.fft2(image))
        n = image.shape[phase_axis]
        freq = np.fft.fftshift(np.fft.fftfreq(image.shape[1 - phase_axis]))
        shifts = np.where(np.arange(n) % every == 0, shift_px, 0.0)
        phase = np.exp(-2j * np.pi * np.outer(shifts, freq))
        k = k * (phase if phase_axis == 0 else phase.T)
        out[z] = np.abs(np.fft.ifft2(np.fft.ifftshift(k)))
    return out
