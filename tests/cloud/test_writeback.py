"""Write-back of the QC result as a DICOM SR to a real Orthanc (STOW-RS), through the CLI and the
flow: stored and retrievable by QIDO/WADO, read back to the same verdicts and item; no duplicate on
a re-run; a person's decision makes version 2 in the same series; a STOW that fails is retried,
recorded and sent by a later run, the verdict untouched; the SR is never judged as an upload."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from dicomweb_client.api import DICOMwebClient

from qc_pipeline.cli import main
from qc_pipeline.pipeline import load_pipeline_thresholds
from qc_pipeline.recognition.uids import sr_instance_uid, sr_series_uid
from qc_pipeline.recognition.writeback import writebacks
from qc_pipeline.review import service
from qc_pipeline.review.accounts import create_user
from qc_pipeline.sources.dicomweb import DicomWebSource
from qc_pipeline.store import ResultStore
from tests.flows.conftest import write_instance
from tests.recognition.sr_reading import read_report
from tests.support.orthanc import free_port

pytestmark = pytest.mark.prefect

STUDY_A = "1.2.826.0.1.3680043.10.3101"
STUDY_B = "1.2.826.0.1.3680043.10.3102"
SR_LINE = "回写结构化报告 / SR written back: {sent}, failed: {failed}"


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def results(db_url: str) -> dict[str, dict]:
    code, out = invoke("results", "--db", db_url, "--format", "json")
    assert code == 0, out
    return {r["study_instance_uid"]: r for r in json.loads(out)}


def client(orthanc) -> DICOMwebClient:
    session = requests.Session()
    session.auth = orthanc.auth
    return DICOMwebClient(orthanc.dicomweb, session=session)


def stored_reports(orthanc, study: str) -> list:
    """QIDO-RS: the SR instances in the study's SR series; WADO-RS: each one, as stored."""
    web = client(orthanc)
    series = web.search_for_series(study, search_filters={"Modality": "SR"})
    assert [s["0020000E"]["Value"][0] for s in series] in ([], [sr_series_uid(study)])
    found = web.search_for_instances(study, sr_series_uid(study)) if series else []
    sops = sorted(i["00080018"]["Value"][0] for i in found)
    return [
        web.retrieve_instance(study, sr_series_uid(study), sop, media_types=(("application/dicom", "*"),))
        for sop in sops
    ]


@pytest.fixture
def two_studies(orthanc, cloud_credentials, tmp_path: Path) -> None:
    orthanc.clear()
    files = tmp_path / "files"
    paths = [write_instance(files / "a" / f"{n}.dcm", study=STUDY_A, series_no=1, instance_no=n) for n in (1, 2)]
    paths.append(write_instance(files / "b" / "1.dcm", study=STUDY_B, series_no=1, instance_no=1, PatientSex="X"))
    orthanc.upload(paths)
    orthanc.wait_until_stable()


