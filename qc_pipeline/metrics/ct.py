"""Objective image-quality metrics of one CT series, from its decoded HU volume.

Pure functions: numbers and arrays in, floats out; no I/O, no thresholds (they live in
``thresholds/image_quality_ct.yaml``), no rounding. Volumes are (slice, row, col) float arrays in
Hounsfield units (modality rescale applied), slices sorted along the slice normal.

What is measured, and how (each function's docstring has the formula and the reference):

- HU sanity: the median of the air outside the body inside the reconstruction field of view
  (should read about -1000 HU), and the mode of the soft-tissue HU histogram inside the body;
- patient-image noise: the global noise level (GNL) of Christianson et al., AJR 2015;205:W93 --
  the mode of the histogram of local SDs (6 mm kernel) over soft tissue (0 < HU < 150), as
  measured (``ct.noise_measured_hu``) and normalised to a reference slice thickness
  (``ct.noise_hu``, noise goes as 1 / sqrt(slice thickness));
- truncation: the share of slices where the body reaches the edge of the reconstruction field
  of view (the circle outside which the scanner writes padding, or the image border), not
  judged where that field lies inside a wider scan field (a targeted reconstruction);
- anatomical coverage along z for the body part the recognition item needs (CHEST: lungs from
  apex to base; HEAD: up to the vertex);
- streak and ring *indicators*: the directional excess of high-frequency power in soft tissue
  (streaks are straight lines, so their power lies along one direction of the 2-D spectrum), and
  the largest mean over whole circles around the isocentre of the radially median-filtered
  residual (rings are concentric with the isocentre).

Slice thickness is not measured here: completeness checks it against the item.

Speed: nothing runs on the whole volume. The metrics use at most :data:`MAX_SLICES` evenly spaced
slices (always the first and the last); segmentation runs in 2-D per slice on a strided grid of
about :data:`SEGMENTATION_GRID_PX` pixels a side; noise uses non-overlapping full-resolution tiles;
the artifact indicators use at most :data:`MAX_ARTIFACT_SLICES` of those slices on a 2 x 2
block-mean grid. :func:`measure` took 0.15 s (median) on a 300 x 512 x 512 float32 volume on
the 2-core development machine.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy import fft as sfft
from scipy import ndimage

from qc_pipeline.domain import Measurement, Unmeasured
from qc_pipeline.errors import DegenerateInputError, NotApplicableError
from qc_pipeline.metrics.registry import units

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.floating]
BoolArray = npt.NDArray[np.bool_]
IndexArray = npt.NDArray[np.intp]

METRICS: Final[Mapping[str, str]] = units("CT")
"""Every metric id :func:`measure` reports -> its unit, in the order of the returned list. Registered in :mod:`qc_pipeline.metrics.registry`."""
NOT_MODEL_FEATURES: Final = frozenset({"ct.coverage_end_percent", "ct.noise_measured_hu"})
"""Metrics the acceptability model does not read (it was trained on ``ct.noise_hu`` of images
without a slice thickness, which is the measured value)."""

NOISE_REFERENCE_MM: Final = 5.0
"""Slice thickness the judged noise ``ct.noise_hu`` is normalised to when the caller gives none (the
checks pass ``ct.noise_reference_thickness_mm`` of ``thresholds/image_quality_ct.yaml``). Quantum noise of a CT image
goes as 1 / sqrt(dose x slice thickness) (Hsieh, Computed Tomography, 2nd ed., SPIE 2009, ch. 5;
AAPM Report 96, 2008), so sd_ref = sd_measured x sqrt(thickness / reference). 5 mm is the
thickness the limits were set for: the routine axial reconstruction of head and body CT and of the
real images the limits were calibrated on (CT_small, 693_*: 5 mm)."""
TARGETED_FIELD_MARGIN: Final = 1.02
"""The reconstruction circle is a targeted one when the scan field (DataCollectionDiameter) is
wider than this times its diameter (2 % for rounding of the pixel spacing)."""

MAX_SLICES: Final = 30
"""Most slices any metric looks at: evenly spaced, always including the first and the last."""
MAX_ARTIFACT_SLICES: Final = 10
"""Most slices (a subset of the sampled ones) the streak and ring indicators look at."""
SEGMENTATION_GRID_PX: Final = 128
"""Segmentation runs on a strided grid of about this many pixels along the longer side."""
ARTIFACT_GRID_PX: Final = 256
"""The artifact indicators run on a block-mean grid of about this many pixels along the longer side."""

PADDING_BELOW_HU: Final = -1500.0
"""Values below this are not tissue nor air (air is -1000 HU): the scanner's padding outside the
reconstruction circle (typically -2000, -3024 or -3072)."""
BODY_ABOVE_HU: Final = -500.0
"""Body threshold: halfway between air (-1000) and water (0); lung (-900..-500) is filled in."""
LUNG_BELOW_HU: Final = -400.0
"""Lung: air-containing pixels inside the body (aerated lung is -900..-500 HU)."""
BODY_OPENING_MM: Final = 3.0
"""Radius of the opening that strips thin objects (table shells, cables, blankets) off the body."""
MIN_COMPONENT_SHARE: Final = 0.02
"""Body parts kept besides the largest: components of at least this share of it (arms, legs)."""
AIR_MARGIN_MM: Final = 5.0
"""Air closer than this to the body or the field edge is left out (partial volume, edge halo)."""
MIN_AIR_PIXELS: Final = 50
"""Fewest outside-air pixels (segmentation grid, all slices) for the air median."""
TRUNCATION_MIN_CONTACT: Final = 0.01
"""A slice is truncated when the body covers at least this share of the field-of-view edge."""
TARGETED_MIN_CONTACT: Final = 0.5
"""... and targeted (the field was placed inside the body on purpose) above this share."""
NOISE_KERNEL_MM: Final = 6.0
"""Side of the local-SD kernel of the global noise level."""
DEFAULT_NOISE_KERNEL_PX: Final = 9
"""Kernel side used when the pixel spacing is unknown (6 mm at a typical 0.7 mm pixel)."""
SOFT_TISSUE_HU: Final = (0.0, 150.0)
"""Christianson et al. 2015: soft tissue for the global noise level."""
HU_MODE_RANGE: Final = (-200.0, 300.0)
"""Range of tile means whose mode is the soft-tissue HU (fat, water, muscle, parenchyma, blood)."""
ARTIFACT_SOFT_TISSUE_HU: Final = (-100.0, 200.0)
"""Smoothed HU range where the artifact indicators look (soft tissue, no fat/air/bone edges)."""
MIN_MODE_SAMPLES: Final = 30
MIN_LUNG_CM2: Final = 10.0
"""CHEST coverage needs lung of at least this area on some sampled slice."""
STREAK_SECTORS: Final = 36
STREAK_BAND: Final = (0.1, 0.45)
"""Spatial-frequency band (cycles per pixel of the artifact grid) of the streak indicator."""
RING_ANGLES: Final = 360
RING_MEDIAN_PX: Final = 5
RING_MIN_RADIUS_PX: Final = 16
"""Rings closer to the centre than this (artifact grid pixels) are not judged: too few independent
pixels on the circle to tell a ring from noise."""
RING_MIN_CIRCLE_SHARE: Final = 0.25
"""A radius is judged when soft tissue covers at least this share of its circles."""
RING_SE_MULTIPLE: Final = 4.0
"""The ring indicator counts what a circle's mean residual exceeds this many standard errors by."""
COVERAGE_BODY_PARTS: Final = ("CHEST", "HEAD")


