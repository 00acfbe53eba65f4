"""Objective image-quality metrics of one projection radiograph (DR, CR, DX).

Pure functions: numbers and arrays in, floats out; no I/O, no thresholds (they live in
``thresholds/image_quality_dr.yaml``), no rounding. Images are 2-D (row, col) arrays in the
MONOCHROME2 convention (high = bright = little signal reached the detector): the loader
(:func:`qc_pipeline.io.pixels.load_image`) has already inverted MONOCHROME1 images, and the stored
value range handed to :func:`measure` must be rescaled and oriented the same way.

What is measured, and how:

- exposure from the header: ExposureIndex (0018,1411), TargetExposureIndex (0018,1412) and
  DeviationIndex (0018,1413); DI = 10 log10(EI / EI_T) (IEC 62494-1:2008); without them, a
  vendor's own exposure indicator (Carestream/Kodak EI, Fuji/Konica S, Agfa lgM, Siemens EXI,
  Philips EI_s...) converted to a DI where the relation to detector exposure is published
  (:func:`vendor_deviation_index`; which tag and target per vendor is policy, in ``thresholds/``);
- an *uncalibrated* estimate of exposure from pixel values: the value of interest (VOI, the median
  of the anatomy, as in IEC 62494-1's definition of EI) placed in the stored value range;
- clipping: the share of the collimated field pinned at the stored extremes, and the share piled
  up at the field's own brightest / darkest value (clipping by the processing chain);
- burn-out: the share of the anatomy (the field minus the direct-exposure background that reaches
  the image edge or a shutter) pinned at its darkest value, the over-exposed end;
- the share of the stored range that the field uses;
- noise and SNR in homogeneous regions: the mode of the local (8 x 8, plane-detrended) SD over the
  anatomy, as in the global noise index of Christianson et al., AJR 2015;205:W93;
- how much of the image's border is anatomy (cut off at the edges) rather than collimator or background;
- blur: the no-reference blur effect of Crete et al., Proc. SPIE 6492 (2007).

The collimated field is the image minus its electronic shutters: connected regions of pixels
pinned at the image's maximum that cover (almost) a whole image edge. A collimator shadow that the
modality did not mask stays in the field, and so does a clipped region that covers a whole edge.
Heavy parts run on a strided subsample (at most ``GRID_MAX_SIDE`` pixels a side) or on a sample of
full-resolution blocks, so that :func:`measure` takes a few tens of ms on a 2000 x 2500 image.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from qc_pipeline.domain import Measurement
from qc_pipeline.errors import DegenerateInputError
from qc_pipeline.metrics.registry import units

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.floating]
BoolArray = npt.NDArray[np.bool_]

METRICS: Final[Mapping[str, str]] = units("DR")
"""Every metric :func:`measure` reports -> its unit, in the order of :func:`measure`'s result. Registered in :mod:`qc_pipeline.metrics.registry`."""

NOT_MODEL_FEATURES: Final = frozenset(
    {
        "dr.exposure_index",
        "dr.deviation_index",
        "dr.vendor_exposure_indicator",
        "dr.deviation_index_vendor",
        "dr.burnout_anatomy_percent",
    }
)
"""Metrics the metric-based acceptability model does not read: header values (its training images
have no headers) and metrics added after it was trained (its feature vector must not change)."""

GRID_MAX_SIDE: Final = 512
"""Longest side of the strided subsample on which masks, histograms and shares are computed."""
MIN_SIDE: Final = 32
"""Smallest image side (pixels) on which the image metrics are computed."""
PIN_TOLERANCE: Final = 1e-5
"""A pixel is "pinned" at a level when within this fraction of max(|lo|, |hi|, hi - lo) of it:
less than one stored step for up to 16 bits, and above float32 rounding of rescaled values."""
SHUTTER_EDGE_COVER: Final = 0.9
"""A pinned region is an electronic shutter when it covers at least this share of an image edge."""
MIN_FIELD_FRACTION: Final = 0.01
"""Below this share of the image the collimated field is too small to measure."""
COLLIMATOR_LEVEL: Final = 0.9
"""An unmasked collimator shadow is brighter than p1 + this x (p99.9 - p1) of the field."""
COLLIMATOR_MAX_DEPTH: Final = 1 / 3
"""An unmasked collimator band reaches at most this share of the image from its edge."""
BACKGROUND_LEVEL: Final = 0.2
"""Raw background (direct exposure) is darker than p1 + this x (p99 - p1) of the field."""
NOISE_BLOCK: Final = 8
"""Side (pixels, full resolution) of the blocks whose local SD is taken."""
NOISE_MAX_BLOCKS: Final = 20_000
"""At most about this many blocks are sampled (on a regular grid of blocks)."""
MIN_NOISE_BLOCKS: Final = 50
HOMOGENEOUS_FACTOR: Final = 1.25
"""Blocks whose local SD is at most this x the modal SD count as homogeneous (for the SNR)."""
EDGE_BAND_MM: Final = 5.0
EDGE_BAND_FRACTION: Final = 0.02
"""Width of the image's border band: 5 mm, or 2 % of the short side without pixel spacing."""
BLUR_FILTER: Final = 11
"""Length of the re-blurring mean filter of the blur effect (Crete et al. 2007; skimage default)."""
BLUR_CROP: Final = 512
"""The blur effect is measured on the central (at most) 512 x 512 full-resolution crop of the field."""


