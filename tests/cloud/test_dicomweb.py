"""The DICOMweb source against a real Orthanc, through the CLI and the flow: same verdicts as the
folder, incremental runs with a durable cursor, a server that goes away before or during a run,
wrong credentials, credentials from a Prefect Secret block."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from qc_pipeline.cli import main
from qc_pipeline.samples.demo import write_demo_studies
from qc_pipeline.sources.dicomweb import CURSOR_ORTHANC
from qc_pipeline.store import ResultStore
from tests.cloud.conftest import PASSWORD, USER
from tests.flows.conftest import write_instance

pytestmark = pytest.mark.prefect

# Folder-only cases: a file that is not DICOM, or is cut short, cannot be uploaded by STOW-RS.
NOT_UPLOADABLE = {"not_dicom", "truncated_file"}
STUDY_A = "1.2.826.0.1.3680043.10.3001"
STUDY_B = "1.2.826.0.1.3680043.10.3002"


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def results(db_url: str) -> list[dict]:
    code, out = invoke("results", "--db", db_url, "--format", "json")
    assert code == 0, out
    return json.loads(out)


def verdicts(db_url: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Verdict and finding codes per study (timeliness included: both sources know the upload time)."""
    return {
        r["study_instance_uid"]: (r["verdict"], tuple(sorted(f["code"] for f in r["findings"])))
        for r in results(db_url)
    }


def cursor(db_url: str, source: str):
    with ResultStore.open(db_url) as store:
        return store.cursor(source)


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory) -> tuple[Path, list]:
    """The uploadable demo studies, their files dated now: as if they had just been uploaded, so
    that the folder (file times) and Orthanc (upload times) give the same upload delays."""
    root = tmp_path_factory.mktemp("cloud-demo")
    cases = [c for c in write_demo_studies(root / "all") if c.name not in NOT_UPLOADABLE]
    upload = root / "upload"
    for case in cases:
        shutil.copytree(root / "all" / case.name, upload / case.name)
    for path in upload.rglob("*.dcm"):
        os.utime(path)
    return upload, cases


def test_stow_uploads_get_the_same_verdicts_as_the_folder(
    prefect_harness, orthanc, cloud_credentials, demo_folder, tmp_path
):
    folder, cases = demo_folder
    orthanc.clear()
    orthanc.upload(sorted(folder.rglob("*.dcm")))
    orthanc.wait_until_stable()
    folder_db, cloud_db = f"sqlite:///{tmp_path / 'folder.sqlite'}", f"sqlite:///{tmp_path / 'cloud.sqlite'}"
    assert invoke("run", str(folder), "--db", folder_db, "--file-times-are-upload-times")[0] == 0
    code, out = invoke("run", orthanc.dicomweb, "--db", cloud_db)
    assert code == 0, out
    from_folder, from_cloud = verdicts(folder_db), verdicts(cloud_db)
    assert len(from_cloud) == len(cases)
    assert from_cloud == from_folder
    # The upload delay comes from Orthanc's reception time: within a minute of the file times.
    delays = {r["study_instance_uid"]: r["metrics"].get("upload_delay_h") for r in results(folder_db)}
    for row in results(cloud_db):
        if delays[row["study_instance_uid"]] is not None:
            assert row["metrics"]["upload_delay_h"] == pytest.approx(delays[row["study_instance_uid"]], abs=1 / 60)

    # Incremental: the cursor covers everything, the next run lists nothing at all.
    assert cursor(cloud_db, orthanc.dicomweb).kind == CURSOR_ORTHANC
    code, out = invoke("run", orthanc.dicomweb, "--db", cloud_db)
    assert code == 0 and "0 项检查 studies, 0 已质控 judged, 0 无变化 unchanged" in out, out


def test_new_uploads_and_grown_studies_are_picked_up_and_old_ones_are_not_redone(
    prefect_harness, orthanc, cloud_credentials, tmp_path
):
    orthanc.clear()
    files = tmp_path / "files"

    def upload(study: str, numbers: range) -> None:
        orthanc.upload(
            [write_instance(files / study / f"{n}.dcm", study=study, series_no=1, instance_no=n) for n in numbers]
        )
        orthanc.wait_until_stable()

    upload(STUDY_A, range(1, 3))
    db = f"sqlite:///{tmp_path / 'r.sqlite'}"
    code, out = invoke("run", orthanc.dicomweb, "--db", db)
    assert code == 0 and "1 项检查 studies, 1 已质控 judged, 0 无变化 unchanged" in out, out
    first_position = cursor(db, orthanc.dicomweb).position

    upload(STUDY_B, range(1, 3))  # a new study
    upload(STUDY_A, range(3, 4))  # study A grows by one image
    code, out = invoke("run", orthanc.dicomweb, "--db", db)
    assert code == 0 and "2 项检查 studies, 2 已质控 judged, 0 无变化 unchanged" in out, out
    assert int(cursor(db, orthanc.dicomweb).position) > int(first_position)
    rows = {r["study_instance_uid"]: r for r in results(db)}
    assert set(rows) == {STUDY_A, STUDY_B}
    assert (rows[STUDY_A]["n_instances"], rows[STUDY_A]["history_count"]) == (3, 2)
    assert rows[STUDY_B]["history_count"] == 1

    code, out = invoke("run", orthanc.dicomweb, "--db", db)
    assert code == 0 and "0 项检查 studies" in out, out


