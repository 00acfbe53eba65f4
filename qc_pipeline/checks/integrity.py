"""Whether the study's objects could be read: unreadable files, truncated pixel data, non-images."""

from __future__ import annotations

from collections import defaultdict
from typing import Final

from qc_pipeline.domain import Finding
from qc_pipeline.io.dicom import sop_class_name
from qc_pipeline.rules.loader import Thresholds
from qc_pipeline.sources.base import LoadedStudy, ProblemKind

RULE_IDS: Final = frozenset(
    {
        "integrity.file.unreadable",
        "integrity.header.missing_uid",
        "integrity.pixel_data.truncated",
        "integrity.pixel_data.missing",
        "integrity.non_image.skipped",
    }
)


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
    return [f for f in findings if f is not None]
