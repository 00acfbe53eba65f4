"""The DICOMweb source against a real Orthanc: same verdicts as the folder, incremental runs,
wrong credentials and a server that goes away."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from qc_pipeline.cli import main
from qc_pipeline.samples.demo import write_demo_studies

pytestmark = pytest.mark.prefect

# Folder-only cases: a file that is not DICOM, or is cut short, cannot be uploaded by STOW-RS.
NOT_UPLOADABLE = {"not_dicom", "truncated_file"}


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def verdicts(db_url: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Verdict and finding codes per study, without timeliness: DICOMweb does not say when the
    server received a study (the folder source uses the file time), so upload delay is unknown."""
    code, out = invoke("results", "--db", db_url, "--format", "json")
    assert code == 0, out
    return {
        r["study_instance_uid"]: (
            r["verdict"],
            tuple(sorted(f["code"] for f in r["findings"] if f["category"] != "timeliness")),
        )
        for r in json.loads(out)
    }


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory) -> tuple[Path, list]:
    root = tmp_path_factory.mktemp("cloud-demo")
    cases = [c for c in write_demo_studies(root / "all") if c.name not in NOT_UPLOADABLE]
    upload = root / "upload"
    for case in cases:
        shutil.copytree(root / "all" / case.name, upload / case.name)
    return upload, cases


def test_stow_uploads_get_the_same_verdicts_as_the_folder(prefect_harness, orthanc, cloud_credentials, demo_folder, tmp_path):
    folder, cases = demo_folder
    orthanc.clear()
    orthanc.upload(sorted(folder.rglob("*.dcm")))
    folder_db, cloud_db = f"sqlite:///{tmp_path / 'folder.sqlite'}", f"sqlite:///{tmp_path / 'cloud.sqlite'}"
    assert invoke("run", str(folder), "--db", folder_db)[0] == 0
    code, out = invoke("run", orthanc.dicomweb, "--db", cloud_db)
    assert code == 0, out
    from_folder, from_cloud = verdicts(folder_db), verdicts(cloud_db)
    assert len(from_cloud) == len(cases)
    assert from_cloud == from_folder

    # Incremental: nothing new, nothing judged; a new upload is picked up alone.
    code, out = invoke("run", orthanc.dicomweb, "--db", cloud_db)
    assert code == 0 and f"0 已质控 judged, {len(cases)} 无变化 unchanged" in out, out


def test_new_upload_is_picked_up_and_old_ones_are_not_redone(prefect_harness, orthanc, cloud_credentials, demo_folder, tmp_path):
    folder, cases = demo_folder
    orthanc.clear()
    first, *rest = sorted(p for p in folder.iterdir() if p.is_dir())
    orthanc.upload(sorted(first.rglob("*.dcm")))
    db = f"sqlite:///{tmp_path / 'r.sqlite'}"
    code, out = invoke("run", orthanc.dicomweb, "--db", db)
    assert code == 0 and "1 已质控 judged, 0 无变化 unchanged" in out, out
    orthanc.upload(sorted(rest[0].rglob("*.dcm")))
    code, out = invoke("run", orthanc.dicomweb, "--db", db)
    assert code == 0 and "1 已质控 judged, 1 无变化 unchanged" in out, out


def test_wrong_credentials_give_one_clear_line(orthanc, monkeypatch, tmp_path):
    import subprocess
    import sys

    env = {"QC_DICOMWEB_USER": "qc", "QC_DICOMWEB_PASSWORD": "wrong-password"}
    proc = subprocess.run(
        [sys.executable, "-m", "qc_pipeline.cli", "run", orthanc.dicomweb, "--db", f"sqlite:///{tmp_path / 'r.sqlite'}"],
        capture_output=True, text=True, timeout=180, check=False, env={**__import__("os").environ, **env},
    )
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "refused the credentials (HTTP 401)" in lines[0]
    assert "wrong-password" not in proc.stderr + proc.stdout


def test_server_down_is_a_clear_error_and_the_next_run_completes(prefect_harness, orthanc, cloud_credentials, demo_folder, tmp_path):
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