def test_wrong_credentials_give_one_clear_line(orthanc, tmp_path):
    env = {**os.environ, "QC_DICOMWEB_USER": "qc", "QC_DICOMWEB_PASSWORD": "wrong-password"}
    env.pop("QC_DICOMWEB_SECRET_BLOCK", None)
    # Refused before any flow starts: a Prefect API that is not there is never reached for.
    env["PREFECT_API_URL"] = "http://127.0.0.1:9/api"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "qc_pipeline.cli",
            "run",
            orthanc.dicomweb,
            "--db",
            f"sqlite:///{tmp_path / 'r.sqlite'}",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env=env,
    )
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "refused the credentials (HTTP 401) while trying to check the connection" in lines[0]
    assert "wrong-password" not in proc.stderr + proc.stdout


def test_server_down_is_a_clear_error_and_the_next_run_completes(
    prefect_harness, orthanc, cloud_credentials, demo_folder, tmp_path
):
    folder, cases = demo_folder
    orthanc.clear()
    orthanc.upload(sorted(folder.rglob("*.dcm")))
    db = f"sqlite:///{tmp_path / 'r.sqlite'}"
    orthanc.stop()
    try:
        result = CliRunner().invoke(main, ["run", orthanc.dicomweb, "--db", db])
        assert result.exit_code == 1
        assert "cannot reach DICOMweb server" in result.output
    finally:
        orthanc.start()
    code, out = invoke("run", orthanc.dicomweb, "--db", db)
    assert code == 0 and f"{len(cases)} 已质控 judged" in out, out
    assert len(verdicts(db)) == len(cases)


