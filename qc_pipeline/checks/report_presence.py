"""The diagnostic report (报告): recognition is of the images and the report (seed 002 §3(二)).

Where ``thresholds/site.yaml`` says the source holds reports (``reports.source_holds_reports:
true``), a study must carry one among its non-image instances: a diagnostic DICOM SR (basic,
enhanced, comprehensive, extensible) or an encapsulated PDF. Otherwise the cloud cannot know and
the study says "report not checked" (info): a missing check is never shown as a present report.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from pydicom.dataset import Dataset

from qc_pipeline.domain import Finding
from qc_pipeline.rules.loader import Thresholds

MISSING: Final = "completeness.report.missing"
NOT_CHECKED: Final = "completeness.report.not_checked"
RULE_IDS: Final = frozenset({MISSING, NOT_CHECKED})
ENCAPSULATED_PDF: Final = "1.2.840.10008.5.1.4.1.1.104.1"
REPORT_SR_CLASSES: Final = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.88.11",  # Basic Text SR
        "1.2.840.10008.5.1.4.1.1.88.22",  # Enhanced SR
        "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR
        "1.2.840.10008.5.1.4.1.1.88.34",  # Comprehensive 3D SR
        "1.2.840.10008.5.1.4.1.1.88.35",  # Extensible SR
    }
)
"""SR storage classes that carry a diagnostic report (PS3.4 B.5); dose, CAD and key-object SRs
are not reports."""


def is_report(ds: Dataset) -> bool:
    sop_class = str(getattr(ds, "SOPClassUID", "") or "")
    return sop_class == ENCAPSULATED_PDF or sop_class in REPORT_SR_CLASSES


def check_report_presence(non_images: Iterable[Dataset], thresholds: Thresholds) -> list[Finding]:
    """At most one finding: report missing (the source holds reports) or report not checked."""
    holds = thresholds.site.reports.source_holds_reports
    if holds is not True:
        why_en = "the source is not known to hold reports" if holds is None else "the source does not hold reports"
        why_zh = "未确认影像云保存诊断报告" if holds is None else "影像云不保存诊断报告"
        found = thresholds.finding(
            NOT_CHECKED,
            f"report not checked: {why_en} (thresholds/site.yaml reports)",
            f"报告未核查：{why_zh}（thresholds/site.yaml reports）",
        )
    elif any(is_report(ds) for ds in non_images):
        return []
    else:
        found = thresholds.finding(
            MISSING,
            "no diagnostic report (SR or encapsulated PDF) in the study, although the source holds reports",
            "影像云保存诊断报告，但本检查无诊断报告（SR 或 PDF）",
        )
    return [found] if found is not None else []
