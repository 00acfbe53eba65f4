"""judge() on studies with non-image objects, and the series of each study as the pipeline read them."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner
from pydicom.data import get_testdata_file

from qc_pipeline.cli import main
from qc_pipeline.domain import Verdict
from qc_pipeline.pipeline import judge
from qc_pipeline.samples.demo import demo_cases, write_demo_studies
from qc_pipeline.store import ResultStore

from .flows.conftest import GOOD_STUDY, RECEIVED_AT, write_instance
from .test_pipeline import NOW, load_only, thresholds  # noqa: F401 (a fixture)


def write_dose_report(path: Path, *, study: str, **attrs: str) -> Path:
    """A structured report in the study (pydicom's test-SR.dcm) with the scanner's sparse patient data."""
    import os

    sr = pydicom.dcmread(get_testdata_file("test-SR.dcm"))
    sr.StudyInstanceUID = study
    sr.SeriesInstanceUID = study + ".99"
    sr.SeriesNumber = 99
    sr.SOPInstanceUID = study + ".99.1"
    sr.file_meta.MediaStorageSOPInstanceUID = sr.SOPInstanceUID
    sr.PatientID = "P-" + study[-4:]
    sr.SpecificCharacterSet = "ISO_IR 192"
    sr.PatientName = "Li^Si=李^四"
    for key, value in attrs.items():
        setattr(sr, key, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    sr.save_as(path)
    os.utime(path, (RECEIVED_AT.timestamp(), RECEIVED_AT.timestamp()))
    return path


def test_fields_missing_only_on_the_dose_report_do_not_fail_the_study(tmp_path, thresholds):
    write_instance(tmp_path / "1.dcm", study=GOOD_STUDY, series_no=1, instance_no=1)
    write_dose_report(
        tmp_path / "sr.dcm",
        study=GOOD_STUDY,
        PatientBirthDate="",
        PatientSex="",
        AccessionNumber="",
        InstitutionName="",
    )
    decision = judge(load_only(tmp_path), thresholds, now=NOW)
    assert decision.verdict is Verdict.PASS, [f.message for f in decision.reasons]
    assert not [f for f in decision.findings if f.code.startswith("metadata.")]


def test_a_dose_report_of_another_patient_is_still_a_conflict(tmp_path, thresholds):
    write_instance(tmp_path / "1.dcm", study=GOOD_STUDY, series_no=1, instance_no=1)
    write_dose_report(tmp_path / "sr.dcm", study=GOOD_STUDY, PatientID="P-9999")
    decision = judge(load_only(tmp_path), thresholds, now=NOW)
    (finding,) = [f for f in decision.findings if f.code.startswith("metadata.")]
    assert finding.code == "metadata.patient.inconsistent" and "PatientID (0010,0020)" in finding.message
    assert decision.verdict is Verdict.FAIL


# -- `results --format json`: every series with its role ---------------------------------------


@pytest.fixture(scope="module")
def judged_samples(tmp_path_factory, thresholds) -> str:
    """The demo set's brain MR, chest CT, chest radiograph and radiograph-with-SR studies, judged and stored."""
    root = tmp_path_factory.mktemp("samples")
    write_demo_studies(root)
    url = f"sqlite:///{root / 'results.sqlite'}"
    with ResultStore.open(url) as store:
        for case in ("phantom_mr_brain", "phantom_ct_chest", "phantom_dr_chest", "sr_in_study"):
            decision = judge(load_only(root / case), thresholds, now=NOW)
            store.save_decision(decision, run_id=None)
    return url


def cli_series(url: str, case: str) -> list[dict]:
    uid = next(c.study_instance_uid for c in demo_cases() if c.name == case)
    result = CliRunner().invoke(main, ["results", "--db", url, "--format", "json", "--study", uid])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    return row["series"]


def test_results_json_lists_the_mr_series_with_weighting_plane_and_evidence(judged_samples):
    series = cli_series(judged_samples, "phantom_mr_brain")
    shown = [(s["series_number"], s["description"], s["modality"], s["n_instances"], s["kind"]) for s in series]
    assert shown == [
        (1, "t2_tse_tra", "MR", 12, "MR"),
        (2, "t1_se_tra", "MR", 12, "MR"),
        (3, "t2_tirm_tra_dark-fluid", "MR", 12, "MR"),
        (4, "ep2d_diff_tra b1000", "MR", 12, "MR"),
        (5, "t2_tse_sag", "MR", 12, "MR"),
    ]
    roles = [(s["role"]["weighting"], s["role"]["plane"]) for s in series]
    assert roles == [("T2", "AXIAL"), ("T1", "AXIAL"), ("T2_FLAIR", "AXIAL"), ("DWI", "AXIAL"), ("T2", "SAGITTAL")]
    flair = series[2]
    assert set(flair["role"]) == {"weighting", "plane", "fat_suppressed", "post_contrast", "evidence"}
    assert (flair["role"]["fat_suppressed"], flair["role"]["post_contrast"]) == (False, False)
    assert "TI 2500 ms" in flair["role"]["evidence"][0]  # why it is the FLAIR: the inversion time
    assert all(s["series_instance_uid"] for s in series)


def test_results_json_lists_the_ct_phase_and_slice(judged_samples):
    (ct,) = cli_series(judged_samples, "phantom_ct_chest")
    assert (ct["modality"], ct["kind"], ct["n_instances"]) == ("CT", "CT", 16)
    assert {k: ct["role"][k] for k in ("phase", "kernel_class", "slice_mm")} == {
        "phase": "PLAIN",
        "kernel_class": "SOFT_TISSUE",
        "slice_mm": 5.0,
    }
    assert "kernel 'STANDARD' → SOFT_TISSUE" in ct["role"]["evidence"]
    assert "slice 5 mm from SliceThickness (0018,0050)" in ct["role"]["evidence"]


def test_results_json_lists_the_dr_view_and_the_non_image_series(judged_samples):
    (dr,) = cli_series(judged_samples, "phantom_dr_chest")
    assert (dr["modality"], dr["kind"], dr["role"]["view"]) == ("DX", "DR", "PA")
    assert dr["role"]["evidence"][0].startswith("view PA from ViewPosition (0018,5101) 'PA'")
    image, report = cli_series(judged_samples, "sr_in_study")
    assert (image["kind"], image["role"]["view"]) == ("DR", "PA")
    assert (report["modality"], report["series_number"], report["kind"], report["role"]) == (
        "SR",
        99,
        "non_image",
        None,
    )


def test_results_csv_and_table_are_unchanged(judged_samples):
    from qc_pipeline.cli import CSV_COLUMNS

    result = CliRunner().invoke(main, ["results", "--db", judged_samples, "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == ",".join(CSV_COLUMNS) and "series" not in CSV_COLUMNS


def test_a_failure_describing_the_series_goes_to_review_and_keeps_the_other_findings(tmp_path, thresholds, monkeypatch):
    from qc_pipeline.catalog import series_roles

    write_instance(tmp_path / "1.dcm", study=GOOD_STUDY, series_no=1, instance_no=1, AccessionNumber="")

    def broken(*args, **kwargs):
        raise KeyError("no such role")

    monkeypatch.setattr(series_roles, "describe_series", broken)
    decision = judge(load_only(tmp_path), thresholds, now=NOW)
    assert decision.verdict is Verdict.REVIEW and decision.series == ()
    codes = [f.code for f in decision.reasons]
    assert codes == ["metadata.accession_number.missing", "integrity.check.error"]
    assert decision.reasons[1].message.startswith("The series could not be described (KeyError")
