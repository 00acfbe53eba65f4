"""Slice geometry from header values: plane, slice normal, position along the normal.

Pure functions on ImageOrientationPatient (0020,0037) and ImagePositionPatient (0020,0032), and
a reader of per-frame geometry for enhanced (multi-frame) objects. Nothing here raises on a
missing or garbled header value: the functions return None (or an empty list) and the caller
reports what it could not read.

Coordinates are DICOM patient coordinates (LPS, mm): x to the patient's left, y to the
posterior, z to the head (DICOM PS3.3 C.7.6.2.1.1).
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

import numpy as np
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset

logger = logging.getLogger(__name__)

OBLIQUE_MARGIN_DEG: Final = 5.0
"""How close to 45° (the bisector between two patient axes) a slice normal must come to be OBLIQUE.

A plane is named by the largest direction cosine of its normal, so slices angled along the anatomy
stay in their plane: a lumbar axial along the disc (25-30°), a brain axial along the AC-PC line, a
knee sagittal along the ACL. Only a normal within this margin of 45° is left OBLIQUE: there the two
largest cosines differ by less than sin(50°) - sin(40°) ≈ 0.12, the slice shows both planes' anatomy
about equally, and the name consoles give it flips between the two with a few degrees of
positioning. 5° is a site default; the check that needs a plane sends an OBLIQUE series to review."""
DEFAULT_OBLIQUE_TOLERANCE_DEG: Final = 45.0 - OBLIQUE_MARGIN_DEG
"""Largest angle (degrees) between the slice normal and its nearest patient axis that still names
the plane of that axis; see :data:`OBLIQUE_MARGIN_DEG`. A true double oblique (normal more than 40°
from every axis, up to 54.7° on the body diagonal) stays OBLIQUE."""
MAX_FRAMES: Final = 100_000
"""More frames than this in a header without per-frame groups is taken as garbled."""
_MIN_VECTOR_NORM: Final = 1e-6


class Plane(StrEnum):
    """The anatomical plane of a slice, from the direction of its normal."""

    AXIAL = "AXIAL"
    SAGITTAL = "SAGITTAL"
    CORONAL = "CORONAL"
    OBLIQUE = "OBLIQUE"


# Patient axis (index into x, y, z) -> the plane whose normal lies along it.
_PLANE_OF_AXIS: Final = {0: Plane.SAGITTAL, 1: Plane.CORONAL, 2: Plane.AXIAL}
AXIS_NAMES: Final = ("x", "y", "z")


def as_floats(value: object, *, count: int) -> tuple[float, ...] | None:
    """``count`` finite floats from a header value (multi-value, list, ``a\\b`` text), or None.

    None when the value is absent, has another number of values, or holds a value that is not a
    finite number.
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    if isinstance(value, str):
        items: list[object] = [v for v in value.strip().strip("\x00").split("\\")]
    elif isinstance(value, Sequence | np.ndarray):
        items = list(value)
    else:
        items = [value]
    if len(items) != count:
        return None
    out: list[float] = []
    for item in items:
        try:
            number = float(item)  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):
            return None
        if not math.isfinite(number):
            return None
        out.append(number)
    return tuple(out)


def slice_normal(iop: Sequence[float] | None) -> tuple[float, float, float] | None:
    """The unit slice normal, cross(row, column), of ImageOrientationPatient (0020,0037).

    ``iop`` holds the row direction cosines then the column direction cosines (6 values). Each
    direction is normalised first, so slightly non-unit cosines written by rounding still give a
    unit normal. None when ``iop`` is not 6 finite numbers, a direction is zero, or the two
    directions are parallel.
    """
    values = as_floats(iop, count=6)
    if values is None:
        return None
    return _unit_normal(values)


@functools.lru_cache(maxsize=256)
def _unit_normal(values: tuple[float, ...]) -> tuple[float, float, float] | None:
    """:func:`slice_normal` of six finite numbers, remembered: the files of a series repeat one
    orientation, and numpy's cost on three-element vectors is most of a header's geometry."""
    row = np.asarray(values[:3], dtype=float)
    col = np.asarray(values[3:], dtype=float)
    row_norm = float(np.linalg.norm(row))
    col_norm = float(np.linalg.norm(col))
    if row_norm < _MIN_VECTOR_NORM or col_norm < _MIN_VECTOR_NORM:
        return None
    normal = np.cross(row / row_norm, col / col_norm)
    norm = float(np.linalg.norm(normal))
    if norm < _MIN_VECTOR_NORM:
        return None
    unit = normal / norm
    return (float(unit[0]), float(unit[1]), float(unit[2]))


