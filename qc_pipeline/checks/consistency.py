"""Consistency (一致性) beyond one header: the side ordered vs imaged, and one patient across studies."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Final

from qc_pipeline.domain import Finding, PriorStudy
from qc_pipeline.rules.loader import Thresholds

RULE_IDS: Final = frozenset({"metadata.laterality.conflict", "metadata.patient.conflict_across_studies"})
_SIDE = {"L": ("left", "左"), "R": ("right", "右"), "B": ("both", "双侧")}


def check_laterality(ordered: str | None, imaged: str | None, thresholds: Thresholds) -> list[Finding]:
    """The side in the order/description must be the side in ImageLaterality/Laterality."""
    if ordered not in ("L", "R") or imaged not in ("L", "R") or ordered == imaged:
        return []
    finding = thresholds.finding(
        "metadata.laterality.conflict",
        f"the order says {_SIDE[ordered][0]} but ImageLaterality/Laterality (0020,0062/0060) says {imaged}",
        f"申请部位为{_SIDE[ordered][1]}侧，但图像方位标记 (0020,0062/0060) 为{_SIDE[imaged][1]}侧",
        value=imaged,
        limit=ordered,
    )
    return [finding] if finding else []


def check_across_studies(
    *,
    study_date: dt.date | None,
    sex: str | None,
    birth_date: dt.date | None,
    others: Sequence[PriorStudy],
    thresholds: Thresholds,
) -> list[Finding]:
    """Other studies of the same PatientID recording another sex or birth date.

    The finding goes on the later study: one judged now that is older than the conflicting study
    is left alone here (the later one carries the finding when it is judged).
    """
    findings: list[Finding] = []
    for other in others:
        if study_date is not None and other.study_date is not None and other.study_date > study_date:
            continue
        diffs = []
        if sex and other.patient_sex and sex.upper() != other.patient_sex.upper():
            diffs.append(("PatientSex (0010,0040)", "性别", sex, other.patient_sex))
        if birth_date and other.patient_birth_date and birth_date != other.patient_birth_date:
            diffs.append(
                (
                    "PatientBirthDate (0010,0030)",
                    "出生日期",
                    f"{birth_date:%Y%m%d}",
                    f"{other.patient_birth_date:%Y%m%d}",
                )
            )
        for tag, name_zh, mine, theirs in diffs:
            finding = thresholds.finding(
                "metadata.patient.conflict_across_studies",
                f"{tag} is {mine!r} here but {theirs!r} in study {other.study_instance_uid} of the same PatientID",
                f"同一患者ID的另一检查 {other.study_instance_uid} 中{name_zh}为 {theirs!r}，本检查为 {mine!r}",
                value=mine,
                limit=theirs,
            )
            if finding:
                findings.append(finding)
    return findings