# --------------------------------------------------------------------------------------------
# sampling and segmentation


def sample_slices(n_slices: int, *, max_slices: int = MAX_SLICES) -> IndexArray:
    """Indices of at most ``max_slices`` evenly spaced slices out of ``n_slices``, ends included.

    index_i = round(i (n - 1) / (m - 1)), i = 0..m-1, m = min(n, max_slices).
    """
    if n_slices < 1:
        raise DegenerateInputError(f"n_slices must be >= 1, got {n_slices}")
    if max_slices < 2:
        raise DegenerateInputError(f"max_slices must be >= 2, got {max_slices}")
    m = min(n_slices, max_slices)
    return np.unique(np.round(np.linspace(0, n_slices - 1, m)).astype(np.intp))


def _disk(radius: int) -> BoolArray:
    r = max(int(radius), 1)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return (yy * yy + xx * xx) <= r * r + r  # slightly fuller than the Euclidean disk


@dataclass(frozen=True, slots=True)
class BodySegmentation:
    """Per-slice masks of a stack on the segmentation grid (all (slice, row, col))."""

    fov: BoolArray
    """Inside the reconstruction field of view (not padding)."""
    fov_edge: BoolArray
    """The one-pixel rim of the field of view (next to padding or to the image border)."""
    body: BoolArray
    """The body: above -500 HU, opened, the largest component and those >= 2 % of it, regrown."""
    filled: BoolArray
    """``body`` with its holes (lungs, bowel gas) filled."""
    largest_area_px: npt.NDArray[np.int64]
    """Area of the largest body component with holes filled, per slice."""
    contact: npt.NDArray[np.float64]
    """Share of the field-of-view rim covered by the body, per slice."""
    pixel_mm: float | None
    """Pixel size of the segmentation grid, when known."""

    @property
    def targeted(self) -> BoolArray:
        """Slices whose field of view lies inside the body (contact > TARGETED_MIN_CONTACT)."""
        return self.contact > TARGETED_MIN_CONTACT


def segment_body(slices: FloatArray, *, pixel_mm: float | None) -> BodySegmentation:
    """Field of view and body masks of each slice of a (slice, row, col) HU stack, in 2-D.

    Field of view: pixels not below -1500 HU (padding), holes filled, largest component; when no
    pixel is padding but every pixel outside the inscribed circle holds one and the same value,
    that constant is taken as padding and the field of view is the inscribed circle. Body: pixels
    above -500 HU in the field of view, opened with a disk of 3 mm radius (the erosion counts the
    outside of the field as body, so that a body cut by the field edge keeps its contact), the
    largest connected component and every component at least 2 % of its area (arms, legs), then
    grown back inside the threshold mask by a geodesic dilation of twice the opening radius (what
    the opening took from thin chest walls and skin folds); ``filled`` fills its holes
    (lungs, bowel gas). ``pixel_mm`` is the pixel size of ``slices``; when None, the opening radius
    is 2 pixels.

    Standard threshold segmentation as in mriqc's head mask or Christianson et al. 2015, in 2-D.
    """
    stack = np.asarray(slices)
    if stack.ndim != 3 or min(stack.shape[1:]) < 8:
        raise DegenerateInputError(
            f"expected a (slice, row, col) stack of at least 8 x 8 pixels, got shape {stack.shape}"
        )
    n, h, w = stack.shape
    radius = 2 if pixel_mm is None else max(1, round(BODY_OPENING_MM / pixel_mm))
    disk = _disk(radius)
    yy, xx = np.mgrid[0:h, 0:w]
    rr = np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2)
    outside_circle = rr > min(h, w) / 2
    cross = ndimage.generate_binary_structure(2, 1)
    fov = np.zeros(stack.shape, dtype=bool)
    edge = np.zeros(stack.shape, dtype=bool)
    body = np.zeros(stack.shape, dtype=bool)
    filled = np.zeros(stack.shape, dtype=bool)
    largest = np.zeros(n, dtype=np.int64)
    contact = np.zeros(n, dtype=np.float64)
    for i in range(n):
        img = stack[i]
        pad = img < PADDING_BELOW_HU
        if not pad.any() and outside_circle.any():
            corner = img[outside_circle]
            if corner.min() == corner.max():
                pad = outside_circle
        f = _fill_holes(~pad)
        if pad.any():
            f = _largest_component(f)
        fov[i] = f
        rim = f & ~ndimage.binary_erosion(f, structure=cross, border_value=0)
        edge[i] = rim
        t = (img > BODY_ABOVE_HU) & f
        eroded = ndimage.binary_erosion(t | ~f, structure=disk, border_value=1)
        opened = ndimage.binary_dilation(eroded, structure=disk) & t
        labels, count = ndimage.label(opened)
        if count:
            sizes = np.bincount(labels.ravel())[1:]
            keep = np.concatenate(([False], sizes >= MIN_COMPONENT_SHARE * sizes.max()))
            # give back what the opening took from the kept parts (thin chest walls, skin folds):
            # geodesic dilation inside the threshold mask, as far as twice the opening radius
            b = ndimage.binary_dilation(keep[labels], structure=cross, iterations=2 * radius + 1, mask=t)
            body[i] = b
            filled[i] = _fill_holes(b)
            biggest = ndimage.binary_dilation(
                labels == (int(np.argmax(sizes)) + 1), structure=cross, iterations=2 * radius + 1, mask=t
            )
            largest[i] = int(np.count_nonzero(_fill_holes(biggest)))
        rim_px = np.count_nonzero(rim)
        contact[i] = np.count_nonzero(body[i] & rim) / rim_px if rim_px else 0.0
    return BodySegmentation(fov, edge, body, filled, largest, contact, pixel_mm)


