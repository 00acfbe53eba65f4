"""Objective image-quality metrics of one MR magnitude series.

Pure functions: numbers and arrays in, floats out; no I/O, no thresholds, no rounding. Arrays are
(slice, row, col). The limits live in ``thresholds/image_quality_mr.yaml``.

:func:`measure` computes every metric of :data:`METRICS` from one decoded series. It never raises
for bad image content: a metric that cannot be computed gets ``value=None`` and a ``detail`` that
says why.

How the image is split into object and air (:func:`segment`)
------------------------------------------------------------
1. *Padded lines.* Lines at the edge of the matrix that hold (almost) nothing but the minimum
   value are zero-filled padding (a rectangular phase FOV stored in a square matrix, e.g.
   pydicom-data ``MR2_UNCI``): they are neither object nor air and are left out of everything.
2. *Grid.* Masks are made on every ``step``-th pixel of the acquired region (``step`` brings the
   larger side to at most 128 px), smoothed with a 3x3 mean (noise / 3) for thresholding only.
   The statistics use the raw values of that grid: a strided subsample keeps the distribution of
   white noise, so means, SDs and medians estimate the same quantities with fewer pixels.
3. *Object* ("tissue"), per slice: pixels above the slice's Otsu threshold (on the smoothed
   grid, and above a quarter of it on the raw grid), opened 3x3 so that isolated noise pixels go,
   holes filled in 2-D. Only Otsu: a lower, hysteresis threshold would also take in ghosts that
   touch the object, and then hide them from the ghosting ROIs. Tissue darker than the Otsu
   threshold at the object's edge (muscle on fat-bright images) stays outside: the air check
   below refuses such a "background". A series holds an object only if its Otsu split is
   effective (two classes, not noise split in two), and a slice only if its brightest smoothed
   pixel exceeds the Otsu threshold of the whole series (end slices of pure noise have none).
4. *Air* ("background"): outside the object dilated by ``margin`` px (3 % of the grid side,
   at least 2): edges, partial volume, Gibbs rings and chemical shift stay out.

Air check. Noise metrics need real air around the object. A slice is *usable* for SNR, CNR,
FBER, ghosting and wrap when it has an object, the object touches at most
:data:`MAX_EDGE_CONTACT` of the acquired FOV border, and at least :data:`MIN_BACKGROUND_PIXELS`
air pixels remain. The SNR air is the air of the usable slices without the whole lines that the
dilated object spans along the phase-encode direction (its ghosts fall there); it must look like
magnitude noise: mean/SD within :data:`RAYLEIGH_RATIO_RANGE` (Rayleigh: 1.913). What a metric
is when the check fails (``Measurement.unmeasured``):

- no usable slice (the object touches the FOV border everywhere: a tight crop such as pydicom
  ``MR_small``, or anatomy filling the FOV): SNR, CNR, FBER, ghosting and wrap are *not
  applicable*;
- air whose mean/SD is above the range (zero-filled or masked air, multi-coil sum-of-squares
  noise): SNR, CNR and FBER are *not applicable* (background SNR is not defined there); ghosting
  and wrap are measured;
- air whose mean/SD is below the range (ghosts or other signal in the air, or tissue such as the
  gray matter around pydicom-data ``emri_small``): SNR, CNR, FBER and wrap are *unmeasurable*: the
  reason may be the defect itself. Ghosting is measured all the same: the ACR ratio compares the
  phase-encode band beside the object with the frequency side, relative to the object, and needs
  no noise-like air;
- no object found, a blank or tiny image, ghosting ROIs that cannot be placed on any slice, PIU
  windows that do not fit: that metric is *unmeasurable*.

Phase-encode direction: DICOM InPlanePhaseEncodingDirection (0018,1312) "ROW" means the phase is
encoded along a row, i.e. horizontally (along the column index, axis -1): ghosts and wrap repeat
the object to its left and right. "COL" means vertically (along the row index, axis -2). Unknown:
ghosting is reported for both directions and the larger taken (|ACR ratio|), the SNR air is taken
away from the brighter side, wrap is the larger of both directions; ``detail`` says so. When the
header's direction leaves ghost-laden air for the noise estimate but the other does not, the other
is used and ``detail`` says that too (a header that names the wrong axis must not hide ghosts).

Metrics (ids in :data:`METRICS`): ``mr.snr`` (:func:`snr_background`), ``mr.cnr``
(:func:`cnr_otsu`), ``mr.ghosting_percent`` (:func:`ghosting_ratio_percent` on
:func:`ghost_rois`), ``mr.piu_percent`` (:func:`percent_integral_uniformity`), ``mr.efc``
(:func:`efc`), ``mr.fber`` (:func:`fber`), ``mr.fov_coverage_percent``, ``mr.edge_contact_percent``,
``mr.wrap_percent`` (:func:`wrap_percent`), ``mr.inu_range_percent`` (intensity non-uniformity from
an N4 bias-field fit on the grid and object mask: :mod:`qc_pipeline.metrics.bias_field`).

PIU of a series (``mr.piu_percent``) is the median over slices of a per-slice PIU in a central
disc, not the ACR slice PIU of the phantom's uniformity slice: see :func:`_piu` for the definition
and why the ACR limits do not apply to it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

from qc_pipeline.domain import Measurement, Unmeasured
from qc_pipeline.errors import DegenerateInputError
from qc_pipeline.metrics.bias_field import inu_range_percent
from qc_pipeline.metrics.registry import units

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.floating]
BoolArray = npt.NDArray[np.bool_]

RAYLEIGH_SD_FACTOR: Final = math.sqrt(2 - math.pi / 2)
"""sd(Rayleigh) / sigma = 0.6551: the magnitude of pure complex Gaussian noise (Dietrich 2007)."""
RAYLEIGH_MEAN_FACTOR: Final = math.sqrt(math.pi / 2)
"""mean(Rayleigh) / sigma = 1.2533."""
RAYLEIGH_MEAN_SD_RATIO: Final = RAYLEIGH_MEAN_FACTOR / RAYLEIGH_SD_FACTOR
"""mean/sd of Rayleigh noise = 1.913, whatever sigma."""

METRICS: Final[Mapping[str, str]] = units("MR")
"""Every metric :func:`measure` reports -> its unit ("1": a dimensionless ratio). Registered in :mod:`qc_pipeline.metrics.registry`."""

NOT_MODEL_FEATURES: Final = frozenset({"mr.inu_range_percent"})
"""Metrics the acceptability model does not read: it was trained before the N4 non-uniformity was
measured (a retrained model may add it; its manifest then names it)."""

GRID_MAX_SIDE: Final = 128
"""Masks are made on a grid whose larger side is at most this many pixels."""
MARGIN_FRACTION: Final = 0.03
"""Air starts this fraction of the grid side (at least 2 px) away from the object."""
PAD_LEVEL_FRACTION: Final = 0.005
"""A pixel is padding-like when below min + this x (p99 - min) of the series."""
PAD_LINE_SHARE: Final = 0.95
"""An edge line is padding when at least this share of its pixels (all slices) is padding-like."""
RAW_FLOOR_OF_OTSU: Final = 0.25
"""An object pixel's own value must also exceed this fraction of the Otsu threshold: the 3x3 mean
alone would take in air pixels at convex corners of the object."""
MIN_OTSU_EFFECTIVENESS: Final = 0.70
"""A series holds an object only if its Otsu split is this effective (:func:`otsu_effectiveness`):
pure noise reads 0.64-0.66 (3x3-smoothed Rayleigh or Gaussian); a disc in air 0.89-0.91, even at
SNR 3; the real images 0.73 (emri_small, a brain crop without air), 0.80 (MR2_UNCI), 0.81
(MR_small)."""
MAX_EDGE_CONTACT: Final = 0.20
"""A slice whose object covers more than this share of the FOV border has no usable air around it
(pydicom MR_small, a crop: 30 %; heads and phantoms with air around them: 0 %)."""
MIN_BACKGROUND_PIXELS: Final = 64
"""Fewest air pixels (grid) for a slice to count for the noise metrics."""
MIN_ROI_PIXELS: Final = 16
"""Fewest pixels (grid) of one ghosting ROI."""
RAYLEIGH_RATIO_RANGE: Final = (1.6, 2.6)
"""Accepted mean/sd of the pooled air (Rayleigh: 1.913, whatever sigma). Measured: seeded Rician
phantoms 1.90-1.92; the integer-rounded demo head 1.91; the air of pydicom-data MR2_UNCI 1.74.
Refused: a background that is gray matter and CSF (emri_small: 1.36-1.49), air holding ghosts
(1.19), tissue (MR_small: 2.3-2.7). Two-coil sum-of-squares noise (chi, 4 dof) would read 2.75:
the Rayleigh correction does not hold for it (Dietrich 2007) and it is refused too."""
REFERENCE_SIGNAL_PERCENT: Final = 3.0
"""When the air is not noise-like and the frequency-side ROIs are brighter than the phase-side ones
by more than this share (%) of the object signal, the reference of the ghosting ratio holds
signal (tissue, or ghosts along the other axis), not air: ghosting is unmeasurable there. Clean
phantoms read |ratio| < 0.1 %; MR2_UNCI reads -5.4 % with noise-like air (kept: its air passed);
GE EPI fMRI series (dcm_qa_ge) -35 to -67 % with air that is not noise-like."""
WRAP_BAND_FRACTION: Final = 0.05
"""The wrap bands are this share of the lines at each phase-encode end (at least 1)."""
PIU_BOX_MM: Final = 10.0
"""Side of the ACR local ROI: 1 cm^2."""
ACR_LARGE_ROI_FRACTION: Final = 200.0 / 283.5
"""ACR large ROI (200 cm^2) over the area of the phantom's 190 mm section (283.5 cm^2)."""

