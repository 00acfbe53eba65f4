"""Every slice of a series at its own resolution, in a chosen window: the series viewer of the
blinded spot-check pages (server-rendered PNGs: the pages run no script).

A case's study is read once (headers only, :func:`open_series`); each slice is decoded when asked
(:func:`render_slice`), one file at a time, so that a 600-slice CT costs one slice's memory.

Windows (centre/width, HU for CT) are the usual display windows of radiology teaching material
(Radiopaedia, "Windowing (CT)", https://radiopaedia.org/articles/windowing-ct: brain 40/80,
mediastinum (soft tissue) 50/350, lung -600/1500, bone 400/1800). ``auto`` is what the key image
uses: the file's own window for CT, else the 0.5th–99.5th percentile of the slice (MR, DR).
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from PIL import Image

from qc_pipeline.errors import QCError
from qc_pipeline.io.dicom import text
from qc_pipeline.io.pixels import load_series, slice_order
from qc_pipeline.review.images import DR_MODALITIES, MIN_SIDE_PX, _ct_window, _entry, _window, image_series
from qc_pipeline.sources import open_source
from qc_pipeline.sources.base import InstanceRef, StudySource

logger = logging.getLogger(__name__)

AUTO: Final = "auto"
CT_PRESETS: Final[dict[str, tuple[float, float]]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
}
"""Centre and width (HU) of the CT windows offered besides ``auto`` (source: module docstring)."""
PRESET_LABELS: Final[dict[str, tuple[str, str]]] = {
    AUTO: ("auto", "自动"),
    "lung": ("lung", "肺窗"),
    "mediastinum": ("mediastinum", "纵隔窗"),
    "bone": ("bone", "骨窗"),
    "brain": ("brain", "脑窗"),
}
"""Preset -> (English, Chinese)."""


def presets_for(modality: str) -> tuple[str, ...]:
    """The windows offered for a series: CT has the named ones, MR and DR only ``auto``."""
    return (AUTO, *CT_PRESETS) if modality == "CT" else (AUTO,)


@dataclass(frozen=True, slots=True)
class SeriesSlices:
    """One image series as the viewer pages through it: its slices in stacking order."""

    modality: str
    refs: tuple[InstanceRef, ...]
    """The object of each slice (an object repeats for the frames of a multi-frame one)."""
    frames: tuple[int, ...]
    """The frame of each slice within its object."""

    @property
    def n_slices(self) -> int:
        return len(self.refs)


@dataclass(frozen=True, slots=True)
class OpenedStudy:
    source: StudySource
    series: tuple[SeriesSlices, ...]
    """In the order of the key images (``images.image_series``)."""


def open_series(source_uri: str | None, uid: str) -> OpenedStudy:
    """The image series of study ``uid`` with their slice order, from the headers; QCError when
    the source or the study cannot be read."""
    if not source_uri:
        raise QCError("the study's source is not recorded")
    src = open_source(source_uri)
    entry = _entry(src, uid)
    if entry is None:
        raise QCError("the study is no longer in its source")
    study = src.load(entry)
    out = []
    for _series_uid, members in image_series(study.images):
        datasets = [m.dataset for m in members]
        modality = (text(datasets[0], "Modality") or "").upper()
        order = slice_order(datasets)
        out.append(SeriesSlices(modality, tuple(members[i].ref for i, _ in order), tuple(f for _, f in order)))
    return OpenedStudy(src, tuple(out))


def render_slice(opened: OpenedStudy, series: int, index: int, preset: str) -> bytes:
    """Slice ``index`` of series ``series`` as a PNG at the matrix's own size (a small matrix is
    enlarged pixel for pixel to ``MIN_SIDE_PX``; rows stretched to square pixels).

    ValueError for a series, slice or preset that does not exist."""
    if not 0 <= series < len(opened.series):
        raise ValueError(f"series {series} does not exist: the study has {len(opened.series)}")
    stack = opened.series[series]
    if not 0 <= index < stack.n_slices:
        raise ValueError(f"slice {index} does not exist: the series has {stack.n_slices}")
    if preset not in presets_for(stack.modality):
        raise ValueError(
            f"window {preset!r} is not offered for {stack.modality or 'this'} series; use one of {presets_for(stack.modality)}"
        )
    with opened.source.pixel_files([stack.refs[index]]) as paths:
        volume = load_series(paths)
    wanted = stack.frames[index]
    frame = slice_order(volume.datasets).index((0, wanted)) if volume.array.shape[0] > 1 else 0
    array = np.asarray(volume.array[frame], dtype=np.float32)
    if stack.modality == "CT":
        window = _ct_window(volume.datasets[0]) if preset == AUTO else CT_PRESETS[preset]
    else:
        window = None
    grey = _window(array, window)
    _, row_mm, col_mm = volume.spacing_mm
    aspect = row_mm / col_mm if row_mm and col_mm and stack.modality not in DR_MODALITIES else 1.0
    return _png_full(grey, aspect)


def _png_full(grey: np.ndarray, aspect: float) -> bytes:
    image = Image.fromarray(grey, mode="L")
    height = grey.shape[0] * (aspect if math.isfinite(aspect) and aspect > 0 else 1.0)
    scale = max(1.0, MIN_SIDE_PX / max(height, grey.shape[1]))
    size = (max(1, round(grey.shape[1] * scale)), max(1, round(height * scale)))
    if size != image.size:
        image = image.resize(size, Image.Resampling.NEAREST if scale > 1.0 else Image.Resampling.BILINEAR)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def slice_links(n_slices: int, current: int, *, around: int = 5) -> Sequence[int]:
    """The slice numbers to link from the page: first, last, ten steps and the neighbours of ``current``."""
    step = max(1, n_slices // 10)
    wanted = {0, n_slices - 1, *range(0, n_slices, step)}
    wanted |= {i for i in range(current - around, current + around + 1) if 0 <= i < n_slices}
    return sorted(wanted)
