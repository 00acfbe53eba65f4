"""Key images for the study page: one windowed PNG per image series, made from the DICOM.

The study's files are read through its source (``studies.source_uri``: a folder or the DICOMweb
cloud), the series decoded with :mod:`qc_pipeline.io.pixels`. The key image is the middle slice
of a CT/MR series (a single radiograph for DR). Grey levels:

- CT: the file's WindowCenter/WindowWidth (0028,1050/1051; the first value when there are
  several), else a soft-tissue window (40/400 HU);
- DR and MR: the 0.5th–99.5th percentile of the image.

What a finding is about is marked where it has a place:

- missing slices (``continuity.slice.missing``): a second panel re-slices the stack along the
  slice normal at the slices' real positions; the gaps are red bands;
- ghosting (``image_quality.mr.ghosting*``): the air ROIs along the phase-encode direction
  (:func:`qc_pipeline.metrics.mr.ghost_rois`) are tinted orange;
- clipping (``image_quality.dr.clipped*`` / ``pileup*``): pixels pinned at the stored or image
  maximum are tinted red.

A series whose pixels cannot be read gets a placeholder with the reason, never an error page.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from scipy import ndimage as ndi

from qc_pipeline.checks.image_quality import series_label  # the series names the findings use
from qc_pipeline.errors import QCError
from qc_pipeline.io.dicom import text
from qc_pipeline.io.geometry import as_floats
from qc_pipeline.io.pixels import load_image, load_series, stored_value_range
from qc_pipeline.metrics import dr as dr_metrics
from qc_pipeline.metrics import mr as mr_metrics
from qc_pipeline.sources import open_source
from qc_pipeline.sources.base import LoadedInstance, StudyEntry, StudySource

logger = logging.getLogger(__name__)

DR_MODALITIES: Final = frozenset({"CR", "DX", "DR", "MG", "RF", "XA"})
CT_DEFAULT_WINDOW: Final = (40.0, 400.0)
PERCENTILES: Final = (0.5, 99.5)
MAX_SIDE_PX: Final = 768
MIN_SIDE_PX: Final = 256
"""Small matrices (64² phantoms) are enlarged, pixel for pixel, to at least this size."""
MAX_SLICES_DECODED: Final = 600
"""A longer series has only its middle file decoded (no re-sliced panel)."""
MISSING_FACTOR_DEFAULT: Final = 1.5
RED: Final = np.array([230, 40, 40], dtype=np.float32)
ORANGE: Final = np.array([255, 150, 0], dtype=np.float32)

Float = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Mark:
    en: str
    zh: str


@dataclass(slots=True)
class KeyImage:
    """One series' key image (``png`` is None when its pixels could not be read: see ``error``)."""

    series_instance_uid: str
    label_en: str
    label_zh: str
    modality: str
    png: bytes | None = None
    marks: list[Mark] = field(default_factory=list)
    error_en: str | None = None
    error_zh: str | None = None


@dataclass(frozen=True, slots=True)
class StudyImages:
    images: list[KeyImage]
    error_en: str | None = None
    """Why no series could be read at all (source unreachable, study gone)."""
    error_zh: str | None = None


def _window(array: Float, center_width: tuple[float, float] | None) -> npt.NDArray[np.uint8]:
    finite = array[np.isfinite(array)]
    if center_width is not None:
        center, width = center_width
        lo, hi = center - width / 2.0, center + width / 2.0
    elif finite.size:
        lo, hi = (float(v) for v in np.percentile(finite, PERCENTILES))
    else:
        lo, hi = 0.0, 1.0
    if hi <= lo:
        hi = lo + 1.0
    scaled = np.clip((np.nan_to_num(array, nan=lo) - lo) / (hi - lo), 0.0, 1.0)
    return (scaled * 255.0 + 0.5).astype(np.uint8)


def _first_number(ds: Dataset, keyword: str) -> float | None:
    value = ds.get(keyword)
    if isinstance(value, MultiValue | list | tuple):
        value = value[0] if len(value) else None
    found = as_floats(value, count=1)
    return None if found is None else found[0]


