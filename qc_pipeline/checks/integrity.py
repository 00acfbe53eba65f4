"""Whether the study's objects could be read: unreadable files, truncated pixel data, non-images."""

from __future__ import annotations

from collections import defaultdict
from typing import Final

from qc_pipeline.domain import Finding
from qc_pipeline.io.dicom import sop_class_name, text, valid_uid
from qc_pipeline.rules.loader import Thresholds
from qc_pipeline.sources.base import LoadedInstance, LoadedStudy, ProblemKind

RULE_IDS: Final = frozenset(
    {
        "integrity.file.unreadable",
        "integrity.header.missing_uid",
        "integrity.pixel_data.truncated",
        "integrity.pixel_data.missing",
        "integrity.non_image.skipped",
        "integrity.uid.invalid",
        "integrity.instance.duplicate_uid",
        "integrity.series.mixed_modality",
    }
)
_UID_KEYWORDS: Final = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
_MAX_SHOWN_CHARS: Final = 80


def check_integrity(study: LoadedStudy, thresholds: Thresholds) -> list[Finding]:
    """One finding per unreadable file or broken image, one per series of skipped non-images."""
    findings: list[Finding | None] = []
    for problem in study.problems:
        if problem.kind is ProblemKind.UNREADABLE:
            findings.append(
                thresholds.finding(
                    "integrity.file.unreadable",
                    f"File {problem.location} cannot be read: {problem.reason}",
                    f"文件 {problem.location} 无法读取：{problem.reason}",
                    value=problem.location,
                )
            )
        else:
            findings.append(
                thresholds.finding(
                    "integrity.header.missing_uid",
                    f"File {problem.location}: {problem.reason}; the object cannot be placed in its series",
                    f"文件 {problem.location}：{problem.reason}，无法归入序列",
                    value=problem.location,
                )
            )
    skipped: dict[str, list[str]] = defaultdict(list)
    for inst in study.instances:
        ref = inst.ref
        if not inst.is_image:
            skipped[ref.series_instance_uid].append(sop_class_name(ref.sop_class_uid))
            continue
        pixel = inst.pixel_data
        if pixel is None or not pixel.present:
            findings.append(
                thresholds.finding(
                    "integrity.pixel_data.missing",
                    f"Image {ref.location} ({sop_class_name(ref.sop_class_uid)}) has no Pixel Data (7FE0,0010)",
                    f"图像 {ref.location} 缺少像素数据 (7FE0,0010)",
                    value=ref.location,
                    series_instance_uid=ref.series_instance_uid,
                    sop_instance_uid=ref.sop_instance_uid,
                )
            )
        elif pixel.truncated:
            findings.append(
                thresholds.finding(
                    "integrity.pixel_data.truncated",
                    f"Image {ref.location}: {pixel.describe()}",
                    f"图像 {ref.location} 像素数据不完整（文件被截断或头信息与数据长度不符）",
                    value=pixel.available_bytes,
                    limit=pixel.expected_bytes if not pixel.encapsulated else None,
                    series_instance_uid=ref.series_instance_uid,
                    sop_instance_uid=ref.sop_instance_uid,
                )
            )
    for series_uid, classes in skipped.items():
        kinds = ", ".join(sorted(set(classes)))
        findings.append(
            thresholds.finding(
                "integrity.non_image.skipped",
                f"{len(classes)} non-image object(s) not checked: {kinds}",
                f"{len(classes)} 个非图像对象未做质控：{kinds}",
                value=kinds,
                series_instance_uid=series_uid,
            )
        )
    findings.extend(_check_uids(study, thresholds))
    findings.extend(_check_duplicates(study, thresholds))
    findings.extend(_check_series_modalities(study, thresholds))
    return [f for f in findings if f is not None]


def _shown(value: str) -> str:
    """A header value safe to quote in a message: printable, bounded."""
    clean = "".join(c if c.isprintable() else "?" for c in value)
    return clean if len(clean) <= _MAX_SHOWN_CHARS else clean[: _MAX_SHOWN_CHARS - 1] + "…"


def _check_uids(study: LoadedStudy, thresholds: Thresholds) -> list[Finding | None]:
    """One finding per distinct invalid Study/Series/SOP Instance UID."""
    bad: dict[tuple[str, str], str] = {}
    for inst in study.instances:
        for keyword in _UID_KEYWORDS:
            value = text(inst.dataset, keyword)
            if value is not None and not valid_uid(value):
                bad.setdefault((keyword, value), inst.ref.location)
    return [
        thresholds.finding(
            "integrity.uid.invalid",
            f"{keyword} {_shown(value)!r} of {location} is not a valid DICOM UID "
            "(digits and dots, at most 64 characters)",
            f"{location} 的 {keyword} “{_shown(value)}” 不是合法的 DICOM UID（仅数字和点，最长64字符）",
            value=_shown(value),
        )
        for (keyword, value), location in bad.items()
    ]


def _check_duplicates(study: LoadedStudy, thresholds: Thresholds) -> list[Finding | None]:
    """Files sharing a SOPInstanceUID whose headers or sizes differ (identical copies are harmless)."""
    by_uid: dict[str, list[LoadedInstance]] = defaultdict(list)
    for inst in study.instances:
        by_uid[inst.ref.sop_instance_uid].append(inst)
    findings: list[Finding | None] = []
    for uid, members in by_uid.items():
        first = members[0]
        differing = [m for m in members[1:] if m.ref.size_bytes != first.ref.size_bytes or m.dataset != first.dataset]
        if not differing:
            continue
        locations = ", ".join(m.ref.location for m in [first, *differing])
        findings.append(
            thresholds.finding(
                "integrity.instance.duplicate_uid",
                f"{len(differing) + 1} different objects share SOPInstanceUID {_shown(uid)}: {locations}",
                f"{len(differing) + 1} 个内容不同的对象使用同一 SOPInstanceUID {_shown(uid)}：{locations}",
                value=locations,
                series_instance_uid=first.ref.series_instance_uid,
                sop_instance_uid=uid,
            )
        )
    return findings


def _check_series_modalities(study: LoadedStudy, thresholds: Thresholds) -> list[Finding | None]:
    modalities: dict[str, set[str]] = defaultdict(set)
    for inst in study.instances:
        modalities[inst.ref.series_instance_uid].add((text(inst.dataset, "Modality") or "?").upper())
    return [
        thresholds.finding(
            "integrity.series.mixed_modality",
            f"series {_shown(series_uid)} mixes modalities {', '.join(sorted(found))}",
            f"同一序列 {_shown(series_uid)} 混有多种检查类型：{'、'.join(sorted(found))}",
            value=",".join(sorted(found)),
            series_instance_uid=series_uid,
        )
        for series_uid, found in modalities.items()
        if len(found) > 1
    ]
