"""Is everything the item requires there: the views of a radiograph, the plain and post-contrast
series of a CT, the sequence set of an MR ("检查项目齐全、序列完整", seed 002 §3.2)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from pydicom.dataset import Dataset

from qc_pipeline.catalog.classify import image_posture, image_view, is_post_contrast, oblique_side
from qc_pipeline.catalog.ct_series import (
    PHASE_NAMES,
    Acquisition,
    CTPhase,
    CTSeriesRole,
    SeriesRef,
    describe_ct_series,
    group_acquisitions,
    is_localizer,
)
from qc_pipeline.catalog.items import (
    Catalog,
    Item,
    PhasesReq,
    ProtocolAlternative,
    SequenceReq,
    ViewName,
    Vocabulary,
)
from qc_pipeline.catalog.mr_sequences import identify_series
from qc_pipeline.domain import Finding
from qc_pipeline.io.dicom import text
from qc_pipeline.io.geometry import DEFAULT_OBLIQUE_TOLERANCE_DEG
from qc_pipeline.rules.loader import Thresholds

RULE_IDS: Final = frozenset(
    {
        "completeness.dr.view_missing",
        "completeness.dr.view_unknown",
        "completeness.dr.posture",
        "completeness.ct.plain_missing",
        "completeness.ct.post_contrast_missing",
        "completeness.ct.phase_missing",
        "completeness.ct.phase_unconfirmed",
        "completeness.ct.slice_thickness",
        "completeness.mr.sequence_missing",
        "completeness.mr.plane_unconfirmed",
        "completeness.mr.protocol_incomplete",
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
    ct: CTSeriesRole | None = None
    """A CT series' phase, kernel class and acquisition (None for other modalities)."""


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
        ct = describe_ct_series(members, catalog.vocabulary) if (text(head, "Modality") or "").upper() == "CT" else None
        out.append(
            SeriesSummary(
                series_instance_uid=uid,
                description=desc,
                datasets=tuple(members),
                localizer=all(is_localizer(d) for d in members),
                post_contrast=(
                    ct.phase not in (CTPhase.PLAIN, CTPhase.LOCALIZER)
                    if ct is not None
                    else is_post_contrast(head, catalog.vocabulary)
                ),
                slice_thickness=_thickness(head),
                ct=ct,
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
    return _check_mr(item, series, thresholds, catalog.vocabulary)


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
    missing: list[list[ViewName]] = []
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


def _series_label(s: SeriesSummary) -> str:
    head = s.datasets[0]
    return text(head, "SeriesDescription") or text(head, "ProtocolName") or s.description


def _phase_group_names(group: Sequence[str]) -> tuple[str, str]:
    """("portal venous/venous", "门脉期/静脉期") for a group of equivalent phase names."""
    names = [PHASE_NAMES[CTPhase(p)] for p in group]
    return "/".join(n[0] for n in names), "/".join(n[1] for n in names)


def _match_named(groups: Sequence[Acquisition], named: Sequence[Sequence[str]]) -> list[int]:
    """Indexes of the ``named`` phase groups no acquisition can fill (a maximum matching: each
    acquisition fills one group, each group needs one acquisition of a phase it lists)."""
    owner: dict[int, int] = {}  # acquisition index -> named group index

    def assign(g: int, seen: set[int]) -> bool:
        for a, acquisition in enumerate(groups):
            if acquisition.phase is None or acquisition.phase.value not in named[g] or a in seen:
                continue
            seen.add(a)
            if a not in owner or assign(owner[a], seen):
                owner[a] = g
                return True
        return False

    return [g for g in range(len(named)) if not assign(g, set())]


def _check_phases(
    item: Item, req: PhasesReq, post: list[SeriesSummary], thresholds: Thresholds
) -> list[Finding | None]:
    """Post-contrast phases: distinct acquisitions (not series), and the named phases the item needs."""
    refs = [SeriesRef(s.series_instance_uid, _series_label(s), s.ct) for s in post if s.ct is not None]
    refs.sort(
        key=lambda r: (r.role.time_span_s or (math.inf,), r.description, r.series_instance_uid)
    )  # file order must not matter
    found = group_acquisitions(refs)
    unnamed = [g for g in found.groups if g.phase is None]
    missing = _match_named(found.groups, req.named)
    certain_missing = len(missing) > len(unnamed)  # even every unnamed acquisition could not fill them
    missing_en = ", ".join(_phase_group_names(req.named[g])[0] for g in missing)
    missing_zh = "、".join(_phase_group_names(req.named[g])[1] for g in missing)
    shown = "; ".join(f"{g.phase or 'unnamed'}: {g.label}" for g in found.groups) or "none"
    if found.reconstructions:
        shown += "; reconstructions: " + " + ".join(repr(r.description) for r in found.reconstructions)
    need_en = " + ".join(_phase_group_names(g)[0] for g in req.named) or f"{req.min} phase(s)"
    need_zh = " + ".join(_phase_group_names(g)[1] for g in req.named) or f"{req.min} 个期相"
    n = found.at_most
    if n < req.min:
        lack_en = f"; {missing_en} missing" if missing and certain_missing else ""
        lack_zh = f"；缺少{missing_zh}" if missing and certain_missing else ""
        return [
            thresholds.finding(
                "completeness.ct.post_contrast_missing",
                f"post-contrast series missing for {item.name_en}: {n} contrast phase{'' if n == 1 else 's'} found, "
                f"{req.min} required{lack_en} (acquisitions: {shown})",
                f"缺少增强序列（{item.name_zh}）：现有 {n} 个增强期相，要求至少 {req.min} 个{lack_zh}（采集：{shown}）",
                value=n,
                limit=f">= {req.min}",
            )
        ]
    if missing and certain_missing:
        named_found = ", ".join(str(g.phase) for g in found.groups if g.phase is not None) or "none"
        return [
            thresholds.finding(
                "completeness.ct.phase_missing",
                f"{missing_en} phase missing for {item.name_en}, which needs {need_en} (acquisitions: {shown})",
                f"缺少{missing_zh}（{item.name_zh}要求 {need_zh}；采集：{shown}）",
                value=named_found,
                limit=" + ".join("/".join(g) for g in req.named),
            )
        ]
    reasons_en, reasons_zh = [], []
    if found.at_least < req.min:
        pairs = "; ".join(f"{a.description!r} / {b.description!r}: {why}" for a, b, why in found.undecided)
        reasons_en.append(
            f"cannot tell whether the post-contrast series are {req.min} distinct phases: {found.at_least} certain, "
            f"up to {n} ({pairs})"
        )
        reasons_zh.append(
            f"无法判断增强序列是否为 {req.min} 个不同期相：确定 {found.at_least} 个，至多 {n} 个（{pairs}）"
        )
    if missing:
        reasons_en.append(
            f"{item.name_en} needs {need_en}; {len(unnamed)} post-contrast acquisition(s) are not named "
            f"(no phase word, no usable ContrastBolusStartTime): {missing_en} cannot be confirmed"
        )
        reasons_zh.append(
            f"{item.name_zh}要求 {need_zh}；{len(unnamed)} 个增强采集未标明期相（无期相名称或可用的注射开始时间），无法确认{missing_zh}"
        )
    if not reasons_en:
        return []
    return [
        thresholds.finding(
            "completeness.ct.phase_unconfirmed",
            "; ".join(reasons_en) + f" (acquisitions: {shown})",
            "；".join(reasons_zh) + f"（采集：{shown}）",
            value=shown,
            limit=f">= {req.min}" + (f": {' + '.join('/'.join(g) for g in req.named)}" if req.named else ""),
        )
    ]


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
    if req.post_contrast_phases is not None:
        findings.extend(_check_phases(item, req.post_contrast_phases, post, thresholds))
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


NAMED_PLANES: Final = frozenset({"AXIAL", "SAGITTAL", "CORONAL"})


def _satisfies(req: SequenceReq, info: object, *, any_plane: bool = False) -> bool:
    """``info`` (a series' identified sequence) is what ``req`` asks for; with ``any_plane``, but
    for the plane."""
    weighting = _seq_name(getattr(info, "weighting", None))
    plane = _seq_name(getattr(info, "plane", None))
    if weighting not in req.weighting:
        return False
    if req.plane is not None and plane not in req.plane and not any_plane:
        return False
    if req.fat_suppressed is not None:
        fat = bool(getattr(info, "fat_suppressed", False)) or weighting == "STIR"
        if fat != req.fat_suppressed:
            return False
    return True


@dataclass(frozen=True)
class _SequenceMatch:
    """Series that meet a required sequence, or that meet it but for a plane that is not named
    (OBLIQUE near 45°, or unreadable orientation)."""

    matches: tuple[SeriesSummary, ...]
    unconfirmed: tuple[SeriesSummary, ...]


def _match(req: SequenceReq, plain: Sequence[tuple[SeriesSummary, object]]) -> _SequenceMatch:
    matches = tuple(s for s, i in plain if _satisfies(req, i))
    unconfirmed: tuple[SeriesSummary, ...] = ()
    if not matches and req.plane is not None:
        unconfirmed = tuple(
            s
            for s, i in plain
            if _seq_name(getattr(i, "plane", None)) not in NAMED_PLANES and _satisfies(req, i, any_plane=True)
        )
    return _SequenceMatch(matches, unconfirmed)


def _plane_unconfirmed(item: Item, req: SequenceReq, match: _SequenceMatch, thresholds: Thresholds) -> Finding | None:
    names = ", ".join(repr(_series_label(s)) for s in match.unconfirmed)
    return thresholds.finding(
        "completeness.mr.plane_unconfirmed",
        f"{req.label_en} for {item.name_en} only in an orientation between two planes (OBLIQUE, within "
        f"{45 - DEFAULT_OBLIQUE_TOLERANCE_DEG:g}° of 45°, or unreadable): {names}",
        f"{item.name_zh}的{req.label_zh}仅见于介于两个方位之间的斜位（偏离45°不足{45 - DEFAULT_OBLIQUE_TOLERANCE_DEG:g}°或方向无法读取）：{names}",
        value=names,
        limit=req.label_en,
    )


@dataclass(frozen=True)
class _AlternativeResult:
    alternative: ProtocolAlternative
    lacks: tuple[tuple[str, str], ...]
    """(English, Chinese) of each missing part."""
    unconfirmed: tuple[tuple[SequenceReq, _SequenceMatch], ...]
    used: frozenset[str]


def _judge_alternative(
    alternative: ProtocolAlternative, plain: Sequence[tuple[SeriesSummary, object]], planes: set[str]
) -> _AlternativeResult:
    lacks: list[tuple[str, str]] = []
    unconfirmed = []
    used: set[str] = set()
    for req in alternative.required:
        match = _match(req, plain)
        used.update(s.series_instance_uid for s in match.matches)
        if match.unconfirmed:
            unconfirmed.append((req, match))
        elif not match.matches:
            lacks.append((req.label_en, req.label_zh))
    if alternative.min_planes is not None and len(planes) < alternative.min_planes:
        lacks.append(
            (
                f"{alternative.min_planes} planes (found {len(planes)}: {', '.join(sorted(planes)) or 'none'})",
                f"{alternative.min_planes} 个方位（现有 {len(planes)} 个：{'、'.join(PLANE_ZH[p] for p in sorted(planes)) or '无'}）",
            )
        )
    return _AlternativeResult(alternative, tuple(lacks), tuple(unconfirmed), frozenset(used))


def _check_alternatives(
    item: Item,
    alternatives: Sequence[ProtocolAlternative],
    plain: Sequence[tuple[SeriesSummary, object]],
    found: str,
    thresholds: Thresholds,
) -> tuple[list[Finding | None], frozenset[str]]:
    """The study passes when one alternative is met in full; else the closest one says what it lacks."""
    planes = {_seq_name(getattr(i, "plane", None)) for _, i in plain} & NAMED_PLANES
    results = [_judge_alternative(a, plain, planes) for a in alternatives]
    for result in results:
        if not result.lacks and not result.unconfirmed:
            return [], result.used
    closest = min(results, key=lambda r: (len(r.lacks), len(r.unconfirmed)))  # first listed on a tie
    if not closest.lacks:
        return [_plane_unconfirmed(item, req, match, thresholds) for req, match in closest.unconfirmed], closest.used
    others = [r.alternative for r in results if r is not closest]
    also_en = f"; also accepted: {'; '.join(a.label_en for a in others)}" if others else ""
    also_zh = f"；亦可：{'；'.join(a.label_zh for a in others)}" if others else ""
    finding = thresholds.finding(
        "completeness.mr.protocol_incomplete",
        f"{item.name_en} meets none of its accepted protocols; the closest, {closest.alternative.label_en}, "
        f"lacks {', '.join(en for en, _ in closest.lacks)}{also_en}",
        f"{item.name_zh}不符合任一可接受方案；最接近的方案（{closest.alternative.label_zh}）缺少"
        f"{'、'.join(zh for _, zh in closest.lacks)}{also_zh}",
        value=found,
        limit=closest.alternative.label_en,
    )
    return [finding], closest.used


def _check_mr(item: Item, series: list[SeriesSummary], thresholds: Thresholds, vocabulary: Vocabulary) -> list[Finding]:
    req = item.requires
    assert req.sequences is not None
    stacks = [s for s in series if not s.localizer]
    infos = [(s, identify_series(s.datasets, vocabulary=vocabulary)) for s in stacks]
    plain = [(s, i) for s, i in infos if not (s.post_contrast or getattr(i, "post_contrast", False))]
    post = [(s, i) for s, i in infos if s.post_contrast or getattr(i, "post_contrast", False)]
    findings: list[Finding | None] = []
    found = (
        "; ".join(
            f"{_seq_name(i.weighting)}{'-FS' if getattr(i, 'fat_suppressed', False) else ''} {_seq_name(i.plane) or '?'}"
            for _, i in infos
        )
        or "none"
    )
    used: set[str] = set()
    for sequence in req.sequences.required:
        match = _match(sequence, plain)
        used.update(s.series_instance_uid for s in match.matches)
        if match.unconfirmed:
            findings.append(_plane_unconfirmed(item, sequence, match, thresholds))
        elif not match.matches:
            findings.append(
                thresholds.finding(
                    "completeness.mr.sequence_missing",
                    f"no {sequence.label_en} for {item.name_en}",
                    f"缺少{sequence.label_zh}序列（{item.name_zh}）",
                    value=found,
                    limit=sequence.label_en,
                )
            )
    if req.sequences.alternatives:
        alternative_findings, alternative_used = _check_alternatives(
            item, req.sequences.alternatives, plain, found, thresholds
        )
        findings.extend(alternative_findings)
        used.update(alternative_used)
    if req.min_planes is not None:
        planes = {_seq_name(i.plane) for _, i in plain} & NAMED_PLANES
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
        t1_planes = {_seq_name(i.plane) for _, i in post if _seq_name(i.weighting) in ("T1", "T1_FLAIR")} & NAMED_PLANES
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