_STRUCT_2D: Final = np.zeros((3, 3, 3), dtype=bool)
_STRUCT_2D[1] = [[0, 1, 0], [1, 1, 1], [0, 1, 0]]  # 4-connectivity in-plane, none across slices


# --------------------------------------------------------------------------------------------
# Metric functions
# --------------------------------------------------------------------------------------------


def _values(name: str, array: npt.ArrayLike, *, min_size: int = 2) -> npt.NDArray[np.float64]:
    values = np.asarray(array, dtype=np.float64).ravel()
    if values.size < min_size:
        raise DegenerateInputError(f"{name} has {values.size} values; at least {min_size} are needed")
    if not np.all(np.isfinite(values)):
        raise DegenerateInputError(f"{name} holds {int(np.sum(~np.isfinite(values)))} non-finite values")
    return values


def snr_background(signal: npt.ArrayLike, background: npt.ArrayLike) -> float:
    """SNR of a magnitude MR image, noise estimated from the air background.

    SNR = mean(signal) * sqrt(2 - pi/2) / sd(background)

    In air the magnitude of complex Gaussian noise (sigma per channel) is Rayleigh distributed,
    with sd = sigma * sqrt(2 - pi/2); the factor turns the air SD into sigma. Single-channel
    (or adaptively combined) data; sum-of-squares multi-coil air is not Rayleigh.
    Reference: Dietrich et al. 2007, JMRI 26:375 (single image, noise from the background).
    """
    sig = _values("signal", signal, min_size=1)
    bg = _values("background", background)
    noise_sd = float(np.std(bg, ddof=1))
    if noise_sd == 0.0:
        raise DegenerateInputError("background sd is 0: zero-filled or masked air?")
    return float(np.mean(sig)) * RAYLEIGH_SD_FACTOR / noise_sd


def otsu_threshold(values: npt.ArrayLike, *, bins: int = 256) -> float:
    """Otsu's threshold of ``values``: the bin centre maximising the between-class variance.

    Same histogram (``bins`` bins over [min, max]) and tie rule as ``skimage.filters.threshold_otsu``;
    the classes are ``values <= t`` and ``values > t``.
    Reference: Otsu 1979, IEEE Trans SMC 9:62.
    """
    v = _values("values", values)
    return float(_otsu_rows(v[np.newaxis, :], bins=bins)[0])