_CROSS: Final = ndimage.generate_binary_structure(2, 1)


def _fill_holes(mask: BoolArray) -> BoolArray:
    """``ndimage.binary_fill_holes(mask)`` for a 2-D mask, by labelling instead of dilating.

    A hole is a 4-connected part of the background that does not reach the image border; what
    scipy's flood from the border leaves unreached is the same set of pixels. One labelling pass
    costs a third of the flood's repeated dilations on a body mask.
    """
    labels, count = ndimage.label(~mask, structure=_CROSS)
    if count == 0:
        return mask.copy()
    outside = np.zeros(count + 1, dtype=bool)
    outside[labels[0]] = outside[labels[-1]] = outside[labels[:, 0]] = outside[labels[:, -1]] = True
    outside[0] = False  # label 0 is the mask itself
    return ~outside[labels]


def _largest_component(mask: BoolArray) -> BoolArray:
    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask
    sizes = np.bincount(labels.ravel())[1:]
    return labels == (int(np.argmax(sizes)) + 1)


# --------------------------------------------------------------------------------------------
# HU sanity, truncation, coverage


def outside_air_hu(slices: FloatArray, segmentation: BodySegmentation) -> float:
    """Median HU of the air outside the body inside the field of view (about -1000 when calibrated).

    air = fov eroded by 5 mm, minus the body (holes filled) dilated by 5 mm, below -500 HU;
    value = median over those pixels of all non-targeted slices. The CT number of air is part of
    the daily calibration check (IEC 61223-3-5; ACR CT QC manual 2017: air -1000 HU); in patient
    images the outside air is the one air region every axial slice has.
    """
    seg = segmentation
    stack = np.asarray(slices)
    if stack.shape != seg.fov.shape:
        raise DegenerateInputError(f"slices shape {stack.shape} does not match the segmentation's {seg.fov.shape}")
    usable = ~seg.targeted
    if not usable.any():
        raise NotApplicableError(
            "targeted reconstruction: the body covers more than half of the field-of-view edge on "
            "every sampled slice, so there is no outside air to measure"
        )
    margin = 2 if seg.pixel_mm is None else max(1, round(AIR_MARGIN_MM / seg.pixel_mm))
    disk = _disk(margin)
    values = []
    for i in np.flatnonzero(usable):
        inner = ndimage.binary_erosion(seg.fov[i], structure=disk, border_value=0)
        near_body = ndimage.binary_dilation(seg.filled[i], structure=disk)
        air = inner & ~near_body & (stack[i] < BODY_ABOVE_HU)
        values.append(stack[i][air])
    pooled = np.concatenate(values) if values else np.empty(0)
    if pooled.size < MIN_AIR_PIXELS:
        raise NotApplicableError(
            f"only {pooled.size} air pixels outside the body in the field of view (need {MIN_AIR_PIXELS}): "
            "the body fills the field of view"
        )
    return float(np.median(pooled))


def truncated_slices_percent(
    segmentation: BodySegmentation, *, scan_field_mm: float | None = None, field_mm: float | None = None
) -> float:
    """Percentage of the judged slices on which the body reaches the field-of-view edge.

    A slice is truncated when the body covers >= 1 % of the rim of the field of view (the
    reconstruction circle, or the image border when the image has no padding); slices where it
    covers > 50 % are targeted reconstructions (a field deliberately placed inside the body) and
    are not judged. value = 100 * truncated / judged. Truncation of the patient by the scan field
    biases HU and adds bright edge artifacts (Hsieh et al., Med Phys 2004;31:2385).

    Those artifacts come from the *scan* field (DataCollectionDiameter (0018,0090)), not from the
    reconstruction circle: when the scan field is wider than the reconstruction circle (``field_mm``,
    the image's diameter) the image is a targeted reconstruction, and a body at its edge was cropped
    when the image was reconstructed, not cut by the scan field. Then a body that reaches the edge
    is not judged (NotApplicableError); one clear of the edge reads 0 %.
    """
    seg = segmentation
    judged = ~seg.targeted
    if not judged.any():
        raise NotApplicableError(
            "targeted reconstruction: the body covers more than half of the field-of-view edge on "
            "every sampled slice, so truncation cannot be judged"
        )
    truncated = judged & (seg.contact >= TRUNCATION_MIN_CONTACT)
    if (
        truncated.any()
        and scan_field_mm is not None
        and field_mm is not None
        and scan_field_mm > TARGETED_FIELD_MARGIN * field_mm
    ):
        raise NotApplicableError(
            f"targeted reconstruction: the {field_mm:.0f} mm reconstruction field lies inside the "
            f"{scan_field_mm:.0f} mm scan field (DataCollectionDiameter), so the body at its edge was cropped "
            "at reconstruction, not cut by the scan field"
        )
    return 100.0 * float(np.count_nonzero(truncated)) / float(np.count_nonzero(judged))