def _finite(value: object) -> bool:
    """True for a real number that is not NaN or infinite (False for None, strings, ...)."""
    if value is None or isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def _band_width_px(spacing_mm: tuple[float, float] | None, shape: tuple[int, ...]) -> tuple[float, str]:
    """Border band width in pixels: ``EDGE_BAND_MM`` with a usable spacing, else a share of the short side."""
    if spacing_mm is not None:
        try:
            spacings = [float(s) for s in spacing_mm]
        except (TypeError, ValueError):
            spacings = []
        if len(spacings) == 2 and all(math.isfinite(s) and s > 0.0 for s in spacings):
            return EDGE_BAND_MM / min(spacings), f"{EDGE_BAND_MM:g} mm"
    how = f"{100 * EDGE_BAND_FRACTION:g} % of the short side (no usable pixel spacing)"
    return EDGE_BAND_FRACTION * min(shape), how


# --- exposure from the header ----------------------------------------------------------------


def deviation_index(exposure_index: float, target_exposure_index: float) -> float:
    """Deviation index from the exposure index and its target.

    DI = 10 * log10(EI / EI_T)   (IEC 62494-1:2008; AAPM TG-116, Shepard et al., Med. Phys. 2009;36:2898)

    DI = 0 is on target; +3 is about twice and -3 about half the intended detector exposure.
    """
    for name, value in (("exposure_index", exposure_index), ("target_exposure_index", target_exposure_index)):
        if not (_finite(value) and float(value) > 0.0):
            raise DegenerateInputError(f"{name} must be a finite number > 0 to compute DI, found {value!r}")
    return 10.0 * math.log10(float(exposure_index) / float(target_exposure_index))


CONVERSIONS: Final = ("proportional", "inverse", "log", "none")
"""How a vendor indicator v relates to the detector exposure X (see :func:`vendor_deviation_index`)."""


@dataclass(frozen=True, slots=True)
class VendorIndicator:
    """A vendor's exposure indicator found in a header, and how it relates to the detector exposure."""

    name: str
    """What the value is, e.g. "Carestream/Kodak EI"."""
    tag: str
    """Where it was read, e.g. "RelativeXRayExposure (0018,1405)"."""
    value: float
    unit: str
    conversion: str
    """One of :data:`CONVERSIONS`; "none": no published relation, judged against a vendor range."""
    target: float | None
    """The value on target (DI = 0), in the vendor's units (None for "none": no target known)."""
    source: str
    per_decade: float | None = None
    """For "log": vendor units per factor 10 of exposure (Kodak EI 1000, Agfa lgM 1)."""
    plausible: tuple[float, float] | None = None
    """Values outside this range are not this indicator (another scale written in the same tag)."""
    review_outside: tuple[float, float] | None = None
    """For "none": the vendor range outside which a person looks at the image."""


def vendor_deviation_index(
    value: float, *, conversion: str, target: float | None, per_decade: float | None = None
) -> float:
    """Deviation index from a vendor exposure indicator ``value`` and its on-target value.

    - "proportional" (v ∝ X: IEC EI, Siemens EXI): DI = 10 log10(v / target);
    - "inverse" (v ∝ 1/X: Fuji and Konica S, Philips EI_s): DI = 10 log10(target / v);
    - "log" (v = k log10(X) + c: Carestream/Kodak EI, k = 1000; Agfa lgM, k = 1):
      DI = 10 (v - target) / k.

    All follow from DI = 10 log10(X / X_T) (IEC 62494-1:2008; AAPM TG-116, Shepard et al.,
    Med. Phys. 2009;36:2898), so +3 is about twice the exposure for every vendor: Kodak EI +300,
    lgM +0.3, S halved.
    """
    if target is None or not (_finite(value) and _finite(target)):
        raise DegenerateInputError(f"vendor indicator {value!r} and target {target!r} must be finite numbers")
    if conversion == "log":
        if per_decade is None or not (_finite(per_decade) and float(per_decade) > 0.0):
            raise DegenerateInputError(f"a 'log' indicator needs per_decade > 0, found {per_decade!r}")
        return 10.0 * (float(value) - float(target)) / float(per_decade)
    if conversion in ("proportional", "inverse"):
        if float(value) <= 0.0 or float(target) <= 0.0:
            raise DegenerateInputError(
                f"a '{conversion}' indicator needs value and target > 0, found {value!r} and {target!r}"
            )
        ratio = float(value) / float(target)
        return 10.0 * math.log10(ratio if conversion == "proportional" else 1.0 / ratio)
    raise DegenerateInputError(
        f"conversion {conversion!r} has no deviation index; one of {', '.join(c for c in CONVERSIONS if c != 'none')}"
    )


# --- masks -----------------------------------------------------------------------------------


def pin_tolerance(lo: float, hi: float) -> float:
    """Distance from a level within which a pixel counts as pinned at it.

    tol = PIN_TOLERANCE * max(|lo|, |hi|, hi - lo)
    """
    return PIN_TOLERANCE * max(abs(lo), abs(hi), hi - lo)


def shutter_mask(image: FloatArray) -> BoolArray:
    """Electronic collimator shutters of a MONOCHROME2 radiograph.

    A shutter is a 4-connected region of pixels pinned at the image's maximum (within
    :func:`pin_tolerance`) that holds at least ``SHUTTER_EDGE_COVER`` of the pixels of one image
    edge (first or last row or column): unexposed, electronically masked areas are painted at the
    brightest value and run along whole edges, while clipped anatomy rarely covers a whole edge.
    Site heuristic [D]: a collimator shadow that was not masked is not found (it stays in the field).
    """
    if image.ndim != 2 or min(image.shape) < 2:
        raise DegenerateInputError(f"shutter_mask needs a 2-D image of at least 2 x 2, got shape {image.shape}")
    top = float(image.max())
    bottom = float(image.min())
    if top == bottom:
        raise DegenerateInputError(f"the image is uniform (every pixel is {top:g}): no field to find")
    pinned = image >= top - pin_tolerance(bottom, top)
    labels, count = ndimage.label(pinned)
    if count == 0:
        return np.zeros(image.shape, dtype=bool)
    shutters = np.zeros(count + 1, dtype=bool)
    for edge in (labels[0, :], labels[-1, :], labels[:, 0], labels[:, -1]):
        cover = np.bincount(edge, minlength=count + 1) / edge.size
        shutters |= cover >= SHUTTER_EDGE_COVER
    shutters[0] = False
    return shutters[labels]


