"""Physically motivated degradations for training and evaluating the artifact classifiers.

Each function takes a clean 2-D image (DR: the ``preprocess.WORKING_SIZE`` working grid; CT and MR:
the image at its simulated acquisition matrix, see :mod:`qc_pipeline.modeltools.dataset`), in the modality's
own units (DR stored values, CT HU, MR magnitude), and a seeded ``numpy`` Generator, and returns the
degraded image. Parameters are drawn from ranges wide enough to include the borderline cases a QC
centre sees; the ranges are module constants so the model cards can quote them. Nothing here reads
files or knows about models.

Models of the physics:

- DR exposure fault: under-exposure is fewer quanta, so more quantum noise (Poisson, approximated
  by Gaussian noise scaled to the image's range) and a compressed grey scale; over-exposure
  raises the signal, burns out thin parts and saturates the detector at its largest value.
- DR saturation: the detector or the processing clips every value above a level to the maximum.
- DR blur/motion: focal-spot/scatter blur (Gaussian) or patient motion during exposure (a line
  kernel at a random angle).
- DR collimation cut-off: the collimator shadow (unexposed, so bright in the MONOCHROME2
  convention, or blacked out by the system's electronic shutter; a soft penumbra) covers one or
  two sides of the field deep enough to cut into the anatomy.
- CT excess noise: dose reduction raises quantum noise, correlated by the reconstruction kernel
  (white Gaussian noise smoothed by a small Gaussian). The label is the outcome, not the dose: the
  noise is scaled so that the image's global noise level, measured as the objective metric
  measures it (:func:`ct_noise_level`), reaches a target above the clean images' range. Clean
  images vary too (dose, patient size, kernel: :func:`add_ct_noise` up to
  ``CT_CLEAN_NOISE_MAX_HU``), so that a grainy but acceptable slice is not read as excess noise.
- CT streaks: photon starvation / beam hardening next to dense objects: alternating bright and
  dark lines through a dense point, decaying with distance. Clean images carry faint ones too
  (``CT_CLEAN_STREAK_HU``): the label is streaks strong enough to matter.
- CT rings: a miscalibrated detector channel gives a circle about the isocentre (image centre),
  drawn through the patient's body.
- CT motion: the object moved during the rotation: edges double (the image blended with a
  shifted copy of itself) with streaks at the edges.
- MR motion ghosting: rigid translation between phase-encode lines puts a phase error on those
  k-space lines; replicas of the object appear along the phase-encode direction.
- MR noise: low SNR as Rician noise (complex Gaussian noise, then the magnitude).
- MR wrap-around: a field of view smaller than the object along phase encoding folds the parts
  outside it onto the opposite side (k-space undersampling = circular folding of the image).
- MR intensity non-uniformity: a smooth multiplicative bias field (coil sensitivity), a
  low-order polynomial in the image coordinates.
- MR k-space spike (herringbone, corduroy): one corrupt k-space sample (an electrical discharge
  or RF interference during readout) adds one spatial frequency to the whole image, stripes at
  an angle (:func:`mr_kspace_spike`). Its training faults come from TorchIO's ``RandomSpike``
  alone; this function makes the held-out test faults, so that the model's spike figures are not
  measured with the simulator it trained on only.
- MR truncation (Gibbs) ringing, not a fault: fewer k-space lines acquired than the matrix shows
  (phase resolution below 100 %, zero-filled interpolation) ring at sharp edges. It is acceptable
  variation that the MR training images are given (:func:`mr_gibbs_ringing`), so that normal
  ringing does not read as motion ghosting.

Which faults a library models instead: for MR motion ghosting, noise and non-uniformity the
training draws half of the faults from TorchIO (:mod:`qc_pipeline.modeltools.torchio_faults`:
k-space ghosting, rigid motion spliced in k-space, Gaussian noise, a polynomial bias field), half
from the functions here, so that the models learn the fault rather than one simulator; the MR
spike's training faults are all TorchIO's (``RandomSpike``, a maintained k-space spike model), and
:func:`mr_kspace_spike` makes only the held-out ones. The others
stay hand-written because no maintained library models them: TorchIO and MONAI have no MR
fold-over (wrap-around), no DR fault (exposure, detector saturation, collimation cut-off: MONAI's
intensity and blur transforms are augmentations, not a collimator shadow with its penumbra) and
no CT fault (no detector-channel rings, photon-starvation streaks or dose noise measured as the
objective metric measures it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from skimage.transform import resize

from qc_pipeline.errors import DegenerateInputError
from qc_pipeline.metrics import ct as ct_metrics

FloatArray = npt.NDArray[np.float32]
Degradation = Callable[[FloatArray, np.random.Generator], FloatArray]

DR_UNDER_NOISE: Final = (0.05, 0.12)
"""Added noise SD as a fraction of the image's 1-99 % range (under-exposure)."""
DR_OVER_GAIN: Final = (1.4, 2.2)
DR_SATURATION_PERCENTILE: Final = (80.0, 96.0)
DR_BLUR_SIGMA_PX: Final = (2.0, 4.5)
DR_MOTION_LENGTH_PX: Final = (7, 17)
DR_CUTOFF_FRACTION: Final = (0.12, 0.30)
CT_NOISE_SD_HU: Final = (40.0, 75.0)
"""Excess noise: the image's global noise level after the degradation, HU (the objective review
limit is 35 HU, thresholds/image_quality_ct.yaml)."""
CT_CLEAN_NOISE_MAX_HU: Final = 30.0
"""Acceptable noise: the highest global noise level that clean training images are given (dose and
patient-size variation), HU; the noisiest accepted real slice here, CT_small, reads 29.3 HU."""
CT_NOISE_KERNEL_PX: Final = (0.5, 1.0)
"""SD (pixels) of the Gaussian that correlates added CT noise (the reconstruction kernel)."""
CT_STREAK_HU: Final = (120.0, 350.0)
CT_CLEAN_STREAK_HU: Final = (10.0, 45.0)
"""Acceptable streaks: the amplitude of the faint streaks that clean training images are given
(photon starvation at the skull base and the shoulders is normal at a low level)."""
CT_RING_HU: Final = (25.0, 90.0)
CT_RING_RADIUS_FRACTION: Final = (0.06, 0.9)
"""Ring radius: the distance of a random point inside the body from the centre, kept within this
fraction of half the image's shorter side."""
CT_MOTION_SHIFT_PX: Final = (3.0, 9.0)
MR_GHOST_SHIFT_PX: Final = (2.0, 8.0)
MR_GHOST_LINES: Final = (0.15, 0.45)
MR_NOISE_SNR: Final = (3.0, 8.0)
MR_WRAP_FOV: Final = (0.62, 0.82)
MR_BIAS_AMPLITUDE: Final = (0.45, 0.8)
MR_GIBBS_KEEP: Final = (0.6, 0.9)
"""Acceptable truncation ringing: the share of the k-space lines kept along the truncated axis
(phase resolution 60-90 %, the rest zero-filled), which rings visibly at sharp edges and blurs little."""
MR_SPIKE_INTENSITY: Final = (0.5, 1.5)
"""K-space spike: its amplitude as a ratio of the largest k-space magnitude (the centre, the sum of
the image), TorchIO's definition of ``RandomSpike``'s intensity and the range of its training
faults (``torchio_faults.cases``)."""
MR_SPIKE_RADIUS: Final = (0.1, 0.8)
"""K-space spike: its distance from the k-space centre as a share of the way to the edge (the
Nyquist frequency) along a random direction; stripes of period 2.5-20 pixels of the acquisition
matrix. Away from the centre: a spike beside it is a slow shading, not a herringbone."""