def _otsu_rows(rows: npt.NDArray[np.floating], *, bins: int = 256) -> npt.NDArray[np.float64]:
    """Otsu threshold of each row of a 2-D array (rows of equal length); NaN for a constant row."""
    n_rows = rows.shape[0]
    lo = rows.min(axis=1).astype(np.float64)
    hi = rows.max(axis=1).astype(np.float64)
    width = hi - lo
    const = width <= 0
    safe = np.where(const, 1.0, width)
    idx = ((rows - lo[:, None]) * (bins / safe)[:, None]).astype(np.int64)
    np.clip(idx, 0, bins - 1, out=idx)
    idx += (np.arange(n_rows, dtype=np.int64) * bins)[:, None]
    hist = np.bincount(idx.ravel(), minlength=n_rows * bins).reshape(n_rows, bins).astype(np.float64)
    centers = lo[:, None] + (np.arange(bins) + 0.5)[None, :] * (safe / bins)[:, None]
    w1 = np.cumsum(hist, axis=1)
    w2 = np.cumsum(hist[:, ::-1], axis=1)[:, ::-1]
    m1 = np.cumsum(hist * centers, axis=1) / np.where(w1 > 0, w1, 1.0)
    m2 = (np.cumsum((hist * centers)[:, ::-1], axis=1) / np.where(w2[:, ::-1] > 0, w2[:, ::-1], 1.0))[:, ::-1]
    var12 = w1[:, :-1] * w2[:, 1:] * (m1[:, :-1] - m2[:, 1:]) ** 2
    best = np.argmax(var12, axis=1)
    thresholds = centers[np.arange(n_rows), best]
    thresholds[const] = np.nan
    return thresholds


def otsu_effectiveness(values: npt.ArrayLike, threshold: float) -> float:
    """Otsu's effectiveness eta = between-class variance / total variance of a split at
    ``threshold`` (classes <= t and > t): near 1 for two well-separated classes; 0.64 for Gaussian
    noise, 0.66 for Rayleigh noise (one class, split anyway). Reference: Otsu 1979, eq. (12)."""
    v = _values("values", values)
    total = float(np.var(v))
    if total == 0.0:
        raise DegenerateInputError("values are constant: no split to rate")
    high = v > threshold
    p = float(high.mean())
    if p in (0.0, 1.0):
        return 0.0
    return p * (1 - p) * (float(v[high].mean()) - float(v[~high].mean())) ** 2 / total


def cnr_otsu(foreground: npt.ArrayLike, background: npt.ArrayLike) -> float:
    """Contrast-to-noise ratio between the two tissue classes of the object.

    The object's values are split in two classes by Otsu's threshold (dark and bright tissue);
    CNR = (mean(bright) - mean(dark)) / sigma, with sigma = sd(background) / sqrt(2 - pi/2) the
    Rician-corrected noise of the air, as in :func:`snr_background`.
    References: MRIQC ``cnr`` (|mu_WM - mu_GM| / sigma_air; Magnotta et al. 2006) with the tissue
    classes from Otsu 1979 instead of a brain segmentation; Dietrich et al. 2007 for sigma.
    """
    fg = _values("foreground", foreground)
    bg = _values("background", background)
    if np.ptp(fg) == 0:
        raise DegenerateInputError("foreground is constant: no two tissue classes to contrast")
    noise_sd = float(np.std(bg, ddof=1))
    if noise_sd == 0.0:
        raise DegenerateInputError("background sd is 0: zero-filled or masked air?")
    t = otsu_threshold(fg)
    bright = fg[fg > t]
    dark = fg[fg <= t]
    return float(np.mean(bright) - np.mean(dark)) * RAYLEIGH_SD_FACTOR / noise_sd


def ghosting_ratio_percent(
    phase_rois: Sequence[npt.ArrayLike], frequency_rois: Sequence[npt.ArrayLike], signal: npt.ArrayLike
) -> float:
    """ACR percent-signal ghosting, signed along the phase-encode direction.

    ghosting = 100 * (mean_i mean(phase ROI i) - mean_j mean(frequency ROI j)) / mean(signal)

    With two ROIs on each side this is the ACR ratio ((top + bottom) - (left + right)) /
    (2 * large ROI), phase pair first, without the absolute value: positive when the air along
    the phase direction is brighter than along the frequency direction (ghosts). The noise floor,
    equal in both pairs, cancels (exactly only without ghosts: under a ghost the air is Rician).
    Reference: ACR Large Phantom Test Guidance (MRI Accreditation Program), test 6
    "percent-signal ghosting"; limit <= 2.5 % (0.025) for the phantom.
    """
    if len(phase_rois) == 0 or len(frequency_rois) == 0:
        raise DegenerateInputError(
            f"ghosting needs air on the phase and the frequency side; got {len(phase_rois)} phase and "
            f"{len(frequency_rois)} frequency ROIs"
        )
    sig = float(np.mean(_values("signal", signal, min_size=1)))
    if sig <= 0.0:
        raise DegenerateInputError(f"mean signal is {sig}: ghosting is relative to a positive signal")
    phase = np.mean([np.mean(_values(f"phase ROI {i}", r, min_size=1)) for i, r in enumerate(phase_rois)])
    freq = np.mean([np.mean(_values(f"frequency ROI {i}", r, min_size=1)) for i, r in enumerate(frequency_rois)])
    return float(100.0 * (phase - freq) / sig)


def percent_integral_uniformity(image: npt.ArrayLike, roi: npt.ArrayLike, *, box_px: tuple[int, int]) -> float:
    """ACR percent integral uniformity of ``image`` (2-D) inside the large ROI ``roi``.

    PIU = 100 * (1 - (max - min) / (max + min)), max and min over the means of every
    ``box_px`` (rows, cols) window lying wholly inside ``roi`` (ACR: ~1 cm^2 windows inside a
    ~200 cm^2 central ROI). Reference: ACR Large Phantom Test Guidance, test 5 "image intensity
    uniformity"; PIU >= 87.5 % (<= 1.5 T), >= 82 % (3 T). On patient images anatomy lowers it:
    there it is an indicator only.
    """
    img = np.asarray(image, dtype=np.float64)
    mask = np.asarray(roi, dtype=bool)
    if img.ndim != 2 or mask.shape != img.shape:
        raise DegenerateInputError(f"image and roi must be 2-D of one shape; got {img.shape} and {mask.shape}")
    br, bc = (int(box_px[0]), int(box_px[1]))
    if br < 1 or bc < 1:
        raise DegenerateInputError(f"box_px must be >= 1 px on each side; got {box_px}")
    inside = ndi.minimum_filter(mask.astype(np.uint8), size=(br, bc), mode="constant", cval=0).astype(bool)
    if not inside.any():
        raise DegenerateInputError(
            f"no {br}x{bc} px window fits inside the ROI ({int(mask.sum())} px): object too small"
        )
    local = ndi.uniform_filter(img, size=(br, bc), mode="constant")[inside]
    hi, lo = float(local.max()), float(local.min())
    if hi + lo <= 0.0:
        raise DegenerateInputError(f"local means span [{lo}, {hi}]: PIU needs a positive signal")
    return 100.0 * (1.0 - (hi - lo) / (hi + lo))


