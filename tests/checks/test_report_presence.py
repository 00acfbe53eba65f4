"""The diagnostic report: checked only where the source holds reports, never implied."""

from __future__ import annotations

import dataclasses

import pytest
from pydicom.dataset import Dataset

from qc_pipeline.checks.report_presence import ENCAPSULATED_PDF, RULE_IDS, check_report_presence
from qc_pipeline.domain import Severity
from qc_pipeline.rules import load_thresholds


@pytest.fixture(scope="module")
def thresholds():
    return load_thresholds()


def _holding(thresholds, holds: bool | None):
    site = thresholds.site.model_copy(
        update={"reports": thresholds.site.reports.model_copy(update={"source_holds_reports": holds})}
    )
    return dataclasses.replace(thresholds, site=site)


def _ds(modality: str, sop_class: str = "1.2.840.10008.5.1.4.1.1.2") -> Dataset:
    ds = Dataset()
    ds.Modality, ds.SOPClassUID = modality, sop_class
    return ds


def test_by_default_the_report_is_not_checked_and_says_so(thresholds) -> None:
    assert thresholds.site.reports.source_holds_reports is None  # shipped default: not known
    (f,) = check_report_presence([], thresholds)
    assert (f.code, f.severity) == ("completeness.report.not_checked", Severity.INFO)
    assert "报告未核查" in f.message_zh and "report not checked" in f.message


def test_where_the_source_holds_reports_a_study_without_one_is_flagged(thresholds) -> None:
    holds = _holding(thresholds, True)
    (f,) = check_report_presence([_ds("KO", "1.2.840.10008.5.1.4.1.1.88.59")], holds)
    assert f.code == "completeness.report.missing" and f.severity != Severity.INFO
    assert "诊断报告" in f.message_zh
    assert check_report_presence([_ds("SR", "1.2.840.10008.5.1.4.1.1.88.33")], holds) == []
    assert check_report_presence([_ds("DOC", ENCAPSULATED_PDF)], holds) == []
    dose_only = check_report_presence([_ds("SR", "1.2.840.10008.5.1.4.1.1.88.67")], holds)  # a dose SR is no diagnosis
    assert [f.code for f in dose_only] == ["completeness.report.missing"]
    not_held = check_report_presence([], _holding(thresholds, False))
    assert [f.code for f in not_held] == ["completeness.report.not_checked"]


def test_rule_ids_are_declared(thresholds) -> None:
    assert RULE_IDS <= set(thresholds.rules)