def normal_axis(normal: Sequence[float]) -> tuple[int, float]:
    """The patient axis (0 = x, 1 = y, 2 = z) closest to ``normal``, and the angle to it (deg)."""
    components = [abs(float(c)) for c in normal]
    axis = int(np.argmax(components))
    cosine = min(1.0, components[axis] / max(math.sqrt(sum(c * c for c in components)), _MIN_VECTOR_NORM))
    return axis, math.degrees(math.acos(cosine))


def plane_from_orientation(
    iop: Sequence[float] | None, *, oblique_tolerance_deg: float = DEFAULT_OBLIQUE_TOLERANCE_DEG
) -> Plane | None:
    """The plane of a slice from ImageOrientationPatient (0020,0037).

    The slice normal is cross(row, column); the plane is the one whose normal is the patient axis
    closest to it, i.e. the largest direction cosine of the normal (z -> axial, x -> sagittal,
    y -> coronal), or OBLIQUE when the angle between the normal and that axis exceeds
    ``oblique_tolerance_deg`` (default 40°: within :data:`OBLIQUE_MARGIN_DEG` of 45°, where two
    axes are equally close). None when ``iop`` is missing or garbled (see :func:`slice_normal`).
    """
    if not 0.0 <= oblique_tolerance_deg < 90.0:
        raise ValueError(f"oblique_tolerance_deg must be in [0, 90) degrees, got {oblique_tolerance_deg!r}")
    normal = slice_normal(iop)
    if normal is None:
        return None
    axis, angle = normal_axis(normal)
    if angle > oblique_tolerance_deg:
        return Plane.OBLIQUE
    return _PLANE_OF_AXIS[axis]


def slice_position(ipp: Sequence[float] | None, normal: Sequence[float] | None) -> float | None:
    """Position of a slice along the normal: ImagePositionPatient (0020,0032) · normal, in mm.

    None when either is missing or not 3 finite numbers.
    """
    position = as_floats(ipp, count=3)
    direction = as_floats(normal, count=3)
    if position is None or direction is None:
        return None
    return float(np.dot(position, direction))


@dataclass(frozen=True, slots=True)
class FrameGeometry:
    """The geometry of one frame (or of a classic single-frame image); None where unreadable."""

    orientation: tuple[float, ...] | None
    """ImageOrientationPatient: row then column direction cosines (6 values)."""
    position: tuple[float, float, float] | None
    """ImagePositionPatient: the centre of the first transmitted voxel, mm."""
    pixel_spacing: tuple[float, float] | None
    """PixelSpacing: row spacing then column spacing, mm."""
    slice_thickness: float | None


def header_value(ds: Dataset | None, keyword: str | int) -> object:
    """``ds.keyword`` (or the value of the element with tag number ``keyword``: private tags are
    looked up by number) or None; never raises (a garbled value converts lazily and may fail).

    The header reader of every module that must not crash on a garbled file."""
    if ds is None:
        return None
    # By tag number: ``ds[tag]`` costs half of ``ds.get(keyword)``, which goes through attribute
    # lookup, and headers are read this way tens of thousands of times for a long series.
    tag = _tag_of(keyword) if isinstance(keyword, str) else keyword
    if tag is None:
        return None
    try:
        return ds[tag].value
    except KeyError:
        return None
    except Exception:  # pydicom raises several types for values it cannot convert
        logger.debug("unreadable %s", keyword, exc_info=True)
        return None


def header_get(ds: Dataset, keyword: str, default: object = None) -> Any:
    """``ds.get(keyword, default)``, looked up by tag number (half the cost): the value, or
    ``default`` when the element is absent. Unlike :func:`header_value`, a value pydicom cannot
    convert raises, as from ``ds.get``."""
    tag = _tag_of(keyword)
    if tag is None:
        return ds.get(keyword, default)
    try:
        element = ds[tag]
    except KeyError:
        return default
    return element.value


@functools.cache
def _tag_of(keyword: str) -> int | None:
    """The tag number of a DICOM keyword; None for a name that is none."""
    return tag_for_keyword(keyword)


def header_text(ds: Dataset | None, keyword: str | int) -> str | None:
    """A header value as stripped text; None when absent, empty or unreadable (never raises)."""
    value = header_value(ds, keyword)
    if value is None:
        return None
    result = str(value).strip().strip("\x00").strip()
    return result or None


def first_item(ds: Dataset | None, keyword: str) -> Dataset | None:
    """The first item of the sequence ``keyword`` of ``ds``, or None."""
    value = header_value(ds, keyword)
    if value is None:
        return None
    try:
        return value[0] if len(value) > 0 and isinstance(value[0], Dataset) else None  # type: ignore[index,arg-type]
    except (TypeError, IndexError):
        return None


