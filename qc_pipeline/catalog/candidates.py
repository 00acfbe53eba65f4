"""Whether a study is a recognition candidate at all (before the item catalog maps it)."""

from __future__ import annotations

from typing import Final

from qc_pipeline.domain import Finding
from qc_pipeline.io.dicom import text
from qc_pipeline.rules.loader import Thresholds
from qc_pipeline.sources.base import LoadedStudy

RULE_IDS: Final = frozenset({"catalog.modality.not_candidate", "catalog.no_images"})


def image_modalities(study: LoadedStudy) -> list[str]:
    return sorted({(text(i.dataset, "Modality") or "?").upper() for i in study.images})


def check_candidate(study: LoadedStudy, thresholds: Thresholds) -> tuple[bool, list[Finding]]:
    """``(candidate, findings)``: a candidate has an image of a modality on the list (DR/CR/DX,
    CT, MR by default, ``thresholds/site.yaml``)."""
    findings: list[Finding | None] = []
    modalities = image_modalities(study)
    wanted = set(thresholds.site.candidate_modalities)
    if not modalities:
        if not study.problems:
            findings.append(
                thresholds.finding(
                    "catalog.no_images",
                    "The study holds no image object; it is not a recognition item",
                    "该检查不含图像对象，不属于互认项目",
                )
            )
        return False, [f for f in findings if f is not None]
    if not wanted.intersection(modalities):
        shown = ", ".join(modalities)
        findings.append(
            thresholds.finding(
                "catalog.modality.not_candidate",
                f"Modality (0008,0060) {shown} is not on the recognition list ({', '.join(sorted(wanted))})",
                f"检查类型 (0008,0060) {shown} 不在互认项目范围内",
                value=shown,
                limit=",".join(sorted(wanted)),
            )
        )
        return False, [f for f in findings if f is not None]
    return True, []