def coverage_end_percent(slices: FloatArray, segmentation: BodySegmentation, *, body_part: str | None) -> float:
    """How much of the structure the item must cover in full is still present on the end slices.

    CHEST (lung apices to bases): lung = body with holes filled, below -400 HU;
    value = 100 * max(lung(first), lung(last)) / max_z lung(z). A chest scan that starts above
    the apices and ends below the costophrenic recesses has little lung on both end slices.
    HEAD (up to the vertex): area = the largest body component with holes filled;
    value = 100 * min(area(first), area(last)) / max_z area(z). The head's cross-section shrinks
    towards 0 at the vertex, while the lower end (skull base, neck) stays wide, so the smaller end
    tells whether the vertex was reached, whichever way the slices run. The skull base end is not
    judged. Whole-organ coverage: Zhejiang radiology image-quality guide 2011 (requirements S10).
    Other body parts: no rule (raises).
    """
    part = (body_part or "").strip().upper()
    if part not in COVERAGE_BODY_PARTS:
        raise NotApplicableError(f"no coverage rule for body part {body_part!r} (rules exist for CHEST and HEAD)")
    seg = segmentation
    stack = np.asarray(slices)
    if stack.shape[0] < 3:
        raise NotApplicableError(f"coverage along z needs at least 3 slices, got {stack.shape[0]}")
    if part == "CHEST":
        lung = np.count_nonzero(seg.filled & (stack < LUNG_BELOW_HU), axis=(1, 2)).astype(np.float64)
        biggest = float(lung.max())
        min_px = 50.0 if seg.pixel_mm is None else MIN_LUNG_CM2 * 100.0 / seg.pixel_mm**2
        if biggest < min_px:
            raise NotApplicableError(
                f"no lung (air inside the body below {LUNG_BELOW_HU:g} HU) of at least {MIN_LUNG_CM2:g} cm2 "
                "on any sampled slice"
            )
        return 100.0 * max(lung[0], lung[-1]) / biggest
    area = seg.largest_area_px.astype(np.float64)
    if area.max() <= 0:
        raise DegenerateInputError("no body found on any sampled slice")
    return 100.0 * min(area[0], area[-1]) / float(area.max())


# --------------------------------------------------------------------------------------------
# noise and soft-tissue HU


def tile_statistics(slices: FloatArray, *, tile_px: int) -> tuple[FloatArray, FloatArray]:
    """Mean and SD (ddof=1) of the non-overlapping ``tile_px`` x ``tile_px`` tiles of each slice.

    Returns two (slice, tile_row, tile_col) float64 arrays; a remainder narrower than a tile at the
    bottom and right edges is left out. var = (sum x^2 - (sum x)^2 / n) / (n - 1), n = tile_px^2,
    accumulated in float64.
    """
    stack = np.asarray(slices)
    if tile_px < 2:
        raise DegenerateInputError(f"tile_px must be >= 2, got {tile_px}")
    if stack.ndim != 3 or stack.shape[1] < tile_px or stack.shape[2] < tile_px:
        raise DegenerateInputError(f"a {tile_px}-pixel tile does not fit in a stack of shape {stack.shape}")
    n, h, w = stack.shape
    tr, tc = h // tile_px, w // tile_px
    count = float(tile_px * tile_px)
    means = np.empty((n, tr, tc), dtype=np.float64)
    sds = np.empty((n, tr, tc), dtype=np.float64)
    for i in range(n):  # a slice at a time: its float64 copy stays in the processor's cache
        x = np.array(stack[i, : tr * tile_px, : tc * tile_px], dtype=np.float64)
        s1 = x.reshape(tr, tile_px, tc, tile_px).sum(axis=3).sum(axis=1)  # along each tile's rows, then down
        np.multiply(x, x, out=x)
        s2 = x.reshape(tr, tile_px, tc, tile_px).sum(axis=3).sum(axis=1)
        mean = s1 / count
        means[i] = mean
        sds[i] = np.sqrt(np.maximum((s2 - s1 * mean) / (count - 1.0), 0.0))
    return means, sds


