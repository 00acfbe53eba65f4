"""The quality-control SR: content, UIDs and versions, read back with highdicom (no server)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydicom.dataset import Dataset

from qc_pipeline.recognition.sr import build_sr, evidence_datasets, unit_code
from qc_pipeline.recognition.uids import is_own_series, sr_instance_uid, sr_series_uid
from qc_pipeline.recognition.writeback import decision_fingerprint
from tests.recognition.sr_reading import read_report, reencode

STUDY = "1.2.826.0.1.3680043.10.8801"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


def header(series: int, instance: int, **attrs: Any) -> Dataset:
    ds = Dataset()
    ds.StudyInstanceUID = STUDY
    ds.SeriesInstanceUID = f"{STUDY}.{series}"
    ds.SOPInstanceUID = f"{STUDY}.{series}.{instance}"
    ds.SOPClassUID = CT_IMAGE
    ds.PatientID = "P-8801"
    ds.PatientName = "Li^Si=李^四"
    ds.PatientSex = "F"
    ds.StudyDate = "20261012"
    ds.AccessionNumber = "ACC8801"
    for key, value in attrs.items():
        setattr(ds, key, value)
    return ds


HEADERS = [header(1, 1), header(1, 2), header(2, 1)]


def result(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "study_instance_uid": STUDY,
        "item": {"code": "YB-036", "name_zh": "胸部CT平扫", "name_en": "CT chest plain"},
        "verdict": "fail",
        "final_verdict": "fail",
        "human_decision": None,
        "eligible_until": None,
        "recognition_mark": "HR",
        "decided_at": "2026-10-12T04:00:00.250000+00:00",
        "content_fingerprint": "c" * 64,
        "findings": [
            {
                "code": "image_quality.ct.noise.high",
                "category": "image_quality",
                "severity": "fail",
                "message": "Noise too high",
                "message_zh": "噪声过高",
                "value": "42.5 HU",
                "limit": "<= 30 HU",
                "series_instance_uid": f"{STUDY}.1",
                "sop_instance_uid": f"{STUDY}.1.2",
            },
            {
                "code": "completeness.series.count",
                "category": "completeness",
                "severity": "review",
                "message": "Too few series",
                "message_zh": "序列不足",
                "value": "1 of 2 series",
                "limit": ">= 2",
                "series_instance_uid": None,
                "sop_instance_uid": None,
            },
        ],
        "provenance": {"pipeline_version": "0.1.0", "thresholds_version": "th-1", "models": {"ct": "1.0@ab"}},
    }
    base.update(changes)
    return base


def test_the_report_says_the_verdict_item_mark_and_each_finding_with_value_unit_and_limit() -> None:
    sr = build_sr(result(), evidence_datasets(HEADERS), version=1)
    got = read_report(reencode(sr))
    assert got["sop_class"] == "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
    assert (got["study"], got["series"], got["sop"], got["instance_number"]) == (
        STUDY,
        sr_series_uid(STUDY),
        sr_instance_uid(STUDY, 1),
        1,
    )
    assert (got["item_code"], got["verdict"], got["machine_verdict"], got["mark"]) == ("YB-036", "fail", "fail", "HR")
    assert got["eligible_until"] is None  # a failed study has no window
    noise, count = got["findings"]
    # A number with a unit is a NUM in UCUM; the limit is the rule's text; the instance is referenced.
    assert noise == {
        "code": "image_quality.ct.noise.high",
        "SEVERITY": "fail",
        "CATEGORY": "image_quality",
        "MESSAGE-EN": "Noise too high",
        "MESSAGE-ZH": "噪声过高",
        "value": 42.5,
        "unit": "[hnsf'U]",
        "QC-LIMIT": "<= 30 HU",
        "image": f"{STUDY}.1.2",
    }
    # "1 of 2 series" is not one number with a unit: kept as text, not forced into a NUM.
    assert count["QC-VALUE"] == "1 of 2 series" and "value" not in count
    # The evaluated instances are the evidence, and the patient comes from them.
    assert got["evidence"] == sorted(h.SOPInstanceUID for h in HEADERS)
    assert (sr.PatientID, str(sr.PatientName), sr.AccessionNumber, sr.Modality) == (
        "P-8801",
        "Li^Si=李^四",
        "ACC8801",
        "SR",
    )
    assert sr.SpecificCharacterSet == "ISO_IR 192"  # the Chinese texts survive encoding
    assert (sr.CompletionFlag, sr.PreliminaryFlag) == ("COMPLETE", "FINAL")


def test_a_standing_human_decision_gives_the_final_verdict_and_window() -> None:
    human = {
        "verdict": "pass",
        "action": "override",
        "reason_code": "artefact_not_relevant",
        "reviewer": "dr.wang",
        "decided_at": "2026-10-13T02:00:00+00:00",
        "eligible_until": "2026-11-11",
    }
    r = result(final_verdict="pass", human_decision=human, eligible_until="2026-11-11")
    got = read_report(reencode(build_sr(r, evidence_datasets(HEADERS), version=2)))
    assert (got["verdict"], got["machine_verdict"], got["eligible_until"]) == ("pass", "fail", "20261111")


def test_versions_share_the_series_and_name_their_predecessor() -> None:
    first = build_sr(result(), evidence_datasets(HEADERS), version=1)
    second = build_sr(
        result(verdict="review", final_verdict="review"), evidence_datasets(HEADERS), version=2, predecessors=[first]
    )
    got = read_report(reencode(second))
    assert got["series"] == str(first.SeriesInstanceUID) == sr_series_uid(STUDY)
    assert got["sop"] != str(first.SOPInstanceUID) and got["instance_number"] == 2
    assert got["predecessors"] == [str(first.SOPInstanceUID)]
    assert second.PreliminaryFlag == "PRELIMINARY"  # a verdict awaiting review is not final


def test_uids_are_deterministic_per_study_and_version() -> None:
    assert sr_series_uid(STUDY) == sr_series_uid(STUDY) != sr_series_uid(STUDY + "1")
    assert sr_instance_uid(STUDY, 1) == sr_instance_uid(STUDY, 1) != sr_instance_uid(STUDY, 2)
    assert all(len(u) <= 64 and u.startswith("2.25.") for u in (sr_series_uid(STUDY), sr_instance_uid(STUDY, 99)))
    assert is_own_series(STUDY, sr_series_uid(STUDY)) and not is_own_series(STUDY, f"{STUDY}.1")
    assert not is_own_series(STUDY + "1", sr_series_uid(STUDY))
    with pytest.raises(ValueError, match="starts at 1"):
        sr_instance_uid(STUDY, 0)


def test_the_fingerprint_changes_with_what_the_report_says_only() -> None:
    base = decision_fingerprint(result())
    assert decision_fingerprint(result()) == base
    changed = result()
    changed["findings"][0]["value"] = "43 HU"
    assert decision_fingerprint(changed) != base
    assert decision_fingerprint(result(final_verdict="pass", human_decision={"verdict": "pass"})) != base
    assert decision_fingerprint(result(recognition_mark=None)) != base
    # Today's eligibility moves with the calendar: not part of the report, so no new version.
    assert decision_fingerprint({**result(), "eligible": False, "eligibility_as_of": "2026-12-31"}) == base


def test_without_an_instance_of_the_study_no_report_is_made() -> None:
    other = header(1, 1, StudyInstanceUID="1.2.3.4")
    with pytest.raises(ValueError, match="no instance of study .* evaluated instances"):
        build_sr(result(), evidence_datasets([other]), version=1)
    incomplete = copy.deepcopy(HEADERS[0])
    del incomplete.SOPClassUID
    assert evidence_datasets([incomplete]) == []  # an instance it cannot reference is left out


def test_units() -> None:
    assert unit_code("mm").value == "mm" and unit_code("").value == "1"
    odd = unit_code("EI units")
    assert (odd.value, odd.scheme_designator, odd.meaning) == ("{EI_units}", "UCUM", "EI units")


def test_a_header_the_sr_cannot_carry_as_written_still_gets_its_report() -> None:
    # A study is often judged because its header is wrong; its report must still be written.
    bad = [header(1, 1, PatientSex="X", StudyDate="20261345", PatientBirthDate="abc", StudyTime="250000")]
    sr = build_sr(result(), evidence_datasets(bad), version=1)
    got = read_report(reencode(sr))
    assert got["verdict"] == "fail" and got["evidence"] == [f"{STUDY}.1.1"]
    assert (sr.PatientSex, sr.StudyDate, sr.PatientBirthDate, sr.PatientID) == ("", "", "", "P-8801")