def efc(volume: npt.ArrayLike) -> float:
    """Entropy focus criterion of a magnitude image or volume (all its voxels).

    E = -sum_j (x_j / B) ln(x_j / B),  B = sqrt(sum_j x_j^2)  (0 ln 0 = 0);
    EFC = E / E_max,  E_max = -N (1/sqrt(N)) ln(1/sqrt(N)) = sqrt(N) ln sqrt(N)  (all voxels equal).
    0 when all energy is in one voxel, 1 for a uniform image; higher = more spread (blur,
    ghosting). Scale-free. References: Atkinson et al. 1997, IEEE TMI 16:903; MRIQC
    ``mriqc.qc.anatomical.efc`` (which adds 1e-16 inside the log; MRQy 0.0.3 ``QCF.efc`` has
    1e16 there, a typo that changes the value, and divides by |E_max|, flipping the sign).
    """
    x = np.asarray(volume)
    if x.size < 2:
        raise DegenerateInputError(f"EFC needs at least 2 voxels; got {x.size}")
    flat = x.ravel() if x.dtype == np.float32 else x.astype(np.float64).ravel()
    if not np.all(np.isfinite(flat)):
        raise DegenerateInputError(f"EFC: {int(np.sum(~np.isfinite(flat)))} non-finite voxels")
    low = float(flat.min())
    if low < 0.0:
        raise DegenerateInputError(f"EFC needs a magnitude image (>= 0); found a minimum of {low}")
    energy = math.sqrt(float(np.einsum("i,i->", flat, flat, dtype=np.float64)))  # no BLAS threads
    if energy == 0.0:
        raise DegenerateInputError("EFC: the image is all zero")
    n = flat.size
    e_max = math.sqrt(n) * math.log(math.sqrt(n))
    p = flat / flat.dtype.type(energy)
    logp = np.zeros_like(p)
    np.log(p, out=logp, where=p > 0)  # 0 ln 0 = 0
    return float(-np.einsum("i,i->", p, logp, dtype=np.float64) / e_max)


def fber(foreground: npt.ArrayLike, background: npt.ArrayLike) -> float:
    """Foreground-background energy ratio.

    FBER = median(|foreground|^2) / median(|background|^2). Scale-free; higher is better.
    References: Shehzad et al. 2015 (QAP); MRIQC ``mriqc.qc.anatomical.fber`` (which returns -1 when
    the air median is below 1e-3; here a zero air median raises and any scale is accepted).
    """
    fg = _values("foreground", foreground, min_size=1)
    bg = _values("background", background, min_size=1)
    bg_mu = float(np.median(np.abs(bg) ** 2))
    if bg_mu == 0.0:
        raise DegenerateInputError("median background energy is 0: zero-filled or masked air?")
    return float(np.median(np.abs(fg) ** 2)) / bg_mu


def fov_coverage_percent(mask: npt.ArrayLike) -> float:
    """Share of the field of view the object occupies: 100 * object pixels / FOV pixels."""
    m = np.asarray(mask, dtype=bool)
    if m.size == 0:
        raise DegenerateInputError("empty mask")
    return 100.0 * float(m.mean())


def edge_contact_percent(mask: npt.ArrayLike) -> float:
    """Share of the FOV border the object touches: 100 * object pixels on the outermost lines /
    border pixels, pooled over the slices of a (slice, row, col) or (row, col) mask."""
    m = np.asarray(mask, dtype=bool)
    if m.ndim == 2:
        m = m[np.newaxis]
    if m.ndim != 3 or m.shape[1] < 2 or m.shape[2] < 2:
        raise DegenerateInputError(f"mask must be (slice,row,col) with >= 2 rows and cols; got {m.shape}")
    on = m[:, 0, :].sum() + m[:, -1, :].sum() + m[:, 1:-1, 0].sum() + m[:, 1:-1, -1].sum()
    total = m.shape[0] * (2 * m.shape[2] + 2 * (m.shape[1] - 2))
    return 100.0 * float(on) / float(total)


def wrap_percent(mask: npt.ArrayLike, *, phase_axis: int, band_px: int) -> float:
    """Wrap-around indicator of one slice's object mask (2-D).

    Share (%) of the two phase-encode edge bands (``band_px`` lines at each end along
    ``phase_axis``: 0 = vertical, DICOM "COL"; 1 = horizontal, "ROW") covered by object pieces
    that touch a phase-encode edge and are not the largest piece of the slice: anatomy outside
    the FOV along the phase direction folds in at the opposite edge as a separate piece.
    The main object touching an edge does not count (anatomy longer than the FOV, cut but not
    folded). A cut limb at the phase edge counts too: an indicator, to be looked at.
    Reference: the aliasing (wrap-around) artifact, e.g. Zhuo & Gullapalli 2006, RadioGraphics
    26:275 (AAPM/RSNA physics tutorial, MR artifacts).
    """
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2:
        raise DegenerateInputError(f"mask must be 2-D (row, col); got shape {m.shape}")
    if phase_axis not in (0, 1):
        raise DegenerateInputError(f"phase_axis must be 0 (COL) or 1 (ROW); got {phase_axis!r}")
    n_phase = m.shape[phase_axis]
    if band_px < 1 or 2 * band_px > n_phase:
        raise DegenerateInputError(f"band_px must be in [1, {n_phase // 2}]; got {band_px}")
    mm = m if phase_axis == 0 else m.T  # phase along rows of mm
    labels, n = ndi.label(mm)
    if n < 2:
        return 0.0
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    sizes[0] = 0
    largest = int(np.argmax(sizes))
    edge_labels = np.union1d(labels[0], labels[-1])
    edge_labels = edge_labels[(edge_labels != 0) & (edge_labels != largest)]
    if edge_labels.size == 0:
        return 0.0
    bands = np.concatenate([labels[:band_px], labels[-band_px:]])
    return 100.0 * float(np.isin(bands, edge_labels).mean())