def _ct_window(ds: Dataset) -> tuple[float, float]:
    center, width = _first_number(ds, "WindowCenter"), _first_number(ds, "WindowWidth")
    if center is not None and width is not None and width > 0:
        return (center, width)
    return CT_DEFAULT_WINDOW


def _tint(rgb: Float, mask: npt.NDArray[np.bool_], colour: Float, alpha: float = 0.55) -> None:
    rgb[mask] = rgb[mask] * (1.0 - alpha) + colour * alpha


def _png(
    grey: npt.NDArray[np.uint8], overlays: Sequence[tuple[npt.NDArray[np.bool_], Float]] = (), *, aspect: float = 1.0
) -> Image.Image:
    """Grey image plus tinted overlays, scaled so that the longer side is at most MAX_SIDE_PX.

    ``aspect`` is the height of a row relative to the width of a column (row spacing / column
    spacing), so that anatomy keeps its shape.
    """
    rgb = np.repeat(grey[:, :, None].astype(np.float32), 3, axis=2)
    for mask, colour in overlays:
        if mask.any():
            _tint(rgb, mask, colour)
    image = Image.fromarray(np.clip(rgb + 0.5, 0, 255).astype(np.uint8), mode="RGB")
    height = grey.shape[0] * (aspect if math.isfinite(aspect) and aspect > 0 else 1.0)
    longest = max(height, grey.shape[1])
    scale = MAX_SIDE_PX / longest if longest > MAX_SIDE_PX else max(1.0, MIN_SIDE_PX / longest)
    size = (max(1, round(grey.shape[1] * scale)), max(1, round(height * scale)))
    resample = Image.Resampling.NEAREST if scale > 1.0 else Image.Resampling.BILINEAR
    return image.resize(size, resample) if size != image.size else image


def _side_by_side(panels: Sequence[Image.Image]) -> bytes:
    gap = 8
    width = sum(p.width for p in panels) + gap * (len(panels) - 1)
    height = max(p.height for p in panels)
    canvas = Image.new("RGB", (width, height), (24, 24, 24))
    x = 0
    for panel in panels:
        canvas.paste(panel, (x, 0))
        x += panel.width + gap
    out = io.BytesIO()
    canvas.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _codes(finding_codes: Sequence[str], *fragments: str) -> bool:
    return any(any(fragment in code for fragment in fragments) for code in finding_codes)