def _frame_count(ds: Dataset) -> int | None:
    raw = as_floats(header_value(ds, "NumberOfFrames"), count=1)
    if raw is None or raw[0] < 1 or raw[0] != int(raw[0]):
        return None
    return int(raw[0])


def number_of_frames(ds: Dataset) -> int:
    """Frames of ``ds``: the per-frame functional groups when present, else NumberOfFrames.

    1 for a classic single-frame object; at most :data:`MAX_FRAMES`.
    """
    per_frame = header_value(ds, "PerFrameFunctionalGroupsSequence")
    if per_frame is not None:
        try:
            return len(per_frame)  # type: ignore[arg-type]
        except TypeError:
            return 0
    count = _frame_count(ds) or 1
    if count > MAX_FRAMES:
        logger.debug("NumberOfFrames %d is implausible without per-frame groups", count)
        return 1
    return count


def has_functional_groups(ds: Dataset) -> bool:
    """True for an enhanced object: it has shared or per-frame functional groups."""
    return (
        header_value(ds, "SharedFunctionalGroupsSequence") is not None
        or header_value(ds, "PerFrameFunctionalGroupsSequence") is not None
    )


def frame_functional_group(ds: Dataset, keyword: str) -> list[Dataset | None]:
    """For each frame, the first item of the functional group ``keyword`` (e.g. ``PixelMeasuresSequence``).

    A per-frame item (PerFrameFunctionalGroupsSequence (5200,9230)) wins over the shared one
    (SharedFunctionalGroupsSequence (5200,9229)). Empty for an object without functional groups.
    """
    if not has_functional_groups(ds):
        return []
    shared_groups = first_item(ds, "SharedFunctionalGroupsSequence")
    per_frame = header_value(ds, "PerFrameFunctionalGroupsSequence")
    shared = first_item(shared_groups, keyword)
    frames: list[Dataset | None] = []
    if per_frame is not None:
        try:
            items = list(per_frame)  # type: ignore[call-overload]
        except TypeError:
            items = []
        for item in items:
            own = first_item(item, keyword) if isinstance(item, Dataset) else None
            frames.append(own if own is not None else shared)
        return frames
    return [shared] * number_of_frames(ds)


def _geometry(
    orientation_src: Dataset | None,
    position_src: Dataset | None,
    measures_src: Dataset | None,
) -> FrameGeometry:
    spacing = as_floats(header_value(measures_src, "PixelSpacing"), count=2)
    thickness = as_floats(header_value(measures_src, "SliceThickness"), count=1)
    position = as_floats(header_value(position_src, "ImagePositionPatient"), count=3)
    return FrameGeometry(
        orientation=as_floats(header_value(orientation_src, "ImageOrientationPatient"), count=6),
        position=(position[0], position[1], position[2]) if position is not None else None,
        pixel_spacing=(spacing[0], spacing[1]) if spacing is not None else None,
        slice_thickness=thickness[0] if thickness is not None else None,
    )


def frame_geometry(ds: Dataset) -> list[FrameGeometry]:
    """The geometry of every frame of ``ds``.

    Enhanced objects: PlaneOrientationSequence (0020,9116), PlanePositionSequence (0020,9113)
    and PixelMeasuresSequence (0028,9110) of each frame's functional groups, per-frame over
    shared, the top-level value where neither has it. Classic objects: one entry from the
    top-level ImageOrientationPatient, ImagePositionPatient, PixelSpacing and SliceThickness.
    Values that cannot be read are None; the list is empty only for an enhanced object that
    declares no frames.
    """
    if not has_functional_groups(ds):
        return [_geometry(ds, ds, ds)]
    orientations = frame_functional_group(ds, "PlaneOrientationSequence")
    positions = frame_functional_group(ds, "PlanePositionSequence")
    measures = frame_functional_group(ds, "PixelMeasuresSequence")
    top = _geometry(ds, ds, ds)
    frames = []
    for orientation_src, position_src, measures_src in zip(orientations, positions, measures, strict=False):
        frame = _geometry(orientation_src, position_src, measures_src)
        frames.append(
            FrameGeometry(
                orientation=frame.orientation if frame.orientation is not None else top.orientation,
                position=frame.position if frame.position is not None else top.position,
                pixel_spacing=frame.pixel_spacing if frame.pixel_spacing is not None else top.pixel_spacing,
                slice_thickness=frame.slice_thickness if frame.slice_thickness is not None else top.slice_thickness,
            )
        )
    return frames