def background_threshold(field_values: FloatArray) -> float:
    """Level below which a field pixel is raw background (direct exposure) rather than anatomy.

    t = p1 + BACKGROUND_LEVEL * (p99 - p1) of the field's values (site default: in MONOCHROME2
    direct exposure is the darkest part of the field; 20 % of its robust range separates it from
    soft tissue on the pydicom-data CR chest and extremity images).
    """
    if field_values.size == 0:
        raise DegenerateInputError("background_threshold got no field pixels")
    p1, p99 = np.percentile(field_values, [1.0, 99.0])
    if p99 <= p1:
        raise DegenerateInputError(f"the field has no contrast: p1 = p99 = {p1:g}")
    return float(p1 + BACKGROUND_LEVEL * (p99 - p1))


def collimator_bands(image: FloatArray, *, field: BoolArray) -> BoolArray:
    """Unmasked collimator shadows: straight bright bands along the image edges.

    From each image edge inward, whole rows (or columns) are taken while at least
    ``SHUTTER_EDGE_COVER`` of their field pixels are brighter than p1 + ``COLLIMATOR_LEVEL`` x
    (p99.9 - p1) of the field, up to ``COLLIMATOR_MAX_DEPTH`` of the image. Outside the collimation
    the detector gets only scatter, so in MONOCHROME2 the shadow is nearly as bright as anything in
    the image and runs straight along an edge; anatomy rarely fills a whole line that bright.
    Site heuristic [D].
    """
    if image.ndim != 2 or image.shape != field.shape:
        raise DegenerateInputError(
            f"image and field must be 2-D arrays of one shape, found {image.shape} and {field.shape}"
        )
    bands = np.zeros(image.shape, dtype=bool)
    values = image[field]
    if values.size == 0:
        return bands
    p1, p_top = np.percentile(values, [1.0, 99.9])
    bright = field & (image > p1 + COLLIMATOR_LEVEL * (p_top - p1))
    for axis in (0, 1):
        n = image.shape[axis]
        counts = field.sum(axis=1 - axis)
        share = np.where(counts > 0, bright.sum(axis=1 - axis) / np.maximum(counts, 1), 1.0)
        full = share >= SHUTTER_EDGE_COVER
        depth = int(n * COLLIMATOR_MAX_DEPTH)
        for order in (range(n), range(n - 1, -1, -1)):
            for k, line in enumerate(order):
                if k >= depth or not full[line]:
                    break
                if axis == 0:
                    bands[line, :] = True
                else:
                    bands[:, line] = True
    return bands & field


def open_background_mask(image: FloatArray, *, shutters: BoolArray, threshold: float) -> BoolArray:
    """Raw background (direct exposure) of the field: dark pixels connected to the image edge or a shutter.

    A field pixel at or below ``threshold`` (:func:`background_threshold`) belongs to the raw
    background when its 4-connected dark region touches the first or last row or column of the
    image, or a shutter pixel. Direct exposure surrounds the body and runs out to the edges or
    the collimation; dark regions enclosed by anatomy (burned-out lungs inside the chest wall and
    mediastinum) do not, and stay anatomy. Site heuristic [D]: a background pocket fully enclosed
    by the body (a hand on the hip) counts as anatomy.
    """
    if not (image.shape == shutters.shape) or image.ndim != 2:
        raise DegenerateInputError(
            f"image and shutters must be 2-D arrays of one shape, found {image.shape} and {shutters.shape}"
        )
    dark = (image <= threshold) & ~shutters
    labels, count = ndimage.label(dark | shutters)
    if count == 0:
        return np.zeros(image.shape, dtype=bool)
    open_labels = np.zeros(count + 1, dtype=bool)
    for edge in (labels[0, :], labels[-1, :], labels[:, 0], labels[:, -1]):
        open_labels[edge] = True
    open_labels[0] = False
    return dark & open_labels[labels]


def burnout_percent(anatomy_values: FloatArray, *, tolerance: float) -> tuple[float, float]:
    """Share of the anatomy pinned at its darkest value, in percent, and that value.

    B = 100 * #{ v <= min(v) + tolerance } / N over the anatomy pixels v (MONOCHROME2: low = much
    detector signal). Over-exposure and a look-up table that saturates pin the thinnest parts of
    the anatomy (the lungs of a chest film) at one value at the dark end ("burned out"); AAPM
    TG-116 (Shepard et al. 2009): "repeat only if relevant anatomy is clipped".
    """
    if anatomy_values.size == 0:
        raise DegenerateInputError("burnout_percent got no anatomy pixels")
    level = float(anatomy_values.min())
    return pinned_percent(anatomy_values, level=level, tolerance=tolerance), level


# --- clipping, range, exposure estimate --------------------------------------------------------


def pinned_percent(values: FloatArray, *, level: float, tolerance: float) -> float:
    """Share of ``values`` pinned at ``level``, in percent.

    P = 100 * #{ |v - level| <= tolerance } / N

    Clipping (detector or ADC saturation, or a processing look-up table that saturates) piles pixels
    up at exactly one value; AAPM TG-116 (Shepard et al. 2009): "repeat only if relevant anatomy is
    clipped".
    """
    if values.size == 0:
        raise DegenerateInputError("pinned_percent got no pixels")
    if not (math.isfinite(tolerance) and tolerance >= 0.0):
        raise DegenerateInputError(f"tolerance must be a finite number >= 0, found {tolerance!r}")
    return 100.0 * float(np.count_nonzero(np.abs(values - level) <= tolerance)) / values.size