def _grid(image: FloatArray) -> tuple[FloatArray, FloatArray]:
    rows, cols = np.mgrid[0 : image.shape[0], 0 : image.shape[1]].astype(np.float32)
    return rows, cols


def _range(image: FloatArray) -> tuple[float, float]:
    lo, hi = np.percentile(image, (1.0, 99.0))
    return float(lo), float(hi)


def _f32(a: npt.ArrayLike) -> FloatArray:
    return np.asarray(a, dtype=np.float32)


# --- DR ------------------------------------------------------------------------------------------


def dr_exposure_fault(image: FloatArray, rng: np.random.Generator, *, stored_max: float) -> FloatArray:
    lo, hi = _range(image)
    mean = float(image.mean())
    if rng.random() < 0.5:  # under-exposed: compressed scale, more quantum noise
        squeeze = rng.uniform(0.45, 0.75)
        out = mean + (image - mean) * squeeze
        out = out + rng.normal(0.0, rng.uniform(*DR_UNDER_NOISE) * (hi - lo), image.shape)
        out = out - rng.uniform(0.1, 0.3) * mean
    else:  # over-exposed: raised and stretched, burnt out towards the top
        out = lo + (image - lo) * rng.uniform(*DR_OVER_GAIN)
    return _f32(np.clip(out, 0.0, stored_max))