def histogram_mode(values: FloatArray) -> float:
    """Mode of a sample: the peak of its Gaussian kernel density estimate.

    Bandwidth h = 0.9 min(sd, IQR/1.349) n^(-1/5) (Silverman 1986, eq. 3.31); the density is a
    histogram with bins of h/4 smoothed with a Gaussian of sd h, its peak refined by a parabola
    through the three highest bins. When more than half the sample is one value (IQR = 0) that
    value (the median) is returned.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size < MIN_MODE_SAMPLES:
        raise DegenerateInputError(f"only {v.size} values to take a mode of (need {MIN_MODE_SAMPLES})")
    q25, q75 = np.percentile(v, [25.0, 75.0])
    spread = min(float(np.std(v)), float(q75 - q25) / 1.349)
    if spread <= 0.0:
        return float(np.median(v))
    h = 0.9 * spread * v.size**-0.2
    lo = float(v.min()) - 3.0 * h
    hi = min(float(v.max()), float(q75 + 20.0 * (q75 - q25))) + 3.0 * h
    nbins = min(int(math.ceil((hi - lo) / (h / 4.0))), 20000)
    counts, edges = np.histogram(v, bins=nbins, range=(lo, hi))
    width = edges[1] - edges[0]
    density = ndimage.gaussian_filter1d(counts.astype(np.float64), sigma=h / width, mode="constant")
    i = int(np.argmax(density))
    offset = 0.0
    if 0 < i < nbins - 1:
        a, b, c = density[i - 1], density[i], density[i + 1]
        denom = a - 2.0 * b + c
        if denom < 0.0:
            offset = 0.5 * (a - c) / denom
    return float(edges[0] + (i + 0.5 + offset) * width)


def global_noise_level(
    tile_means: FloatArray,
    tile_sds: FloatArray,
    *,
    tile_in_body: BoolArray | None = None,
    hu_range: tuple[float, float] = SOFT_TISSUE_HU,
) -> float:
    """Global noise level (GNL): the mode of the local-SD histogram over soft tissue.

    GNL = mode{ SD(tile) : low < mean(tile) < high [, tile in body] }, tiles of about 6 mm.
    Christianson O, et al. Automated technique to measure noise in clinical CT examinations.
    AJR 2015;205:W93-W99. Differences from the paper, which slides a kernel over every pixel and
    averages per-image modes: non-overlapping tiles selected by their mean (one independent local
    SD per tile, 1/k^2 of the work), pooled into one histogram over the sampled slices (a stable
    mode on small images; for noise that does not change along z it is the same value). For white
    noise of sd sigma the tile SD (n = k^2 pixels) follows sigma chi_(n-1) / sqrt(n-1), whose mode
    is sigma sqrt((n-2)/(n-1)): 0.994 sigma for a 9-pixel tile, 0.986 sigma for a 6-pixel tile.
    """
    means = np.asarray(tile_means, dtype=np.float64)
    sds = np.asarray(tile_sds, dtype=np.float64)
    if means.shape != sds.shape:
        raise DegenerateInputError(f"tile_means shape {means.shape} differs from tile_sds shape {sds.shape}")
    low, high = hu_range
    sel = (means > low) & (means < high)
    if tile_in_body is not None:
        sel &= np.asarray(tile_in_body, dtype=bool)
    if np.count_nonzero(sel) < MIN_MODE_SAMPLES:
        raise DegenerateInputError(
            f"only {np.count_nonzero(sel)} soft-tissue tiles ({low:g} < mean < {high:g} HU) in the body "
            f"(need {MIN_MODE_SAMPLES}): no soft tissue to measure noise in"
        )
    return histogram_mode(sds[sel])


def soft_tissue_hu(
    tile_means: FloatArray, *, tile_in_body: BoolArray, hu_range: tuple[float, float] = HU_MODE_RANGE
) -> float:
    """The most common CT number of the body's soft tissue: mode of the tile means in -200..300 HU.

    value = mode{ mean(tile) : tile in body, -200 <= mean <= 300 }. Water reads 0 HU and soft
    tissues 20-70 HU when the scanner is calibrated (ACR CT QC manual 2017: water 0 +/- 7 HU);
    fat (-100) may be the mode in obese abdomens. A shift of the whole scale moves this mode and
    the outside air together.
    """
    means = np.asarray(tile_means, dtype=np.float64)
    inside = np.asarray(tile_in_body, dtype=bool)
    if means.shape != inside.shape:
        raise DegenerateInputError(f"tile_means shape {means.shape} differs from tile_in_body shape {inside.shape}")
    low, high = hu_range
    sel = inside & (means >= low) & (means <= high)
    if np.count_nonzero(sel) < MIN_MODE_SAMPLES:
        raise DegenerateInputError(
            f"only {np.count_nonzero(sel)} body tiles between {low:g} and {high:g} HU (need {MIN_MODE_SAMPLES})"
        )
    return histogram_mode(means[sel])


# --------------------------------------------------------------------------------------------
# artifact indicators


def soft_tissue_mask(images: FloatArray, body: BoolArray, *, erode_px: int = 4) -> BoolArray:
    """Soft tissue for the artifact indicators: body, Gaussian-smoothed (sd 1 px) HU in -100..200,
    eroded by ``erode_px`` pixels so that edges of fat, air and bone stay out."""
    stack = np.asarray(images, dtype=np.float32)
    out = np.zeros(stack.shape, dtype=bool)
    low, high = ARTIFACT_SOFT_TISSUE_HU
    for i in range(stack.shape[0]):
        smooth = ndimage.gaussian_filter(stack[i], sigma=1.0)
        m = np.asarray(body[i], dtype=bool) & (smooth > low) & (smooth < high)
        if erode_px > 0:
            m = ndimage.binary_erosion(m, iterations=erode_px, border_value=0)
        out[i] = m
    return out


def streak_index(images: FloatArray, soft_tissue: BoolArray, *, highpass_sd_px: float = 1.5) -> float:
    """Directional excess of high-frequency power in soft tissue: an indicator of streaks.

    r = (image - Gaussian(image, 1.5 px)) inside the soft-tissue mask, its mean removed, 0 outside;
    P(f) = sum over slices of |FFT2(r)|^2, divided by its mean over the ring of equal |f| (so
    that the radial shape of the noise power spectrum cancels); in the band 0.1 <= |f| <= 0.45
    cycles/pixel, S_k = mean of that over 36 direction sectors of 5 degrees;
    index = max_k S_k / lower quartile_k S_k. Noise of a filtered back-projection is close to
    isotropic (index about 1.1-1.3 from sampling scatter); a streak is a line, whose power lies
    along the direction perpendicular to it (projection-slice theorem), so streaks raise the
    sectors of their directions. The lower quartile, not the median, is the reference so that the
    star of streaks around metal (many directions at once) still stands out. An indicator, not a
    calibrated measure: straight anatomical edges inside soft tissue raise it too.
    """
    stack = np.asarray(images, dtype=np.float32)
    masks = np.asarray(soft_tissue, dtype=bool)
    if stack.shape != masks.shape or stack.ndim != 3:
        raise DegenerateInputError(
            f"images shape {stack.shape} and soft_tissue shape {masks.shape} must be equal (slice, row, col)"
        )
    n, h, w = stack.shape
    power = np.zeros((h, w // 2 + 1), dtype=np.float64)
    used = 0
    for i in range(n):
        m = masks[i]
        if np.count_nonzero(m) < 100:
            continue
        hp = stack[i] - ndimage.gaussian_filter(stack[i], sigma=highpass_sd_px)
        r = np.where(m, hp - hp[m].mean(), 0.0).astype(np.float32)
        power += np.abs(sfft.rfft2(r)) ** 2
        used += int(np.count_nonzero(m))
    if used < 1000:
        raise DegenerateInputError(f"only {used} soft-tissue pixels for the streak indicator (need 1000)")
    fy = sfft.fftfreq(h)[:, None]
    fx = sfft.rfftfreq(w)[None, :]
    rho = np.hypot(fy, fx)
    band = (rho >= STREAK_BAND[0]) & (rho <= STREAK_BAND[1])
    ring = np.rint(rho[band] * min(h, w)).astype(np.intp)
    p = power[band]
    ring_mean = np.bincount(ring, weights=p) / np.maximum(np.bincount(ring), 1)
    if np.any(ring_mean[np.unique(ring)] <= 0.0):
        raise DegenerateInputError("no high-frequency signal in soft tissue (constant image?)")
    whitened = p / ring_mean[ring]
    angle = np.mod(np.arctan2(fy, fx), np.pi)[band]
    sector = np.minimum((angle / np.pi * STREAK_SECTORS).astype(np.intp), STREAK_SECTORS - 1)
    counts = np.bincount(sector, minlength=STREAK_SECTORS)
    if np.any(counts == 0):
        raise DegenerateInputError(f"image of {h} x {w} pixels is too small for {STREAK_SECTORS} direction sectors")
    per_sector = np.bincount(sector, weights=whitened, minlength=STREAK_SECTORS) / counts
    return float(per_sector.max() / np.percentile(per_sector, 25.0))


def ring_amplitude_hu(images: FloatArray, soft_tissue: BoolArray) -> float:
    """Largest mean, over whole circles around the image centre, of the radial median residual,
    less 4 standard errors (0 when no circle stands out of the noise).

    Polar resampling about the image centre (taken as the isocentre), 360 angles, 1-pixel radial
    steps; residual e(r, t) = p(r, t) - median_5(p)(r, t), the median running along r (it keeps
    the anatomy's edges and removes thin features); over the soft-tissue samples of all angles
    and slices at radius r: profile(r) = mean e, se(r) = sd e / sqrt(n_eff), n_eff = n min(1,
    2 pi r / 360) (neighbouring samples closer than a pixel are not independent); radii >= 16 px
    whose circles are >= 25 % soft tissue; value = max(0, max_r |profile(r)| - 4 se(r)).
    A ring artifact (a miscalibrated detector channel) is a thin circle about the isocentre, the
    same at every angle, so it survives the angular mean while noise and anatomy average out.
    Polar-coordinate ring handling: Sijbers & Postnov, Phys Med Biol 2004;49:N247. An indicator,
    in HU: roughly the ring's contrast on the grid it is measured on, less the noise floor.
    """
    stack = np.asarray(images, dtype=np.float32)
    masks = np.asarray(soft_tissue, dtype=bool)
    if stack.shape != masks.shape or stack.ndim != 3:
        raise DegenerateInputError(
            f"images shape {stack.shape} and soft_tissue shape {masks.shape} must be equal (slice, row, col)"
        )
    n, h, w = stack.shape
    rmax = int(min(h, w) // 2) - 1
    if rmax <= RING_MIN_RADIUS_PX + RING_MEDIAN_PX:
        raise DegenerateInputError(f"image of {h} x {w} pixels is too small for the ring indicator")
    radii = np.arange(RING_MIN_RADIUS_PX - RING_MEDIAN_PX // 2, rmax + 1, dtype=np.float64)
    theta = np.arange(RING_ANGLES) * (2.0 * np.pi / RING_ANGLES)
    rows = (h - 1) / 2.0 + radii[:, None] * np.sin(theta)[None, :]
    cols = (w - 1) / 2.0 + radii[:, None] * np.cos(theta)[None, :]
    ri = np.clip(np.rint(rows).astype(np.intp), 0, h - 1)
    ci = np.clip(np.rint(cols).astype(np.intp), 0, w - 1)
    sums = np.zeros(radii.size, dtype=np.float64)
    squares = np.zeros(radii.size, dtype=np.float64)
    counts = np.zeros(radii.size, dtype=np.float64)
    used_slices = 0
    for i in range(n):
        m = masks[i][ri, ci]
        if not m.any():
            continue
        p = ndimage.map_coordinates(stack[i], [rows, cols], order=1, mode="nearest")
        e = np.where(m, p - _running_median_rows(p, RING_MEDIAN_PX), 0.0)
        sums += e.sum(axis=1)
        squares += (e * e).sum(axis=1)
        counts += m.sum(axis=1)
        used_slices += 1
    judged = (counts >= RING_MIN_CIRCLE_SHARE * RING_ANGLES * max(used_slices, 1)) & (radii >= RING_MIN_RADIUS_PX)
    if used_slices == 0 or not judged.any():
        raise DegenerateInputError(
            f"no circle of radius >= {RING_MIN_RADIUS_PX} px about the image centre is at least "
            f"{RING_MIN_CIRCLE_SHARE:.0%} soft tissue"
        )
    count = counts[judged]
    mean = sums[judged] / count
    sd = np.sqrt(np.maximum(squares[judged] / count - mean * mean, 0.0) * count / np.maximum(count - 1.0, 1.0))
    n_eff = count * np.minimum(1.0, 2.0 * np.pi * radii[judged] / RING_ANGLES)
    excess = np.abs(mean) - RING_SE_MULTIPLE * sd / np.sqrt(n_eff)
    return float(max(0.0, float(excess.max())))


def _running_median_rows(values: FloatArray, size: int) -> FloatArray:
    """``ndimage.median_filter(values, size=(5, 1), mode="nearest")``: the median of each value and
    its two neighbours on either side down the column, the edge rows repeated. The same values (a
    median of five is one of them), from a sorting network of nine compare-exchanges on the
    shifted copies (Knuth, TAOCP vol. 3, 5.3.4), a fifth of the rank filter's time here."""
    if size != 5:
        raise ValueError(f"the running median is written for 5 values, not {size}")
    n = values.shape[0]
    padded = np.pad(values, ((2, 2), (0, 0)), mode="edge")
    v = [padded[k : k + n] for k in range(5)]
    for i, j in ((0, 1), (3, 4), (2, 4), (2, 3), (0, 3), (0, 2), (1, 4), (1, 3), (1, 2)):
        v[i], v[j] = np.minimum(v[i], v[j]), np.maximum(v[i], v[j])
    return v[2]


def _block_mean(stack: FloatArray, factor: int) -> npt.NDArray[np.float32]:
    if factor <= 1:
        return np.asarray(stack, dtype=np.float32)
    n, h, w = stack.shape
    hb, wb = h // factor, w // factor
    x = np.asarray(stack[:, : hb * factor, : wb * factor], dtype=np.float32)
    return x.reshape(n, hb, factor, wb, factor).mean(axis=(2, 4), dtype=np.float32)


# --------------------------------------------------------------------------------------------
# the entry point


def _pixel_mm(spacing_mm: tuple[float | None, float | None, float | None]) -> float | None:
    try:
        row, col = spacing_mm[1], spacing_mm[2]
    except (TypeError, IndexError):
        return None
    if row is None or col is None:
        return None
    row_f, col_f = float(row), float(col)
    if not (math.isfinite(row_f) and math.isfinite(col_f)) or row_f <= 0 or col_f <= 0:
        return None
    return (row_f + col_f) / 2.0


def measure(
    volume: npt.NDArray[np.floating],
    *,
    spacing_mm: tuple[float | None, float | None, float | None],
    body_part: str | None,
    slice_thickness_mm: float | None = None,
    scan_field_mm: float | None = None,
    reference_thickness_mm: float = NOISE_REFERENCE_MM,
    n_slices: int | None = None,
) -> list[Measurement]:
    """Every CT metric of one series, one Measurement per id of :data:`METRICS`, in that order.

    ``volume`` is the decoded (slice, row, col) array in HU, slices sorted along z; a single
    (row, col) slice is accepted too. ``spacing_mm`` is the (slice, row, col) spacing (None where
    unknown; only the in-plane spacing is used); ``body_part`` the recognition item's body part
    (CHEST, HEAD, ...), which selects the coverage rule. ``slice_thickness_mm`` (SliceThickness
    (0018,0050)) normalises the judged noise ``ct.noise_hu`` to ``reference_thickness_mm`` (see
    :data:`NOISE_REFERENCE_MM`; ``ct.noise_measured_hu`` is the value as measured); when unknown the
    measured value is reported unchanged. ``scan_field_mm`` (DataCollectionDiameter (0018,0090))
    tells a targeted reconstruction from a truncated body (:func:`truncated_slices_percent`).

    At most 30 evenly spaced slices are used (the ``detail`` of each measurement says how many):
    those of :func:`sample_slices`. ``n_slices``: the series has this many slices and ``volume``
    holds only the ones ``sample_slices(n_slices)`` picks, in that order (the caller decoded no
    others); the values are those of the whole volume. Never raises for bad image content: a metric that cannot be measured has value None and a
    ``detail`` saying why.
    """
    results: dict[str, tuple[float | None, str]] = {}
    not_applicable: set[str] = set()
    try:
        results.update(
            _measure(
                volume,
                spacing_mm=spacing_mm,
                body_part=body_part,
                not_applicable=not_applicable,
                scan_field_mm=_positive(scan_field_mm),
                n_slices=n_slices,
            )
        )
    except DegenerateInputError as exc:
        logger.debug("CT metrics not measurable: %s", exc)
        for key in METRICS:
            results.setdefault(key, (None, str(exc)))
    results["ct.noise_measured_hu"] = results.get("ct.noise_hu", (None, "not measured"))
    results["ct.noise_hu"] = _normalised_noise(
        results["ct.noise_measured_hu"], _positive(slice_thickness_mm), reference_thickness_mm
    )
    if "ct.noise_hu" in not_applicable:
        not_applicable.add("ct.noise_measured_hu")
    measurements = []
    for key, unit in METRICS.items():
        value, detail = results.get(key, (None, "not measured"))
        kind = (
            None
            if value is not None
            else (Unmeasured.NOT_APPLICABLE if key in not_applicable else Unmeasured.UNMEASURABLE)
        )
        measurements.append(Measurement(key, None if value is None else float(value), unit, detail, unmeasured=kind))
    return measurements


def _positive(value: float | None) -> float | None:
    try:
        number = float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
    return number if number is not None and math.isfinite(number) and number > 0 else None


def _normalised_noise(
    measured: tuple[float | None, str], thickness_mm: float | None, reference_mm: float
) -> tuple[float | None, str]:
    """The measured global noise level at ``reference_mm`` slices: sd x sqrt(thickness / reference)."""
    value, detail = measured
    if value is None:
        return measured
    if thickness_mm is None:
        return value, f"{detail}; slice thickness unknown: not normalised to {reference_mm:g} mm"
    if math.isclose(thickness_mm, reference_mm, rel_tol=1e-3):
        return value, f"{detail}; measured at the reference slice thickness {reference_mm:g} mm"
    factor = math.sqrt(thickness_mm / reference_mm)
    return value * factor, (
        f"{detail}; {value:.3g} HU measured at {thickness_mm:g} mm slices, normalised to {reference_mm:g} mm "
        f"(x sqrt({thickness_mm:g} / {reference_mm:g}) = x {factor:.3g}: noise goes as 1 / sqrt(slice thickness))"
    )


def _measure(
    volume: npt.NDArray[np.floating],
    *,
    spacing_mm: tuple[float | None, float | None, float | None],
    body_part: str | None,
    not_applicable: set[str],
    scan_field_mm: float | None = None,
    n_slices: int | None = None,
) -> dict[str, tuple[float | None, str]]:
    array = np.asarray(volume)
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise DegenerateInputError(f"expected a real numeric volume, got dtype {array.dtype}")
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[0] < 1 or min(array.shape[1:]) < 16:
        raise DegenerateInputError(
            f"expected a (slice, row, col) volume of at least 16 x 16 pixels, got shape {array.shape}"
        )
    n_total, h, w = array.shape
    if n_slices is None:
        index = sample_slices(n_total)
        slices = np.asarray(array[index], dtype=np.float32)
    else:  # the caller decoded only the slices sampled out of a series of n_slices
        index = sample_slices(n_slices)
        if index.size != n_total:
            raise ValueError(f"{n_total} slices given, but {index.size} are sampled out of n_slices={n_slices}")
        n_total = n_slices
        slices = np.asarray(array, dtype=np.float32)
    if not np.isfinite(slices).all():
        raise DegenerateInputError("the volume holds NaN or infinite values")
    used = f"{index.size} of {n_total} slices"
    pixel_mm = _pixel_mm(spacing_mm)
    out: dict[str, tuple[float | None, str]] = {}

    def record(key: str, func: Callable[[], float], detail: str) -> None:
        try:
            out[key] = (func(), detail)
        except DegenerateInputError as exc:
            out[key] = (None, str(exc))
            if isinstance(exc, NotApplicableError):
                not_applicable.add(key)

    step = max(1, round(max(h, w) / SEGMENTATION_GRID_PX))
    low = slices[:, ::step, ::step]
    seg = segment_body(low, pixel_mm=None if pixel_mm is None else pixel_mm * step)
    judged = int(np.count_nonzero(~seg.targeted))
    judged_text = f"{judged} non-targeted of {index.size} sampled slices ({n_total} in the series)"
    record("ct.air_hu", lambda: outside_air_hu(low, seg), f"median outside the body on {judged_text}")
    field_mm = None if pixel_mm is None else min(h, w) * pixel_mm
    record(
        "ct.truncated_slices_percent",
        lambda: truncated_slices_percent(seg, scan_field_mm=scan_field_mm, field_mm=field_mm),
        judged_text
        if scan_field_mm is not None
        else f"{judged_text}; scan field unknown (no DataCollectionDiameter): the reconstruction field is taken as the scan field",
    )

    if pixel_mm is None:
        tile = DEFAULT_NOISE_KERNEL_PX
        kernel = f"{tile}-pixel tiles (pixel spacing unknown)"
    else:
        tile = max(3, round(NOISE_KERNEL_MM / pixel_mm))
        kernel = f"{tile}-pixel ({tile * pixel_mm:.1f} mm) tiles"
    try:
        means, sds = tile_statistics(slices, tile_px=tile)
    except DegenerateInputError as exc:
        out["ct.soft_tissue_hu"] = (None, str(exc))
        out["ct.noise_hu"] = (None, str(exc))
    else:
        # tiles whose centre lies in the body, at least one tile away from its edge
        margin = max(1, math.ceil(tile / step))
        interior = np.zeros_like(seg.filled)
        for i in range(interior.shape[0]):
            interior[i] = ndimage.binary_erosion(seg.filled[i], structure=_disk(margin), border_value=1)
        rows = np.minimum((np.arange(means.shape[1]) * tile + tile // 2) // step, interior.shape[1] - 1)
        cols = np.minimum((np.arange(means.shape[2]) * tile + tile // 2) // step, interior.shape[2] - 1)
        in_body = interior[:, rows][:, :, cols]
        record(
            "ct.soft_tissue_hu",
            lambda: soft_tissue_hu(means, tile_in_body=in_body),
            f"mode of {kernel} means, {used}",
        )
        record(
            "ct.noise_hu",
            lambda: global_noise_level(means, sds, tile_in_body=in_body),
            f"mode of {kernel} SDs in 0-150 HU, {used}",
        )

    part = (body_part or "").strip().upper() or "unknown"
    record(
        "ct.coverage_end_percent",
        lambda: coverage_end_percent(low, seg, body_part=body_part),
        f"{part}: end slices vs the largest of {used}",
    )

    n_art = min(index.size, MAX_ARTIFACT_SLICES)
    art_pick = sample_slices(index.size, max_slices=max(n_art, 2))
    factor = max(1, round(max(h, w) / ARTIFACT_GRID_PX))
    images = _block_mean(slices[art_pick], factor)
    hb, wb = images.shape[1:]
    brow = np.minimum((np.arange(hb) * factor + factor // 2) // step, seg.filled.shape[1] - 1)
    bcol = np.minimum((np.arange(wb) * factor + factor // 2) // step, seg.filled.shape[2] - 1)
    art_body = seg.filled[art_pick][:, brow][:, :, bcol]
    soft = soft_tissue_mask(images, art_body)
    art_used = f"{art_pick.size} of {n_total} slices"
    record("ct.streak_index", lambda: streak_index(images, soft), f"max/lower-quartile sector HF power, {art_used}")
    record("ct.ring_hu", lambda: ring_amplitude_hu(images, soft), f"circle-mean residual above 4 SE, {art_used}")
    return out