def dynamic_range_used_percent(field_values: FloatArray, *, stored_range: tuple[float, float]) -> float:
    """Share of the stored value range that the field uses, in percent.

    R = 100 * (p99.5 - p0.5 of the field) / (stored_max - stored_min)
    """
    lo, hi = stored_range
    if not (_finite(lo) and _finite(hi) and hi > lo):
        raise DegenerateInputError(f"stored_range must be two finite numbers with min < max, found {stored_range!r}")
    if field_values.size == 0:
        raise DegenerateInputError("dynamic_range_used_percent got no field pixels")
    p_lo, p_hi = np.percentile(field_values, [0.5, 99.5])
    return 100.0 * float(p_hi - p_lo) / (hi - lo)


def pixel_exposure_voi_percent(anatomy_values: FloatArray, *, value_range: tuple[float, float]) -> float:
    """Uncalibrated exposure estimate: where the anatomy's median sits in a value range, in percent.

    E = 100 * (hi - VOI) / (hi - lo),  VOI = median of the anatomy pixels

    IEC 62494-1 computes EI from a value of interest (a central value of the relevant image region)
    through the detector's calibration; without that calibration this keeps only the position of
    the VOI in the range: 0 % = anatomy at the brightest value (no signal), 100 % = at the darkest
    (most signal), assuming a MONOCHROME2 "for presentation" image. It is an estimate, not an EI.
    """
    lo, hi = value_range
    if not (_finite(lo) and _finite(hi) and hi > lo):
        raise DegenerateInputError(f"value_range must be two finite numbers with min < max, found {value_range!r}")
    if anatomy_values.size == 0:
        raise DegenerateInputError("pixel_exposure_voi_percent got no anatomy pixels")
    voi = float(np.median(anatomy_values))
    return 100.0 * (hi - voi) / (hi - lo)


# --- noise ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BlockStats:
    """Local statistics of full-resolution square blocks sampled on a regular grid."""

    mean: npt.NDArray[np.float64]
    """Mean of each block."""
    sd: npt.NDArray[np.float64]
    """SD of each block after removing its best-fit plane (ddof = 3)."""
    low: npt.NDArray[np.float64]
    """Smallest value in each block."""
    high: npt.NDArray[np.float64]
    """Largest value in each block."""
    rows: npt.NDArray[np.intp]
    """Row of each block's centre pixel in the full image."""
    cols: npt.NDArray[np.intp]


def block_stats(image: FloatArray, *, block: int = NOISE_BLOCK, max_blocks: int = NOISE_MAX_BLOCKS) -> BlockStats:
    """Mean and plane-detrended SD of ``block`` x ``block`` tiles sampled on a regular grid.

    For a tile x with centred coordinates r', c' (sum r' = sum c' = 0, sum r'c' = 0):
    SD^2 = [sum (x - m)^2 - (sum (x - m) r')^2 / sum r'^2 - (sum (x - m) c')^2 / sum c'^2] / (n - 3),
    n = block^2: the residual variance of the least-squares plane, so that smooth anatomical
    gradients do not count as noise. Every k-th tile in each direction is kept, k the smallest
    step that leaves at most ``max_blocks`` tiles.
    """
    if image.ndim != 2:
        raise DegenerateInputError(f"block_stats needs a 2-D image, got shape {image.shape}")
    if block < 3:
        raise DegenerateInputError(f"block must be >= 3 pixels to fit a plane, found {block}")
    n_r, n_c = image.shape[0] // block, image.shape[1] // block
    if n_r == 0 or n_c == 0:
        raise DegenerateInputError(f"image {image.shape} is smaller than one {block} x {block} block")
    step = max(1, math.ceil(math.sqrt(n_r * n_c / max_blocks)))
    tiles = image[: n_r * block, : n_c * block].reshape(n_r, block, n_c, block)[::step, :, ::step, :]
    tiles = tiles.transpose(0, 2, 1, 3).astype(np.float64)
    mean = tiles.mean(axis=(2, 3))
    centred = tiles - mean[:, :, None, None]
    coord = np.arange(block, dtype=np.float64) - (block - 1) / 2.0
    norm = block * float(np.sum(coord * coord))
    slope_r = np.einsum("ijkl,k->ij", centred, coord)
    slope_c = np.einsum("ijkl,l->ij", centred, coord)
    total = np.einsum("ijkl,ijkl->ij", centred, centred)
    residual = np.maximum(total - (slope_r * slope_r + slope_c * slope_c) / norm, 0.0)
    sd = np.sqrt(residual / (block * block - 3))
    grid_r = np.arange(0, n_r, step) * block + block // 2
    grid_c = np.arange(0, n_c, step) * block + block // 2
    rows, cols = np.meshgrid(grid_r, grid_c, indexing="ij")
    return BlockStats(
        mean=mean.ravel(),
        sd=sd.ravel(),
        low=tiles.min(axis=(2, 3)).ravel(),
        high=tiles.max(axis=(2, 3)).ravel(),
        rows=rows.ravel(),
        cols=cols.ravel(),
    )