# --------------------------------------------------------------------------------------------
# Masks
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MRMasks:
    """Object and air of a series on the metric grid (see the module docstring)."""

    rows: slice
    """Acquired rows of the full matrix (padded lines left out)."""
    cols: slice
    """Acquired columns of the full matrix."""
    step: int
    """The grid is every ``step``-th row and column of the acquired region."""
    image: npt.NDArray[np.float32]
    """(slice, row, col) raw values on the grid."""
    tissue: BoolArray
    """Object, holes filled, per slice."""
    background: BoolArray
    """Air: outside the object dilated by ``margin`` px."""
    has_object: BoolArray
    """(slice,) whether the slice holds an object."""
    margin: int
    core_threshold: npt.NDArray[np.float64]
    """(slice,) Otsu threshold of each slice (NaN for a constant slice)."""


def _grid_pixel_mm(spacing_mm: tuple[float | None, float | None, float | None], step: int) -> tuple[float, float]:
    """(row, col) size of a metric-grid pixel in mm; 1 mm per acquired pixel where the spacing is
    unknown or not positive (only the bias field's smoothness scale depends on it)."""
    sizes = []
    for value in spacing_mm[1:3]:
        try:
            size = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            size = 1.0
        sizes.append((size if math.isfinite(size) and size > 0 else 1.0) * step)
    return sizes[0], sizes[1]


def _padding_span(is_padding: Callable[[int], bool], n: int) -> tuple[int, int]:
    """[start, stop) of the lines left once padding lines are walked off from both ends."""
    start = 0
    while start < n and is_padding(start):
        start += 1
    stop = n
    while stop > start and is_padding(stop - 1):
        stop -= 1
    return start, stop


def _min3(mask: BoolArray) -> BoolArray:
    """3x3 in-plane erosion; beyond the image the edge repeats (an object cut by the FOV keeps its edge)."""
    return ndi.minimum_filter(mask.view(np.uint8), size=(1, 3, 3), mode="nearest").view(bool)


def _max3(mask: BoolArray) -> BoolArray:
    """3x3 in-plane dilation."""
    return ndi.maximum_filter(mask.view(np.uint8), size=(1, 3, 3), mode="constant").view(bool)


def _fill_holes_2d(mask: BoolArray) -> BoolArray:
    """Fill, slice by slice, the regions of ~mask that do not reach the slice's border."""
    labels, n = ndi.label(~mask, structure=_STRUCT_2D)
    outside = np.zeros(n + 1, dtype=bool)
    for edge in (labels[:, 0, :], labels[:, -1, :], labels[:, :, 0], labels[:, :, -1]):
        outside[edge] = True
    outside[0] = True  # label 0 is the mask itself
    filled: BoolArray = ~outside[labels] | mask
    return filled


def segment(volume: npt.ArrayLike) -> MRMasks:
    """Object and air masks of a magnitude series (slice, row, col), per slice on a coarse grid.

    See the module docstring for the steps. Raises :class:`DegenerateInputError` when the array
    is not 3-D, holds non-finite values, or is too small (< 8 px a side once padding is removed).
    """
    vol = np.asarray(volume)
    if vol.ndim != 3:
        raise DegenerateInputError(f"volume must be 3-D (slice, row, col); got shape {vol.shape}")
    if vol.size == 0:
        raise DegenerateInputError(f"volume is empty: shape {vol.shape}")
    if not np.issubdtype(vol.dtype, np.floating):
        vol = vol.astype(np.float32)
    if not np.all(np.isfinite(vol)):
        raise DegenerateInputError(f"volume holds {int(np.sum(~np.isfinite(vol)))} non-finite voxels")
    probe_step = max(1, int(math.ceil(max(vol.shape[1:]) / GRID_MAX_SIDE)))
    probe = vol[:, ::probe_step, ::probe_step]
    lo = float(probe.min())
    p99 = float(np.percentile(probe, 99))
    pad_level = lo + PAD_LEVEL_FRACTION * (p99 - lo)

    def row_pad(r: int) -> bool:
        return bool(np.mean(vol[:, r, :] <= pad_level) >= PAD_LINE_SHARE)

    def col_pad(c: int) -> bool:
        return bool(np.mean(vol[:, :, c] <= pad_level) >= PAD_LINE_SHARE)

    r0, r1 = _padding_span(row_pad, vol.shape[1])
    c0, c1 = _padding_span(col_pad, vol.shape[2])
    if r1 <= r0 or c1 <= c0:
        raise DegenerateInputError(
            f"blank image: every line holds only values at the minimum ({lo:g}) or within "
            f"{100 * PAD_LEVEL_FRACTION:g}% of the range above it"
        )
    if r1 - r0 < 8 or c1 - c0 < 8:
        raise DegenerateInputError(
            f"acquired region is {r1 - r0}x{c1 - c0} px once padded lines are removed "
            f"(matrix {vol.shape[1]}x{vol.shape[2]}): too small for object/air masks"
        )
    step = max(1, int(math.ceil(max(r1 - r0, c1 - c0) / GRID_MAX_SIDE)))
    grid = np.ascontiguousarray(vol[:, r0:r1:step, c0:c1:step], dtype=np.float32)
    n_slices = grid.shape[0]
    smooth = ndi.uniform_filter(grid, size=(1, 3, 3), mode="nearest")

    thr = _otsu_rows(smooth.reshape(n_slices, -1))
    flat = smooth.ravel()
    series_thr = float(_otsu_rows(flat[np.newaxis, :])[0])
    separation = otsu_effectiveness(flat, series_thr) if math.isfinite(series_thr) else 0.0
    slice_max = smooth.reshape(n_slices, -1).max(axis=1)
    has_object = np.isfinite(thr) & (separation >= MIN_OTSU_EFFECTIVENESS) & (slice_max > series_thr)
    thr_b = np.where(np.isfinite(thr), thr, np.inf)[:, None, None]
    core = (smooth > thr_b) & (grid > RAW_FLOOR_OF_OTSU * thr_b)
    core &= has_object[:, None, None]
    core = _max3(_min3(core))  # opening 3x3 in-plane

    tissue = _fill_holes_2d(core)

    margin = max(2, int(math.ceil(MARGIN_FRACTION * max(grid.shape[1:]))))
    grown = ndi.maximum_filter(tissue.view(np.uint8), size=(1, 2 * margin + 1, 2 * margin + 1), mode="constant")
    background = ~grown.astype(bool) & has_object[:, None, None]
    return MRMasks(
        rows=slice(r0, r1),
        cols=slice(c0, c1),
        step=step,
        image=grid,
        tissue=tissue,
        background=background,
        has_object=has_object,
        margin=margin,
        core_threshold=thr,
    )