def dr_saturation(image: FloatArray, rng: np.random.Generator, *, stored_max: float) -> FloatArray:
    level = float(np.percentile(image, rng.uniform(*DR_SATURATION_PERCENTILE)))
    out = image.copy()
    out[image >= level] = stored_max
    return out


def dr_blur_motion(image: FloatArray, rng: np.random.Generator, **_: float) -> FloatArray:
    if rng.random() < 0.5:
        return _f32(ndimage.gaussian_filter(image, rng.uniform(*DR_BLUR_SIGMA_PX)))
    length = int(rng.integers(*DR_MOTION_LENGTH_PX))
    kernel = np.zeros((length, length), dtype=np.float32)
    kernel[length // 2, :] = 1.0
    kernel = ndimage.rotate(kernel, rng.uniform(0, 180), reshape=False, order=1)
    kernel /= kernel.sum()
    return _f32(ndimage.convolve(image, kernel, mode="nearest"))


def dr_collimation_cutoff(image: FloatArray, rng: np.random.Generator, *, stored_max: float) -> FloatArray:
    rows, cols = _grid(image)
    rows, cols = rows / max(image.shape[0] - 1, 1), cols / max(image.shape[1] - 1, 1)
    shadow = np.zeros_like(image)
    sides = rng.choice(4, size=1 + int(rng.random() < 0.4), replace=False)
    for side in sides:
        depth = rng.uniform(*DR_CUTOFF_FRACTION)
        coord = (rows, 1 - rows, cols, 1 - cols)[int(side)]
        shadow = np.maximum(shadow, 1.0 / (1.0 + np.exp((coord - depth) / 0.01)))
    if rng.random() < 0.7:  # unexposed: bright
        level = stored_max * rng.uniform(0.85, 0.98)
    else:  # electronic shutter: black
        level = float(np.percentile(image, 0.5)) * rng.uniform(0.0, 0.5)
    noise = rng.normal(0.0, 0.005 * stored_max, image.shape)
    return _f32(np.clip(image * (1 - shadow) + (level + noise) * shadow, 0.0, stored_max))


# --- CT ------------------------------------------------------------------------------------------


def ct_noise_level(image: FloatArray) -> float | None:
    """Global noise level (HU) of one CT image, as :mod:`qc_pipeline.metrics.ct` measures a series
    of unknown pixel spacing; None where it holds too little soft tissue to measure."""
    try:
        means, sds = ct_metrics.tile_statistics(np.asarray(image)[None], tile_px=ct_metrics.DEFAULT_NOISE_KERNEL_PX)
        return ct_metrics.global_noise_level(means, sds)
    except DegenerateInputError:
        return None


def add_ct_noise(image: FloatArray, rng: np.random.Generator, *, target_hu: float) -> FloatArray:
    """Correlated quantum noise that brings the image's global noise level to ``target_hu``.

    Independent noise adds in variance: the added pattern is scaled to sqrt(target^2 - present^2),
    with the pattern's own level measured the same way (correlation lowers a tile's SD). An image
    already at or above the target is returned as it is; one without soft tissue to measure counts
    as noise-free and gets the whole target.
    """
    present = ct_noise_level(image) or 0.0
    if present >= target_hu:
        return _f32(image)
    pattern = ndimage.gaussian_filter(rng.normal(0.0, 1.0, image.shape), rng.uniform(*CT_NOISE_KERNEL_PX))
    pattern /= max(float(pattern.std()), 1e-9)
    unit = ct_noise_level(pattern + 40.0) or 1.0  # the level of unit-SD noise of this texture
    return _f32(image + pattern * (math.sqrt(target_hu**2 - present**2) / unit))


def ct_excess_noise(image: FloatArray, rng: np.random.Generator) -> FloatArray:
    return add_ct_noise(image, rng, target_hu=float(rng.uniform(*CT_NOISE_SD_HU)))


def _body_points(image: FloatArray, rng: np.random.Generator, n: int) -> npt.NDArray[np.int64]:
    body = np.argwhere(image > -300)
    if len(body) == 0:
        body = np.argwhere(np.ones_like(image, dtype=bool))
    return body[rng.integers(0, len(body), n)]


def add_ct_streaks(image: FloatArray, rng: np.random.Generator, *, hu: tuple[float, float]) -> FloatArray:
    """Streaks of an amplitude drawn from ``hu`` (see the module docstring)."""
    rows, cols = _grid(image)
    out = image.copy()
    for r0, c0 in _body_points(image, rng, int(rng.integers(1, 3))):
        amplitude = rng.uniform(*hu)
        decay = rng.uniform(60.0, 200.0)
        for k, angle in enumerate(rng.uniform(0, np.pi, int(rng.integers(3, 10)))):
            dist_perp = np.abs((rows - r0) * np.cos(angle) - (cols - c0) * np.sin(angle))
            along = np.hypot(rows - r0, cols - c0)
            sign = 1.0 if k % 2 == 0 else -1.0
            out += sign * amplitude * np.exp(-((dist_perp / rng.uniform(0.6, 1.4)) ** 2)) * np.exp(-along / decay)
    return _f32(out)


def ct_streaks(image: FloatArray, rng: np.random.Generator) -> FloatArray:
    return add_ct_streaks(image, rng, hu=CT_STREAK_HU)


def ct_rings(image: FloatArray, rng: np.random.Generator) -> FloatArray:
    centre = (np.array(image.shape, dtype=np.float32) - 1) / 2 + rng.uniform(-2, 2, 2)
    rows, cols = _grid(image)
    radius = np.hypot(rows - centre[0], cols - centre[1])
    half = min(image.shape) / 2
    # Through the patient (where a ring matters and can be seen), inside the reconstructed field.
    through_body = np.hypot(*(_body_points(image, rng, 4) - centre).T)
    out = image.copy()
    for r in through_body[: int(rng.integers(1, 5))]:
        r = float(np.clip(r, CT_RING_RADIUS_FRACTION[0] * half, CT_RING_RADIUS_FRACTION[1] * half))
        width = rng.uniform(0.7, 1.6)
        out += rng.choice([-1.0, 1.0]) * rng.uniform(*CT_RING_HU) * np.exp(-(((radius - r) / width) ** 2))
    return _f32(out)


def ct_motion(image: FloatArray, rng: np.random.Generator) -> FloatArray:
    angle = rng.uniform(0, 2 * np.pi)
    shift = rng.uniform(*CT_MOTION_SHIFT_PX)
    moved = ndimage.shift(image, (shift * np.sin(angle), shift * np.cos(angle)), order=1, mode="nearest")
    weight = rng.uniform(0.3, 0.5)
    blended = (1 - weight) * image + weight * moved
    edges = ndimage.gaussian_gradient_magnitude(image, 1.0)
    edges = edges / max(float(edges.max()), 1e-6)
    return _f32(blended + rng.uniform(40, 120) * edges * np.sign(rng.normal(size=image.shape)))


# --- MR ------------------------------------------------------------------------------------------


def _signal_level(image: FloatArray) -> float:
    return float(np.percentile(image, 95.0))


def mr_motion_ghosting(image: FloatArray, rng: np.random.Generator) -> FloatArray:
    axis = int(rng.integers(0, 2))  # the phase-encode axis
    k = np.fft.fftshift(np.fft.fft2(image))
    n = image.shape[axis]
    freq = np.fft.fftshift(np.fft.fftfreq(image.shape[1 - axis]))
    lines = rng.random(n) < rng.uniform(*MR_GHOST_LINES)
    if rng.random() < 0.5:  # periodic motion (breathing, pulsation): every m-th line
        lines = (np.arange(n) % int(rng.integers(3, 9))) == 0
    shifts = np.where(lines, rng.uniform(*MR_GHOST_SHIFT_PX) * rng.choice([-1, 1], n), 0.0)
    phase = np.exp(-2j * np.pi * np.outer(shifts, freq))
    k = k * (phase if axis == 0 else phase.T)
    return _f32(np.abs(np.fft.ifft2(np.fft.ifftshift(k))))


def mr_noise(image: FloatArray, rng: np.random.Generator) -> FloatArray:
    sigma = _signal_level(image) / rng.uniform(*MR_NOISE_SNR)
    real = image + rng.normal(0.0, sigma, image.shape)
    imag = rng.normal(0.0, sigma, image.shape)
    return _f32(np.hypot(real, imag))


def mr_wrap_around(image: FloatArray, rng: np.random.Generator) -> FloatArray:
    axis = int(rng.integers(0, 2))
    rows_any = np.any(image > 0.1 * _signal_level(image), axis=1 - axis)
    extent = np.flatnonzero(rows_any)
    span = (extent[-1] - extent[0] + 1) if len(extent) else image.shape[axis]
    fov = max(16, int(round(span * rng.uniform(*MR_WRAP_FOV))))
    start = (extent[0] + extent[-1]) // 2 - fov // 2 if len(extent) else (image.shape[axis] - fov) // 2
    moved = np.moveaxis(image, axis, 0)
    folded = np.zeros((fov, moved.shape[1]), dtype=np.float64)
    for index in range(moved.shape[0]):  # circular folding = k-space undersampling
        folded[(index - start) % fov] += moved[index]
    folded = np.moveaxis(folded, 0, axis)
    # The scanner keeps its matrix over the smaller field of view: the longer side keeps its pixel count.
    scale = max(image.shape) / max(folded.shape)
    if scale > 1:
        shape = (round(folded.shape[0] * scale), round(folded.shape[1] * scale))
        folded = resize(folded, shape, order=1, preserve_range=True)
    return _f32(folded)


def mr_nonuniformity(image: FloatArray, rng: np.random.Generator) -> FloatArray:
    y, x = np.mgrid[-1 : 1 : image.shape[0] * 1j, -1 : 1 : image.shape[1] * 1j]
    terms = np.stack([x, y, x * y, x**2 - 0.5, y**2 - 0.5])
    coeffs = rng.normal(0.0, 1.0, 5)
    field = np.tensordot(coeffs, terms, axes=1)
    field = field / max(float(np.abs(field).max()), 1e-6)
    return _f32(image * np.exp(rng.uniform(*MR_BIAS_AMPLITUDE) * field))


def mr_gibbs_ringing(image: FloatArray, rng: np.random.Generator) -> FloatArray:
    """Truncation (Gibbs) ringing: the image's k-space kept only over its central ``MR_GIBBS_KEEP``
    share along one axis or both, zero-filled to the same matrix, then the magnitude. Truncation with
    no apodising filter is the exact cause of the ringing (Gibbs 1899; Haacke et al. 1999,
    Magnetic Resonance Imaging: Physical Principles and Sequence Design, ch. 12). MONAI's
    ``GibbsNoise`` does the same truncation (on both axes); MONAI is no dependency of ours."""
    keep = rng.uniform(*MR_GIBBS_KEEP)
    axes = ((0,), (1,), (0, 1))[int(rng.integers(0, 3))]
    mask = np.ones(image.shape, dtype=bool)
    for axis in axes:
        n = image.shape[axis]
        half = max(1, round(n * keep / 2))
        kept = np.zeros(n, dtype=bool)
        kept[max(0, n // 2 - half) : n // 2 + half] = True
        mask &= kept[:, None] if axis == 0 else kept[None, :]
    k = np.fft.fftshift(np.fft.fft2(image))
    return _f32(np.abs(np.fft.ifft2(np.fft.ifftshift(k * mask))))


def mr_kspace_spike(image: FloatArray, rng: np.random.Generator) -> FloatArray:
    """One k-space spike (herringbone artifact): a single high-amplitude point added to the image's
    2-D Fourier transform away from its centre, the inverse transform, then the magnitude.

    With K = F(I) (the DFT of the M x N image I, centred), the spike at (u0, v0) of amplitude
    a * |K(0, 0)| and phase phi gives

        I'(r, c) = | I(r, c) + a * mean(I) * exp(i * (phi + 2 pi (u0 r / M + v0 c / N))) |

    (the DFT is linear and the inverse transform of one point is one plane wave; |K(0, 0)| = sum(I)
    for a non-negative image, and the inverse DFT divides by M N): a plane wave of amplitude
    a * mean(I) over the whole image, stripes perpendicular to (u0, v0) where it meets the object,
    an even level a * mean(I) in the air. a is drawn from
    ``MR_SPIKE_INTENSITY`` (TorchIO's ratio to the spectrum's maximum), the distance of (u0, v0)
    from the centre from ``MR_SPIKE_RADIUS``, phi uniformly. One spike, not a conjugate pair: a
    corrupt sample is one point, as TorchIO's ``RandomSpike`` also models it; unlike TorchIO (the
    real part) the magnitude is kept, as a scanner's magnitude image keeps it."""
    rows, cols = image.shape
    theta = rng.uniform(0.0, 2.0 * np.pi)
    radius = rng.uniform(*MR_SPIKE_RADIUS)
    u0 = int(round(radius * (rows // 2) * np.sin(theta)))
    v0 = int(round(radius * (cols // 2) * np.cos(theta)))
    if u0 == 0 and v0 == 0:  # a tiny matrix: one line off the centre at least
        v0 = 1
    k = np.fft.fftshift(np.fft.fft2(image))
    amplitude = rng.uniform(*MR_SPIKE_INTENSITY) * float(np.abs(k).max())
    k[rows // 2 + u0, cols // 2 + v0] += amplitude * np.exp(1j * rng.uniform(0.0, 2.0 * np.pi))
    return _f32(np.abs(np.fft.ifft2(np.fft.ifftshift(k))))


DEGRADATIONS: Final[dict[str, dict[str, Degradation]]] = {
    "DR": {},  # DR functions need the stored maximum; see training.dr_degradations
    "CT": {"excess_noise": ct_excess_noise, "streaks": ct_streaks, "rings": ct_rings, "motion": ct_motion},
    "MR": {
        "motion_ghosting": mr_motion_ghosting,
        "noise": mr_noise,
        "wrap_around": mr_wrap_around,
        "nonuniformity": mr_nonuniformity,
        "spike": mr_kspace_spike,
    },
}
DR_DEGRADATIONS: Final = {
    "exposure_fault": dr_exposure_fault,
    "saturation": dr_saturation,
    "blur_motion": dr_blur_motion,
    "collimation_cutoff": dr_collimation_cutoff,
}