def restack(
    volume: Float, positions: Sequence[float], *, spacing_mm: float, pixel_mm: float, factor: float
) -> tuple[Float, npt.NDArray[np.bool_], list[float]]:
    """The stack re-sliced through its middle row, slices placed at their real positions.

    Returns ``(image, gap_rows, missing)``: ``image`` has one row per ``pixel_mm`` along the slice
    normal (at most MAX_SIDE_PX rows), filled from the nearest slice within half a spacing;
    ``gap_rows`` marks rows in a gap wider than ``factor`` x the median spacing; ``missing`` are
    the positions (mm) where such gaps are.
    """
    pos = np.asarray(positions, dtype=np.float64)
    extent = float(pos[-1] - pos[0])
    step = max(pixel_mm, extent / MAX_SIDE_PX, 1e-3)
    n_rows = max(1, int(extent / step) + 1)
    axis = pos[0] + np.arange(n_rows) * step
    nearest = np.clip(np.searchsorted(pos, axis), 1, len(pos) - 1)
    nearest = np.where(np.abs(pos[nearest - 1] - axis) <= np.abs(pos[nearest] - axis), nearest - 1, nearest)
    line = volume[:, volume.shape[1] // 2, :]
    image = line[nearest].astype(np.float32)
    steps = np.diff(pos)
    gap_rows = np.zeros(n_rows, dtype=bool)
    missing: list[float] = []
    for k in np.flatnonzero(steps > factor * spacing_mm):
        inside = (axis > pos[k] + spacing_mm / 2.0) & (axis < pos[k + 1] - spacing_mm / 2.0)
        gap_rows |= inside
        n = max(1, round(float(steps[k]) / spacing_mm) - 1)
        missing.extend(float(pos[k] + (j + 1) * steps[k] / (n + 1)) for j in range(n))
    return image, gap_rows, missing


def _ghost_mask(volume: Float, index: int, phase_direction: str | None) -> npt.NDArray[np.bool_]:
    """Air ROIs where the ghosts of the phase-encode direction fall, on the full matrix of slice ``index``."""
    masks = mr_metrics.segment(volume)
    rois = mr_metrics.ghost_rois(masks.tissue[index], masks.background[index])
    names = {"ROW": ("left", "right"), "COL": ("top", "bottom")}.get((phase_direction or "").upper(), tuple(rois))
    grid = np.zeros(masks.tissue.shape[1:], dtype=bool)
    for name in names:
        grid |= rois[name]
    full = np.zeros(volume.shape[1:], dtype=bool)
    region = full[masks.rows, masks.cols]
    region[:: masks.step, :: masks.step] = grid  # a view: this writes into ``full``
    if masks.step > 1:
        full[masks.rows, masks.cols] = ndi.maximum_filter(region.view(np.uint8), size=masks.step).astype(bool)
    return full


def _render_dr(path: object, codes: Sequence[str]) -> tuple[bytes, list[Mark]]:
    image = load_image(path)  # type: ignore[arg-type]
    grey = _window(image.array, None)
    overlays = []
    marks: list[Mark] = []
    if _codes(codes, "dr.clipped", "dr.pileup"):
        lo, hi = stored_value_range(image)
        tol = dr_metrics.pin_tolerance(lo, hi)
        peak = float(np.max(image.array))
        pinned = (image.array >= hi - tol) | (image.array >= peak - dr_metrics.pin_tolerance(lo, peak))
        overlays.append((pinned, RED))
        share = 100.0 * float(pinned.mean())
        marks.append(
            Mark(
                f"red: pixels pinned at the maximum ({share:.1f} % of the image)",
                f"红色：处于最大值的饱和像素（占图像 {share:.1f}%）",
            )
        )
    aspect = image.spacing_mm[0] / image.spacing_mm[1] if image.spacing_mm else 1.0
    return _side_by_side([_png(grey, overlays, aspect=aspect)]), marks


def _render_volume(
    paths: Sequence[object], modality: str, codes: Sequence[str], missing_factor: float
) -> tuple[bytes, list[Mark]]:
    files = list(paths)
    if len(files) > MAX_SLICES_DECODED:
        files = [files[len(files) // 2]]
    volume = load_series(files)  # type: ignore[arg-type]
    array = np.asarray(volume.array)
    index = array.shape[0] // 2
    first = volume.datasets[volume.slice_sources[index][0]]
    window = _ct_window(first) if modality == "CT" else None
    grey = _window(array[index], window)
    overlays = []
    marks: list[Mark] = []
    if modality == "MR" and _codes(codes, "mr.ghosting"):
        try:
            ghost = _ghost_mask(array, index, text(first, "InPlanePhaseEncodingDirection"))
            overlays.append((ghost, ORANGE))
            marks.append(
                Mark(
                    "orange: air along the phase-encode direction, where the ghosts were measured",
                    "橙色：相位编码方向上测量伪影的背景区域",
                )
            )
        except QCError as exc:
            logger.info("no ghost region for the key image: %s", exc)
    _, row_mm, col_mm = volume.spacing_mm
    aspect = row_mm / col_mm if row_mm and col_mm else 1.0
    panels = [_png(grey, overlays, aspect=aspect)]
    if _codes(codes, "continuity.slice.missing") and volume.positions_mm and len(volume.positions_mm) >= 3:
        spacing = volume.spacing_mm[0] or 1.0
        restacked, gap_rows, missing = restack(
            array, volume.positions_mm, spacing_mm=spacing, pixel_mm=col_mm or 1.0, factor=missing_factor
        )
        band = np.repeat(gap_rows[:, None], restacked.shape[1], axis=1)
        panels.append(_png(_window(restacked, window), [(band, RED)]))
        shown = ", ".join(f"{p:.1f}" for p in missing[:8]) + (" …" if len(missing) > 8 else "")
        marks.append(
            Mark(
                f"right: the stack along the slice normal; red: missing slice(s) at {shown} mm",
                f"右图：沿层面法线重排的图像；红色：缺失层面位置 {shown} mm",
            )
        )
    return _side_by_side(panels), marks


def _entry(src: StudySource, uid: str) -> StudyEntry | None:
    lookup = getattr(src, "entry_for", None)
    if callable(lookup):  # a server that can be asked for one study (DICOMweb)
        found = lookup(uid)
        return found if isinstance(found, StudyEntry) else None
    return next((e for e in src.discover() if e.study_instance_uid == uid), None)


def image_series(instances: Sequence[LoadedInstance]) -> list[tuple[str, list[LoadedInstance]]]:
    """The image series of a study in SeriesNumber order (then UID), each with its instances;
    files with truncated pixel data are left out (the integrity finding names them; the other
    files still make an image). The key images and the spot-check viewer number series alike."""
    by_series: dict[str, list[LoadedInstance]] = {}
    for inst in instances:
        if inst.pixel_data is not None and inst.pixel_data.truncated:
            continue
        by_series.setdefault(inst.ref.series_instance_uid, []).append(inst)

    def order(item: tuple[str, list[LoadedInstance]]) -> tuple[float, str]:
        number = as_floats(item[1][0].dataset.get("SeriesNumber"), count=1)
        return (number[0] if number else math.inf, item[0])

    return sorted(by_series.items(), key=order)


def render_study(
    source_uri: str | None,
    uid: str,
    findings: Sequence[dict[str, object]],
    *,
    missing_factor: float = MISSING_FACTOR_DEFAULT,
) -> StudyImages:
    """Key images of every image series of study ``uid`` (see the module docstring)."""
    if not source_uri:
        return StudyImages([], "the study's source is not recorded", "未记录该检查的数据源")
    try:
        src = open_source(source_uri)
        entry = _entry(src, uid)
        if entry is None:
            return StudyImages([], f"the study is no longer in its source {source_uri}", "数据源中已没有该检查")
        study = src.load(entry)
    except QCError as exc:
        logger.warning("cannot read study %s from its source: %s", uid, exc)
        return StudyImages([], f"cannot read the source: {exc}", "无法读取数据源")
    left_out: dict[str, int] = {}
    for inst in study.images:
        if inst.pixel_data is not None and inst.pixel_data.truncated:
            left_out[inst.ref.series_instance_uid] = left_out.get(inst.ref.series_instance_uid, 0) + 1
    images = []
    for series_uid, members in image_series(study.images):
        ds = members[0].dataset
        modality = (text(ds, "Modality") or "").upper()
        en, zh = series_label(ds)
        key = KeyImage(series_uid, en, zh, modality)
        codes = [str(f["code"]) for f in findings if f.get("series_instance_uid") in (series_uid, None)]
        try:
            with src.pixel_files([m.ref for m in members]) as paths:
                if modality in DR_MODALITIES:
                    key.png, key.marks = _render_dr(paths[0], codes)
                else:
                    key.png, key.marks = _render_volume(paths, modality, codes, missing_factor)
            if series_uid in left_out:
                n = left_out[series_uid]
                key.marks.append(
                    Mark(f"{n} file(s) with truncated pixel data left out", f"已略去 {n} 个像素数据不完整的文件")
                )
        except QCError as exc:
            key.error_en, key.error_zh = str(exc), "无法解码该序列的像素数据"
        except Exception as exc:  # a decoder's own error on odd data: a placeholder, not a crash
            logger.warning("key image of series %s failed", series_uid, exc_info=True)
            key.error_en, key.error_zh = f"{type(exc).__name__}: {exc}"[:300], "无法解码该序列的像素数据"
        images.append(key)
    if not images:
        return StudyImages([], "the study holds no image that can be shown", "该检查没有可显示的图像")
    return StudyImages(images)
