"""Is everything the item requires there: the views of a radiograph, the plain and post-contrast
series of a CT, the sequence set of an MR ("检查项目齐全、序列完整", seed 002 §3.2)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from pydicom.dataset import Dataset

from qc_pipeline.catalog.classify import image_posture, image_view, is_post_contrast, oblique_side
from qc_pipeline.catalog.items import Catalog, Item, SequenceReq
from qc_pipeline.catalog.mr_sequences import identify_sequence
from qc_pipeline.domain import Finding
from qc_pipeline.io.dicom import text
from qc_pipeline.rules.loader import Thresholds

RULE_IDS: Final = frozenset(
    {
        "completeness.dr.view_missing",
        "completeness.dr.view_unknown",
        "completeness.dr.posture",
        "completeness.ct.plain_missing",
        "completeness.ct.post_contrast_missing",
        "completeness.ct.slice_thickness",
        "completeness.mr.sequence_missing",
        "completeness.mr.planes",
        "completeness.mr.post_contrast_planes",
        "completeness.mr.slice_thickness",
    }
)

VIEW_NAMES: Final = {
    "PA": ("PA", "后前位"),
    "AP": ("AP", "前后位/正位"),
    "LAT": ("lateral", "侧位"),
    "OBL": ("oblique", "斜位"),
    "OPEN_MOUTH": ("open-mouth", "张口位"),
    "FLEXION": ("flexion", "过屈位"),
    "EXTENSION": ("extension", "过伸位"),
    "DECUBITUS": ("decubitus", "侧卧水平位"),
}
POSTURE_NAMES: Final = {
    "ERECT": ("erect", "立位"),
    "SUPINE": ("supine", "仰卧位"),
    "PRONE": ("prone", "俯卧位"),
    "DECUBITUS": ("decubitus", "侧卧水平位"),
}
PLANE_ZH: Final = {"AXIAL": "横断位", "SAGITTAL": "矢状位", "CORONAL": "冠状位"}


@dataclass(frozen=True)
class SeriesSummary:
    """One series of a study, as completeness sees it."""

    series_instance_uid: str
    description: str
    datasets: tuple[Dataset, ...]
    localizer: bool
    post_contrast: bool
    slice_thickness: float | None


def is_localizer(ds: Dataset) -> bool:
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    return "LOCALIZER" in image_type or "SCOUT" in image_type


def _thickness(ds: Dataset) -> float | None:
    try:
        value = ds.get("SliceThickness")
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def summarize_series(datasets: Sequence[Dataset], catalog: Catalog) -> list[SeriesSummary]:
    groups: dict[str, list[Dataset]] = {}
    for ds in datasets:
        groups.setdefault(text(ds, "SeriesInstanceUID") or "?", []).append(ds)
    out = []
    for uid, members in groups.items():
        head = members[0]
        desc = " ".join(filter(None, (text(head, "SeriesDescription"), text(head, "ProtocolName")))) or f"series {uid}"
        out.append(
            SeriesSummary(
                series_instance_uid=uid,
                description=desc,
                datasets=tuple(members),
                localizer=all(is_localizer(d) for d in members),
                post_contrast=is_post_contrast(head, catalog.vocabulary),
                slice_thickness=_thickness(head),
            )
        )
    return out


def check_completeness(
    item: Item, datasets: Sequence[Dataset], thresholds: Thresholds, catalog: Catalog
) -> list[Finding]:
    """Findings for what ``item`` requires and the study lacks; empty when complete."""
    series = summarize_series(datasets, catalog)
    if item.modality == "DR":
        return _check_dr(item, datasets, thresholds, catalog)
    if item.modality == "CT":
        return _check_ct(item, series, thresholds)
    return _check_mr(item, series, thresholds)


def _drop_none(findings: list[Finding | None]) -> list[Finding]:
    return [f for f in findings if f is not None]


def _check_dr(item: Item, datasets: Sequence[Dataset], thresholds: Thresholds, catalog: Catalog) -> list[Finding]:
    """Each required view has its own image; an image whose view nothing tells fills no view
    (the study goes to a person when only such images could); obliques of opposite sides where
    the item says so; the posture where the item names one."""
    req = item.requires
    assert req.views is not None
    vocabulary = catalog.vocabulary
    views = [image_view(ds, vocabulary, item.body_part) for ds in datasets]
    available = Counter(v for v in views if v)
    unknown = views.count(None)
    shown = ", ".join(sorted(v for v in views if v)) or "none"
    limit = " + ".join("/".join(g) for g in req.views.groups)
    n = len(datasets)
    missing: list[list[str]] = []
    for group in req.views.groups:
        for view in group:
            if available[view] > 0:
                available[view] -= 1
                break
        else:
            missing.append(list(group))
    findings: list[Finding | None] = []
    if missing and unknown:
        maybe, missing = missing[:unknown], missing[unknown:]
        en = " and ".join(" or ".join(VIEW_NAMES[v][0] for v in g) for g in maybe)
        zh = "及".join("或".join(VIEW_NAMES[v][1] for v in g) for g in maybe)
        findings.append(
            thresholds.finding(
                "completeness.dr.view_unknown",
                f"{unknown} image(s) have no view information (no ViewPosition, no view word in the names): "
                f"the {en} view of {item.name_en} cannot be confirmed ({n} image(s) in the study)",
                f"{unknown} 幅图像无体位信息（ViewPosition 为空，名称中无体位词）：无法确认{zh}（{item.name_zh}，本检查共 {n} 幅图像）",
                value=f"{shown}; {unknown} unknown",
                limit=limit,
            )
        )
    for group in missing:
        en = " or ".join(VIEW_NAMES[v][0] for v in group)
        zh = "或".join(VIEW_NAMES[v][1] for v in group)
        findings.append(
            thresholds.finding(
                "completeness.dr.view_missing",
                f"{en} view missing for {item.name_en} ({n} image(s) in the study)",
                f"缺少{zh}（{item.name_zh}，本检查共 {n} 幅图像）",
                value=shown,
                limit=limit,
            )
        )
    if req.views.opposite_obliques:
        sides = [oblique_side(ds, vocabulary) for ds, v in zip(datasets, views, strict=True) if v == "OBL"]
        findings.append(_same_side_obliques(item, sides, thresholds))
    if req.posture is not None:
        findings.append(_posture(item, datasets, thresholds, catalog))
    return _drop_none(findings)


def opposite_obliques(a: str, b: str) -> bool:
    """Whether two obliques (LAO, RAO, LPO, RPO, LO, RO) show opposite sides.

    An anterior oblique shows the side away from the detector, a posterior oblique the side next
    to it: LAO and RPO both show the right foramina / pars. So when one is anterior and the other
    posterior, the same letter means opposite sides; otherwise the letters must differ.
    """
    if len(a) == 3 and len(b) == 3 and a[1] != b[1]:
        return a[0] == b[0]
    return a[0] != b[0]


def _same_side_obliques(item: Item, sides: list[str | None], thresholds: Thresholds) -> Finding | None:
    known = [s for s in sides if s]
    if len(known) < 2 or len(known) < len(sides):  # an oblique whose side nothing tells may be the other
        return None
    if any(opposite_obliques(a, b) for i, a in enumerate(known) for b in known[i + 1 :]):
        return None
    shown = ", ".join(known)
    return thresholds.finding(
        "completeness.dr.view_missing",
        f"the obliques of {item.name_en} show the same side ({shown}): the opposite oblique is missing",
        f"{item.name_zh}的斜位均为同侧（{shown}），缺少对侧斜位",
        value=shown,
        limit="left + right oblique",
    )


def _posture(item: Item, datasets: Sequence[Dataset], thresholds: Thresholds, catalog: Catalog) -> Finding | None:
    assert item.requires.posture is not None
    allowed = item.requires.posture.allowed
    postures = [p for p in (image_posture(ds, catalog.vocabulary) for ds in datasets) if p]
    if not postures or set(postures).intersection(allowed):
        return None
    seen = ", ".join(sorted(set(postures)))
    en = " or ".join(POSTURE_NAMES[p][0] for p in allowed)
    zh = "或".join(POSTURE_NAMES[p][1] for p in allowed)
    seen_zh = "、".join(POSTURE_NAMES[p][1] for p in sorted(set(postures)))
    return thresholds.finding(
        "completeness.dr.posture",
        f"{item.name_en} must be taken {en}; the images say {seen.lower()}",
        f"{item.name_zh}应为{zh}摄影，图像为{seen_zh}",
        value=seen,
        limit="/".join(allowed),
    )


def _check_ct(item: Item, series: list[SeriesSummary], thresholds: Thresholds) -> list[Finding]:
    req = item.requires
    stacks = [s for s in series if not s.localizer]
    plain = [s for s in stacks if not s.post_contrast]
    post = [s for s in stacks if s.post_contrast]
    findings: list[Finding | None] = []
    if req.plain_series is not None and len(plain) < req.plain_series.min:
        findings.append(
            thresholds.finding(
                "completeness.ct.plain_missing",
                f"no plain (non-contrast) series for {item.name_en}",
                f"缺少平扫序列（{item.name_zh}）",
                value=len(plain),
                limit=f">= {req.plain_series.min}",
            )
        )
    if req.post_contrast_series is not None and len(post) < req.post_contrast_series.min:
        need = req.post_contrast_series.min
        findings.append(
            thresholds.finding(
                "completeness.ct.post_contrast_missing",
                f"post-contrast series missing for {item.name_en}: {len(post)} found, {need} required",
                f"缺少增强序列（{item.name_zh}）：现有 {len(post)} 个，要求至少 {need} 个",
                value=len(post),
                limit=f">= {need}",
            )
        )
    if req.max_slice_thickness_mm is not None and stacks:
        limit = req.max_slice_thickness_mm.value
        known = [s.slice_thickness for s in stacks if s.slice_thickness is not None]
        if known and min(known) > limit:
            findings.append(
                thresholds.finding(
                    "completeness.ct.slice_thickness",
                    f"no reconstruction of {limit:g} mm or thinner: the thinnest series is {min(known):g} mm",
                    f"无层厚 ≤ {limit:g} mm 的重建序列：最薄为 {min(known):g} mm",
                    value=f"{min(known):g} mm",
                    limit=f"<= {limit:g} mm",
                )
            )
    return _drop_none(findings)


def _seq_name(name: object) -> str:
    return str(getattr(name, "name", name) or "")


def _satisfies(req: SequenceReq, info: object) -> bool:
    weighting = _seq_name(getattr(info, "weighting", None))
    plane = _seq_name(getattr(info, "plane", None))
    if weighting not in req.weighting:
        return False
    if req.plane is not None and plane not in req.plane:
        return False
    if req.fat_suppressed is not None:
        fat = bool(getattr(info, "fat_suppressed", False)) or weighting == "STIR"
        if fat != req.fat_suppressed:
            return False
    return True


def _check_mr(item: Item, series: list[SeriesSummary], thresholds: Thresholds) -> list[Finding]:
    req = item.requires
    assert req.sequences is not None
    stacks = [s for s in series if not s.localizer]
    infos = [(s, identify_sequence(s.datasets[0])) for s in stacks]
    plain = [(s, i) for s, i in infos if not (s.post_contrast or getattr(i, "post_contrast", False))]
    post = [(s, i) for s, i in infos if s.post_contrast or getattr(i, "post_contrast", False)]
    findings: list[Finding | None] = []
    found = "; ".join(
        f"{_seq_name(i.weighting)}{'-FS' if getattr(i, 'fat_suppressed', False) else ''} {_seq_name(i.plane) or '?'}"
        for _, i in infos
    ) or "none"
    used: set[str] = set()
    for sequence in req.sequences.required:
        matches = [s for s, i in plain if _satisfies(sequence, i)]
        if not matches:
            findings.append(
                thresholds.finding(
                    "completeness.mr.sequence_missing",
                    f"no {sequence.label_en} for {item.name_en}",
                    f"缺少{sequence.label_zh}序列（{item.name_zh}）",
                    value=found,
                    limit=sequence.label_en,
                )
            )
        else:
            used.update(s.series_instance_uid for s in matches)
    if req.min_planes is not None:
        planes = {_seq_name(i.plane) for _, i in plain} & {"AXIAL", "SAGITTAL", "CORONAL"}
        if len(planes) < req.min_planes.value:
            findings.append(
                thresholds.finding(
                    "completeness.mr.planes",
                    f"{item.name_en} needs {req.min_planes.value:g} planes; found {len(planes)} ({', '.join(sorted(planes)) or 'none'})",
                    f"{item.name_zh}需 {req.min_planes.value:g} 个方位，现有 {len(planes)} 个（{'、'.join(PLANE_ZH[p] for p in sorted(planes)) or '无'}）",
                    value=len(planes),
                    limit=f">= {req.min_planes.value:g}",
                )
            )
    if req.post_contrast_t1_planes is not None:
        t1_planes = {
            _seq_name(i.plane) for _, i in post if _seq_name(i.weighting) in ("T1", "T1_FLAIR")
        } & {"AXIAL", "SAGITTAL", "CORONAL"}
        need = req.post_contrast_t1_planes.value
        if len(t1_planes) < need:
            findings.append(
                thresholds.finding(
                    "completeness.mr.post_contrast_planes",
                    f"post-contrast T1WI in {len(t1_planes)} plane(s); {item.name_en} needs {need:g}",
                    f"增强T1WI仅 {len(t1_planes)} 个方位，{item.name_zh}要求至少 {need:g} 个",
                    value=len(t1_planes),
                    limit=f">= {need:g}",
                )
            )
    if req.max_slice_thickness_mm is not None:
        limit = req.max_slice_thickness_mm.value
        weighting_of = {s.series_instance_uid: _seq_name(i.weighting) for s, i in infos}
        thick = [
            s
            for s in stacks
            if s.series_instance_uid in used
            and s.slice_thickness is not None
            and s.slice_thickness > limit
            and weighting_of[s.series_instance_uid] not in ("DWI", "ADC")  # DWI is often thicker
        ]
        for s in thick:
            findings.append(
                thresholds.finding(
                    "completeness.mr.slice_thickness",
                    f"series {s.description!r}: slice thickness {s.slice_thickness:g} mm exceeds {limit:g} mm",
                    f"序列 {s.description!r} 层厚 {s.slice_thickness:g} mm，超过 {limit:g} mm",
                    value=f"{s.slice_thickness:g} mm",
                    limit=f"<= {limit:g} mm",
                    series_instance_uid=s.series_instance_uid,
                )
            )
    return _drop_none(findings)