def sd_mode(sds: FloatArray, *, bins_per_decade: int = 100) -> float:
    """Mode of a distribution of local SDs (the global noise index).

    The SDs are binned on a log scale (``bins_per_decade`` bins per factor 10, i.e. about 2.3 %
    wide, anchored at the smallest SD so that scaling the image scales the result exactly), the
    histogram is smoothed with a Gaussian of 2 bins, and the peak is refined by a parabola through
    the top bin and its neighbours. Christianson et al., AJR 2015;205:W93 (mode of the local-SD
    histogram); the log bins make the estimate independent of the image's units.
    """
    sds = np.asarray(sds, dtype=np.float64)
    sds = sds[np.isfinite(sds) & (sds > 0.0)]
    if sds.size < MIN_NOISE_BLOCKS:
        raise DegenerateInputError(
            f"need at least {MIN_NOISE_BLOCKS} blocks with a local SD > 0 to find a noise mode, found {sds.size}"
        )
    logs = np.log10(sds)
    start = float(logs.min())
    width = 1.0 / bins_per_decade
    n_bins = int((float(logs.max()) - start) / width) + 1
    counts = np.bincount(np.minimum(((logs - start) / width).astype(np.intp), n_bins - 1), minlength=n_bins)
    smooth = ndimage.gaussian_filter1d(counts.astype(np.float64), 2.0, mode="constant")
    peak = int(np.argmax(smooth))
    offset = 0.0
    if 0 < peak < n_bins - 1:
        left, mid, right = smooth[peak - 1], smooth[peak], smooth[peak + 1]
        curvature = left - 2.0 * mid + right
        if curvature < 0.0:
            offset = 0.5 * (left - right) / curvature
    return float(10.0 ** (start + (peak + 0.5 + offset) * width))


# --- image edges and blur -------------------------------------------------------------------------


def border_band(shape: tuple[int, int], *, width: int) -> BoolArray:
    """The outer ring of an image, ``width`` pixels wide: pixels within ``width`` of an image edge."""
    if width < 1:
        raise DegenerateInputError(f"band width must be >= 1 pixel, found {width}")
    if 2 * width >= min(shape):
        raise DegenerateInputError(f"band width {width} leaves no interior in an image of shape {shape}")
    band = np.ones(shape, dtype=bool)
    band[width:-width, width:-width] = False
    return band


def edge_anatomy_percent(band: BoolArray, *, shutters: BoolArray, anatomy: BoolArray) -> float:
    """Share of the image's border band that is anatomy, in percent.

    A = 100 * #(band AND anatomy AND NOT shutters) / #band

    The rest of the band is collimator (electronic shutters) or raw background (direct exposure).
    Anatomy reaching the edge of the image may have been cut off (coverage criteria of the
    European guidelines on quality criteria for diagnostic radiographic images, EUR 16260, 1996).
    """
    if not (band.shape == shutters.shape == anatomy.shape):
        raise DegenerateInputError(
            f"band, shutters and anatomy must have one shape, found {band.shape}, {shutters.shape}, {anatomy.shape}"
        )
    total = int(np.count_nonzero(band))
    if total == 0:
        raise DegenerateInputError("the border band is empty")
    return 100.0 * float(np.count_nonzero(band & anatomy & ~shutters)) / total


def blur_effect(image: FloatArray, *, filter_size: int = BLUR_FILTER) -> float:
    """No-reference blur effect, 0 (sharp) to 1 (blurred).

    For each axis a: S = |sobel_a(I)|, B = |sobel_a(mean_filter_a(I))| (a 1-D mean of
    ``filter_size`` along a), and b_a = (sum S - sum max(0, S - B)) / sum S over the interior
    (2 pixels from the start, 1 from the end of each axis); the result is max over the axes.
    Crete, Dolmiere, Ladret & Nicolas, Proc. SPIE 6492, 64920I (2007); same definition as
    ``skimage.measure.blur_effect``. Invariant to a gain and an offset of the pixel values.
    """
    if image.ndim != 2 or min(image.shape) < 4:
        raise DegenerateInputError(f"blur_effect needs a 2-D image of at least 4 x 4, got shape {image.shape}")
    data = np.asarray(image, dtype=np.float64)
    interior = (slice(2, data.shape[0] - 1), slice(2, data.shape[1] - 1))
    result = []
    for axis in range(2):
        sharp = np.abs(ndimage.sobel(data, axis=axis))
        blurred = np.abs(ndimage.sobel(ndimage.uniform_filter1d(data, filter_size, axis=axis), axis=axis))
        total = float(np.sum(sharp[interior]))
        if total <= 0.0:
            raise DegenerateInputError("blur_effect: the image has no gradient along an axis (uniform image?)")
        lost = float(np.sum(np.maximum(0.0, sharp - blurred)[interior]))
        result.append(abs(total - lost) / total)
    return max(result)


# --- the entry point --------------------------------------------------------------------------


def _stored_range_or_reason(stored_range: tuple[float, float] | None) -> tuple[tuple[float, float] | None, str]:
    if stored_range is None:
        return None, "stored value range not given"
    try:
        lo, hi = float(stored_range[0]), float(stored_range[1])
    except (TypeError, ValueError, IndexError):
        return None, f"stored value range {stored_range!r} is not two numbers"
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        return None, f"stored value range {stored_range!r} is not two finite numbers with min < max"
    return (lo, hi), ""


def _number(value: object) -> float | None:
    """``value`` as a finite float, else None."""
    return float(value) if _finite(value) else None  # type: ignore[arg-type]


def _vendor_relation(ind: VendorIndicator) -> str:
    if ind.conversion == "log":
        return f"DI = 10 x ({ind.name} - {ind.target:g}) / {ind.per_decade:g}"
    if ind.conversion == "proportional":
        return f"DI = 10 log10({ind.name} / {ind.target:g})"
    if ind.conversion == "inverse":
        return f"DI = 10 log10({ind.target:g} / {ind.name})"
    if ind.review_outside is None:
        return "no published relation to exposure and no vendor range: recorded, not judged"
    return (
        f"no published relation to exposure: judged against the vendor range "
        f"{ind.review_outside[0]:g}-{ind.review_outside[1]:g}"
    )