def ghost_rois(tissue: npt.ArrayLike, background: npt.ArrayLike) -> dict[str, BoolArray]:
    """The four ACR-style ghosting ROIs of one slice (2-D masks), in the air beside the object.

    The object is the largest piece of ``tissue`` (a folded-in or separate small piece does not
    move the ROIs). ``left``/``right``: air in the rows the object spans, left and right of its bounding box
    (where ghosts of a horizontal ("ROW") phase encoding fall); ``top``/``bottom``: air in the
    columns it spans, above and below (ghosts of a vertical ("COL") phase encoding). Air is
    ``background`` (outside the dilated object), so the ROIs keep the dilation margin.
    """
    t = np.asarray(tissue, dtype=bool)
    b = np.asarray(background, dtype=bool)
    if t.ndim != 2 or t.shape != b.shape:
        raise DegenerateInputError(f"tissue and background must be 2-D of one shape; got {t.shape}, {b.shape}")
    labels, n = ndi.label(t)
    if n == 0:
        raise DegenerateInputError("no object in the slice: ghosting ROIs are placed beside the object")
    if n > 1:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        t = labels == int(np.argmax(sizes))
    rows = np.flatnonzero(t.any(axis=1))
    cols = np.flatnonzero(t.any(axis=0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    rois = {name: np.zeros_like(b) for name in ("left", "right", "top", "bottom")}
    rois["left"][r0:r1, :c0] = b[r0:r1, :c0]
    rois["right"][r0:r1, c1:] = b[r0:r1, c1:]
    rois["top"][:r0, c0:c1] = b[:r0, c0:c1]
    rois["bottom"][r1:, c0:c1] = b[r1:, c0:c1]
    return rois


# --------------------------------------------------------------------------------------------
# measure()
# --------------------------------------------------------------------------------------------

_PHASE_AXES: Final = {"ROW": 1, "COL": 0}
"""DICOM (0018,1312) -> in-plane axis of a (row, col) slice along which the phase is encoded."""
_AXIS_WORD: Final = {1: "horizontally (ROW)", 0: "vertically (COL)"}
_BESIDE: Final = {1: "left and right of", 0: "above and below"}


def snr_air(background: npt.ArrayLike, *, phase_axis: int) -> BoolArray:
    """The air of one slice for the noise estimate: ``background`` (air outside the dilated
    object) without the lines that the dilated object spans along ``phase_axis`` (whole rows for
    1 = horizontal phase encoding, whole columns for 0), where its ghosts fall."""
    air = np.array(background, dtype=bool, copy=True)
    if phase_axis not in (0, 1) or air.ndim != 2:
        raise DegenerateInputError(f"need a 2-D background and phase_axis 0 or 1; got {air.shape}, {phase_axis!r}")
    spanned = ~air.all(axis=phase_axis)
    if phase_axis == 1:
        air[spanned, :] = False
    else:
        air[:, spanned] = False
    return air


def _rayleigh_ratio(values: FloatArray) -> float:
    sd = float(np.std(values, ddof=1)) if values.size > 1 else 0.0
    return float(np.mean(values)) / sd if sd > 0 else math.inf


_Result = tuple[float | None, str, Unmeasured | None]
"""(value, detail, why there is no value) of one metric inside :func:`measure`."""


def measure(
    volume: npt.NDArray[np.floating],
    *,
    spacing_mm: tuple[float | None, float | None, float | None],
    phase_encode_direction: str | None,
) -> list[Measurement]:
    """All MR metrics of one magnitude series (slice, row, col); one Measurement per METRICS id.

    ``spacing_mm`` is (slice, row, col) in mm (only row and col are used: PIU's 1 cm^2 windows);
    ``phase_encode_direction`` is InPlanePhaseEncodingDirection (0018,1312), "ROW" or "COL", or
    None when unknown. Never raises for bad image content: each metric is computed on its own, and
    one that cannot be computed is None with the reason in ``detail`` and its kind in
    ``unmeasured``: NOT_APPLICABLE when the metric is undefined for the image by design (no air
    around the object: a tight crop or anatomy filling the FOV; air that is zero-filled or
    multi-coil noise, where background SNR is not defined), UNMEASURABLE when the image does not
    look as the metric needs, which may be the defect itself (no object found, air that is not
    noise-like, ghosting ROIs that cannot be placed).

    Ghosting does not need noise-like air: it is the signal in the phase-encode band beside the
    object minus that on the frequency side, relative to the object, and is reported even when
    ghosts fill the air and the noise metrics cannot be measured.

    Aggregation over slices: SNR, CNR and FBER pool the pixels of the usable slices; ghosting is
    the median of the per-slice ratios; PIU the median of the per-slice PIUs; coverage and wrap
    the mean over slices with an object; edge contact pools the border pixels. All are unchanged
    by the order of the slices.
    """
    results: dict[str, _Result] = {}

    def done() -> list[Measurement]:
        out = []
        for metric, unit in METRICS.items():
            value, detail, kind = results.get(metric, (None, "not computed", Unmeasured.UNMEASURABLE))
            out.append(
                Measurement(
                    metric=metric,
                    value=value,
                    unit=unit,
                    detail=detail,
                    unmeasured=None if value is not None else (kind or Unmeasured.UNMEASURABLE),
                )
            )
        return out

    def set_all(keys: Sequence[str], reason: str, kind: Unmeasured) -> None:
        for key in keys:
            results.setdefault(key, (None, reason, kind))

    def attempt(key: str, compute: Callable[[], float], detail: str) -> None:
        try:
            results[key] = (compute(), detail, None)
        except DegenerateInputError as exc:
            results[key] = (None, str(exc), Unmeasured.UNMEASURABLE)

    direction = None if phase_encode_direction is None else str(phase_encode_direction).strip().upper()
    phase_axis = _PHASE_AXES.get(direction) if direction else None
    if direction and phase_axis is None:
        phase_note = f"phase-encode direction {phase_encode_direction!r} is not ROW/COL: treated as unknown"
    elif phase_axis is None:
        phase_note = "phase-encode direction unknown"
    else:
        phase_note = f"phase encoded {_AXIS_WORD[phase_axis]}"

    try:
        masks = segment(volume)
    except DegenerateInputError as exc:
        set_all(list(METRICS), str(exc), Unmeasured.UNMEASURABLE)
        return done()

    full = np.asarray(volume)[:, masks.rows, masks.cols]
    attempt("mr.efc", lambda: efc(full), f"all {full.size} voxels of the acquired region")

    grid, tissue, background = masks.image, masks.tissue, masks.background
    objects = np.flatnonzero(masks.has_object & tissue.any(axis=(1, 2)))
    if objects.size == 0:
        set_all(
            list(METRICS),
            "no object found: no slice holds an object (the image is noise or constant)",
            Unmeasured.UNMEASURABLE,
        )
        return done()
    grid_note = f"{objects.size}/{grid.shape[0]} slices with an object, grid step {masks.step}"
    t_obj = tissue[objects]
    attempt("mr.fov_coverage_percent", lambda: fov_coverage_percent(t_obj), f"{grid_note}; padded lines excluded")
    attempt("mr.edge_contact_percent", lambda: edge_contact_percent(t_obj), grid_note)
    try:
        piu, piu_note = _piu(masks, objects, spacing_mm)
        results["mr.piu_percent"] = (piu, piu_note, None if piu is not None else Unmeasured.UNMEASURABLE)
    except DegenerateInputError as exc:
        results["mr.piu_percent"] = (None, str(exc), Unmeasured.UNMEASURABLE)
    try:
        results["mr.inu_range_percent"] = (
            *inu_range_percent(grid[objects], t_obj, pixel_mm=_grid_pixel_mm(spacing_mm, masks.step)),
            None,
        )
    except DegenerateInputError as exc:
        results["mr.inu_range_percent"] = (None, str(exc), Unmeasured.UNMEASURABLE)

    # --- air check: slices with air around the object
    air_metrics = ("mr.snr", "mr.cnr", "mr.fber", "mr.ghosting_percent", "mr.wrap_percent")
    has_object = np.zeros(grid.shape[0], dtype=bool)
    has_object[objects] = True
    edge_share = np.array(
        [edge_contact_percent(tissue[i]) / 100.0 if has_object[i] else 1.0 for i in range(grid.shape[0])]
    )
    enough_air = background.sum(axis=(1, 2)) >= MIN_BACKGROUND_PIXELS
    usable = has_object & (edge_share <= MAX_EDGE_CONTACT) & enough_air
    if not usable.any():
        set_all(
            air_metrics,
            (
                f"no air around the object: it touches {100 * float(np.min(edge_share[objects])):.0f}% or more of "
                f"the FOV border in every slice (usable up to {100 * MAX_EDGE_CONTACT:.0f}%, with >= "
                f"{MIN_BACKGROUND_PIXELS} air px): a tight crop, or anatomy filling the FOV"
            ),
            Unmeasured.NOT_APPLICABLE,
        )
        return done()
    used = np.flatnonzero(usable)

    horizontal: list[float] = []  # per-slice signed ghosting if the phase were horizontal (ROW)
    for i in used:
        try:
            rois = ghost_rois(tissue[i], background[i])
            img = grid[i]
            sides = {k: img[v] for k, v in rois.items() if int(v.sum()) >= MIN_ROI_PIXELS}
            h_pair = [sides[k] for k in ("left", "right") if k in sides]
            v_pair = [sides[k] for k in ("top", "bottom") if k in sides]
            if h_pair and v_pair:
                horizontal.append(ghosting_ratio_percent(h_pair, v_pair, img[tissue[i]]))
        except DegenerateInputError as exc:  # this slice has no ROIs; the others may
            logger.debug("no ghosting ROIs on slice %d: %s", i, exc)
    median_h = float(np.median(horizontal)) if horizontal else None

    if phase_axis is not None:
        order = [phase_axis, 1 - phase_axis]
    else:  # unknown: the side with the brighter air is taken as the phase side
        order = [1, 0] if (median_h is None or median_h >= 0) else [0, 1]
    air_by_axis = {ax: np.concatenate([grid[i][snr_air(background[i], phase_axis=ax)] for i in used]) for ax in order}
    ratios = {ax: _rayleigh_ratio(air_by_axis[ax]) for ax in order}
    lo_ok, hi_ok = RAYLEIGH_RATIO_RANGE
    passing = [ax for ax in order if air_by_axis[ax].size >= MIN_BACKGROUND_PIXELS and lo_ok <= ratios[ax] <= hi_ok]
    mismatch = phase_axis is not None and bool(passing) and passing[0] != phase_axis

    # --- ghosting: measured whether or not the air is noise-like (ghosts make it not so)
    if median_h is None:
        results["mr.ghosting_percent"] = (
            None,
            "the ghosting ROIs cannot be placed: no slice has air beside the object on both the phase "
            f"and the frequency side (at least {MIN_ROI_PIXELS} grid px each)",
            Unmeasured.UNMEASURABLE,
        )
    else:
        contaminated = (
            ""
            if passing
            else (
                f"; the air is not noise-like (mean/sd {ratios[order[0]]:.2f}): measured from the signal in the "
                "phase-encode band beside the object, relative to the object"
            )
        )
        if phase_axis is None or mismatch:
            why = (
                phase_note
                if phase_axis is None
                else (
                    f"{phase_note}, yet the air {_BESIDE[1 - phase_axis]} the object is not noise-like "
                    f"(ghosts {_AXIS_WORD[1 - phase_axis]}?)"
                )
            )
            results["mr.ghosting_percent"] = (
                abs(median_h),
                f"{why}: the larger of both directions (|ACR ratio|); median of {len(horizontal)} slices{contaminated}",
                None,
            )
        else:
            signed = median_h if phase_axis == 1 else -median_h
            if not passing and signed < -REFERENCE_SIGNAL_PERCENT:
                results["mr.ghosting_percent"] = (
                    None,
                    f"the ghosting reference is not air: the frequency-side ROIs exceed the phase-side ones "
                    f"by {-signed:.1f}% of the object signal and the air is not noise-like (mean/sd "
                    f"{ratios[order[0]]:.2f}): tissue beside the object, or ghosts along the other axis",
                    Unmeasured.UNMEASURABLE,
                )
            else:
                results["mr.ghosting_percent"] = (
                    signed,
                    f"{phase_note}; median of {len(horizontal)} slices{contaminated}",
                    None,
                )

    axes = [phase_axis] if phase_axis is not None else [0, 1]
    wrap_note = phase_note if phase_axis is not None else f"{phase_note}: the larger of both directions"

    def wrap() -> float:
        wraps = []
        for ax in axes:
            band = max(1, int(round(WRAP_BAND_FRACTION * grid.shape[1 + ax])))
            wraps.append(float(np.mean([wrap_percent(tissue[i], phase_axis=ax, band_px=band) for i in objects])))
        return max(wraps)

    # --- the noise metrics need air that is magnitude noise; wrap needs air free of other signal
    # (in air holding ghosts or tissue, separate pieces at the phase edges are not folds)
    if not passing:
        ax0 = order[0]
        measured = f"mean/sd = {ratios[ax0]:.2f} over {air_by_axis[ax0].size} px"
        expected = f"Rayleigh {RAYLEIGH_MEAN_SD_RATIO:.2f}; accepted {lo_ok}-{hi_ok}"
        if air_by_axis[ax0].size >= MIN_BACKGROUND_PIXELS and ratios[ax0] > hi_ok:
            attempt("mr.wrap_percent", wrap, f"{wrap_note}; mean of {objects.size} slices")
            set_all(
                ("mr.snr", "mr.cnr", "mr.fber"),
                (
                    f"air beside the object is not single-channel magnitude noise: {measured} ({expected}); "
                    "above the range: zero-filled or masked air, or multi-coil sum-of-squares noise, where "
                    "the background SNR is not defined (Dietrich 2007)"
                ),
                Unmeasured.NOT_APPLICABLE,
            )
        else:
            set_all(
                ("mr.snr", "mr.cnr", "mr.fber", "mr.wrap_percent"),
                (
                    f"air beside the object does not look like magnitude noise: {measured} ({expected}): "
                    "ghosts or other signal in the air, or tissue darker than the Otsu threshold"
                ),
                Unmeasured.UNMEASURABLE,
            )
        logger.debug("mr metrics: %d slices, air not noise-like (%s)", grid.shape[0], measured)
        return done()
    attempt("mr.wrap_percent", wrap, f"{wrap_note}; mean of {objects.size} slices")
    assumed = passing[0]
    air = air_by_axis[assumed]
    signal = grid[used][tissue[used]]
    all_air = grid[used][background[used]]
    air_note = (
        f"{used.size} slices with air around the object; {air.size} air px outside the lines the "
        f"dilated object spans {'horizontally' if assumed == 1 else 'vertically'} (ghost bands"
        + (", taken on the brighter side: phase-encode direction unknown)" if phase_axis is None else ")")
        + (f"; {phase_note} but only the other side's air is noise-like" if mismatch else "")
    )
    attempt("mr.snr", lambda: snr_background(signal, air), air_note)
    attempt("mr.cnr", lambda: cnr_otsu(signal, air), air_note)
    attempt("mr.fber", lambda: fber(signal, all_air), f"{used.size} slices, {all_air.size} air px")
    logger.debug("mr metrics: %d slices, grid step %d, %d usable", grid.shape[0], masks.step, used.size)
    return done()


def _piu(
    masks: MRMasks, objects: npt.NDArray[np.intp], spacing_mm: tuple[float | None, float | None, float | None]
) -> tuple[float | None, str]:
    """``mr.piu_percent``: the median over the slices with an object of each slice's PIU.

    What the pipeline computes (and what a limit on it must be calibrated on): on every slice
    with an object, the large ROI is the disc (in mm) centred on the object's centroid whose area
    is :data:`ACR_LARGE_ROI_FRACTION` (200/283.5) of the object's, intersected with the object;
    every 1 cm x 1 cm window (rounded to grid pixels) lying wholly inside it is averaged; the
    slice's PIU is 100 * (1 - (max - min) / (max + min)) of those window means
    (:func:`percent_integral_uniformity`); the series value is the median of the slices' PIUs.

    This is not the ACR slice PIU. The ACR limits (PIU >= 87.5 % at <= 1.5 T, >= 82 % at 3 T) hold
    for slice 7 of the ACR large phantom, a uniform water disc: there this computation agrees with
    hazen's ACR PIU (reported within 0.6 points). On a patient series every slice holds anatomy
    (gray/white matter, CSF, fat) and coil shading, so the value measures the anatomy's contrast as
    much as the coil: the demo head phantom reads 64-65 %, the pydicom-data MR2 shoulder 87.7 %;
    real clean brain series were reported at 37-45 %. It is an indicator; the ACR limits must never
    be applied to it.
    """
    try:
        dy, dx = (float(v) * masks.step for v in spacing_mm[1:3])  # type: ignore[arg-type]
    except (TypeError, ValueError, IndexError):
        return None, f"pixel spacing unknown ({spacing_mm!r}): the 1 cm^2 windows cannot be sized"
    if not (math.isfinite(dy) and math.isfinite(dx) and dy > 0 and dx > 0):
        return None, f"pixel spacing {spacing_mm!r} is not positive: the 1 cm^2 windows cannot be sized"
    box = (max(1, int(round(PIU_BOX_MM / dy))), max(1, int(round(PIU_BOX_MM / dx))))
    values = []
    grid = np.indices(masks.tissue.shape[1:])
    rr, cc = grid[0], grid[1]
    for i in objects:
        t = masks.tissue[i]
        radius2_mm2 = ACR_LARGE_ROI_FRACTION * float(t.sum()) * dy * dx / math.pi
        cy, cx = rr[t].mean(), cc[t].mean()
        roi = t & (((rr - cy) * dy) ** 2 + ((cc - cx) * dx) ** 2 <= radius2_mm2)
        try:
            values.append(percent_integral_uniformity(masks.image[i], roi, box_px=box))
        except DegenerateInputError:
            continue
    if not values:
        return None, f"no {box[0]}x{box[1]} grid px (1 cm^2) window fits in the central ROI of any slice"
    return float(np.median(values)), (
        f"median of {len(values)} slices; 1 cm^2 = {box[0]}x{box[1]} grid px; on patient images an indicator only"
    )