def test_server_stopped_mid_run_loses_nothing_and_duplicates_nothing(
    prefect_harness, orthanc, cloud_credentials, demo_folder, tmp_path, monkeypatch
):
    from flows import qc_flow

    folder, cases = demo_folder
    names = sorted(c.name for c in cases)
    first_half, second_half = names[: len(names) // 2], names[len(names) // 2 :]
    orthanc.clear()
    orthanc.upload(sorted(p for n in first_half for p in (folder / n).rglob("*.dcm")))
    orthanc.wait_until_stable()
    db = f"sqlite:///{tmp_path / 'r.sqlite'}"
    assert invoke("run", orthanc.dicomweb, "--db", db)[0] == 0
    stored_cursor = cursor(db, orthanc.dicomweb)
    orthanc.upload(sorted(p for n in second_half for p in (folder / n).rglob("*.dcm")))
    orthanc.wait_until_stable()
    n_new = len(orthanc.study_ids()) - len(results(db))

    # The server goes away once the first study of the run is stored; the others then fail.
    real_process_entry, calls, stopped = qc_flow.process_entry, [], threading.Event()
    lock = threading.Lock()

    def process_then_stop_the_server(*args, **kwargs):
        with lock:
            calls.append(args[1].study_instance_uid)
            first = len(calls) == 1
        if not first:
            assert stopped.wait(timeout=60), "the first study never finished"
            return real_process_entry(*args, **kwargs)
        try:
            return real_process_entry(*args, **kwargs)
        finally:
            orthanc.stop()
            stopped.set()

    real_judge_study = qc_flow.judge_study
    monkeypatch.setattr(qc_flow, "process_entry", process_then_stop_the_server)
    monkeypatch.setattr(qc_flow, "judge_study", real_judge_study.with_options(retries=0))  # no 12 s of retries
    try:
        result = CliRunner().invoke(main, ["run", orthanc.dicomweb, "--db", db])
        assert result.exit_code == 1, result.output
        assert f"{n_new - 1} of {n_new} studies could not be judged; the next run retries them" in result.output
        assert "下次运行将自动重试" in result.output
    finally:
        orthanc.start()
    assert cursor(db, orthanc.dicomweb) == stored_cursor  # not moved past the studies that failed
    monkeypatch.setattr(qc_flow, "process_entry", real_process_entry)
    monkeypatch.setattr(qc_flow, "judge_study", real_judge_study)

    code, out = invoke("run", orthanc.dicomweb, "--db", db)
    assert code == 0 and f"{n_new} 项检查 studies, {n_new - 1} 已质控 judged, 1 无变化 unchanged" in out, out
    rows = results(db)
    assert len(rows) == len(orthanc.study_ids())
    assert {r["history_count"] for r in rows} == {1}  # nothing judged twice
    assert int(cursor(db, orthanc.dicomweb).position) > int(stored_cursor.position)


def test_credentials_from_a_prefect_secret_block(prefect_harness, orthanc, monkeypatch, tmp_path):
    from prefect.blocks.system import Secret

    for name in ("QC_DICOMWEB_USER", "QC_DICOMWEB_PASSWORD", "QC_DICOMWEB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    Secret(value={"username": USER, "password": PASSWORD}).save("qc-cloud-test", overwrite=True)
    Secret(value={"username": USER, "password": "wrong-secret-pw"}).save("qc-cloud-wrong", overwrite=True)
    orthanc.clear()
    orthanc.upload([write_instance(tmp_path / "a" / "1.dcm", study=STUDY_A, series_no=1, instance_no=1)])
    db_path = tmp_path / "r.sqlite"
    db = f"sqlite:///{db_path}"

    monkeypatch.setenv("QC_DICOMWEB_SECRET_BLOCK", "qc-cloud-test")
    code, out = invoke("run", orthanc.dicomweb, "--db", db)
    assert code == 0 and "1 已质控 judged" in out, out
    written = b"".join(p.read_bytes() for p in tmp_path.glob("r.sqlite*"))  # the database and its WAL
    assert STUDY_A.encode() in written and PASSWORD.encode() not in written
    with sqlite3.connect(db_path) as conn:  # nor in the source URIs stored
        assert {row[0] for row in conn.execute("SELECT source_uri FROM runs")} == {orthanc.dicomweb}

    monkeypatch.setenv("QC_DICOMWEB_SECRET_BLOCK", "qc-cloud-wrong")
    result = CliRunner().invoke(main, ["run", orthanc.dicomweb, "--db", db])
    assert result.exit_code == 1
    assert "refused the credentials (HTTP 401)" in result.output
    assert "check Prefect Secret block 'qc-cloud-wrong'" in result.output

    # doctor probes the source with the block serve will be given (README, Production, step 5)
    monkeypatch.delenv("QC_DICOMWEB_SECRET_BLOCK")
    for block, ok in (("qc-cloud-test", True), ("qc-cloud-wrong", False)):
        result = CliRunner().invoke(
            main, ["doctor", "--source", orthanc.dicomweb, "--secret-block", block, "--db", db, "--min-free-gb", "0"]
        )
        (line,) = [ln for ln in result.output.splitlines() if ln.split(":")[0].split()[-1:] == ["source"]]
        assert line.startswith("ok" if ok else "PROBLEM"), result.output
        if not ok:
            assert f"check Prefect Secret block '{block}'" in line
    assert "wrong-secret-pw" not in result.output

    monkeypatch.setenv("QC_DICOMWEB_SECRET_BLOCK", "no-such-block")
    result = CliRunner().invoke(main, ["run", orthanc.dicomweb, "--db", db])
    assert result.exit_code == 1
    assert "cannot load the DICOMweb credentials from Prefect Secret block 'no-such-block'" in result.output


def test_secret_block_in_ephemeral_mode(orthanc, tmp_path):
    """No Prefect server at all: the block is saved and read through Prefect's temporary API."""
    orthanc.clear()
    orthanc.upload([write_instance(tmp_path / "a" / "1.dcm", study=STUDY_A, series_no=1, instance_no=1)])
    db = f"sqlite:///{tmp_path / 'r.sqlite'}"
    script = (
        "from prefect.blocks.system import Secret\n"
        f"Secret(value={{'username': {USER!r}, 'password': {PASSWORD!r}}}).save('qc-ephemeral', overwrite=True)\n"
        "from qc_pipeline.cli import main\n"
        f"main(['run', {orthanc.dicomweb!r}, '--db', {db!r}])\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QC_DICOMWEB_", "PREFECT_API_URL"))}
    env["QC_DICOMWEB_SECRET_BLOCK"] = "qc-ephemeral"
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=240, check=False, env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert "1 项检查 studies, 1 已质控 judged" in proc.stdout
    assert PASSWORD not in proc.stdout + proc.stderr
