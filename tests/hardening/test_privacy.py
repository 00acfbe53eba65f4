"""Privacy and credentials: no patient name or ID of the demo in any log line (Prefect's and
ours, at DEBUG), and no password of the results database or the imaging cloud in results, logs
or error messages."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner

from qc_pipeline.cli import main
from qc_pipeline.errors import SourceError, StoreError
from qc_pipeline.samples import write_demo_studies
from qc_pipeline.sources import open_source
from qc_pipeline.store import ResultStore
from tests.support import orthanc as orthanc_server

LOGGERS = ("", "prefect", "prefect.flow_runs", "prefect.task_runs", "qc_pipeline", "flows", "distributed", "sqlalchemy")
DB_PASSWORD = "Db-Pass-9931"


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.lines.extend(f"{record.name}: {line}" for line in text.splitlines())


@pytest.fixture
def debug_logs() -> Iterator[Collect]:
    """Every record of every logger that matters, at DEBUG, for the duration of the test."""
    handler = Collect()
    saved = []
    for name in LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level))
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger, level in saved:
            logger.removeHandler(handler)
            logger.setLevel(level)


def identifiers(folder: Path) -> set[str]:
    """The demo patients' names (each component group, with and without separators) and IDs."""
    found: set[str] = set()
    for path in folder.rglob("*"):
        if not path.is_file():
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:
            continue
        for value in (ds.get("PatientID"), ds.get("OtherPatientIDs")):
            if value and len(str(value).strip()) >= 4:
                found.add(str(value).strip())
        name = ds.get("PatientName")
        if name:
            for group in str(name).split("="):
                for variant in (group, group.replace("^", " "), group.replace("^", "")):
                    if len(variant.strip()) >= 2:
                        found.add(variant.strip())
    return found


@pytest.mark.prefect
def test_demo_run_logs_no_patient_name_or_id(prefect_harness, tmp_path, debug_logs, capfd):
    from flows.qc_flow import run

    folder = tmp_path / "studies"
    write_demo_studies(folder)
    secrets = identifiers(folder)
    assert {"0003271845", "Liu^Fang", "刘芳", "张伟"} <= secrets  # the scan knows what to look for
    summary = run(folder, db_url=f"sqlite:///{tmp_path / 'r.sqlite'}")
    assert summary["judged"] == summary["studies"] > 20
    captured = capfd.readouterr()
    lines = debug_logs.lines + captured.out.splitlines() + captured.err.splitlines()
    assert len(lines) > 50, "the DEBUG logs were not captured"
    leaks = [(secret, line) for line in lines for secret in secrets if secret in line]
    assert not leaks, leaks[:5]


def test_database_password_is_never_shown(private_postgres, private_db, debug_logs):
    url = private_db.replace("postgres@", f"postgres:{DB_PASSWORD}@")
    with ResultStore.open(url) as store:  # trust auth: the password is sent, not checked
        assert DB_PASSWORD not in repr(store) + store.url
        run_id = store.start_run(source_uri="file:///incoming", pipeline_version="t", thresholds_version="t")
        store.finish_run(run_id, status="completed", n_studies=0, n_judged=0, n_unchanged=0, n_errors=0)
        assert DB_PASSWORD not in json.dumps([r.as_dict() for r in store.runs()])
    down = url.replace(f":{private_postgres.port}/", ":1/")  # nothing listens on port 1
    with pytest.raises(
        StoreError, match=r"cannot open the results database postgresql\+psycopg://postgres:\*\*\*@"
    ) as err:
        ResultStore.open(down)
    assert DB_PASSWORD not in str(err.value) + repr(err.value)
    assert not [line for line in debug_logs.lines if DB_PASSWORD in line]
    result = CliRunner().invoke(main, ["results", "--db", down])
    assert result.exit_code == 1 and DB_PASSWORD not in result.output and "***" in result.output


@pytest.mark.prefect
def test_cloud_credentials_never_in_results_logs_or_errors(
    prefect_harness, own_orthanc, tmp_path, monkeypatch, debug_logs, capfd
):
    from flows.qc_flow import run

    server = own_orthanc
    for name in ("QC_DICOMWEB_USER", "QC_DICOMWEB_PASSWORD"):  # the credentials come with the URL here
        monkeypatch.delenv(name)
    demo = tmp_path / "demo"
    write_demo_studies(demo)
    server.upload(sorted((demo / "phantom_ct_chest").rglob("*.dcm")))
    password = orthanc_server.PASSWORD
    with_credentials = server.dicomweb.replace("http://", f"http://{orthanc_server.USER}:{password}@")
    db = f"sqlite:///{tmp_path / 'r.sqlite'}"
    summary = run(with_credentials, db_url=db)
    assert summary["judged"] == 1 and password not in json.dumps(summary)
    with ResultStore.open(db) as store:
        stored = json.dumps([store.results(), [r.as_dict() for r in store.runs()]], ensure_ascii=False)
    assert password not in stored and server.dicomweb in stored

    wrong = server.dicomweb.replace("http://", f"http://{orthanc_server.USER}:Wrong-Pass-55@")
    with pytest.raises(SourceError, match=r"HTTP 401") as err:
        list(open_source(wrong).discover())
    assert "Wrong-Pass-55" not in str(err.value) + repr(err.value)

    monkeypatch.setenv("QC_DICOMWEB_USER", orthanc_server.USER)
    monkeypatch.setenv("QC_DICOMWEB_PASSWORD", "Env-Pass-77")
    with pytest.raises(SourceError, match=r"HTTP 401") as err:
        list(open_source(server.dicomweb).discover())
    assert "Env-Pass-77" not in str(err.value)
    captured = capfd.readouterr()
    lines = debug_logs.lines + captured.out.splitlines() + captured.err.splitlines()
    for secret in (password, "Wrong-Pass-55", "Env-Pass-77"):
        assert not [line for line in lines if secret in line], secret
