"""``qc-pipeline doctor`` names each problem with its fix and exits 1; a sound setup passes."""

from __future__ import annotations

import shutil
import socket
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from qc_pipeline.cli import main

REPO = Path(__file__).resolve().parents[1]
OLD_DB = REPO / "tests" / "data" / "results-rev0001.sqlite"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """A sound local setup: the shipped models, a fresh database, a source folder, no Prefect API."""
    monkeypatch.setenv("QC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("QC_DB_URL", raising=False)
    monkeypatch.delenv("QC_MODELS_DIR", raising=False)
    monkeypatch.delenv("QC_WORK_POOL", raising=False)
    monkeypatch.setattr("prefect.settings.PREFECT_API_URL.value", lambda: None)
    (tmp_path / "incoming").mkdir()
    return tmp_path


def _doctor(*args: str):
    result = CliRunner().invoke(main, ["doctor", "--min-free-gb", "0", *args])
    lines = {
        line.split(":")[0].split()[-1]: line
        for line in result.output.splitlines()
        if line.startswith(("ok", "PROBLEM"))
    }
    return result, lines


def test_a_sound_setup_is_all_ok(setup):
    result, lines = _doctor("--source", str(setup / "incoming"))
    assert result.exit_code == 0, result.output
    assert set(lines) == {"thresholds", "database", "source", "models", "prefect", "disk"}
    assert all(line.startswith("ok") for line in lines.values()), result.output
    assert "all ok" in result.output
    assert "does not exist yet" in lines["database"]
    assert not (setup / "data" / "results.sqlite").exists()  # doctor writes nothing


def test_a_database_at_an_old_migration_is_named_with_its_fix(setup):
    db = setup / "old.sqlite"
    shutil.copy(OLD_DB, db)
    result, lines = _doctor("--db", f"sqlite:///{db}")
    assert result.exit_code == 1
    line = lines["database"]
    assert line.startswith("PROBLEM") and "is at migration 0001" in line and "head is 00" in line
    assert "back it up" in line and "qc-pipeline results" in line and "请先备份" in line
    with sqlite3.connect(db) as connection:  # doctor never migrates
        assert connection.execute("select version_num from alembic_version").fetchall() == [("0001",)]


def test_an_unreachable_database_is_named_with_its_fix(setup):
    result, lines = _doctor("--db", f"postgresql://qc:wrong@127.0.0.1:{_free_port()}/qc")
    assert result.exit_code == 1
    line = lines["database"]
    assert line.startswith("PROBLEM") and "cannot be reached" in line and "the password" in line
    assert "wrong" not in line  # the password is masked
    assert "无法连接数据库" in line


def test_a_corrupt_model_is_named_with_its_fix(setup, monkeypatch):
    models = setup / "models"
    shutil.copytree(REPO / "models", models)
    onnx = models / "ct_artifacts.onnx"
    onnx.write_bytes(onnx.read_bytes()[:-16] + b"\0" * 16)
    monkeypatch.setenv("QC_MODELS_DIR", str(models))
    result, lines = _doctor()
    assert result.exit_code == 1
    line = lines["models"]
    assert line.startswith("PROBLEM") and "ct_artifacts" in line and "is corrupt or was replaced" in line
    assert "restore the file or retrain" in line


def test_an_unreachable_prefect_api_is_named_with_its_fix(setup, monkeypatch):
    url = f"http://127.0.0.1:{_free_port()}/api"
    monkeypatch.setattr("prefect.settings.PREFECT_API_URL.value", lambda: url)
    result, lines = _doctor()
    assert result.exit_code == 1
    line = lines["prefect"]
    assert line.startswith("PROBLEM") and f"the Prefect API at {url} does not answer" in line
    assert "start the Prefect server or fix PREFECT_API_URL" in line and "Prefect 服务无响应" in line


def test_a_missing_source_folder_and_broken_thresholds(setup):
    (setup / "th").mkdir()
    (setup / "th" / "broken.yaml").write_text("rules: [")
    result, lines = _doctor("--source", str(setup / "nowhere"), "--thresholds", str(setup / "th"))
    assert result.exit_code == 1
    assert lines["source"].startswith("PROBLEM") and "check the path or URL" in lines["source"]
    assert lines["thresholds"].startswith("PROBLEM") and "fix the YAML" in lines["thresholds"]


def test_wrong_dicomweb_credentials_are_named_with_their_fix(setup, monkeypatch):
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Refuse(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="dicom"')
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("QC_DICOMWEB_USER", "qc")
    monkeypatch.setenv("QC_DICOMWEB_PASSWORD", "wrong")
    try:
        result, lines = _doctor("--source", f"http://127.0.0.1:{server.server_port}/dicom-web")
    finally:
        server.shutdown()
        server.server_close()
    assert result.exit_code == 1
    line = lines["source"]
    assert line.startswith("PROBLEM") and "refused the credentials (HTTP 401)" in line
    assert "wrong user name or password" in line and "用户名或密码错误" in line


def test_a_missing_work_pool_is_named_with_its_fix(prefect_harness, tmp_path, monkeypatch):
    monkeypatch.setenv("QC_DATA_DIR", str(tmp_path / "data"))
    result, lines = _doctor("--work-pool", "qc-pool")
    line = lines["prefect"]
    assert line.startswith("PROBLEM") and "work pool 'qc-pool' does not exist" in line
    assert "prefect work-pool create qc-pool --type process" in line