def _vendor(ind: VendorIndicator | None) -> tuple[Measurement, float | None, str]:
    """``dr.vendor_exposure_indicator``, the DI it converts to (None when it does not) and why not."""
    unit = METRICS["dr.vendor_exposure_indicator"]
    if ind is None:
        why = "no vendor exposure indicator for this manufacturer in the header"
        return Measurement("dr.vendor_exposure_indicator", None, unit, why), None, why
    read = f"{ind.tag} = {ind.value:g} read as {ind.name} ({ind.unit})"
    if not _finite(ind.value):
        why = f"{read}: not a finite number"
        return Measurement("dr.vendor_exposure_indicator", None, unit, why), None, why
    if ind.plausible is not None and not ind.plausible[0] <= ind.value <= ind.plausible[1]:
        why = (
            f"{read}: outside the plausible range {ind.plausible[0]:g}-{ind.plausible[1]:g} of that "
            "indicator, so it is another scale written in the same tag and is not converted"
        )
        return Measurement("dr.vendor_exposure_indicator", None, unit, why), None, why
    detail = f"{read}; {_vendor_relation(ind)}; source: {ind.source}"
    measurement = Measurement("dr.vendor_exposure_indicator", float(ind.value), unit, detail)
    if ind.conversion == "none":
        return measurement, None, f"{read}: no published conversion to DI ({_vendor_relation(ind)})"
    try:
        di = vendor_deviation_index(ind.value, conversion=ind.conversion, target=ind.target, per_decade=ind.per_decade)
    except DegenerateInputError as exc:
        return measurement, None, f"{read}: {exc}"
    return measurement, di, detail


def _exposure(
    exposure_index: object, target_exposure_index: object, deviation: object, vendor: VendorIndicator | None = None
) -> list[Measurement]:
    """``dr.exposure_index``, ``dr.deviation_index`` and ``dr.vendor_exposure_indicator`` from the header."""
    ei_unit, di_unit = METRICS["dr.exposure_index"], METRICS["dr.deviation_index"]
    ei_value = _number(exposure_index)
    if exposure_index is None:
        ei = Measurement("dr.exposure_index", None, ei_unit, "ExposureIndex (0018,1411) absent")
    elif ei_value is not None and ei_value >= 0.0:
        ei = Measurement("dr.exposure_index", ei_value, ei_unit, "ExposureIndex (0018,1411)")
    else:
        ei = Measurement("dr.exposure_index", None, ei_unit, f"ExposureIndex (0018,1411) invalid: {exposure_index!r}")
    vendor_m, vendor_di, vendor_detail = _vendor(vendor)

    computed: float | None = None
    given = (("ExposureIndex", exposure_index), ("TargetExposureIndex", target_exposure_index))
    missing = [name for name, value in given if value is None]
    if missing:
        why_not = f"{' and '.join(missing)} absent"
    else:
        try:
            computed = deviation_index(exposure_index, target_exposure_index)  # type: ignore[arg-type]
            why_not = ""
        except DegenerateInputError as exc:
            why_not = str(exc)
    header_di = _number(deviation)
    vendor_dev = Measurement(
        "dr.deviation_index_vendor",
        None,
        di_unit,
        "the IEC 62494-1 tags are present: the vendor indicator is not converted"
        if header_di is not None or computed is not None
        else vendor_detail,
    )
    if header_di is not None:
        detail = "DeviationIndex (0018,1413) from the header"
        if computed is not None and abs(computed - header_di) > 0.5:
            detail += f"; it disagrees with 10*log10(EI/EI_T) = {computed:.2f}"
        return [ei, Measurement("dr.deviation_index", header_di, di_unit, detail), vendor_m, vendor_dev]
    head = "DeviationIndex (0018,1413) " + ("absent" if deviation is None else f"invalid ({deviation!r})")
    if computed is not None:
        detail = f"{head}; computed as 10*log10(ExposureIndex/TargetExposureIndex) (IEC 62494-1)"
        return [ei, Measurement("dr.deviation_index", computed, di_unit, detail), vendor_m, vendor_dev]
    if vendor_di is not None:
        # A DI converted from a vendor indicator rests on published relations and a site-default
        # target per vendor, not on the detector's calibrated EI_T: it is kept apart (its own
        # metric, judged by review-only rules) so that an unverified target never fails a study.
        detail = f"{head}, {why_not}; the vendor indicator converts to a DI: dr.deviation_index_vendor"
        converted = Measurement(
            "dr.deviation_index_vendor", vendor_di, di_unit, f"converted from the vendor indicator: {vendor_detail}"
        )
        return [ei, Measurement("dr.deviation_index", None, di_unit, detail), vendor_m, converted]
    detail = (
        f"{head}; not computable: {why_not}; {vendor_detail}; exposure estimated from pixels only "
        "(the uncalibrated pixel exposure estimate)"
    )
    return [ei, Measurement("dr.deviation_index", None, di_unit, detail), vendor_m, vendor_dev]