def test_write_back_stores_one_sr_per_study_that_reads_back_to_the_stored_result(
    prefect_harness, orthanc, two_studies, tmp_path
):
    db = f"sqlite:///{tmp_path / 'r.sqlite'}"
    before = {uid: DicomWebSource(orthanc.dicomweb).entry_for(uid).fingerprint for uid in (STUDY_A, STUDY_B)}
    code, out = invoke("run", orthanc.dicomweb, "--db", db, "--write-back")
    assert code == 0, out
    assert SR_LINE.format(sent=2, failed=0) in out, out
    rows = results(db)
    for uid in (STUDY_A, STUDY_B):
        (report,) = stored_reports(orthanc, uid)
        got = read_report(report)
        row = rows[uid]
        assert (got["series"], got["sop"], got["instance_number"]) == (sr_series_uid(uid), sr_instance_uid(uid, 1), 1)
        assert got["verdict"] == row["final_verdict"] and got["machine_verdict"] == row["verdict"]
        assert got["item_code"] == (row["item"] or {}).get("code")
        assert [f["code"] for f in got["findings"]] == [f["code"] for f in row["findings"]]
        assert got["evidence"] == sorted(f"{uid}.1.{n}" for n in ((1, 2) if uid == STUDY_A else (1,)))
        assert report.PatientID == "P-" + uid[-4:]
    assert {r["verdict"] for r in rows.values()} == {"pass", "review"}  # a patient sex of X is for review
    with ResultStore.open(db) as store:
        assert [(w["version"], w["status"], w["attempts"]) for w in writebacks(store, STUDY_A)] == [(1, "sent", 1)]

    # Loop guard: the SR made Orthanc see the studies change, but the source leaves our series
    # out: same content fingerprint, nothing judged again, nothing new written back.
    orthanc.wait_until_stable()
    after = {uid: DicomWebSource(orthanc.dicomweb).entry_for(uid).fingerprint for uid in (STUDY_A, STUDY_B)}
    assert after == before
    code, out = invoke("run", orthanc.dicomweb, "--db", db, "--write-back")
    assert code == 0 and "0 已质控 judged" in out and SR_LINE.format(sent=0, failed=0) in out, out
    assert {uid: r["history_count"] for uid, r in results(db).items()} == {STUDY_A: 1, STUDY_B: 1}
    assert len(stored_reports(orthanc, STUDY_A)) == 1  # no duplicate

    # A person's decision changes what the report says: version 2, same series, naming version 1.
    (flagged,) = [uid for uid, r in rows.items() if r["verdict"] in ("review", "fail")]
    other = STUDY_A if flagged == STUDY_B else STUDY_B
    with ResultStore.open(db) as store:
        user = create_user(store, "dr.wang", "radiologist-pass-1", role="reviewer")
        service.decide(
            store,
            load_pipeline_thresholds(None),
            flagged,
            user,
            verdict="pass",
            reason_code="false_positive",
            reason_text="checked against the prior study",
        )
    code, out = invoke("run", orthanc.dicomweb, "--db", db, "--write-back")
    assert code == 0 and "0 已质控 judged" in out and SR_LINE.format(sent=1, failed=0) in out, out
    v1, v2 = sorted((read_report(r) for r in stored_reports(orthanc, flagged)), key=lambda r: r["instance_number"])
    assert (v1["instance_number"], v2["instance_number"]) == (1, 2)
    assert v1["series"] == v2["series"] == sr_series_uid(flagged)
    assert (v1["verdict"], v2["verdict"], v2["machine_verdict"]) == (
        rows[flagged]["verdict"],
        "pass",
        rows[flagged]["verdict"],
    )
    assert v2["predecessors"] == [v1["sop"]] and v2["sop"] == sr_instance_uid(flagged, 2)
    assert len(stored_reports(orthanc, other)) == 1  # the other study's report did not change


def test_a_failed_stow_is_retried_recorded_and_sent_by_a_later_run(
    prefect_harness, orthanc, two_studies, tmp_path, monkeypatch
):
    db = f"sqlite:///{tmp_path / 'r.sqlite'}"
    monkeypatch.setenv("QC_DICOMWEB_STOW_URL", f"http://127.0.0.1:{free_port()}/dicom-web")  # nobody listens
    monkeypatch.setenv("QC_WRITEBACK_BACKOFF_S", "0.05")
    code, out = invoke("run", orthanc.dicomweb, "--db", db, "--write-back")
    assert code == 0, out  # the run itself succeeded: the verdicts are stored
    assert SR_LINE.format(sent=0, failed=2) in out, out
    judged = results(db)
    assert set(judged) == {STUDY_A, STUDY_B} and all(r["history_count"] == 1 for r in judged.values())
    with ResultStore.open(db) as store:
        (row,) = writebacks(store, STUDY_A)
    assert (row["version"], row["status"], row["attempts"]) == (1, "failed", 3)
    assert "cannot reach DICOMweb server" in row["last_error"] and "store 1 instance(s)" in row["last_error"]
    assert stored_reports(orthanc, STUDY_A) == []

    monkeypatch.delenv("QC_DICOMWEB_STOW_URL")  # the server takes stores again
    code, out = invoke("run", orthanc.dicomweb, "--db", db, "--write-back")
    assert code == 0 and "0 已质控 judged" in out and SR_LINE.format(sent=2, failed=0) in out, out
    assert results(db) == judged  # the verdicts are exactly as they were
    with ResultStore.open(db) as store:
        (row,) = writebacks(store, STUDY_A)
    assert (row["version"], row["status"], row["attempts"], row["last_error"]) == (1, "sent", 4, None)
    (report,) = stored_reports(orthanc, STUDY_A)
    assert read_report(report)["sop"] == sr_instance_uid(STUDY_A, 1)  # the same version, not a new one


def test_write_back_with_a_folder_source_says_it_needs_dicomweb_and_the_run_goes_on(prefect_harness, tmp_path):
    folder = tmp_path / "incoming"
    write_instance(folder / "a" / "1.dcm", study=STUDY_A, series_no=1, instance_no=1)
    db = f"sqlite:///{tmp_path / 'r.sqlite'}"
    code, out = invoke("run", str(folder), "--db", db, "--write-back")
    assert code == 0, out
    assert out.count("回写结构化报告需要 DICOMweb 数据源，本次不回写 / write-back needs a DICOMweb source") == 1, out
    assert "1 已质控 judged" in out and "SR written back" not in out
    assert set(results(db)) == {STUDY_A}
