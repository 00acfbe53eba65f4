"""Is a CT/MR series one unbroken stack: numbering, slice positions and geometry.

Data quality "连续性" (continuity), seed 004 §6.6. Headers in, findings out; no I/O.

Slice positions are ImagePositionPatient (0020,0032) projected on the slice normal
cross(row, column) of ImageOrientationPatient (0020,0037) (DICOM PS3.3 C.7.6.2), sorted; a gap
wider than ``limit`` × the median spacing is a missing slice and the finding names where. Images
that repeat the same positions by design — b-values, echoes, temporal phases, Dixon images of one
series — are first split by those attributes; what remains repeated uniformly (every position k
times: dynamic or multi-direction series without a tag telling the repetitions apart) is a
repeated stack, not a duplicate. Enhanced (multi-frame) objects are checked frame by frame, each
object on its own.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from pydicom.dataset import Dataset

from qc_pipeline.catalog.mr_sequences import cs_values, diffusion_b_value
from qc_pipeline.domain import Finding
from qc_pipeline.io.geometry import (
    AXIS_NAMES,
    FrameGeometry,
    as_floats,
    frame_functional_group,
    frame_geometry,
    has_functional_groups,
    header_value,
    normal_axis,
    number_of_frames,
    plane_from_orientation,
    slice_normal,
    slice_position,
)
from qc_pipeline.rules.loader import Thresholds

logger = logging.getLogger(__name__)

RULE_IDS: Final = frozenset(
    {
        "continuity.instance_number.gap",
        "continuity.instance_number.duplicate",
        "continuity.slice.missing",
        "continuity.slice.duplicate_position",
        "continuity.orientation.inconsistent",
        "continuity.pixel_spacing.inconsistent",
        "continuity.matrix.inconsistent",
    }
)

MIN_STACK_SLICES: Final = 3
"""Stacks with fewer slices are not checked for spacing (nothing to take a median of)."""
MIN_SPACING_MM: Final = 0.02
"""Position differences below this are rounding of the DS values, not a slice spacing."""
NAMED_AXIS_MAX_ANGLE_DEG: Final = 20.0
"""Positions are named by a patient axis (z = ...) when the normal is this close to it."""
MAX_LISTED: Final = 10
"""At most this many positions or numbers are spelled out in one message."""


class _Collector:
    """Builds findings from rules, skipping rules a QC centre disabled."""

    def __init__(self, thresholds: Thresholds, series_instance_uid: str) -> None:
        self.thresholds = thresholds
        self.series_instance_uid = series_instance_uid
        self.findings: list[Finding] = []

    def add(self, rule_id: str, message: str, message_zh: str, **kwargs: object) -> None:
        finding = self.thresholds.finding(
            rule_id,
            message,
            message_zh,
            series_instance_uid=self.series_instance_uid,
            **kwargs,  # type: ignore[arg-type]
        )
        if finding is not None:
            self.findings.append(finding)


@dataclass(frozen=True, slots=True)
class _Slice:
    """One image (classic object) or one frame (enhanced object) of a stack."""

    label: str
    """How a person finds it: "InstanceNumber 12" or "frame 3"."""
    label_zh: str
    sop_instance_uid: str | None
    number: int | None
    """InstanceNumber (classic) or frame number (enhanced): the order slices are listed in."""
    geometry: FrameGeometry
    matrix: tuple[int, int] | None
    stack_key: Hashable
    """Attributes that legitimately repeat positions (b-value, echo, phase, image type)."""


def _int(ds: Dataset | None, keyword: str) -> int | None:
    values = as_floats(header_value(ds, keyword), count=1)
    if values is None or values[0] != int(values[0]):
        return None
    return int(values[0])


def _float(ds: Dataset | None, keyword: str) -> float | None:
    values = as_floats(header_value(ds, keyword), count=1)
    return values[0] if values is not None else None


def _image_type(ds: Dataset) -> tuple[str, ...]:
    return cs_values(header_value(ds, "ImageType"))


def is_localizer(ds: Dataset) -> bool:
    """A localizer/scout image: ImageType (0008,0008) contains LOCALIZER (or SCOUT)."""
    return bool({"LOCALIZER", "SCOUT"} & set(_image_type(ds)))


def _matrix(ds: Dataset) -> tuple[int, int] | None:
    rows, columns = _int(ds, "Rows"), _int(ds, "Columns")
    return (rows, columns) if rows is not None and columns is not None else None


def _object_slice(ds: Dataset) -> _Slice | None:
    """A single-frame object as one slice: a classic image, or an enhanced object of one frame."""
    number = _int(ds, "InstanceNumber")
    sop = header_value(ds, "SOPInstanceUID")
    label = f"InstanceNumber {number}" if number is not None else f"SOPInstanceUID {sop}"
    label_zh = f"实例号 {number}" if number is not None else f"SOPInstanceUID {sop}"
    if has_functional_groups(ds):
        frames = _frame_slices(ds)
        if not frames:
            return None
        geometry, key = frames[0].geometry, frames[0].stack_key
    else:
        echo = _int(ds, "EchoNumbers")
        key = (
            _image_type(ds),
            diffusion_b_value(ds),
            echo if echo is not None else _float(ds, "EchoTime"),
            _int(ds, "TemporalPositionIdentifier"),
        )
        geometry = frame_geometry(ds)[0]
    return _Slice(label, label_zh, str(sop) if sop else None, number, geometry, _matrix(ds), key)


def _frame_slices(ds: Dataset) -> list[_Slice]:
    """The frames of an enhanced object, keyed by stack, temporal position, b-value, echo, type."""
    frames = frame_geometry(ds)
    contents = frame_functional_group(ds, "FrameContentSequence")
    diffusion = frame_functional_group(ds, "MRDiffusionSequence")
    echoes = frame_functional_group(ds, "MREchoSequence")
    types = frame_functional_group(ds, "MRImageFrameTypeSequence") or frame_functional_group(
        ds, "CTImageFrameTypeSequence"
    )
    sop = header_value(ds, "SOPInstanceUID")
    matrix = _matrix(ds)
    slices = []
    for i, geometry in enumerate(frames):
        content = contents[i] if i < len(contents) else None
        frame_type = types[i] if i < len(types) else None
        key = (
            str(header_value(content, "StackID") or ""),
            _int(content, "TemporalPositionIndex"),
            _float(diffusion[i] if i < len(diffusion) else None, "DiffusionBValue"),
            _float(echoes[i] if i < len(echoes) else None, "EffectiveEchoTime"),
            cs_values(header_value(frame_type, "FrameType")),
        )
        slices.append(
            _Slice(f"frame {i + 1}", f"第 {i + 1} 帧", str(sop) if sop else None, i + 1, geometry, matrix, key)
        )
    return slices


def _order(ds: Dataset) -> tuple[float, str]:
    number = _int(ds, "InstanceNumber")
    return (number if number is not None else math.inf, str(header_value(ds, "SOPInstanceUID") or ""))


def check_series_continuity(
    datasets: Sequence[Dataset], thresholds: Thresholds, *, series_instance_uid: str
) -> list[Finding]:
    """Check that one CT/MR series is an unbroken, consistent stack of slices.

    ``datasets`` are the headers of the series' objects, in any order. Classic images are checked
    as one stack (after setting aside localizers: ImageType LOCALIZER/SCOUT); each enhanced
    (multi-frame) object is checked on its frames. Never raises on missing or garbled header
    values: what cannot be read is left out of the check.
    """
    out = _Collector(thresholds, series_instance_uid)
    if not datasets:
        return []
    _check_instance_numbers(datasets, out)
    # A stable order makes the findings independent of the order the files were listed in.
    images = sorted((ds for ds in datasets if not is_localizer(ds)), key=_order)
    single = [ds for ds in images if number_of_frames(ds) <= 1]
    slices = [s for s in (_object_slice(ds) for ds in single) if s is not None]
    _check_stack(slices, out, where="", where_zh="", check_matrix=True)
    for ds in images:
        if number_of_frames(ds) > 1:
            sop = header_value(ds, "SOPInstanceUID") or "?"
            _check_stack(
                _frame_slices(ds),
                out,
                where=f" (multi-frame object {sop})",
                where_zh=f"（多帧对象 {sop}）",
                check_matrix=False,
            )
    return out.findings


# --- instance numbers ---------------------------------------------------------------------------


def _ranges(numbers: Sequence[int]) -> list[str]:
    """Sorted [1, 2, 3, 7] -> ["1-3", "7"]."""

    def shown(first: int, last: int) -> str:
        return str(first) if first == last else f"{first}-{last}"

    out: list[str] = []
    start = prev = numbers[0]
    for n in numbers[1:]:
        if n != prev + 1:
            out.append(shown(start, prev))
            start = n
        prev = n
    out.append(shown(start, prev))
    return out


def _listed(items: Sequence[str], *, zh: bool = False) -> str:
    shown = list(items[:MAX_LISTED])
    more = len(items) - len(shown)
    sep = "、" if zh else ", "
    text = sep.join(shown)
    if more > 0:
        text += f" 等另 {more} 处" if zh else f" and {more} more"
    return text


def _check_instance_numbers(datasets: Sequence[Dataset], out: _Collector) -> None:
    numbers = [n for n in (_int(ds, "InstanceNumber") for ds in datasets) if n is not None]
    if len(numbers) < 2:
        return
    counts = Counter(numbers)
    repeated = sorted(n for n, c in counts.items() if c > 1)
    if repeated:
        shown = [f"{n} (×{counts[n]})" for n in repeated]
        out.add(
            "continuity.instance_number.duplicate",
            f"InstanceNumber (0020,0013) repeated within the series: {_listed(shown)}",
            f"序列内实例号 (0020,0013) 重复：{_listed(shown, zh=True)}",
            value=", ".join(str(n) for n in repeated),
            limit="unique",
        )
    unique = sorted(counts)
    missing = sorted(set(range(unique[0], unique[-1] + 1)) - set(unique))
    if missing:
        ranges = _ranges(missing)
        out.add(
            "continuity.instance_number.gap",
            f"InstanceNumber (0020,0013) skips {len(missing)} number(s) between {unique[0]} and "
            f"{unique[-1]}: {_listed(ranges)} missing (images deleted or not uploaded?)",
            f"序列内实例号 (0020,0013) 在 {unique[0]}–{unique[-1]} 之间缺少 {len(missing)} 个："
            f"{_listed(ranges, zh=True)}（图像被删除或未上传？）",
            value=", ".join(ranges),
            limit=f"consecutive {unique[0]}-{unique[-1]}",
        )


# --- geometry consistency -----------------------------------------------------------------------


def _angle_deg(a: Sequence[float], b: Sequence[float]) -> float:
    va, vb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    na, nb = float(np.linalg.norm(va)), float(np.linalg.norm(vb))
    if na == 0.0 or nb == 0.0:
        return 180.0
    cosine = float(np.clip(np.dot(va, vb) / (na * nb), -1.0, 1.0))
    return math.degrees(math.acos(cosine))


def _same_orientation(a: Sequence[float], b: Sequence[float], tolerance_deg: float) -> bool:
    return _angle_deg(a[:3], b[:3]) <= tolerance_deg and _angle_deg(a[3:], b[3:]) <= tolerance_deg


def _fmt_values(values: Sequence[float]) -> str:
    return "\\".join(f"{v:g}" for v in values)


def _group_labels(members: Sequence[_Slice], *, zh: bool = False) -> str:
    labels = [m.label_zh if zh else m.label for m in members]
    return _listed(labels, zh=zh)


def _orientation_groups(slices: Sequence[_Slice], tolerance_deg: float) -> list[list[_Slice]]:
    groups: list[list[_Slice]] = []
    for s in slices:
        assert s.geometry.orientation is not None
        for group in groups:
            reference = group[0].geometry.orientation
            assert reference is not None
            if _same_orientation(s.geometry.orientation, reference, tolerance_deg):
                group.append(s)
                break
        else:
            groups.append([s])
    groups.sort(key=len, reverse=True)
    return groups


def _check_orientation(slices: Sequence[_Slice], out: _Collector, *, where: str, where_zh: str) -> list[list[_Slice]]:
    """Report slices whose orientation differs from the stack's; return the blocks to check.

    Blocks of at least MIN_STACK_SLICES slices in another orientation (e.g. disc-angled axial
    blocks of a spine series) are checked as stacks of their own and not reported; smaller groups
    and slices without a readable orientation are reported.
    """
    tolerance = out.thresholds.limit("continuity.orientation.inconsistent")
    oriented = [s for s in slices if s.geometry.orientation is not None]
    unreadable = [s for s in slices if s.geometry.orientation is None]
    groups = _orientation_groups(oriented, tolerance)
    if not groups:
        return []
    main = groups[0]
    strays = [g for g in groups[1:] if len(g) < MIN_STACK_SLICES]
    blocks = [main] + [g for g in groups[1:] if len(g) >= MIN_STACK_SLICES]
    if len(blocks) > 1:
        logger.debug(
            "series %s%s: %d orientation blocks checked separately", out.series_instance_uid, where, len(blocks)
        )
    if not strays and not unreadable:
        return blocks
    main_iop = main[0].geometry.orientation
    assert main_iop is not None
    main_plane = plane_from_orientation(main_iop)
    parts, parts_zh = [], []
    for group in strays:
        iop = group[0].geometry.orientation
        assert iop is not None
        plane = plane_from_orientation(iop)
        angle = max(_angle_deg(iop[:3], main_iop[:3]), _angle_deg(iop[3:], main_iop[3:]))
        parts.append(
            f"{_fmt_values(iop)} ({plane.value if plane else '?'}, {angle:.1f}° off) on {_group_labels(group)}"
        )
        parts_zh.append(
            f"{_fmt_values(iop)}（{plane.value if plane else '?'}，偏差 {angle:.1f}°）：{_group_labels(group, zh=True)}"
        )
    if unreadable:
        parts.append(f"missing or unreadable on {_group_labels(unreadable)}")
        parts_zh.append(f"缺失或无法读取：{_group_labels(unreadable, zh=True)}")
    odd = [s for g in strays for s in g] + unreadable
    out.add(
        "continuity.orientation.inconsistent",
        f"ImageOrientationPatient (0020,0037) is not constant within the series{where}: "
        f"{len(main)} images have {_fmt_values(main_iop)} ({main_plane.value if main_plane else '?'}), "
        f"but {'; '.join(parts)}",
        f"序列内图像方向 (0020,0037) 不一致{where_zh}：{len(main)} 幅为 {_fmt_values(main_iop)}，"
        f"但 {'；'.join(parts_zh)}",
        value="; ".join(
            f"{s.label}: {_fmt_values(s.geometry.orientation) if s.geometry.orientation else 'missing'}"
            for s in odd[:MAX_LISTED]
        ),
        sop_instance_uid=odd[0].sop_instance_uid if len(odd) == 1 else None,
    )
    return blocks


def _check_constant(
    slices: Sequence[_Slice],
    out: _Collector,
    *,
    rule_id: str,
    values: Sequence[tuple[float, ...] | None],
    tolerance: float,
    name: str,
    name_zh: str,
    where: str,
    where_zh: str,
) -> None:
    """One finding when ``values`` (one per slice; None = absent) are not all equal within ``tolerance``."""
    groups: list[tuple[tuple[float, ...] | None, list[_Slice]]] = []
    for s, v in zip(slices, values, strict=True):
        for key, members in groups:
            if (key is None and v is None) or (
                key is not None
                and v is not None
                and len(key) == len(v)
                and all(abs(a - b) <= tolerance for a, b in zip(key, v, strict=True))
            ):
                members.append(s)
                break
        else:
            groups.append((v, [s]))
    if len(groups) < 2:
        return
    groups.sort(key=lambda g: len(g[1]), reverse=True)

    def shown(key: tuple[float, ...] | None) -> str:
        return "missing" if key is None else _fmt_values(key)

    main_key, main = groups[0]
    others = groups[1:]
    text = "; ".join(f"{shown(k)} on {_group_labels(m)}" for k, m in others)
    text_zh = "；".join(f"{shown(k)}：{_group_labels(m, zh=True)}" for k, m in others)
    odd = [s for _, m in others for s in m]
    out.add(
        rule_id,
        f"{name} is not constant within the series{where}: {len(main)} images have {shown(main_key)}, but {text}",
        f"序列内{name_zh}不一致{where_zh}：{len(main)} 幅为 {shown(main_key)}，但 {text_zh}",
        value=" | ".join(f"{shown(k)} ×{len(m)}" for k, m in groups),
        limit=f"constant ({shown(main_key)})",
        sop_instance_uid=odd[0].sop_instance_uid if len(odd) == 1 else None,
    )


# --- positions ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Position:
    """Slices at one position along the normal (within the duplicate tolerance)."""

    position: float
    """mm along the slice normal."""
    point: tuple[float, float, float]
    """ImagePositionPatient of the first slice there."""
    members: tuple[_Slice, ...]


def _name_point(point: Sequence[float], along: float, normal: Sequence[float]) -> tuple[str, str]:
    """A position a radiologist can find: "z = 42.5 mm" (or mm along an oblique normal)."""
    axis, angle = normal_axis(normal)
    if angle <= NAMED_AXIS_MAX_ANGLE_DEG:
        return f"{AXIS_NAMES[axis]} = {point[axis]:.1f} mm", f"{AXIS_NAMES[axis]} = {point[axis]:.1f} mm"
    return f"{along:.1f} mm along the slice normal", f"沿层面法线 {along:.1f} mm"


def _cluster(slices: Sequence[_Slice], normal: tuple[float, float, float], tolerance_mm: float) -> list[_Position]:
    placed = []
    for s in slices:
        along = slice_position(s.geometry.position, normal)
        if along is not None and s.geometry.position is not None:
            placed.append((along, s))
    placed.sort(key=lambda p: p[0])
    groups: list[list[tuple[float, _Slice]]] = []
    for along, s in placed:
        if groups and along - groups[-1][0][0] <= tolerance_mm:
            groups[-1].append((along, s))
        else:
            groups.append([(along, s)])
    clusters = []
    for group in groups:
        # Members in numbering order, so the result does not depend on rounding noise or input order.
        group.sort(key=lambda p: (p[1].number if p[1].number is not None else math.inf, p[1].sop_instance_uid or ""))
        along, first = group[0]
        assert first.geometry.position is not None
        clusters.append(_Position(along, first.geometry.position, tuple(s for _, s in group)))
    return clusters


def _median_spacing(positions: Sequence[float]) -> float | None:
    diffs = np.diff(np.sort(np.asarray(positions, dtype=float)))
    real = diffs[diffs > MIN_SPACING_MM]
    return float(np.median(real)) if real.size else None


def _check_positions(slices: Sequence[_Slice], out: _Collector, *, where: str, where_zh: str) -> None:
    """Missing and duplicated positions of one stack (one orientation, one stack key)."""
    if len(slices) < MIN_STACK_SLICES:
        return
    orientation = slices[0].geometry.orientation
    normal = slice_normal(orientation)
    if normal is None:
        return
    raw = [p for p in (slice_position(s.geometry.position, normal) for s in slices) if p is not None]
    if len(raw) < MIN_STACK_SLICES:
        return
    spacing = _median_spacing(raw)
    duplicate_factor = out.thresholds.limit("continuity.slice.duplicate_position")
    tolerance = max(MIN_SPACING_MM, duplicate_factor * spacing) if spacing is not None else MIN_SPACING_MM
    clusters = _cluster(slices, normal, tolerance)

    # How many times a position is expected: the most common count (a repeated stack has k > 1).
    counts = Counter(len(c.members) for c in clusters)
    expected = max(counts.items(), key=lambda kv: (kv[1], kv[0]))[0]
    extra = [c for c in clusters if len(c.members) > expected]
    if extra:
        names = [_name_point(c.point, c.position, normal) for c in extra]
        shown = [f"{en} ({', '.join(m.label for m in c.members)})" for (en, _), c in zip(names, extra, strict=True)]
        shown_zh = [
            f"{zh}（{'、'.join(m.label_zh for m in c.members)}）" for (_, zh), c in zip(names, extra, strict=True)
        ]
        repeat = "" if expected == 1 else f" (other positions hold {expected} images each)"
        repeat_zh = "" if expected == 1 else f"（其他位置各 {expected} 幅）"
        out.add(
            "continuity.slice.duplicate_position",
            f"{len(extra)} slice position(s) hold more images than the rest of the stack{where}{repeat}: "
            f"{_listed(shown)} — ImagePositionPatient (0020,0032) repeated",
            f"层面位置重复{where_zh}{repeat_zh}：{_listed(shown_zh, zh=True)}（ImagePositionPatient (0020,0032) 相同）",
            value="; ".join(en for en, _ in names[:MAX_LISTED]),
            sop_instance_uid=extra[0].members[-1].sop_instance_uid if len(extra) == 1 else None,
        )
    short = [c for c in clusters if len(c.members) < expected]
    if short:
        names = [_name_point(c.point, c.position, normal) for c in short]
        out.add(
            "continuity.slice.missing",
            f"{len(short)} slice position(s) of a repeated stack ({expected} images per position) "
            f"lack an image{where}: {_listed([f'{en} ({len(c.members)} of {expected})' for (en, _), c in zip(names, short, strict=True)])}",
            f"重复采集的层面中 {len(short)} 个位置缺少图像{where_zh}（每个位置应有 {expected} 幅）："
            f"{_listed([f'{zh}（{len(c.members)}/{expected}）' for (_, zh), c in zip(names, short, strict=True)], zh=True)}",
            value="; ".join(en for en, _ in names[:MAX_LISTED]),
            limit=f"{expected} images per position",
        )

    if len(clusters) < MIN_STACK_SLICES:
        return
    spacing = _median_spacing([c.position for c in clusters])
    if spacing is None:
        return
    factor = out.thresholds.limit("continuity.slice.missing")
    missing_en: list[str] = []
    missing_zh: list[str] = []
    gaps_en: list[str] = []
    for a, b in itertools.pairwise(clusters):
        gap = b.position - a.position
        if gap <= factor * spacing:
            continue
        n = max(1, round(gap / spacing) - 1)
        for k in range(1, n + 1):
            t = k / (n + 1)
            point = tuple(pa + t * (pb - pa) for pa, pb in zip(a.point, b.point, strict=True))
            en, zh = _name_point(point, a.position + t * gap, normal)
            missing_en.append(en)
            missing_zh.append(zh)
        a_en, _ = _name_point(a.point, a.position, normal)
        b_en, _ = _name_point(b.point, b.position, normal)
        gaps_en.append(f"{gap:.1f} mm between {a_en} and {b_en}")
    if missing_en:
        out.add(
            "continuity.slice.missing",
            f"missing slice(s) near {_listed(missing_en)}{where}: gap {_listed(gaps_en)}, more than "
            f"{factor:g} × the median spacing {spacing:.2f} mm",
            f"层面缺失{where_zh}：{_listed(missing_zh, zh=True)} 附近缺少层面（层间距超过中位层间距 "
            f"{spacing:.2f} mm 的 {factor:g} 倍）",
            value="; ".join(missing_en[:MAX_LISTED]),
        )


def _check_stack(slices: Sequence[_Slice], out: _Collector, *, where: str, where_zh: str, check_matrix: bool) -> None:
    if len(slices) < 2:
        return
    blocks = _check_orientation(slices, out, where=where, where_zh=where_zh)
    _check_constant(
        slices,
        out,
        rule_id="continuity.pixel_spacing.inconsistent",
        values=[s.geometry.pixel_spacing for s in slices],
        tolerance=out.thresholds.limit("continuity.pixel_spacing.inconsistent"),
        name="PixelSpacing (0028,0030)",
        name_zh="像素间距 PixelSpacing (0028,0030) ",
        where=where,
        where_zh=where_zh,
    )
    if check_matrix:
        _check_constant(
            slices,
            out,
            rule_id="continuity.matrix.inconsistent",
            values=[tuple(float(v) for v in s.matrix) if s.matrix else None for s in slices],
            tolerance=0.0,
            name="the matrix Rows\\Columns (0028,0010/0011)",
            name_zh="矩阵 Rows\\Columns (0028,0010/0011) ",
            where=where,
            where_zh=where_zh,
        )
    for block in blocks:
        stacks: dict[Hashable, list[_Slice]] = {}
        for s in block:
            stacks.setdefault(s.stack_key, []).append(s)
        for stack in stacks.values():
            _check_positions(stack, out, where=where, where_zh=where_zh)