def _image_metrics(
    image: FloatArray,
    *,
    spacing_mm: tuple[float, float] | None,
    stored_range: tuple[float, float] | None,
    out: dict[str, tuple[float | None, str]],
) -> None:
    """Fill ``out`` with image metric id -> (value, detail).

    Raises DegenerateInputError when the rest cannot be measured; what ``out`` holds by then stays.
    """
    if image.ndim != 2:
        raise DegenerateInputError(f"expected a 2-D (row, col) image, got shape {image.shape}")
    if min(image.shape) < MIN_SIDE:
        raise DegenerateInputError(f"image {image.shape} is smaller than {MIN_SIDE} pixels on a side")
    if not np.isfinite(image).all():
        raise DegenerateInputError("the image holds NaN or infinite pixel values")

    step = max(1, math.ceil(max(image.shape) / GRID_MAX_SIDE))
    grid = np.asarray(image[::step, ::step], dtype=np.float64)
    shutters = shutter_mask(grid)
    field = ~shutters
    field_share = float(np.count_nonzero(field)) / field.size
    out["dr.collimated_field_percent"] = (
        100.0 * field_share,
        "image minus electronic shutters (regions pinned at the image maximum covering an edge)",
    )
    if field_share < MIN_FIELD_FRACTION:
        raise DegenerateInputError(
            f"the collimated field is {100 * field_share:.2f} % of the image: nothing to measure"
        )
    values = grid[field]
    f_lo, f_hi = float(values.min()), float(values.max())

    # Clipping against the stored range and pile-up at the field's own extremes.
    stored, why = _stored_range_or_reason(stored_range)
    if stored is None:
        out["dr.clipped_stored_max_percent"] = (None, why)
        out["dr.clipped_stored_min_percent"] = (None, why)
        out["dr.dynamic_range_used_percent"] = (None, why)
    else:
        tol = pin_tolerance(*stored)
        note = ""
        if f_lo < stored[0] - tol or f_hi > stored[1] + tol:
            note = f"; field values [{f_lo:g}, {f_hi:g}] exceed the stored range [{stored[0]:g}, {stored[1]:g}]"
        out["dr.clipped_stored_max_percent"] = (
            pinned_percent(values, level=stored[1], tolerance=tol),
            f"share of the collimated field at the stored maximum {stored[1]:g}{note}",
        )
        out["dr.clipped_stored_min_percent"] = (
            pinned_percent(values, level=stored[0], tolerance=tol),
            f"share of the collimated field at the stored minimum {stored[0]:g}{note}",
        )
        out["dr.dynamic_range_used_percent"] = (
            dynamic_range_used_percent(values, stored_range=stored),
            "(p99.5 - p0.5 of the field) / stored range",
        )
    own_tol = pin_tolerance(f_lo, f_hi)
    out["dr.pileup_max_percent"] = (
        pinned_percent(values, level=f_hi, tolerance=own_tol),
        f"share of the collimated field at its own maximum {f_hi:g}",
    )
    out["dr.pileup_min_percent"] = (
        pinned_percent(values, level=f_lo, tolerance=own_tol),
        f"share of the collimated field at its own minimum {f_lo:g}",
    )

    # Anatomy = field pixels brighter than the raw background.
    try:
        threshold = background_threshold(values)
    except DegenerateInputError as exc:
        for key in (
            "dr.pixel_exposure_voi_percent",
            "dr.edge_anatomy_percent",
            "dr.noise_sd",
            "dr.noise_relative_percent",
            "dr.snr",
        ):
            out[key] = (None, str(exc))
        threshold = None
        out["dr.burnout_anatomy_percent"] = (None, str(exc))
    if threshold is not None:
        out["dr.burnout_anatomy_percent"] = _burnout(grid, shutters=shutters, threshold=threshold, tolerance=own_tol)
        anatomy_grid = field & (grid > threshold)
        anatomy_values = grid[anatomy_grid]
        if anatomy_values.size == 0:
            reason = "no anatomy brighter than the raw background in the field"
            for key in ("dr.pixel_exposure_voi_percent", "dr.noise_sd", "dr.noise_relative_percent", "dr.snr"):
                out[key] = (None, reason)
        else:
            value_range = stored if stored is not None else (f_lo, f_hi)
            which = "stored range" if stored is not None else "the field's own range (stored range not given)"
            out["dr.pixel_exposure_voi_percent"] = (
                pixel_exposure_voi_percent(anatomy_values, value_range=value_range),
                f"ESTIMATE from pixel values, not a calibrated EI: median of the anatomy in {which}; "
                "100 % = darkest (most detector signal)",
            )
            out.update(_noise(image, grid=grid, step=step, anatomy_grid=anatomy_grid, values=values, stored=stored))

        # Anatomy cut off at the edges of the image.
        width_px, band_how = _band_width_px(spacing_mm, image.shape)
        try:
            band = border_band(grid.shape, width=max(1, round(width_px / step)))
            out["dr.edge_anatomy_percent"] = (
                edge_anatomy_percent(band, shutters=shutters, anatomy=anatomy_grid),
                f"share of the image's border band ({band_how}) that is neither shutter nor raw background; "
                "an unmasked collimator shadow counts as anatomy",
            )
        except DegenerateInputError as exc:
            out["dr.edge_anatomy_percent"] = (None, str(exc))

    # Blur on a full-resolution crop centred on the field, inside the field's bounding box.
    rows = np.flatnonzero(field.any(axis=1))
    cols = np.flatnonzero(field.any(axis=0))
    r0, r1 = _centred_window(rows[0] * step, min((rows[-1] + 1) * step, image.shape[0]), BLUR_CROP)
    c0, c1 = _centred_window(cols[0] * step, min((cols[-1] + 1) * step, image.shape[1]), BLUR_CROP)
    crop = image[r0:r1, c0:c1]
    try:
        out["dr.blur_effect"] = (
            blur_effect(crop),
            f"Crete 2007 blur effect on the {crop.shape[0]}x{crop.shape[1]} crop at row {r0}, col {c0}",
        )
    except DegenerateInputError as exc:
        out["dr.blur_effect"] = (None, str(exc))


