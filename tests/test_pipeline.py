"""judge(): one loaded study to a decision, without Prefect or a database."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from qc_pipeline.checks import metadata
from qc_pipeline.domain import Severity, Verdict
from qc_pipeline.pipeline import judge, load_pipeline_thresholds
from qc_pipeline.sources import FolderSource

from .flows.conftest import GOOD_STUDY, write_instance

NOW = dt.datetime(2026, 10, 20, 4, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def thresholds():
    return load_pipeline_thresholds()


def load_only(root: Path):
    source = FolderSource(root, file_times_are_upload_times=True)  # write_instance sets the upload time
    (entry,) = list(source.discover())
    return source.load(entry)


def test_a_copied_folder_gives_no_upload_delay(tmp_path, thresholds, monkeypatch):
    monkeypatch.delenv("QC_FILE_TIMES_ARE_UPLOAD_TIMES", raising=False)
    write_instance(tmp_path / "1.dcm", study=GOOD_STUDY, series_no=1, instance_no=1)
    (tmp_path / "1.dcm").touch()  # copied today: weeks after the exam
    source = FolderSource(tmp_path)
    (entry,) = list(source.discover())
    decision = judge(source.load(entry), thresholds, now=NOW, source_uri="file:///x")
    assert decision.study.upload_delay_h is None and "upload_delay_h" not in decision.metrics
    assert not [f for f in decision.findings if f.code.startswith("timeliness.")]


def test_an_upper_bound_upload_time_is_reported_as_one(tmp_path, thresholds):
    write_instance(tmp_path / "1.dcm", study=GOOD_STUDY, series_no=1, instance_no=1)
    study = load_only(tmp_path)
    study.received_at = dt.datetime(2026, 10, 14, 3, 30, tzinfo=dt.UTC)  # first seen 50 h after the exam
    study.received_at_is_upper_bound = True
    decision = judge(study, thresholds, now=NOW, source_uri="https://pacs.example/dicom-web")
    (late,) = [f for f in decision.findings if f.code.startswith("timeliness.")]
    assert late.code == "timeliness.upload_delay.late" and late.severity is Severity.INFO
    assert late.value == "≤ 50.0 h" and "at most 50.0 h" in late.message and "first saw the study" in late.message
    assert decision.verdict is Verdict.PASS  # late upload sends no study to a radiologist


def test_good_study_passes_with_summary(tmp_path, thresholds):
    write_instance(tmp_path / "1.dcm", study=GOOD_STUDY, series_no=1, instance_no=1)
    decision = judge(load_only(tmp_path), thresholds, now=NOW, source_uri="file:///x")
    assert decision.verdict is Verdict.PASS
    assert [f.code for f in decision.findings] == ["completeness.report.not_checked", "catalog.item.matched"]
    assert decision.item.code == "YB-036"
    assert decision.metrics == {"upload_delay_h": 2.0}
    assert decision.eligible and decision.eligible_until == dt.date(2027, 1, 12)
    assert decision.study.study_date == dt.date(2026, 10, 12)
    assert decision.study.modalities == ("CT",)
    assert decision.provenance.thresholds_version == thresholds.version


def test_ultrasound_is_not_applicable(tmp_path, thresholds):
    write_instance(tmp_path / "us.dcm", study=GOOD_STUDY, series_no=1, instance_no=1, name="US1_UNCR.dcm")
    decision = judge(load_only(tmp_path), thresholds, now=NOW)
    assert decision.verdict is Verdict.NOT_APPLICABLE
    assert [f.code for f in decision.findings] == ["catalog.modality.not_candidate"]
    assert decision.findings[0].value == "US"
    assert not decision.eligible


def test_metadata_failure_is_fail(tmp_path, thresholds):
    write_instance(tmp_path / "1.dcm", study=GOOD_STUDY, series_no=1, instance_no=1, PatientID="")
    decision = judge(load_only(tmp_path), thresholds, now=NOW)
    assert decision.verdict is Verdict.FAIL
    assert [f.code for f in decision.reasons] == ["metadata.patient_id.missing"]


def test_unexpected_error_in_a_check_becomes_a_review_finding(tmp_path, thresholds, monkeypatch):
    write_instance(tmp_path / "1.dcm", study=GOOD_STUDY, series_no=1, instance_no=1)

    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(metadata, "check_metadata", broken)  # the pipeline calls it via the module
    decision = judge(load_only(tmp_path), thresholds, now=NOW)
    assert decision.verdict is Verdict.REVIEW
    (finding,) = decision.findings
    assert finding.code == "integrity.check.error" and finding.severity is Severity.REVIEW
    assert "ZeroDivisionError" in finding.message


def test_thresholds_are_read_once_per_process_until_a_byte_of_the_folder_changes(tmp_path: Path) -> None:
    """A command checks the thresholds and its flow reads them again: the second read is the first's
    copy, but a limit edited to a value of the same length at once (same size, perhaps the same
    modification time) is read anew."""
    import shutil

    from qc_pipeline.rules.loader import default_thresholds_dir

    folder = tmp_path / "thresholds"
    shutil.copytree(default_thresholds_dir(), folder)
    first = load_pipeline_thresholds(folder)
    assert load_pipeline_thresholds(folder) is first
    ct = folder / "image_quality_ct.yaml"
    text = ct.read_text(encoding="utf-8")
    assert "    limit: 150\n" in text
    ct.write_text(text.replace("    limit: 150\n", "    limit: 160\n", 1), encoding="utf-8")
    edited = load_pipeline_thresholds(folder)
    assert edited is not first and edited.version != first.version
    changed = [r for r in edited.rules if edited.rules[r].limit != first.rules[r].limit]
    assert [(first.rules[r].limit, edited.rules[r].limit) for r in changed] == [(150, 160)]