def _burnout(grid: FloatArray, *, shutters: BoolArray, threshold: float, tolerance: float) -> tuple[float | None, str]:
    """``dr.burnout_anatomy_percent`` (value, detail) on the working grid."""
    outside = shutters | collimator_bands(grid, field=~shutters)
    anatomy = ~outside & ~open_background_mask(grid, shutters=outside, threshold=threshold)
    values = grid[anatomy]
    if values.size == 0:
        return None, "no anatomy: the whole field is direct-exposure background reaching the image edge"
    share, level = burnout_percent(values, tolerance=tolerance)
    return share, (
        f"share of the anatomy ({100 * values.size / grid.size:.1f} % of the image: the field minus unmasked "
        f"collimator bands and the direct-exposure background that reaches the image edge, a shutter or a "
        f"collimator band) pinned at its darkest value "
        f"{level:g}, the over-exposed end"
    )


def _centred_window(start: int, stop: int, size: int) -> tuple[int, int]:
    """The central ``size`` indices of [start, stop), or all of them when fewer."""
    if stop - start <= size:
        return start, stop
    first = start + (stop - start - size) // 2
    return first, first + size


def _noise(
    image: FloatArray,
    *,
    grid: FloatArray,
    step: int,
    anatomy_grid: BoolArray,
    values: FloatArray,
    stored: tuple[float, float] | None,
) -> dict[str, tuple[float | None, str]]:
    stats = block_stats(image)
    gr = np.minimum(stats.rows // step, grid.shape[0] - 1)
    gc = np.minimum(stats.cols // step, grid.shape[1] - 1)
    f_lo, f_hi = float(values.min()), float(values.max())
    lo = f_lo if stored is None else min(f_lo, stored[0])
    hi = f_hi if stored is None else max(f_hi, stored[1])
    tol = pin_tolerance(lo, hi)
    unpinned = (stats.low > f_lo + tol) & (stats.high < f_hi - tol)
    if stored is not None:
        unpinned &= (stats.low > stored[0] + tol) & (stats.high < stored[1] - tol)
    usable = anatomy_grid[gr, gc] & unpinned & (stats.sd > tol)  # SD <= tol: a flat block, no noise
    try:
        noise = sd_mode(stats.sd[usable])
    except DegenerateInputError as exc:
        reason = f"anatomy blocks: {exc}"
        return {k: (None, reason) for k in ("dr.noise_sd", "dr.noise_relative_percent", "dr.snr")}
    n_blocks = int(np.count_nonzero(usable))
    p1, p99 = np.percentile(values, [1.0, 99.0])
    homogeneous = usable & (stats.sd <= HOMOGENEOUS_FACTOR * noise)
    n_homogeneous = int(np.count_nonzero(homogeneous))
    out: dict[str, tuple[float | None, str]] = {
        "dr.noise_sd": (
            noise,
            f"mode of the local SD of {n_blocks} {NOISE_BLOCK}x{NOISE_BLOCK} plane-detrended anatomy blocks",
        ),
        "dr.noise_relative_percent": (
            100.0 * noise / float(p99 - p1),
            "noise SD / (p99 - p1 of the field)",
        ),
    }
    if n_homogeneous == 0:
        out["dr.snr"] = (None, f"no anatomy block with SD <= {HOMOGENEOUS_FACTOR:g} x the modal SD")
    else:
        out["dr.snr"] = (
            float(np.median(stats.mean[homogeneous])) / noise,
            f"median mean of {n_homogeneous} homogeneous blocks (SD <= {HOMOGENEOUS_FACTOR:g} x mode) / "
            "noise SD; relative to pixel value 0",
        )
    return out


def measure(
    image: npt.NDArray[np.floating],
    *,
    spacing_mm: tuple[float, float] | None,
    stored_range: tuple[float, float] | None,
    exposure_index: float | None,
    target_exposure_index: float | None,
    deviation_index: float | None,
    vendor_indicator: VendorIndicator | None = None,
) -> list[Measurement]:
    """Every DR metric of one radiograph, one Measurement per id of :data:`METRICS`, in that order.

    ``image`` is the decoded (row, col) array, rescaled, in the MONOCHROME2 convention;
    ``spacing_mm`` the (row, col) pixel spacing; ``stored_range`` the smallest and largest value
    the stored bits allow, rescaled and oriented like ``image`` (None when unknown);
    ``exposure_index``, ``target_exposure_index`` and ``deviation_index`` the header values
    (0018,1411), (0018,1412), (0018,1413), None when absent.

    DI is the header's DeviationIndex when present, else 10 log10(EI / EI_T) when both are > 0.
    Without either, ``dr.deviation_index_vendor`` is the ``vendor_indicator`` converted by
    :func:`vendor_deviation_index` when its vendor publishes a relation to exposure and its value
    is plausible (a separate metric: its target is a site default, not the detector's EI_T);
    ``dr.vendor_exposure_indicator`` records that indicator's value whatever the IEC tags say.
    Never raises for bad image content: a metric that cannot be measured has value None and a
    ``detail`` saying why.
    """
    results: dict[str, tuple[float | None, str]] = {}
    for m in _exposure(exposure_index, target_exposure_index, deviation_index, vendor_indicator):
        results[m.metric] = (m.value, m.detail)
    array = np.asarray(image)
    try:
        if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
            raise DegenerateInputError(f"expected a real numeric image, got dtype {array.dtype}")
        _image_metrics(array, spacing_mm=spacing_mm, stored_range=stored_range, out=results)
    except DegenerateInputError as exc:
        logger.debug("DR image metrics not measurable: %s", exc)
        for key in METRICS:
            results.setdefault(key, (None, str(exc)))
    measurements = []
    for key, unit in METRICS.items():
        value, detail = results.get(key, (None, "not measured"))
        measurements.append(Measurement(key, None if value is None else float(value), unit, detail))
    return measurements
